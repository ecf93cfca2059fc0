"""The first process of a netns node: forked by the orchestrator as pid 1 of the node's own PID
namespace, it never returns.

As root it moves into the node's cgroups and network namespace, opens what it must write in the run
folder (its transcript; its log is already stdout), and builds the node's confined view
(sandbox.confine). A built-in role then drops to the node's uid and runs in this very process (no
exec, no extra fork: it handles SIGTERM itself). A program gets an init: this process stays pid 1,
forwarding the lab's signals and reaping, while a child drops privileges and execs the program.
"""

from __future__ import annotations

import math
import os
import resource
import select
import signal
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from lab.backends import cgroups, linux, sandbox
from lab.plan import NodePlan
from lab.roles import default_signals, run_role
from lab.roles.common import CONTROL_FD_ENV, STATUS_FD_ENV
from lab.roles.stdin import feed
from lab.rundir import MAX_OUTPUT
from lab.signals import set_parent_death_signal

BASE_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "TERM", "TZ")
FD_CEILING = 2**31 - 1  # above any descriptor number (close_range(2) visits only the open ones)


@dataclass(frozen=True)
class Start:
    """One node's start, as the orchestrator prepared it (descriptors are this process's)."""

    node: NodePlan
    lab_id: str
    netns: str
    box: sandbox.Box
    groups: list[Path]  # the cgroup.procs files to join
    transcript: str  # the role's transcript in the run folder
    log: int
    parent: int  # a pidfd of the orchestrator: readable once it has exited
    ready_w: int | None = None
    control_r: int | None = None
    mounts: int | None = None  # the mount namespace the node's own is copied from (linux.private_mounts)


def run(start: Start) -> NoReturn:
    code = 127
    node = start.node
    try:
        set_parent_death_signal(signal.SIGKILL)
        if select.select([start.parent], [], [], 0)[0]:  # the orchestrator died before the line above
            os._exit(code)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(start.log, 1)
        os.dup2(start.log, 2)
        close_all_but(fd for fd in (start.ready_w, start.control_r, start.parent, start.mounts) if fd is not None)
        # The parent's sys.stdout may be anything (a pytest capture, a pipe): the child's is the log.
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stdin = open(0, closefd=False)  # noqa: SIM115
        os.setsid()
        for sig in sandbox.EARLY:  # (TERM and INT are still blocked, since the fork)
            signal.signal(sig, _early_exit)
        default_signals(but=sandbox.EARLY)  # as a shell gives them: nothing the orchestrator ignores leaks in
        _limit(node, start.groups)
        fd = os.open(start.netns, os.O_RDONLY)
        linux.setns(fd, linux.CLONE_NEWNET)
        os.close(fd)
        transcript = None
        if node.role is not None:  # opened before the run folder is out of sight
            transcript = os.open(start.transcript, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        if start.mounts is not None:  # everything the node opens by path is opened above
            linux.setns(start.mounts, linux.CLONE_NEWNS)
            os.close(start.mounts)
        sandbox.confine(start.box)
        env = _env(start)
        if node.role is not None:
            assert transcript is not None
            _drop(start)
            os.environ.clear()
            os.environ.update(env)
            code = run_role(node.role, node.params, transcript)
        else:
            sandbox.init(lambda: _program(start, env), lambda: _drop(start))
    except BaseException as e:  # noqa: BLE001 - a child must never unwind into the parent's code
        try:
            os.write(2, f"lab: {node.name}: cannot start: {e}\n".encode())
        except OSError:
            pass
    finally:
        os._exit(code)


def _program(start: Start, env: dict[str, str]) -> NoReturn:
    """The init's child: the program, in its own process group, as the node's uid."""
    node = start.node
    assert node.argv is not None
    code = 127
    try:
        default_signals()
        os.setsid()
        resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_OUTPUT, MAX_OUTPUT))  # a flood stops it (SIGXFSZ)
        sandbox.drop(start.box.uid, node.limits.processes)
        if node.stdin is not None:  # scripted input instead of /dev/null (its feeder is the node's too)
            os.dup2(feed([list(step) for step in node.stdin]), 0)
        os.execvpe(node.argv[0], list(node.argv), env)
    except FileNotFoundError:
        os.write(2, f"lab: {node.name}: {node.argv[0]}: command not found\n".encode())
    except OSError as e:
        os.write(2, f"lab: {node.name}: cannot run {node.argv[0]}: {e.strerror}\n".encode())
        code = 126
    except BaseException as e:  # noqa: BLE001
        os.write(2, f"lab: {node.name}: cannot start: {e}\n".encode())
    finally:
        os._exit(code)


def _drop(start: Start) -> None:
    """The node's first process becomes the node's uid. The kernel forgets the parent-death signal
    when the uid changes: set it again, and make sure the orchestrator is still there to send it."""
    sandbox.drop(start.box.uid, start.node.limits.processes)
    set_parent_death_signal(signal.SIGKILL)
    if select.select([start.parent], [], [], 0)[0]:
        os._exit(137)
    os.close(start.parent)


def _early_exit(signum: int, frame: object) -> None:
    """Until the role's or the init's own handlers are in: end as any process would (pid 1 of a
    namespace ignores a signal it has no handler for, even SIGTERM from the lab, even SIGXCPU)."""
    os._exit(128 + signum)


def _limit(node: NodePlan, groups: list[Path]) -> None:
    """Before it runs anything: the node's cgroups (memory, processes: all its processes together)
    and the per-process rlimits (open files, CPU time), inherited by all it starts."""
    cgroups.join(groups)
    resource.setrlimit(resource.RLIMIT_NOFILE, (node.limits.files, node.limits.files))
    if node.limits.cpu is not None:  # SIGXCPU at the limit (the hard one, a second on, would be SIGKILL)
        cpu = math.ceil(node.limits.cpu)
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))


def _env(start: Start) -> dict[str, str]:
    """A small, predictable environment: the node's identity, a home it may write, the lab's pipes."""
    node = start.node
    env = {k: os.environ[k] for k in BASE_ENV_KEYS if k in os.environ}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env.update(PYTHONUNBUFFERED="1", LAB_NODE=node.name, LAB_ID=start.lab_id, HOSTNAME=node.name,
               HOME=start.box.cwd or "/tmp", USER=node.name, LOGNAME=node.name)
    env.update(node.env)
    if start.ready_w is not None:
        env[STATUS_FD_ENV] = str(start.ready_w)
    if start.control_r is not None:
        env[CONTROL_FD_ENV] = str(start.control_r)
    return env


def close_all_but(keep: Iterable[int]) -> None:
    """Close every descriptor above stderr except those in `keep` (a child must not hold the lab's):
    each one this process has, however high its number.

    By ranges between the kept ones (close_range(2): the kernel closes what is open), not by listing
    /proc/self/fd: a listing costs each child a dentry per descriptor of the lab (thousands at 1000
    nodes), and its reaper as much again to drop them, so starting N nodes grew as N squared."""
    low = 3
    for fd in sorted({fd for fd in keep if fd >= low}):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, FD_CEILING)
