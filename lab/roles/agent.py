"""Container entry point of a lab node (standard library only; runs inside the node image).

The container starts with no network. The lab then wires it (veths, addresses, routes, forwarding)
from outside, and finally creates the node's "go" file; only then does the agent become the node's
role or program. So a node never runs before its network exists, and nothing is slept for: the go
file is observed. A plain host (no role, no program) just waits to be stopped.

The spec (JSON, from $LAB_SPEC): log, go, cwd, ready (file), transcript, role + params | argv, idle.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

GO_TIMEOUT = 600.0  # a node never told to start gives up (the lab has died): no container lingers


def main() -> int:
    spec: dict[str, Any] = json.load(open(os.environ.get("LAB_SPEC", "/lab/ctl/spec.json")))
    log = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    if spec.get("idle"):
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
        while True:
            signal.pause()
    deadline = time.monotonic() + float(spec.get("go_timeout", GO_TIMEOUT))
    while not os.path.exists(spec["go"]):
        if time.monotonic() > deadline:
            print(f"lab agent: not told to start within {GO_TIMEOUT:.0f}s; giving up", flush=True)
            return 125
        time.sleep(0.005)
    os.chdir(spec["cwd"])
    if spec.get("role"):
        from lab.roles import run_role

        os.environ["LAB_READY_FILE"] = spec["ready"]
        return run_role(spec["role"], spec["params"], spec["transcript"])
    argv = [str(a) for a in spec["argv"]]
    try:
        os.execvp(argv[0], argv)
    except FileNotFoundError:
        print(f"lab: {os.environ.get('LAB_NODE', '?')}: {argv[0]}: command not found", flush=True)
        return 127
    except OSError as e:
        print(f"lab: cannot run {argv[0]}: {e.strerror}", flush=True)
        return 126


if __name__ == "__main__":
    sys.exit(main())
