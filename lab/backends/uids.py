"""A host uid of its own for every node of the netns backend.

Why one per node, not one shared `nobody`: RLIMIT_NPROC counts every process of a uid on the host,
so only a uid of its own makes it a per-node floor under the cgroup's process limit; and a node's
files (its scratch space) and processes then belong to it alone, so no other node, of this lab or
another, may write them or signal them even if it could see them.

The uids come from a range no account uses (BASE, above the usual system, user and subordinate
ranges), in blocks of BLOCK: a lab of 1000 nodes makes 16 claim files, not 1000 (files on the host's
filesystem, whose allocator may scan past every inode freed in the last minutes). A block starting at
uid N is claimed by linking `STATE/uid-N` to a file of this lab's (`uid-N.LAB`, holding the lab's
id): the link is atomic and exclusive, so a claim file is never seen half-written. The journal
records both names before they exist (kind "uid"), and teardown and `lab clean` remove a claim only
while it holds this lab's id, so a claim lost in a race is never taken from its winner.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from lab.errors import EnvironmentProblem, writing
from lab.journal import Journal

BASE = 0x7F000000
SLOTS = 1 << 16
BLOCK = 64  # uids per claim
KIND = "uid"
PREFIX = "uid-"


def claim(journal: Journal, nodes: list[str]) -> dict[str, int]:
    """node -> its uid, claimed for this lab (the nodes of a block get its uids in order)."""
    taken = {int(p.name[len(PREFIX):]) for p in journal.state.glob(PREFIX + "*") if p.name[len(PREFIX):].isdigit()}
    free = (first for first in range(BASE, BASE + SLOTS, BLOCK) if first not in taken)
    blocks: list[int] = []
    need = -(-len(nodes) // BLOCK)
    while len(blocks) < need:
        batch = list(itertools.islice(free, need - len(blocks)))
        if len(batch) < need - len(blocks):
            raise EnvironmentProblem(f"no free node uid left in {journal.state} ({SLOTS} in use): run `lab clean`")
        journal.record_many(KIND, [str(p) for first in batch for p in (_slot(journal, first), _mine(journal, first))])
        blocks += [first for first in batch if _take(journal, first)]  # one lost in a race: the next free
    return {node: blocks[k // BLOCK] + k % BLOCK for k, node in enumerate(nodes)}


def release(journal: Journal) -> list[str]:
    """Every uid file the journal recorded that still holds this lab's id."""
    removed = []
    for entry in journal.entries():
        if entry.get("kind") != KIND:
            continue
        path = Path(entry["name"])
        try:
            if path.name.endswith(f".{journal.lab_id}"):  # this lab's own, left by a claim cut short
                path.unlink()
                continue
            if path.read_text() != journal.lab_id:
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path.name)
    return removed


def _slot(journal: Journal, uid: int) -> Path:
    return journal.state / f"{PREFIX}{uid}"


def _mine(journal: Journal, uid: int) -> Path:
    return journal.state / f"{PREFIX}{uid}.{journal.lab_id}"


def _take(journal: Journal, uid: int) -> bool:
    mine = _mine(journal, uid)
    with writing(mine):
        mine.write_text(journal.lab_id)
        try:
            os.link(mine, _slot(journal, uid))
        except FileExistsError:
            return False
        finally:
            mine.unlink()
    return True
