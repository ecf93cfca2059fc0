"""Container entry point of a lab node (standard library only; runs inside the node image).

The container starts with no network. The lab then wires it (veths, addresses, routes, forwarding)
from outside, and finally writes "go" into the node's go FIFO; only then does the agent become the
node's role or program. So a node never runs before its network exists, and nothing is polled or
slept for. If the lab dies first, the FIFO loses its last writer and the agent exits. A plain host
(no role, no program) just waits to be stopped.

The agent is the container's init (PID 1): a role runs in it (and handles SIGTERM itself); a
program runs as its child, gets SIGTERM/SIGINT/SIGHUP forwarded, and its orphans are reaped. The
exit code is written to the `exit` file before the agent exits, so that the lab learns it without
asking the engine (which answers slowly while it is busy removing other containers).

The spec (JSON, from $LAB_SPEC): log, go, cwd, ready (file), exit (file), transcript,
role + params | argv, idle.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def main() -> int:
    spec: dict[str, Any] = json.load(open(os.environ.get("LAB_SPEC", "/lab/ctl/spec.json")))
    if spec.get("role"):  # import the role's program now, while the lab is still wiring the node
        from lab.roles import load_role

        load_role(spec["role"])
    log = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    if spec.get("idle"):
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
        while True:
            signal.pause()
    with open(spec["go"], "rb") as go:  # a FIFO the lab holds open: blocks, costs no CPU
        if go.read(3) != b"go\n":
            print("lab agent: the lab went away before starting this node", flush=True)
            return 125
    os.chdir(spec["cwd"])
    if spec.get("role"):
        from lab.roles import run_role

        os.environ["LAB_READY_FILE"] = spec["ready"]
        code = run_role(spec["role"], spec["params"], spec["transcript"])
    else:
        code = supervise([str(a) for a in spec["argv"]], spec.get("stdin"))
    _write_exit(spec, code)
    return code


def supervise(argv: list[str], stdin: list[list[Any]] | None = None) -> int:
    """Run the program as a child of this init: forward signals, reap orphans, return its code."""
    child = os.fork()
    if child == 0:
        for sig in FORWARDED:
            signal.signal(sig, signal.SIG_DFL)
        if stdin is not None:  # scripted input, like a person at the terminal
            from lab.roles.stdin import feed

            os.dup2(feed(stdin), 0)
        try:
            os.execvp(argv[0], argv)
        except FileNotFoundError:
            print(f"lab: {os.environ.get('LAB_NODE', '?')}: {argv[0]}: command not found", flush=True)
            os._exit(127)
        except OSError as e:
            print(f"lab: cannot run {argv[0]}: {e.strerror}", flush=True)
            os._exit(126)
    for sig in FORWARDED:
        signal.signal(sig, lambda signum, frame: _forward(child, signum))
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code


def _forward(child: int, signum: int) -> None:
    try:
        os.kill(child, signum)
    except ProcessLookupError:
        pass


def _write_exit(spec: dict[str, Any], code: int) -> None:
    try:
        with open(spec["exit"], "w") as f:
            f.write(f"{code}\n")
    except (KeyError, OSError):
        pass


if __name__ == "__main__":
    sys.exit(main())
