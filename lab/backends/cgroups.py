"""Per-node control groups of the netns backend: the kernel enforces a node's memory and process
limits (`limits:`) on all its processes together, and says when it killed one for memory.

cgroup v1 (this project's machines: memory and pids hierarchies writable by root): each node gets
`<the lab process's own cgroup>/lab-ID/NODE` in the memory and pids hierarchies; its first process
moves itself in before it execs, so everything it starts is counted. A node killed by the memory
limit shows `oom_kill N` (N > 0) in its `memory.oom_control`. Without a writable v1 hierarchy (a
pure cgroup v2 machine), the lab enforces the rlimits only and `available()` says so.

The folders are host resources: the journal records each one before it is made (kind "cgroup"),
and teardown and `lab clean` remove what it recorded, deepest first, once their processes are gone.
"""

from __future__ import annotations

import os
import signal
import time
from functools import cache
from pathlib import Path

from lab.errors import BackendError
from lab.journal import Journal
from lab.plan import Limits

ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids")
KIND = "cgroup"
EMPTY_TIMEOUT = 5.0  # s for a cgroup's killed processes to be gone before its folder is removed


@cache
def own(controller: str) -> Path | None:
    """This process's cgroup folder in a v1 hierarchy (None: no such writable hierarchy); read once."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, names, path = line.split(":", 2)
        if controller in names.split(","):
            folder = ROOT / controller / path.lstrip("/")
            return folder if os.access(folder, os.W_OK) else None
    return None


def available() -> bool:
    return all(own(c) is not None for c in CONTROLLERS)


def node_folders(lab_id: str, node: str) -> dict[str, Path]:
    """Controller -> the node's folder (not yet made)."""
    out = {}
    for controller in CONTROLLERS:
        base = own(controller)
        if base is not None:
            out[controller] = base / f"lab-{lab_id}" / node
    return out


def create_all(journal: Journal, nodes: list[tuple[str, Limits]]) -> dict[str, list[Path]]:
    """Every node's cgroup folders, made and limited, at once (`up` makes them while the links are
    being wired); node -> the `cgroup.procs` files its first process writes its pid into. Recorded
    in the journal first (the lab folders, then the nodes'), in one write."""
    folders = {name: node_folders(journal.lab_id, name) for name, _ in nodes}
    labs = {f.parent for fs in folders.values() for f in fs.values()}
    journal.record_many(KIND, [str(p) for p in sorted(labs)] + [str(f) for fs in folders.values() for f in fs.values()])
    return {name: _make(folders[name], limits) for name, limits in nodes}


def _make(folders: dict[str, Path], limits: Limits) -> list[Path]:
    for controller, folder in folders.items():
        folder.mkdir(parents=True, exist_ok=True)
        if controller == "memory":
            _write(folder / "memory.limit_in_bytes", limits.memory)
            if (folder / "memory.memsw.limit_in_bytes").exists():  # no swap beyond the limit either
                _write(folder / "memory.memsw.limit_in_bytes", limits.memory)
        else:
            _write(folder / "pids.max", limits.processes)
    return [f / "cgroup.procs" for f in folders.values()]


def join(procs: list[Path]) -> None:
    """Move this (child) process into the node's cgroups."""
    pid = str(os.getpid()).encode()
    for path in procs:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, pid)
        finally:
            os.close(fd)


def oom_killed(lab_id: str, node: str) -> bool:
    """Whether the kernel killed a process of the node for its memory limit."""
    folder = node_folders(lab_id, node).get("memory")
    if folder is None:
        return False
    try:
        for line in (folder / "memory.oom_control").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value) > 0
    except (OSError, ValueError):
        pass
    return False


def remove(journal: Journal) -> list[str]:
    """Every cgroup folder the journal recorded, deepest first, after killing what is left in it."""
    recorded = sorted({e["name"] for e in journal.entries() if e.get("kind") == KIND},
                      key=lambda p: p.count("/"), reverse=True)
    removed = []
    for name in recorded:
        folder = Path(name)
        if not folder.is_dir():
            continue
        _empty(folder)
        try:
            folder.rmdir()
        except OSError as e:
            raise BackendError(f"cannot remove cgroup {folder}: {e.strerror}") from None
        removed.append(name)
    return removed


def _empty(folder: Path) -> None:
    deadline = time.monotonic() + EMPTY_TIMEOUT
    while True:
        pids = [int(p) for p in (folder / "cgroup.procs").read_text().split()]
        if not pids:
            return
        if time.monotonic() > deadline:
            raise BackendError(f"cgroup {folder} still holds processes {pids[:5]} after {EMPTY_TIMEOUT:g}s")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


def _write(path: Path, value: int) -> None:
    path.write_text(str(value))
