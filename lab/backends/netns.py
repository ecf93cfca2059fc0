"""The netns backend: every node is a Linux network namespace (see fabric.py for the wiring).

Built-in roles are forked from this warm process (the child enters the node's namespace with
setns) instead of paying an interpreter start each. Programs (`run:`) are exec'ed in a child that
also gets a private mount namespace, where the lab's hosts file is bound over /etc/hosts so that
`telnet server 9999` resolves."""

from __future__ import annotations

import math
import os
import resource
import selectors
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lab.backends import (
    ANSWERED,
    EXITED,
    READY,
    Command,
    Event,
    NodeRef,
    Options,
    Placement,
    cgroups,
    limit_reached,
    linux,
)
from lab.backends.fabric import Fabric, check_machine, journal_namespaces, remove_namespaces
from lab.errors import UnknownLab
from lab.journal import Journal
from lab.plan import ANNOUNCE, TCP, NodePlan, Plan
from lab.roles import default_signals, run_role, shell_code
from lab.roles.common import CONTROL_FD_ENV, STATUS_FD_ENV, listening_tcp_ports
from lab.roles.stdin import feed
from lab.rundir import MAX_OUTPUT, RunDir

KILL_WAIT = 5.0  # after SIGKILL, a process stuck in the kernel is given up on (down() sweeps again)
BASE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TERM", "USER", "LOGNAME", "TZ")


@dataclass
class _Proc:
    pid: int
    pidfd: int
    ready_fd: int | None  # read end of the role's status pipe (facts, one per line), until EOF
    node: NodePlan
    ready: bool = False
    code: int | None = None
    control: int | None = None  # write end of a synced client's control pipe
    status: bytes = b""  # a fact line not yet complete


class NetnsBackend:
    name = "netns"

    def __init__(self, journal: Journal, options: Options | None = None) -> None:
        self.journal = journal
        self.fabric = Fabric(journal)
        self.plan: Plan | None = None
        self.rundir: RunDir | None = None
        self.procs: dict[str, _Proc] = {}
        self.pending: list[Event] = []
        self.inodes: dict[str, int | None] = {}  # observed while stopping other nodes; returned by poll
        self.selector = selectors.DefaultSelector()
        self.cgroups = cgroups.available()  # v1 memory and pids hierarchies the lab may write

    # -- environment -------------------------------------------------------------------------
    def check(self, plan: Plan) -> None:
        check_machine("the netns backend needs root (network namespaces): run as root, e.g. sudo lab run ...")

    @classmethod
    def prepare(cls) -> None:
        pass  # nothing to build: the roles run from this installation

    @classmethod
    def check_kept(cls) -> None:
        pass

    # -- topology ----------------------------------------------------------------------------
    def up(self, plan: Plan, rundir: RunDir) -> None:
        self.plan, self.rundir = plan, rundir
        self.fabric.create(plan)
        self.inodes = {n.name: linux.netns_inode(self.fabric.path(n.name)) for n in plan.nodes}
        self.fabric.wire(plan)
        hosts = self.journal.folder / "hosts"
        hosts.mkdir(exist_ok=True)
        for n in plan.nodes:  # for programs, and for `lab shell` / `lab exec` into any node
            (hosts / n.name).write_text(plan.hosts_file(n.name))

    # -- processes ---------------------------------------------------------------------------
    def start(self, node: NodePlan) -> bool:
        assert self.rundir is not None
        groups = cgroups.create(self.journal, node.name, node.limits) if self.cgroups else []
        log = os.open(self.rundir.log(node.name), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        ready_r, ready_w = os.pipe() if node.ready.kind == ANNOUNCE else (None, None)
        control_r, control_w = os.pipe() if node.synced else (None, None)
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            self._child(node, log, ready_w, parent, control_r, groups)
        os.close(log)
        for end in (ready_w, control_r):
            if end is not None:
                os.close(end)
        if control_w is not None:
            os.set_inheritable(control_w, False)
        proc = _Proc(pid, os.pidfd_open(pid), ready_r, node, control=control_w)
        self.procs[node.name] = proc
        self.selector.register(proc.pidfd, selectors.EVENT_READ, (node.name, EXITED))
        if ready_r is not None:
            self.selector.register(ready_r, selectors.EVENT_READ, (node.name, READY))
        return True

    def _child(self, node: NodePlan, log: int, ready_w: int | None, parent: int,
               control_r: int | None = None, groups: list[Path] | None = None) -> None:
        code = 127
        try:
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            _close_all_but(fd for fd in (ready_w, control_r) if fd is not None)
            # The parent's sys.stdout may be anything (a pytest capture, a pipe): the child's is the log.
            sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
            sys.stdin = open(0, closefd=False)  # noqa: SIM115
            os.setsid()
            linux.set_parent_death_signal(signal.SIGKILL)
            if os.getppid() != parent:  # the orchestrator died before the line above took effect
                os._exit(code)
            default_signals()  # as a shell gives them: nothing the orchestrator ignores or blocks leaks in
            _limit(node, groups or [])
            self._enter(node)
            if node.argv is not None:  # a program that floods its output is stopped (SIGXFSZ), not the disk
                resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_OUTPUT, MAX_OUTPUT))
            if node.stdin is not None:  # scripted input instead of /dev/null
                os.dup2(feed([list(step) for step in node.stdin]), 0)
            env = self._env(node, ready_w, control_r)
            if node.role is not None:
                os.environ.clear()
                os.environ.update(env)
                assert self.rundir is not None
                code = run_role(node.role, node.params, str(self.rundir.transcript(node.name)))
            else:
                assert node.argv is not None
                try:
                    os.execvpe(node.argv[0], list(node.argv), env)
                except FileNotFoundError:
                    os.write(2, f"lab: {node.name}: {node.argv[0]}: command not found\n".encode())
                except OSError as e:
                    os.write(2, f"lab: {node.name}: cannot run {node.argv[0]}: {e.strerror}\n".encode())
                    code = 126
        except BaseException as e:  # noqa: BLE001 - a child must never unwind into the parent's code
            try:
                os.write(2, f"lab: {node.name}: cannot start: {e}\n".encode())
            except OSError:
                pass
        finally:
            os._exit(code)

    def _enter(self, node: NodePlan) -> None:
        enter_node(self.fabric.path(node.name), self.journal.folder / "hosts" / node.name, node.name,
                   str(node.cwd or "/"), full=node.argv is not None)

    def _env(self, node: NodePlan, ready_w: int | None, control_r: int | None = None) -> dict[str, str]:
        env = {k: os.environ[k] for k in BASE_ENV_KEYS if k in os.environ}
        env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        env.update(PYTHONUNBUFFERED="1", LAB_NODE=node.name, LAB_ID=self.journal.lab_id, HOSTNAME=node.name)
        env.update(node.env)
        if ready_w is not None:
            env[STATUS_FD_ENV] = str(ready_w)
        if control_r is not None:
            env[CONTROL_FD_ENV] = str(control_r)
        return env

    def poll(self, timeout: float) -> list[Event]:
        pending, self.pending = self.pending, []
        return pending + self._observe(0 if pending else timeout)

    def _observe(self, timeout: float) -> list[Event]:
        waiting_tcp = [p for p in self.procs.values()
                       if p.node.ready.kind == TCP and not p.ready and p.code is None]
        wait = min(timeout, 0.01) if waiting_tcp else timeout
        events: list[Event] = []
        for p in waiting_tcp:
            # Only once the child is inside the node: before its setns, /proc/PID/net is the host's.
            if linux.netns_inode(f"/proc/{p.pid}/ns/net") == self.inodes.get(p.node.name) \
                    and p.node.ready.port in listening_tcp_ports(p.pid):
                p.ready = True
                events.append(Event(p.node.name, READY))
        if events:
            wait = 0
        keys = [key.data for key, _ in self.selector.select(max(wait, 0))]
        ready = [e for name, kind in keys if kind == READY for e in self._read_status(self.procs[name])]
        exited = [e for name, kind in keys if kind == EXITED for e in self._reap(self.procs[name])]
        return events + ready + exited

    def _read_status(self, proc: _Proc, until_eof: bool = False) -> list[Event]:
        """The facts a role wrote on its status pipe since the last look (the pipe is readable)."""
        events: list[Event] = []
        while proc.ready_fd is not None:
            data = os.read(proc.ready_fd, 4096)
            if not data:  # the role exited (or closed it): nothing more will come
                self.selector.unregister(proc.ready_fd)
                os.close(proc.ready_fd)
                proc.ready_fd = None
                break
            *lines, proc.status = (proc.status + data).split(b"\n")
            for fact in lines:
                if fact == b"ready" and not proc.ready:
                    proc.ready = True
                    events.append(Event(proc.node.name, READY))
                elif fact == b"answered":
                    events.append(Event(proc.node.name, ANSWERED))
            if not until_eof:
                break
        return events

    def release(self, nodes: list[str]) -> None:
        for name in nodes:
            p = self.procs.get(name)
            if p is not None and p.control is not None and p.code is None:
                try:
                    os.write(p.control, b"release\n")
                except OSError:  # it exited meanwhile
                    pass

    def _reap(self, proc: _Proc) -> list[Event]:
        ready = self._read_status(proc, until_eof=True)  # facts written just before exiting still count
        self.selector.unregister(proc.pidfd)
        os.close(proc.pidfd)
        _, status = os.waitpid(proc.pid, 0)
        proc.code = shell_code(status)
        if proc.control is not None:
            os.close(proc.control)
            proc.control = None
        oom = proc.code == 128 + signal.SIGKILL and self.cgroups and cgroups.oom_killed(self.journal.lab_id,
                                                                                        proc.node.name)
        cause = limit_reached(proc.node, proc.code, oom)
        return ready + [Event(proc.node.name, EXITED, proc.code, cause)]

    def stop(self, nodes: list[str], grace: float) -> dict[str, int | None]:
        running = [self.procs[n] for n in nodes if n in self.procs and self.procs[n].code is None]
        for p in running:
            _signal_group(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(p.code is None for p in running) and time.monotonic() < deadline:
            self.pending += self._observe(max(0.0, min(0.05, deadline - time.monotonic())))
        for p in running:
            if p.code is None:
                _signal_group(p.pid, signal.SIGKILL)
        deadline = time.monotonic() + KILL_WAIT
        while any(p.code is None for p in running) and time.monotonic() < deadline:
            self.pending += self._observe(0.05)
        return {n: self.procs[n].code for n in nodes if n in self.procs}

    def placements(self) -> dict[str, Placement]:
        return {}  # every node runs on this machine

    def exit_code(self, node: str) -> int | None:
        p = self.procs.get(node)
        return p.code if p else None

    # -- teardown ----------------------------------------------------------------------------
    def down(self) -> None:
        try:
            self.stop(list(self.procs), grace=1.0)
            self.selector.close()
        finally:
            try:
                cgroups.remove(self.journal)
            finally:  # each raises when something could not be removed: the journal then stays
                self.fabric.remove()
            self.journal.close()

    @classmethod
    def clean(cls, journal: Journal) -> list[str]:
        removed = remove_namespaces(journal_namespaces(journal), kill=True, journal=journal)
        removed += cgroups.remove(journal)
        journal.close()
        return removed

    # -- a running lab -----------------------------------------------------------------------
    @classmethod
    def command(cls, journal: Journal, node: NodeRef, argv: list[str], interactive: bool) -> Command:
        """A fresh process enters the node (as a program of the lab would: its network, hostname,
        hosts file and folder), then execs `argv` (lab/backends/enter.py)."""
        netns = Fabric(journal).path(node.name)
        if not os.path.exists(netns):
            raise UnknownLab(f"lab {journal.lab_id} has no running node {node.name!r}")
        env = {**os.environ, "LAB_NODE": node.name, "LAB_ID": journal.lab_id, "HOSTNAME": node.name}
        if interactive:
            env["PS1"] = f"[lab {journal.lab_id}] {node.name}:\\w# "
        hosts = journal.folder / "hosts" / node.name
        return Command([sys.executable, "-m", "lab.backends.enter", netns, str(hosts), node.name,
                        str(node.cwd or "/"), "--", *argv], env)


def _limit(node: NodePlan, groups: list[Path]) -> None:
    """In the node's first process, before it runs anything: its cgroups (memory, processes: all its
    processes together) and the per-process rlimits (open files, CPU time)."""
    cgroups.join(groups)
    resource.setrlimit(resource.RLIMIT_NOFILE, (node.limits.files, node.limits.files))
    if node.limits.cpu is not None:  # SIGXCPU at the limit (the hard one, a second on, would be SIGKILL)
        cpu = math.ceil(node.limits.cpu)
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))


def enter_node(netns: str, hosts: Path, hostname: str, cwd: str, full: bool = True) -> None:
    """Move this (child) process into a node: its network, hostname, working folder, and (full)
    a private mount namespace where the lab's hosts file is /etc/hosts and /sys is the node's."""
    fd = os.open(netns, os.O_RDONLY)
    linux.setns(fd, linux.CLONE_NEWNET)
    os.close(fd)
    if full:
        linux.unshare(linux.CLONE_NEWUTS | linux.CLONE_NEWNS)
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
        linux.mount(str(hosts), "/etc/hosts", None, linux.MS_BIND)
        try:  # /sys shows the node's own interfaces, as with `ip netns exec`
            linux.umount("/sys", linux.MNT_DETACH)
            linux.mount("sysfs", "/sys", "sysfs", 0)
        except OSError:
            pass
    else:
        linux.unshare(linux.CLONE_NEWUTS)
    linux.sethostname(hostname)
    os.chdir(cwd)


def _close_all_but(keep: Iterable[int]) -> None:
    """Close every descriptor above stderr except those in `keep` (a child must not hold the lab's)."""
    low = 3
    for fd in sorted(set(keep)):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


