"""A host uid of its own for every node of the netns backend.

Why one per node, not one shared `nobody`: RLIMIT_NPROC counts every process of a uid on the host,
so only a uid of its own makes it a per-node floor under the cgroup's process limit; and a node's
files (its scratch space) and processes then belong to it alone, so no other node, of this lab or
another, may write them or signal them even if it could see them.

The uids come from a range no account uses (BASE, above the usual system, user and subordinate
ranges). A uid is claimed by linking `STATE/uid-N` to a file of this lab's (`uid-N.LAB`, holding the
lab's id): the link is atomic and exclusive, so a claim file is never seen half-written. The journal
records both names before they exist (kind "uid"), and teardown and `lab clean` remove a claim only
while it holds this lab's id, so a claim lost in a race is never taken from its winner.
"""

from __future__ import annotations

import os
from pathlib import Path

from lab.errors import EnvironmentProblem, writing
from lab.journal import Journal

BASE = 0x7F000000
SLOTS = 1 << 16
KIND = "uid"
PREFIX = "uid-"


def claim(journal: Journal, nodes: list[str]) -> dict[str, int]:
    """node -> its uid, claimed for this lab."""
    taken = {int(p.name[len(PREFIX):]) for p in journal.state.glob(PREFIX + "*") if p.name[len(PREFIX):].isdigit()}
    free = (uid for uid in range(BASE, BASE + SLOTS) if uid not in taken)
    out: dict[str, int] = {}
    pending = list(nodes)
    while pending:
        batch = {node: next(free, None) for node in pending}
        if None in batch.values():
            raise EnvironmentProblem(f"no free node uid left in {journal.state} ({SLOTS} in use): run `lab clean`")
        journal.record_many(KIND, [str(p) for uid in batch.values() if uid is not None
                                   for p in (_slot(journal, uid), _mine(journal, uid))])
        pending = []
        for node, uid in batch.items():
            assert uid is not None
            if _take(journal, uid):
                out[node] = uid
            else:  # another lab claimed it since the listing: try the next free one
                pending.append(node)
    return out


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
