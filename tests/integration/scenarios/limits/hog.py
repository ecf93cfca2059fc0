"""Allocates memory 8 MiB at a time, touching every page; bounded at 256 MiB whatever its limit."""
import sys
import time

chunks = []
for k in range(32):
    chunks.append(bytearray(8 * 1024 * 1024))  # zero-filled: every page touched
    print(f"holding {8 * (k + 1)} MiB", flush=True)
    time.sleep(0.01)
print("the memory limit did not stop me", flush=True)
sys.exit(0)
