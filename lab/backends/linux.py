"""Thin, typed wrappers over the Linux system calls the netns backend needs.

Python 3.11 has no os.setns/os.unshare, so they come from libc through ctypes. Every failure is
raised as OSError with errno set, like the os module does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import signal
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MNT_DETACH = 0x2
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
SYS_MOUNT_SETATTR = 442  # the same number on every architecture (Linux >= 5.12)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = [s.encode() if s is not None else None for s in (source, target, fstype, data)]
    _check(_libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]), f"mount {target}")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def mount_setattr(path: str, attr_set: int, recursive: bool = True) -> None:
    """Set mount attributes (MOUNT_ATTR_*) on the mount at `path` and, recursively, every mount below
    it: one system call, where `mount -o remount` would need one per mount and is not recursive."""
    attr = _MountAttr(attr_set, 0, 0, 0)
    flags = AT_RECURSIVE if recursive else 0
    result = _libc.syscall(ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(AT_FDCWD), path.encode(),
                           ctypes.c_uint(flags), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
    _check(0 if result == 0 else -1, f"mount_setattr {path}")


def has_mount_setattr() -> bool:
    """Whether this kernel has mount_setattr (Linux >= 5.12): asked with a size it must refuse."""
    result = _libc.syscall(ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(AT_FDCWD), b"/", ctypes.c_uint(0),
                           None, ctypes.c_size_t(0))
    return not (result != 0 and ctypes.get_errno() == errno.ENOSYS)


@cache
def last_capability() -> int:
    """This kernel's highest capability number: read once, in the orchestrator (its forks inherit it)."""
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def drop_bounding_set() -> None:
    """No capability can ever come back to this process or its children (setuid files included)."""
    for cap in range(last_capability() + 1):
        _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "prctl(PR_CAPBSET_DROP)")


def prctl_pointer(option: int, arg: int, pointer: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_void_p(pointer), 0, 0), "prctl")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """No effective, permitted or inheritable capability left (for a process that keeps its uid)."""
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def set_no_new_privs() -> None:
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(target.encode(), flags), f"umount {target}")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


@contextmanager
def in_netns(path: str) -> Iterator[None]:
    """Run the body with the calling thread inside the network namespace at `path`.

    Signals are blocked meanwhile: a handler must never run (or raise) while this thread is in
    another namespace."""
    with signals_blocked():
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                setns(target, CLONE_NEWNET)
                try:
                    yield
                finally:
                    setns(home, CLONE_NEWNET)
            finally:
                os.close(target)
        finally:
            os.close(home)


def fork_in_new_pid_namespace(home: int) -> int:
    """fork(), the child being pid 1 of a new PID namespace; `home` is an fd of this thread's own
    PID namespace (/proc/thread-self/ns/pid), which the parent returns to at once.

    No intermediate process: unshare(CLONE_NEWPID) changes only where this thread's next child goes,
    and setns back to the caller's own namespace is always allowed. Signals are blocked meanwhile,
    so that no handler runs (and forks) with the wrong namespace for children."""
    with signals_blocked():
        unshare(CLONE_NEWPID)
        pid = -1
        try:
            pid = os.fork()
        finally:
            if pid != 0:  # the parent (the child is pid 1 of its namespace, and stays there)
                setns(home, CLONE_NEWPID)
    return pid


def private_mounts() -> int:
    """An fd of a new mount namespace: a private copy of this process's mounts as they are now, kept
    by the fd alone. A node's first process enters it before making its own: the node then copies
    this small tree, not the one the lab grows meanwhile (a netns mount per node, so that N nodes
    each copying all the others' made starting them quadratic, and each walk of the tree too).

    Made in a child (a process with threads may not unshare its mounts), which the fd outlives."""
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    with signals_blocked():  # (no handler of the lab's runs in the child)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        try:
            os.close(ready_r)
            os.close(hold_w)
            unshare(CLONE_NEWNS)
            mount(None, "/", None, MS_REC | MS_PRIVATE)  # later mounts of the lab stay out of it
            os.write(ready_w, b"k")
            os.read(hold_r, 1)  # until the parent holds the namespace
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(hold_r)
    try:
        if os.read(ready_r, 1) != b"k":
            raise OSError(errno.EPERM, "cannot make a mount namespace for the nodes")
        return os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(hold_w)
        os.waitpid(pid, 0)


def is_mountpoint(path: str) -> bool:
    """True when something is mounted at `path` (bind mounts of a folder on itself included)."""
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


@contextmanager
def signals_blocked(signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    old = signal.pthread_sigmask(signal.SIG_BLOCK, set(signals))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def prepare_netns_dir(folder: str, own: bool = False) -> None:
    """Make `folder` a shared mount point, as iproute2 does, so that namespace mounts made there
    are seen from every mount namespace (a program's private one included). `own`: the lab has
    just created it, and gives it a small tmpfs of its own (which leaves with the folder): each
    namespace's mount point is then no inode of the host's filesystem, whose allocator, when it is
    ext4 without a journal, skips over every inode freed in the last minutes, so that 1000 mount
    points made after another lab's 1000 cost a million checks."""
    os.makedirs(folder, exist_ok=True)
    if own:
        mount("lab-netns", folder, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=1m")
    try:
        mount("", folder, "none", MS_SHARED | MS_REC)
    except OSError:  # not a mount point yet
        mount(folder, folder, "none", MS_BIND | MS_REC)
        mount("", folder, "none", MS_SHARED | MS_REC)


def add_netns(path: str, pid: int | None = None, sysctls: Mapping[str, str] | None = None) -> None:
    """`ip netns add` (a new namespace) or `ip netns attach` (that of `pid`), done in-process;
    `sysctls` ("net/ipv4/ip_forward": "0") are written in a new one before anything is in it.

    In-process on purpose: a helper process could outlive a killed orchestrator and create a
    namespace after `lab clean` has run.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0)
    os.close(fd)
    try:
        if pid is not None:
            mount(f"/proc/{pid}/ns/net", path, None, MS_BIND)
            return
        with signals_blocked():
            home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                unshare(CLONE_NEWNET)
                try:
                    write_sysctls(sysctls or {})
                    mount("/proc/thread-self/ns/net", path, None, MS_BIND)
                finally:
                    setns(home, CLONE_NEWNET)
            finally:
                os.close(home)
    except OSError:
        os.unlink(path)
        raise


def write_sysctls(sysctls: Mapping[str, str]) -> None:
    """Write each /proc/sys/KEY in the calling thread's network namespace. /proc/sys/net is looked
    up once, and the files are opened from it: every namespace alive has its own `net` entry there,
    all in one dcache hash chain, so each lookup through /proc/sys walks one entry per namespace
    (at 1000 nodes, that walk was the largest cost of making their namespaces)."""
    tops: dict[str, int] = {}
    try:
        for key, value in sysctls.items():
            top, _, rest = key.partition("/")
            if top not in tops:
                tops[top] = os.open(f"/proc/sys/{top}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            fd = os.open(rest, os.O_WRONLY | os.O_CLOEXEC, dir_fd=tops[top])
            try:
                os.write(fd, value.encode())
            finally:
                os.close(fd)
    finally:
        for fd in tops.values():
            os.close(fd)


def delete_netns(path: str) -> None:
    """`ip netns del`: unmount and remove the name (the namespace dies with its last user)."""
    try:
        umount(path, MNT_DETACH)
    except OSError:
        pass
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def netns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def pids_in_netns(inodes: Iterable[int]) -> dict[int, int]:
    """pid -> netns inode, for every process whose network namespace is one of `inodes`.

    This is how the lab finds what runs in its namespaces (`ip netns pids` does the same): by the
    namespace the process is in, never by its name.
    """
    wanted = set(inodes)
    found: dict[int, int] = {}
    if not wanted:
        return found
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ino = os.stat(f"/proc/{entry.name}/ns/net").st_ino
        except OSError:
            continue
        if ino in wanted and int(entry.name) != os.getpid():
            found[int(entry.name)] = ino
    return found
