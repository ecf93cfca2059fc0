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

On a remote host (swarm backend) there is no shared folder: with `"channel": "stdio"` the agent
reads "go" from its stdin and reports on its stdout (the container's attach stream), one line per
fact: `LAB-AGENT ready`, `LAB-AGENT exit N`. The node's own output goes to its log file in the
container; the log and the transcript are streamed to the lab as they grow (`LAB-AGENT data ...`,
lab/roles/shipper.py), all of both before each fact and before the exit code. EOF on stdin before
"go" means the lab went away. TCP readiness of a program (`ready_tcp`) is observed here, from
/proc, as the lab does locally. A node with no files gets its spec in $LAB_SPEC_JSON.

Before it waits for "go", the agent copies the node's original files (`source`, read-only) into
its own writable folder (`cwd`, a size-bounded tmpfs). A container started as root (swarm: see
`_container`) is then given to the node's `uid`: the agent hands it its log, transcript and files,
and drops to it for good, so nothing of the node ever runs as root.

The spec (JSON, from $LAB_SPEC): log, go, cwd, source, uid, facts (file template), exit (file),
transcript, role + params | argv, idle; channel, ready_tcp, ship (bytes of each file streamed).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable

TYPE_CHECKING = False  # not typing's: importing typing costs a node ~10 ms at each start
if TYPE_CHECKING:
    from typing import Any

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STATUS = "LAB-AGENT"  # prefix of the agent's lines on a stdio channel
ROUTED = "LAB_ROUTED"  # set across the agent's re-exec once its routes are in
SPEC_ENV = "LAB_SPEC_JSON"  # the spec itself, when no file holds it
SPEC_FILE = "/lab/ctl/spec.json"
PR_CAPBSET_DROP, CAP_SETPCAP, CAP_NET_ADMIN = 24, 8, 12
TCP_POLL = 0.01  # seconds between looks at a program's listening sockets (stdio channel)


def main() -> int:
    given = os.environ.get(SPEC_ENV, "")  # (swarm: a node with no files gets its spec this way)
    spec: dict[str, Any] = json.loads(given) if given else json.load(open(os.environ.get("LAB_SPEC", SPEC_FILE)))
    if spec.get("routes") and not os.environ.pop(ROUTED, ""):
        return route_then_reexec(spec["routes"])
    os.environ.pop(SPEC_ENV, None)  # (kept across the re-exec above; the node's programs need not see it)
    stdio = spec.get("channel") == "stdio"
    status = os.dup(1) if stdio else -1  # the lab reads this (the attach stream); the log takes 1, 2
    if stdio:
        os.makedirs(os.path.dirname(spec["log"]), exist_ok=True)
    log = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)  # before anything of the node is imported or run: all it says is in its log
    os.dup2(log, 2)
    os.close(log)
    if spec.get("role"):  # import the role's program now, while the lab is still wiring the node
        from lab.roles import load_role

        load_role(spec["role"], spec.get("module"))
    try:
        settle(spec)
    except OSError as e:
        print(f"lab agent: cannot prepare the node: {e}", flush=True)
        return 125
    if spec.get("idle"):
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
        while True:
            signal.pause()
    control = _wait_go(spec, stdio)
    if control is None:
        print("lab agent: the lab went away before starting this node", flush=True)
        return 125
    os.chdir(spec["cwd"])
    shipper = _shipper(spec, status) if stdio else None
    if spec.get("role"):
        from lab.roles import run_role

        if stdio:
            os.environ["LAB_STATUS_FD"] = str(os.dup(status))
        else:
            os.environ["LAB_FACT_FILE"] = spec["facts"]
        os.environ["LAB_CONTROL_FD"] = str(control)  # after "go", the lab's words come on the same channel
        if shipper is not None:
            shipper.start()
        code = run_role(spec["role"], spec["params"], spec["transcript"], spec.get("module"))
    else:
        tcp = spec.get("ready_tcp") if stdio else None
        code = supervise([str(a) for a in spec["argv"]], spec.get("stdin"),
                         (lambda: _tell(shipper, status, "ready")) if tcp else None, tcp,
                         shipper.start if shipper is not None else None)
    if shipper is not None:
        shipper.finish()
    if stdio:
        _report(status, f"exit {code}")
    else:
        _write_exit(spec, code)
    return code


def settle(spec: dict[str, Any]) -> None:
    """The node's own copy of its files; then, in a container started as root, the node's uid."""
    from lab.roles.common import chown_tree, copy_files

    if spec.get("source") and spec["cwd"] != "/" and os.path.isdir(spec["source"]):
        copy_files(spec["source"], spec["cwd"], spec.get("skip", ()))
    uid = spec.get("uid")
    if uid is None or os.getuid() != 0:
        return
    for path in (spec["log"], spec["transcript"]):  # (a link an image planted is refused, not followed)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        os.fchown(fd, uid, uid)
        os.close(fd)
    if spec["cwd"] != "/":
        chown_tree(spec["cwd"], uid)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # root -> another uid: every capability is gone (no-new-privileges is set)


def route_then_reexec(routes: list[list[str]]) -> int:
    """A swarm node's static routes, set from inside (the lab cannot reach a remote namespace).

    The node was given NET_ADMIN and SETPCAP for this only: once the routes are in, both leave the
    bounding set and the agent execs itself again, so neither the role nor the program keeps them.
    """
    import ctypes
    import subprocess

    for to, via in routes:
        done = subprocess.run(["ip", "route", "replace", to, "via", via], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"lab agent: route {to} via {via}: {done.stderr.strip()}", flush=True)
            return 125
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_NET_ADMIN, CAP_SETPCAP):  # SETPCAP last: it is what allows the drop
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            print(f"lab agent: cannot drop capability {cap}: {os.strerror(ctypes.get_errno())}", flush=True)
            return 125
    os.environ[ROUTED] = "1"
    os.execv(sys.executable, [sys.executable, "-S", "-m", "lab.roles.agent"])


def _wait_go(spec: dict[str, Any], stdio: bool) -> int | None:
    """Block (no CPU) until the lab says go: on the go FIFO it holds open, or on stdin. Returns the
    descriptor it came on (kept open: the lab's later words, like "release", come there too), or
    None when the lab went away first. Read a byte at a time: nothing after "go" is consumed."""
    fd = 0 if stdio else os.open(spec["go"], os.O_RDONLY)
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            return None
        line += chunk
    return fd if line == b"go\n" else None


def _shipper(spec: dict[str, Any], status: int) -> Any:
    """The node's files streamed on the status channel while it runs (lab/roles/shipper.py), and
    before each fact a role tells (common.BEFORE_TELLING); a role stopped by a signal sends the rest
    and its exit code before it leaves (common.LEAVING)."""
    from lab.roles import common
    from lab.roles.shipper import Shipper, before_leaving

    shipper = Shipper(status, {"log": spec["log"], "jsonl": spec["transcript"]}, int(spec.get("ship", 0)))
    common.BEFORE_TELLING.append(shipper.ship)
    common.LEAVING.append(before_leaving(shipper, lambda fact: _report(status, fact)))
    return shipper


def _tell(shipper: Any, status: int, fact: str) -> None:
    """A fact, after the node's files up to now (the lab never hears of readiness before the log)."""
    if shipper is not None:
        shipper.ship()
    _report(status, fact)


def _report(status: int, fact: str) -> None:
    try:
        os.write(status, f"{STATUS} {fact}\n".encode())
    except OSError:
        pass  # the lab is gone: the exit code is still the container's


def supervise(argv: list[str], stdin: list[list[Any]] | None = None,
              on_ready: Callable[[], None] | None = None, port: int | None = None,
              on_start: Callable[[], None] | None = None) -> int:
    """Run the program as a child of this init: forward signals, reap orphans, return its code.

    With `port`, `on_ready` is called once the program listens on it (or never, if it does not).
    `on_start` is called once the child exists (a thread it starts is never forked with it).
    The program starts with every signal at its default and none blocked, as a shell starts it: this
    agent is Python, which ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across exec."""
    from lab.roles import default_signals, shell_code  # already imported: `-m lab.roles.agent` imports the package

    child = os.fork()
    if child == 0:
        default_signals()
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
    if on_start is not None:
        on_start()
    if port is not None and on_ready is not None:
        from lab.roles.common import listening_tcp_ports

        while port not in listening_tcp_ports(child):
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == child:
                return shell_code(status)
            time.sleep(TCP_POLL)
        on_ready()
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            return shell_code(status)


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
