"""Opens files until the kernel refuses one; bounded by OPEN_AT_MOST (2000) whatever its limit."""
import os

fds = []
try:
    for _ in range(int(os.environ.get("OPEN_AT_MOST", "2000"))):
        fds.append(os.open("/dev/null", os.O_RDONLY))
    print(f"opened all {len(fds)} files", flush=True)
except OSError as e:
    print(f"open refused after {len(fds)} files: {e.strerror}", flush=True)
