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
    `lab run` keeps its `runs/`: past runs are not the node's files, and would be copied each time)."""

    size: int
    outputs: tuple[str, ...]  # the run folders inside, relative to the folder


def survey(folder: Path) -> Survey:
    total, outputs = 0, []
    for root, dirs, names in os.walk(folder):
        if RUN_MARK <= set(dirs) | set(names) and root != str(folder):
            outputs.append(os.path.relpath(root, folder))
            dirs.clear()
            continue
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return Survey(total, tuple(outputs))


def chown_tree(folder: str | Path, uid: int) -> None:
    """Give a node's copy of its files to the node's uid (links themselves, never their targets)."""
    for root, _, names in os.walk(folder):
        os.lchown(root, uid, uid)
        for name in names:
            os.lchown(os.path.join(root, name), uid, uid)


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


def readable_by_all(folder: Path) -> bool:
    """Whether any uid can reach `folder` and read all of it (folders entered, files read)."""
    if closed_ancestor(folder) is not None:
        return False
    for root, dirs, names in os.walk(folder):
        for path in [root] + [os.path.join(root, n) for n in dirs + names]:
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                continue
            need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
            if mode & need != need:
                return False
    return True
