"""Entry points of the lab's own child processes, started as `python -m lab.entry NAME ARGS...`
(never through the `lab` command line, whose options and output are for people).

- `keep SCENARIO BACKEND OUT STATUS_FD [CLUSTER]`: the detached keeper of a kept lab (lifecycle.bring_up).
- `run SCENARIO BACKEND OUT [HIDDEN...]`: one lab in a process of its own, as grading runs each
  submission (a submission that crashes the interpreter, or must be stopped at a wall limit, takes
  only its own process with it), its nodes unable to see the HIDDEN folders. Its report is in OUT;
  its last line on stderr says why when there is none. `LAB_SEED` in its environment is the
  seed of its clients' `{word}`s.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

from lab.errors import Interrupted, LabError, ScenarioError
from lab.signals import SignalGuard


def keep(scenario: str, backend: str, out: str, status_fd: int, cluster: str | None = None) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM):  # until the run's own guard records them
        signal.signal(sig, signal.SIG_IGN)
    from lab.lifecycle import keep as keep_lab

    return keep_lab(scenario, backend, out, status_fd, cluster)


def run(scenario: str, backend: str, out: str, hidden: Sequence[str] = ()) -> int:
    """As `lab run`: the guard goes in first, so a signal (grading's wall limit) ends it in order."""
    with SignalGuard(then=signal.SIG_IGN) as guard:
        from lab import api
        from lab.plan import SEED

        seed = os.environ.get(SEED)  # grading: each submission's own, from the batch's
        result = api.run(scenario, backend, out, guard=guard, hidden=hidden, own_process=True,
                         seed=int(seed) if seed else None)
    return result.exit_code


ENTRIES = {"keep": (keep, 4, 5), "run": (run, 3, 1 << 16)}  # name: (function, fewest, most arguments)


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] not in ENTRIES or not ENTRIES[argv[0]][1] <= len(argv) - 1 <= ENTRIES[argv[0]][2]:
        print(f"lab.entry: usage: python -m lab.entry {{{'|'.join(ENTRIES)}}} ARGS... (got {list(argv)})",
              file=sys.stderr)
        return 2
    name, args = argv[0], list(argv[1:])
    try:
        if name == "keep":
            return keep(args[0], args[1], args[2], int(args[3]), *args[4:])
        return run(args[0], args[1], args[2], args[3:])
    except Interrupted as e:
        print(f"lab: interrupted (signal {e.signum}) before the lab was created", file=sys.stderr)
        return e.exit_code
    except LabError as e:
        print(e if isinstance(e, ScenarioError) else f"lab: error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
