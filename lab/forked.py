"""A run in a child process of its own, for a backend whose `up` changes the process it runs in.

A lab without root makes its process root of a user namespace of its own (lab/backends/rootless.py):
a change that cannot be undone, that the kernel refuses to a process with threads, and that a
library caller (the pytest plugin running scenario after scenario, a test in an xdist worker) must
never undergo. So such a run happens in a fork: the child is single-threaded, runs the lab, and
sends back its progress lines and its result; the caller only waits.

Signals: the child has a process group of its own, so Ctrl-C or a signal to the caller's group
reaches the caller alone, which forwards each signal once (a Ctrl-C counted twice would make the
lab leave at once). The child dies with the caller (parent-death signal): a second Ctrl-C, or kill
-9 of the caller, leaves what a killed lab leaves, for `lab clean`.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
from collections.abc import Callable
from typing import Any

from lab.errors import LabError
from lab.execution import Progress
from lab.outcome import RunResult
from lab.signals import SignalGuard, set_parent_death_signal

HEADER = struct.Struct("!I")  # the length of one pickled frame


def run(body: Callable[[Progress], RunResult], progress: Progress, guard: SignalGuard) -> RunResult:
    """`body(progress)` in a child process: its progress lines go to `progress`, its result (or the
    exception it raised) comes back here. `guard` is in place: what it records is forwarded."""
    parent = os.getpid()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        _child(body, write, parent)
    os.close(write)
    try:
        return _wait(pid, read, progress, guard)
    finally:
        os.close(read)
        _reap(pid)


def _child(body: Callable[[Progress], RunResult], fd: int, parent: int) -> None:
    """Never returns into the caller's code: the child ends with os._exit."""
    code = 0
    try:
        os.setpgid(0, 0)
        set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != parent:  # the caller died before the death signal was armed
            os._exit(1)
        try:
            _send(fd, ("result", body(lambda line: _send(fd, ("progress", line)))))
        except BaseException as e:  # noqa: BLE001 - the caller raises it
            code = 1
            _send(fd, ("raise", e if _picklable(e) else LabError(f"{type(e).__name__}: {e}")))
    except BaseException:  # noqa: BLE001 - the caller is gone (EPIPE): nothing to tell
        code = 1
    finally:
        os._exit(code)


def _wait(pid: int, fd: int, progress: Progress, guard: SignalGuard) -> RunResult:
    forwarded = 0
    while True:
        ready = select.select([fd], [], [], 0.05)[0]
        while forwarded < len(guard.seen):  # each signal once, in order
            _kill(pid, guard.seen[forwarded])
            forwarded += 1
        if not ready:
            continue
        frame = _receive(fd)
        if frame is None:
            raise LabError(f"the lab's process (pid {pid}) ended without a result; `lab clean` removes what is left")
        kind, value = frame
        if kind == "progress":
            progress(value)
        elif kind == "raise":
            raise value
        else:
            result: RunResult = value
            return result


def _send(fd: int, frame: tuple[str, Any]) -> None:
    data = pickle.dumps(frame)
    data = HEADER.pack(len(data)) + data
    while data:
        data = data[os.write(fd, data):]


def _receive(fd: int) -> tuple[str, Any] | None:
    header = _exactly(fd, HEADER.size)
    if header is None:
        return None
    body = _exactly(fd, HEADER.unpack(header)[0])
    return None if body is None else pickle.loads(body)  # noqa: S301 - our own child's frames


def _exactly(fd: int, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _picklable(e: BaseException) -> bool:
    try:
        pickle.loads(pickle.dumps(e))  # noqa: S301 - made here
        return True
    except Exception:  # noqa: BLE001 - any failure means: send a plain LabError instead
        return False


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    """The child ends right after its last frame (or with the caller's guard's second Ctrl-C)."""
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
