"""The built-in roles (declared in `catalogue.ROLES`) and the one way to run them: `run_role`.

`run_role` is called in a freshly forked child of the orchestrator (no exec, to save an interpreter
start per node) or by `python3 -m lab.roles` in a container. So it sets up everything it needs
itself (transcript, signal handlers) and relies on no module-level mutable state. Standard library
only.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterable
from types import FrameType

from lab.roles.common import STOPPING, Transcript, describe, error_kind, tell_exit

TYPE_CHECKING = False  # not typing's: importing typing costs a node ~10 ms at each start
if TYPE_CHECKING:
    from typing import Any

Runner = Callable[[dict[str, "Any"], Transcript], int]  # a role module's main(params, transcript)


def load_role(name: str, module: str | None = None) -> Runner | None:
    """The runner of role `name` (catalogue.ROLES), its module imported on first use: a container that
    runs a telnet client should not pay for importing http.server (fifty nodes starting at once on two
    cores feel every millisecond). None for a name the catalogue does not know.

    `module`: the role's module, as the lab looked it up for a node's agent, which then imports
    neither the catalogue nor (through it) `typing`."""
    if module is None:
        from lab.roles.catalogue import ROLES

        role = ROLES.get(name)
        if role is None:
            return None
        module = role.module
    __import__(module)
    main: Runner = sys.modules[module].main
    return main


STOP_SIGNALS: dict[int, str] = {signal.SIGTERM: "terminated", signal.SIGINT: "interrupted"}


def run_role(name: str, params: dict[str, Any], transcript_path: str | int, module: str | None = None) -> int:
    """Run role `name` with resolved `params`, recording to `transcript_path` (or to that open file
    descriptor: a confined node cannot open files of the run folder); returns the exit code.
    `module`: as for `load_role`.

    The transcript starts with a `start` event and ends with an `end` event: {"code": N} when the
    role finished, {"reason": "terminated"} when the lab stopped it (SIGTERM; the process then
    exits at once with 128 + signal, since the orchestrator SIGKILLs ~1 s later anyway).
    """
    transcript = Transcript(transcript_path, role=name)
    install_stop_handlers(transcript)
    ignore_sigpipe()
    transcript.event("start", role=name, pid=os.getpid(), params=params)
    role = load_role(name, module)
    if role is None:
        from lab.roles.catalogue import ROLES

        message = f"unknown role {name!r} (roles: {', '.join(ROLES)})"
        transcript.event("error", kind="other", during="start", message=message)
        print(f"lab: {message}", file=sys.stderr, flush=True)
        code = 2
    else:
        code = run_guarded(role, params, transcript)
    transcript.event("end", code=code)
    flush_stdio()
    transcript.close()
    return code


def run_guarded(role: Runner, params: dict[str, Any], transcript: Transcript) -> int:
    """Run the role; a crash (e.g. port already in use) is recorded and becomes exit code 1."""
    try:
        return int(role(params, transcript))
    except Exception as exc:
        transcript.event("error", kind=error_kind(exc), during="role", message=describe(exc))
        import traceback

        traceback.print_exc(file=sys.stderr)
        return 1


def install_stop_handlers(transcript: Transcript) -> None:
    """Graceful stop on SIGTERM/SIGINT: record the `end` event, then leave at once.

    os._exit, not sys.exit: connection threads must not keep the process alive, and a forked child
    must not run the orchestrator's cleanup (atexit, finally blocks) inherited from the parent.
    """

    def stop(signum: int, frame: FrameType | None) -> None:
        for last_words in STOPPING:
            last_words()
        transcript.event("end", reason=STOP_SIGNALS.get(signum, "terminated"), signal=signum)
        flush_stdio()
        tell_exit(128 + signum)
        os._exit(128 + signum)

    try:
        signal.set_wakeup_fd(-1)  # a forked child must not poke the parent's event-loop wakeup fd
        for signum in STOP_SIGNALS:
            signal.signal(signum, stop)
    except ValueError:  # not the main thread: the orchestrator's SIGKILL still stops us
        pass


def ignore_sigpipe() -> None:
    """A peer that hangs up mid-conversation ends that one connection (EPIPE, an OSError each role
    handles), never the server: a forked role would otherwise inherit SIGPIPE at its default."""
    try:
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    except ValueError:  # not the main thread
        pass


def default_signals(but: Iterable[int] = ()) -> None:
    """Every catchable signal at its default and none blocked, as a shell starts a program (called
    before exec). SIG_IGN survives exec, and Python ignores SIGPIPE and SIGXFSZ itself: a program
    run from Python would otherwise not die of a closed pipe, nor of the output limit. Signals in
    `but` keep the handler already set (a pid 1 drops a signal it has no handler for)."""
    kept = set(but)
    for signum in signal.valid_signals():
        if signum in (signal.SIGKILL, signal.SIGSTOP) or signum in kept:
            continue
        try:
            signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError):  # reserved by the C library (e.g. 32, 33): never ours to set
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def shell_code(status: int) -> int:
    """A wait status as the shell and docker word it: killed by signal N is 128+N (every backend,
    the container agent and `lab exec` alike)."""
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, RuntimeError):  # closed, or re-entered from a signal handler
            pass


__all__ = ["Runner", "default_signals", "load_role", "run_role", "shell_code"]
