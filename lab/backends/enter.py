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
        if uid is not None:  # a running node: as the node, never root in a folder it wrote
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
