"""`python -m lab.backends.enter NETNS HOSTS HOSTNAME CWD -- ARGV...`: a fresh process moves itself
into a node of the netns backend (its network, hostname, hosts file and folder, as the lab places
its own programs; while the node runs, its own view and uid) and execs ARGV. `lab exec`, `lab
shell` and the pytest fixture start it: entering a node never runs code between fork and exec
inside a caller that may have threads (pytest, xdist)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str]) -> int:
    if len(argv) < 6 or argv[4] != "--":
        print("usage: python -m lab.backends.enter NETNS HOSTS HOSTNAME CWD -- ARGV...", file=sys.stderr)
        return 2
    netns, hosts, hostname, cwd, _, *cmd = argv
    from lab.backends.netns import enter_node

    try:
        via = os.environ.pop("LAB_ENTER_VIA", "")
        if via:  # a lab without root: its names are in its keeper's namespaces
            from lab.backends.rootless import join

            join(int(via))
        uid = enter_node(netns, Path(hosts), hostname, cwd)
        if uid is not None:  # a running node: one of its processes (its PID namespace), as the node
            _become_a_child()
            from lab.backends import sandbox

            sandbox.drop(uid)
            os.environ.update(HOME=cwd, USER=hostname, LOGNAME=hostname)
    except OSError as e:
        print(f"lab: {hostname}: cannot enter the node: {e}", file=sys.stderr)
        return 127
    try:
        os.execvp(cmd[0], cmd)
    except FileNotFoundError:
        print(f"lab: {hostname}: {cmd[0]}: command not found", file=sys.stderr)
        return 127
    except OSError as e:
        print(f"lab: {hostname}: cannot run {cmd[0]}: {e.strerror}", file=sys.stderr)
        return 126


def _become_a_child() -> None:
    """Fork into the node's PID namespace (setns only placed our children there): the child goes on
    to exec the command; this process waits, as a shell does, and leaves with the command's code."""
    import signal

    child = os.fork()
    if child == 0:
        return
    for sig in (signal.SIGINT, signal.SIGQUIT):  # a terminal's signals reach the command itself
        signal.signal(sig, signal.SIG_IGN)

    def forward(signum: int, frame: object) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
