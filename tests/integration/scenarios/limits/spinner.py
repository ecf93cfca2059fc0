"""Spins on the CPU for at most 20 s of wall time."""
import time

deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    pass
print("the CPU limit did not stop me", flush=True)
