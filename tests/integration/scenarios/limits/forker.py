"""Forks children that wait, until a fork is refused; bounded at 60 children whatever its limit."""
import os
import signal

children = []
for _ in range(60):
    try:
        pid = os.fork()
    except OSError as e:
        print(f"fork refused after {len(children)} children: {e.__class__.__name__}", flush=True)
        break
    if pid == 0:
        signal.pause()
        os._exit(0)
    children.append(pid)
else:
    print(f"forked all {len(children)} children", flush=True)
for pid in children:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
