"""SIGINT and SIGTERM during a run: recorded, never raised asynchronously.

A module of its own, importing nothing heavy, so that `lab run` can put the guard in place before
it imports anything else (the backends, the Docker SDK). A run says `STARTED` (its first progress
line, once the scenario is valid and the environment fit, as it begins to create things): from that
line on, SIGINT and SIGTERM end the run in order (exit 130 / 143). `lab run` has the guard in place
earlier still, while it imports and loads; a signal before that (while the interpreter itself
starts) has the interpreter's default effect, outside the contract.

The same convention words a node's exit: a process killed by signal N exits 128+N (`exit_words`),
on every backend, as in the shell and docker; execution, the checks and the reports all say it so.
"""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import Any

from lab.errors import Interrupted


def set_parent_death_signal(signum: int) -> None:
    """Have the kernel send `signum` to this process when its parent dies (prctl PR_SET_PDEATHSIG)."""
    import ctypes

    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl: {os.strerror(err)}")


PR_SET_PDEATHSIG = 1
STARTED = "lab {name}: starting on {backend} (pid {pid}); Ctrl-C or SIGTERM stops it cleanly"
HANDLED = (signal.SIGINT, signal.SIGTERM)


class SignalGuard:
    """SIGINT and SIGTERM are recorded, never raised asynchronously: the run looks at them at safe
    points (between polls, between starts), so no bookkeeping is ever cut in half and teardown is
    never skipped. One guard covers a whole run, teardown included.

    The one exception is the user who insists: a second SIGINT (Ctrl-C again) makes the process
    leave at once, exit 130. The journal is kept then, so `lab clean` can finish the job.

    On leaving, the handlers found on entry come back, or `then` when given: `lab run` leaves
    SIG_IGN behind, because once the run has returned its outcome (130/143 included) is decided."""

    def __init__(self, then: Any = None) -> None:
        self.seen: list[int] = []
        self.then = then
        self._old: dict[int, Any] = {}

    def __enter__(self) -> SignalGuard:
        for sig in HANDLED:
            self._old[sig] = signal.signal(sig, self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler if self.then is None else self.then)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and signal.SIGINT in self.seen:
            os.write(2, b"lab: second Ctrl-C: leaving now; `lab clean` removes what is left\n")
            os._exit(130)
        self.seen.append(signum)

    def check(self) -> None:
        """Raise `Interrupted` if a signal came (called at safe points)."""
        if self.seen:
            raise Interrupted(self.seen[0])


def exit_words(code: int | None) -> str:
    """`code 3`, `code 143 (SIGTERM)`: every backend reports a process killed by signal N as 128+N,
    as the shell and docker do."""
    if code is None:
        return "unknown status"
    if code < 0:  # a raw wait status, from a caller that did not convert it
        code = 128 - code
    if code > 128:
        try:
            return f"code {code} ({signal.Signals(code - 128).name})"
        except ValueError:
            pass
    return f"code {code}"
