"""Writes until the disk says no, in its own folder and in /tmp: each must be a small private space
(ENOSPC well before 200 MiB), never the machine's disk. Files of 8 MiB (one file may not pass the
output limit, 16 MiB); bounded at 200 MiB per place whatever the limits."""
import os

CHUNK = b"x" * (1 << 20)
for place in (".", "/tmp"):
    written, files = 0, []
    try:
        while written < 200:
            files.append(os.path.join(place, f"filler-{len(files)}.bin"))
            with open(files[-1], "wb") as f:
                for _ in range(8):
                    f.write(CHUNK)
                    f.flush()
                    written += 1
        print(f"{place}: wrote all {written} MiB", flush=True)
    except OSError as e:
        print(f"{place}: full after {written} MiB ({e.strerror})", flush=True)
    for path in files:
        if os.path.exists(path):
            os.unlink(path)
