"""Prints forever, in big chunks: the output limit stops it within a second."""
import sys

chunk = "debug " * 100_000 + "\n"
while True:
    sys.stdout.write(chunk)
