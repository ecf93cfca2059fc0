"""The netns backend: every node is a Linux network namespace (see fabric.py for the wiring).

Built-in roles are forked from this warm process (the child enters the node's namespace with
setns) instead of paying an interpreter start each. Programs (`run:`) are exec'ed in a child that
also gets a private mount namespace, where the lab's hosts file is bound over /etc/hosts so that
`telnet server 9999` resolves."""

from __future__ import annotations

import dataclasses
import os
import selectors
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
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
    faults,
    limit_reached,
    linux,
    nodeproc,
    rootless,
    sandbox,
    uids,
)
from lab.backends.fabric import (
    Fabric,
    check_machine,
    hosts_path,
    journal_namespaces,
    remove_namespaces,
    write_hosts_files,
)
from lab.backends.files import Survey, closed_ancestor, survey
from lab.errors import BackendError, EnvironmentProblem, UnknownLab
from lab.journal import Journal
from lab.plan import ANNOUNCE, TCP, NodePlan, Plan, StepPlan
from lab.roles import load_role, shell_code
from lab.roles.common import listening_tcp_ports
from lab.rundir import RunDir

KILL_WAIT = 5.0  # after SIGKILL, a process stuck in the kernel is given up on (down() sweeps again)


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
        self.hidden = tuple(options.hidden) if options else ()  # folders no node may see (a grading batch's)
        self.uids: dict[str, int] = {}
        self.groups: dict[str, list[Path]] = {}  # node -> the cgroup.procs files its first process joins
        self.rootless = False  # in a user namespace of our own: one uid (ours), no cgroup
        self.surveys: dict[Path, Survey] = {}  # a node folder's size and the run folders inside it
        self.view: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())  # (hidden, revealed) for every node
        self.fds: dict[str, int] = {}  # this process's own pidfd and PID namespace, opened once

    # -- environment -------------------------------------------------------------------------
    def check(self, plan: Plan) -> None:
        self.rootless = rootless.needed()
        if self.rootless:  # (up() makes the user namespace: `lab up` checks in a process that keeps nothing)
            rootless.check()
        check_machine(None if self.rootless else "the netns backend needs root (network namespaces)")
        faults.check_kernel(plan)
        linux.last_capability()  # read here, once: every node's fork inherits it
        if not linux.has_mount_setattr():  # a confined node's read-only view of the host needs it
            raise EnvironmentProblem(f"the netns backend needs Linux 5.12 or later (mount_setattr) to confine "
                                     f"nodes; this is {os.uname().release}: use --backend docker")

    @classmethod
    def prepare(cls) -> None:
        pass  # nothing to build: the roles run from this installation

    @classmethod
    def check_kept(cls) -> None:
        pass

    # -- topology ----------------------------------------------------------------------------
    def up(self, plan: Plan, rundir: RunDir) -> None:
        self.plan, self.rundir = plan, rundir
        if self.rootless:  # this process becomes root of a user namespace of its own
            rootless.enter()
        for role in sorted({n.role for n in plan.nodes if n.role is not None}):
            load_role(role)  # once, here: each node forked from this process finds its role imported
        self.fds["mounts"] = linux.private_mounts()  # before the lab's netns mounts (nodeproc.Start.mounts)
        with ThreadPoolExecutor(1) as pool:  # what needs no namespace is made while the kernel makes them
            made = pool.submit(self._node_resources, plan)
            self.fabric.create(plan)
            self.inodes = {n.name: linux.netns_inode(self.fabric.path(n.name)) for n in plan.nodes}
            self.fabric.wire(plan)
            self.fabric.start_captures(plan, rundir.file("captures"))
            made.result()
        self.view = sandbox.hidden_folders(  # as the kernel resolves them (a symlink in --out, say)
            [Path(os.path.realpath(p)) for p in (plan.folder, rundir.root, self.journal.state, *self.hidden)],
            sandbox.interpreter_paths())

    def _node_resources(self, plan: Plan) -> None:
        """Each node's cgroup, hosts file and uid."""
        names = [n.name for n in plan.nodes]
        if self.cgroups:
            self.groups = cgroups.create_all(self.journal, [(n.name, n.limits) for n in plan.nodes])
        write_hosts_files(plan, self.journal)
        self.uids = dict.fromkeys(names, 0) if self.rootless else uids.claim(self.journal, names)

    def _box(self, node: NodePlan) -> sandbox.Box:
        """What the node sees: the lab's view, and (files:) its copy; when its folder lies below one
        others may not enter (e.g. pytest's tmp_path, or a home folder), that one is hidden too."""
        hidden, revealed = self.view
        box = sandbox.Box(self.uids[node.name], node.name, str(hosts_path(self.journal, node.name)), None,
                          hidden, revealed)
        if node.cwd is None:
            return box
        closed = closed_ancestor(node.cwd)
        if node.cwd not in self.surveys:  # once per folder, however many nodes share it
            self.surveys[node.cwd] = survey(node.cwd)
        given = self.surveys[node.cwd]
        return dataclasses.replace(box, cwd=str(node.cwd), hidden=hidden + ((closed,) if closed else ()),
                                   files_size=given.size, skip=given.outputs)

    def _self_fd(self) -> int:
        if "self" not in self.fds:
            self.fds["self"] = os.pidfd_open(os.getpid())
        return self.fds["self"]

    def _pidns(self) -> int:
        if "pidns" not in self.fds:
            self.fds["pidns"] = os.open("/proc/thread-self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        return self.fds["pidns"]

    # -- processes ---------------------------------------------------------------------------
    def start(self, node: NodePlan) -> bool:
        assert self.rundir is not None
        old = self.procs.get(node.name)
        if old is not None and old.code is None:  # a restart whose first process never ended (stuck in the kernel)
            raise BackendError(f"cannot start {node.name} again: its first process ({old.pid}) has not ended")
        groups = self.groups.get(node.name, [])
        log = os.open(self.rundir.log(node.name), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        ready_r, ready_w = os.pipe() if node.ready.kind == ANNOUNCE else (None, None)
        control_r, control_w = os.pipe() if node.synced else (None, None)
        start = nodeproc.Start(node, self.journal.lab_id, self.fabric.path(node.name), self._box(node), groups,
                               str(self.rundir.transcript(node.name)), log, self._self_fd(), ready_w, control_r,
                               self.fds.get("mounts"))
        sys.stdout.flush()
        sys.stderr.flush()
        if self.rootless:  # our own PID namespace is not our user namespace's: no setns back to it
            pid = rootless.fork_in_new_pid_namespace(start.netns)
        else:
            pid = linux.fork_in_new_pid_namespace(self._pidns())
        if pid == 0:  # pragma: no cover - the child never returns
            nodeproc.run(start)
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
        for p in running:  # no grace (the timeline's `kill`): SIGKILL at once, no handler runs
            _signal_group(p.pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
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

    def disturb(self, step: StepPlan) -> None:
        """Network steps on the fabric; a pause stops every process in the node's namespace (SIGSTOP
        cannot be caught, nor forwarded by a rootless node's process in between), a resume continues
        them. The pause looks twice: a process forked while the first look stopped the others."""
        if step.action not in ("pause", "resume"):
            assert self.plan is not None
            self.fabric.disturb(self.plan, step)
            return
        sig = signal.SIGSTOP if step.action == "pause" else signal.SIGCONT
        inodes = [i for i in (self.inodes.get(name) for name in step.nodes) if i is not None]
        for _ in range(2 if sig == signal.SIGSTOP else 1):
            for pid in linux.pids_in_netns(inodes):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass

    def changes_process(self) -> bool:
        return self.rootless

    def floor(self, plan: Plan) -> bool:
        return False  # its hosts are the lab's own namespaces: there is no engine below the lab

    def notes(self) -> list[str]:
        return [rootless.ENFORCED] if self.rootless or not self.cgroups else []

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
            for fd in self.fds.values():
                os.close(fd)
        finally:
            try:
                cgroups.remove(self.journal)
            finally:  # each raises when something could not be removed: the journal then stays
                self.fabric.remove()
            uids.release(self.journal)
            self.journal.close()

    @classmethod
    def clean(cls, journal: Journal) -> list[str]:
        removed = remove_namespaces(journal_namespaces(journal), kill=True, journal=journal)
        removed += cgroups.remove(journal)
        removed += uids.release(journal)
        journal.close()
        return removed

    # -- a running lab -----------------------------------------------------------------------
    @classmethod
    def command(cls, journal: Journal, node: NodeRef, argv: list[str], interactive: bool) -> Command:
        """A fresh process enters the node (as a program of the lab would: its network, hostname,
        hosts file and folder), then execs `argv` (lab/backends/enter.py)."""
        netns = Fabric(journal).path(node.name)
        env = {**os.environ, "LAB_NODE": node.name, "LAB_ID": journal.lab_id, "HOSTNAME": node.name}
        seen = netns
        if rootless.needed():  # the lab's names live in its keeper's namespaces: enter through it
            keeper = journal.meta().get("pid")
            if not isinstance(keeper, int) or not journal.alive():
                raise UnknownLab(f"lab {journal.lab_id} has no running keeper: its nodes cannot be entered")
            env[rootless.VIA] = str(keeper)
            seen = f"/proc/{keeper}/root{netns}"
        if not os.path.exists(seen):
            raise UnknownLab(f"lab {journal.lab_id} has no running node {node.name!r}")
        if interactive:
            env["PS1"] = f"[lab {journal.lab_id}] {node.name}:\\w$ "
        hosts = hosts_path(journal, node.name)
        return Command([sys.executable, "-m", "lab.backends.enter", netns, str(hosts), node.name,
                        str(node.cwd or "/"), "--", *argv], env)


def enter_node(netns: str, hosts: Path, hostname: str, cwd: str) -> int | None:
    """Move this fresh process into a node: its network, and, while the node runs, its own view
    (mount and UTS namespaces: its files' copy as the node wrote it, its /tmp, its hosts file, the
    host read-only; not its PID namespace, whose end would kill the command: /proc shows the node's
    processes, not the command's own); returns the node's uid, which the caller must then become
    (nothing the node
    could have planted in its folder runs as root). Once the node has ended (None): a private view
    like it, as root: the lab's hosts file as /etc/hosts, the node's /sys and hostname."""
    fd = os.open(netns, os.O_RDONLY)
    try:
        inode = os.fstat(fd).st_ino
        linux.setns(fd, linux.CLONE_NEWNET)
    finally:
        os.close(fd)
    init = _node_init(inode)
    if init is not None:
        try:
            uid = os.stat(f"/proc/{init}").st_uid
            for kind, flag in (("uts", linux.CLONE_NEWUTS), ("mnt", linux.CLONE_NEWNS)):
                ns = os.open(f"/proc/{init}/ns/{kind}", os.O_RDONLY)
                try:
                    linux.setns(ns, flag)
                finally:
                    os.close(ns)
            os.chdir(cwd)
            return uid
        except OSError:  # it ended meanwhile: as if it had ended before
            pass
    linux.unshare(linux.CLONE_NEWUTS | linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
    linux.mount(str(hosts), "/etc/hosts", None, linux.MS_BIND)
    try:  # /sys shows the node's own interfaces, as with `ip netns exec`
        linux.umount("/sys", linux.MNT_DETACH)
        linux.mount("sysfs", "/sys", "sysfs", 0)
    except OSError:
        pass
    linux.sethostname(hostname)
    os.chdir(cwd)
    return None


def _node_init(netns_inode: int) -> int | None:
    """The pid (here) of the node's pid 1, while it runs: the process of its network namespace that
    is pid 1 of a PID namespace one level below ours, in our user namespace (a node cannot make
    one: seccomp.py), never a namespace the node built itself."""
    own_user = os.stat("/proc/self/ns/user").st_ino
    depth = len(_nspid(os.getpid())) + 1
    for pid in sorted(linux.pids_in_netns([netns_inode])):
        try:
            ids = _nspid(pid)
            if len(ids) == depth and ids[-1] == "1" and os.stat(f"/proc/{pid}/ns/user").st_ino == own_user:
                return pid
        except OSError:
            continue
    return None


def _nspid(pid: int) -> list[str]:
    with open(f"/proc/{pid}/status") as f:
        return next((x for x in f if x.startswith("NSpid:")), "NSpid:").split()[1:]


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


