"""Rootless labs (netns backend): an ordinary user runs a lab inside a user namespace the lab makes.

The lab process becomes root of a user namespace of its own (mapped to the user alone: no setuid
helper, no subordinate ids), with its own mount and network namespaces. Everything the lab then
creates (namespaces, bridges, veths, mounts) belongs to that user namespace and dies with it: a
killed lab leaves nothing in the kernel, only its journal in the user's state folder, which `lab
clean` removes.

What differs from a lab run by root (the README's "Without root" lists it):
- every node runs as the user (there is one uid in the namespace): no uid of its own per node;
- no cgroup (v1 has no delegation): memory and process limits are not enforced, open files, CPU
  time and output are (rlimits); the run says so;
- the lab's own network namespace has no network: the lab reaches nothing outside (it needs
  nothing), and nothing of the host's network is touched.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from lab.backends import linux
from lab.errors import EnvironmentProblem
from lab.journal import make_state, state_dir
from lab.signals import set_parent_death_signal

CLONE_NEWUSER = 0x10000000
KNOBS = (  # sysctl, the value that forbids unprivileged user namespaces, the fix
    ("/proc/sys/kernel/unprivileged_userns_clone", "0", "sysctl -w kernel.unprivileged_userns_clone=1"),
    ("/proc/sys/user/max_user_namespaces", "0", "sysctl -w user.max_user_namespaces=15000"),
    ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1",
     "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (or an AppArmor profile for lab)"),
)
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
VIA = "LAB_ENTER_VIA"  # `lab exec` into a rootless lab: the keeper whose namespaces hold its nodes
ENFORCED = ("limits: open files, CPU time and output are enforced (rlimits); memory and processes are not "
            "(no cgroup this user may write)")


def needed() -> bool:
    return os.geteuid() != 0


def check() -> None:
    """Exit 3 (EnvironmentProblem), before anything is created, when the kernel forbids this user a
    user namespace (naming the setting and the fix)."""
    for path, forbidding, fix in KNOBS:
        try:
            value = Path(path).read_text().strip()
        except OSError:
            continue
        if value == forbidding:
            name = path.removeprefix("/proc/sys/").replace("/", ".")
            raise EnvironmentProblem(f"this kernel forbids unprivileged user namespaces ({name} = {value}), "
                                     f"which a lab without root needs: as root, {fix}; or run lab as root")


def enter() -> None:
    """Become root of a user namespace of this process's own, with its own mount namespace (a
    private /run, where `ip netns` keeps its names) and network namespace. The run is in a process
    of its own by then (lab/forked.py): the kernel refuses this to a process with threads."""
    if len(os.listdir("/proc/self/task")) > 1:  # (every thread of the process, Python's or not)
        raise EnvironmentProblem("a lab without root must run in a single-threaded process")
    state = state_dir()
    make_state(state)
    os.environ["LAB_STATE_DIR"] = str(state)  # as the user sees it, from here on (we are "root" now)
    uid, gid = os.getuid(), os.getgid()
    try:
        linux.unshare(CLONE_NEWUSER | linux.CLONE_NEWNS | linux.CLONE_NEWNET)
    except OSError as e:
        raise EnvironmentProblem(f"cannot make a user namespace for a lab without root: {e.strerror}") from None
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
    Path("/proc/self/gid_map").write_text(f"0 {gid} 1")
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    parent = str(state.parent)  # $XDG_RUNTIME_DIR, under /run: shown again once /run is ours
    keep = os.open(parent, os.O_PATH | os.O_CLOEXEC) if parent.startswith("/run/") else None
    linux.mount("tmpfs", "/run", "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "mode=0755")
    if keep is not None:
        os.makedirs(parent, exist_ok=True)
        linux.mount(f"/proc/self/fd/{keep}", parent, None, linux.MS_BIND | linux.MS_REC)
        os.close(keep)


def fork_in_new_pid_namespace(netns: str) -> int:
    """fork(), the child being pid 1 of a new PID namespace, through a process in between (a lab
    without root cannot return to its own PID namespace, which the host's user namespace owns).

    The process in between joins the node's network namespace (the lab observes readiness there),
    forwards the lab's signals to the node and exits with the node's code: to the lab it is the node."""
    pid = os.fork()
    if pid != 0:
        return pid
    try:
        from lab.roles import shell_code

        set_parent_death_signal(signal.SIGKILL)
        os.setsid()
        fd = os.open(netns, os.O_RDONLY)
        linux.setns(fd, linux.CLONE_NEWNET)
        os.close(fd)
        child = 0

        def forward(signum: int, frame: object) -> None:
            if child > 0:
                try:
                    os.kill(child, signum)
                except ProcessLookupError:
                    pass

        with linux.signals_blocked(FORWARDED):
            for sig in FORWARDED:
                signal.signal(sig, forward)
            linux.unshare(linux.CLONE_NEWPID)
            child = os.fork()
            if child == 0:
                return 0  # the node's pid 1, as on the root path
        while True:
            done, status = os.waitpid(child, 0)
            if done == child:
                os._exit(shell_code(status))
    except BaseException as e:  # noqa: BLE001 - never unwind into the orchestrator's code
        try:
            os.write(2, f"lab: cannot start a node: {e}\n".encode())
        finally:
            os._exit(127)


def join(keeper: int) -> None:
    """Join the user and mount namespaces of a rootless lab's keeper (this user's own: allowed),
    where its nodes' names are; a fresh, single-threaded process (`lab exec`) does it."""
    for kind, flag in (("user", CLONE_NEWUSER), ("mnt", linux.CLONE_NEWNS)):
        fd = os.open(f"/proc/{keeper}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            linux.setns(fd, flag)
        finally:
            os.close(fd)
