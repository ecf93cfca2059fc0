"""A node's `files:` on every backend: their size (the node's copy must hold them), who may read
them (a node's uid is nobody's: the instructor's closed folders are not its), and handing a copy to
the node's uid."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

TMP_SIZE = 64 * 2**20  # a node's private /tmp, and the room its files' copy has beyond the files
# Folders never hidden from a node (netns), whatever the scenario's place: programs and libraries.
SYSTEM = frozenset({"/", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/dev",
                    "/proc", "/sys", "/run", "/var"})


RUN_MARK = frozenset({"nodes", "scenario.yaml", "plan.json"})  # what every run folder holds from its start


@dataclass(frozen=True)
class Survey:
    """A node's `files:` as the node is given them: their bytes (its copy's tmpfs holds them, and
    TMP_SIZE more), without the lab's own run folders found inside (`files: .` in a folder where
    `lab run` keeps its `runs/`: past runs are not the node's files, and would be copied each time),
    and whether any uid may read them all where they are (docker binds them as they are, then)."""

    size: int
    outputs: tuple[str, ...]  # the run folders inside, relative to the folder
    readable: bool


def survey(folder: Path) -> Survey:
    """One walk of the folder for all three."""
    total, outputs, readable = 0, [], closed_ancestor(folder) is None
    for root, dirs, names in os.walk(folder):
        if RUN_MARK <= set(dirs) | set(names) and root != str(folder):
            outputs.append(os.path.relpath(root, folder))
            dirs.clear()
            continue
        readable = readable and _readable(root, stat.S_IROTH | stat.S_IXOTH)
        for name in dirs:
            readable = readable and _readable(os.path.join(root, name), stat.S_IROTH | stat.S_IXOTH)
        for name in names:
            path = os.path.join(root, name)
            readable = readable and _readable(path, stat.S_IROTH)
            try:
                total += os.lstat(path).st_size
            except OSError:
                pass
    return Survey(total, tuple(outputs), readable)


def _readable(path: str, need: int) -> bool:
    """Whether others have `need` on `path` (a link is its target's business)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    return stat.S_ISLNK(mode) or mode & need == need


def closed_ancestor(path: Path) -> str | None:
    """The outermost folder above `path` that others may not enter (a node's uid could not reach
    `path` through it), or None."""
    for parent in reversed(path.parents):
        try:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return str(parent) if str(parent) not in SYSTEM else None
        except OSError:
            return None
    return None
