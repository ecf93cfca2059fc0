"""A confined node of the netns backend: what its processes can see, and who they are.

Own code, not bubblewrap (docs/design/confinement/ has the measurements): built-in roles are forked
from the warm orchestrator with no exec, which a sandbox program cannot do (+20 ms per node); started
by root, bwrap keeps root's capabilities, and in a user namespace of its own it cannot bind a low
port in a network namespace it does not own; and it SIGKILLs the program where the lab must forward
SIGTERM to it. These steps cost about 5 ms per node.

A node's first process (root, pid 1 of its own PID namespace, already in its network namespace and
its cgroups) calls `confine`:
- its own mount, UTS and IPC namespaces; the lab's hosts file as /etc/hosts;
- the whole host read-only and nosuid (one recursive mount_setattr); the node's own /proc (its
  processes only) and /sys (its interfaces);
- a private, size-bounded /tmp and /dev/shm;
- `hidden` folders (the scenario's, the run's, the lab's state, a grading batch's) covered by empty
  ones, and so is every folder others may not enter above the lab's own interpreter (e.g. /root):
  the interpreter and the lab package are then shown again, read-only (`revealed`);
- the node's `files:` copied into a size-bounded tmpfs mounted at the same path, owned by the node's
  uid: the program writes its own copy, never the instructor's folder.
Then `drop` (in the process that runs the role or the program): the node's uid (uids.py), no
groups, no capability (an empty bounding set too), no_new_privs. Nothing else is needed to bind a
low port: the backend sets the node's `ip_unprivileged_port_start` to 0, as Docker does.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from lab.backends import linux, seccomp
from lab.backends.files import SYSTEM, TMP_SIZE, closed_ancestor
from lab.roles.common import chown_tree, copy_files

SHM_SIZE = 16 * 2**20  # its /dev/shm
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
# Until a node's handlers exist, these end it as they would any process (pid 1 ignores them otherwise).
EARLY = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU)


@dataclass(frozen=True)
class Box:
    """Everything `confine` and `drop` need for one node: computed by the orchestrator, plain data."""

    uid: int
    hostname: str
    hosts: str  # the lab's hosts file for this node
    cwd: str | None  # the node's files: its copy is mounted here, and it is the working folder
    hidden: tuple[str, ...]
    revealed: tuple[str, ...]
    files_size: int = 0  # bytes of the node's files (the copy's tmpfs is this plus TMP_SIZE)
    skip: tuple[str, ...] = ()  # folders inside them that are not the node's (files.Survey.outputs)


def interpreter_paths() -> list[Path]:
    """What a forked role or a `python3` program of the lab's own interpreter reads lazily."""
    import lab

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, str(Path(lab.__file__).parent)}
    return [Path(p).resolve() for p in sorted(paths)]


def hidden_folders(folders: Iterable[Path], revealed: Iterable[Path]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(hide, reveal): `folders` that exist and are not system folders, plus the closed ancestors of
    what must stay visible; and what of `revealed` lies in something hidden (the rest is seen anyway)."""
    hide = {str(p) for p in folders if p.is_dir() and str(p) not in SYSTEM} | {"/tmp"}  # /tmp: the node's own
    shown = [p for p in revealed if p.exists()]
    hide.update(a for a in (closed_ancestor(p) for p in shown) if a is not None)
    reveal = {str(p) for p in shown if any(_within(str(p), h) for h in hide)}
    return tuple(sorted(hide)), tuple(sorted(reveal))


def confine(box: Box) -> None:
    """In the node's first process, as root: build the node's view of the machine (see the module)."""
    linux.unshare(linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC)
    linux.sethostname(box.hostname)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)  # nothing propagates, either way
    # Held before anything is hidden (and in this mount namespace: a bind's source must be in it).
    sources = {p: os.open(p, os.O_PATH | os.O_CLOEXEC) for p in (*box.revealed, *([box.cwd] if box.cwd else []))}
    linux.mount(box.hosts, "/etc/hosts", None, linux.MS_BIND)
    linux.mount_setattr("/", linux.MOUNT_ATTR_RDONLY | linux.MOUNT_ATTR_NOSUID)
    # Over the host's (a rootless lab may not unmount what it inherited: those mounts are locked).
    linux.mount("proc", "/proc", "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    linux.mount("sysfs", "/sys", "sysfs", linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    _tmpfs("/dev/shm", f"size={SHM_SIZE},mode=1777")
    steps = sorted([(h, False) for h in box.hidden] + [(r, True) for r in box.revealed],
                   key=lambda step: (step[0].count("/"), step[1]))
    covers = []
    for path, reveal in steps:
        if reveal:
            os.makedirs(path, exist_ok=True)  # inside an empty folder made here: root's, 0755
            linux.mount(f"/proc/self/fd/{sources[path]}", path, None, linux.MS_BIND | linux.MS_REC)
        elif os.path.isdir(path):  # (absent: already inside something hidden)
            _tmpfs(path, f"size={TMP_SIZE},mode=1777" if path == "/tmp" else "size=64k,mode=0755")
            covers += [path] if path != "/tmp" else []
    if box.cwd:
        os.makedirs(box.cwd, exist_ok=True)
        _tmpfs(box.cwd, f"size={box.files_size + TMP_SIZE},mode=0755,uid={box.uid},gid={box.uid}")
        skip = {os.path.relpath(h, box.cwd) for h in box.hidden if _within(h, box.cwd) and h != box.cwd}
        skip.update(box.skip)
        _copy(f"/proc/self/fd/{sources[box.cwd]}", box.cwd, box.uid, skip)
    for path in covers:  # read-only once made: in a rootless lab the node owns them (it is uid 0)
        linux.mount_setattr(path, linux.MOUNT_ATTR_RDONLY, recursive=False)
    for fd in sources.values():
        os.close(fd)
    os.chdir(box.cwd or "/")


def drop(uid: int, processes: int | None = None) -> None:
    """Become the node's uid for good: no groups, no capability left or to come, no new privileges,
    the node's system-call filter (seccomp.py). RLIMIT_NPROC counts this uid's processes: the
    node's alone (a floor under the cgroup's limit)."""
    linux.drop_bounding_set()
    if uid != os.geteuid():  # (a rootless lab's nodes keep its one uid: the bounding set and the
        if processes is not None:  # lost privileges below are their confinement)
            resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # root -> another uid clears every capability
    else:
        linux.drop_capabilities()
    linux.set_no_new_privs()
    seccomp.install()


def init(program: Callable[[], NoReturn], then: Callable[[], None]) -> NoReturn:
    """Be pid 1 of the node: run `program` in a child, call `then` (drop privileges: nothing of the
    node stays root), forward the lab's signals to the program's process group, reap every orphan,
    and exit with the program's code (as a shell would report it). When this process exits, the
    kernel kills whatever the program left in the namespace."""
    from lab.roles import shell_code

    child = 0

    def forward(signum: int, frame: object) -> None:
        if child > 0:
            try:
                os.killpg(child, signum)
            except ProcessLookupError:  # before the program's setsid: its group is not there yet
                try:
                    os.kill(child, signum)
                except ProcessLookupError:
                    pass

    with linux.signals_blocked(FORWARDED):  # a signal before the fork returns is forwarded after it
        for sig in FORWARDED:  # before the fork: pid 1 ignores every signal it has no handler for
            signal.signal(sig, forward)
        child = os.fork()
        if child == 0:
            program()
        then()
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(127)
        if pid == child:
            os._exit(shell_code(status))


def _tmpfs(path: str, options: str) -> None:
    linux.mount("tmpfs", path, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, options)


def _copy(source: str, dest: str, uid: int, skip: set[str]) -> None:
    """The node's files into its own tmpfs, owned by its uid, without `skip` (relative paths of
    hidden folders and of the lab's run folders inside them)."""
    copy_files(source, dest, skip)
    chown_tree(dest, uid)


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")
