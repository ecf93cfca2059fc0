"""The lab's barrier for clients of a `concurrent` expectation (pure bookkeeping, no I/O).

Such clients, once answered, keep their connection open until the lab releases them. The lab
releases a group when every member was answered or will never be (it ended, or cannot start), so
a correct server's clients are all connected and answered at one moment however slow the machine
is. A group whose members are not all answered within half the clients' timeout after the first
one was (a server that serves one client at a time) is released then, and `concurrent` fails it
every run. The clients still waiting for their reply are served in turn after that; the time the
lab held the others is not theirs to lose, so each time a member of a released group ends, the
members still waiting for their reply are told (the same word) and count their timeout afresh:
each is judged by how long the server took once the client before it had gone, however many
there are and however busy the machine, so `echo` judges such a server the same way every run.

A member that reports ANSWERED after its group was released is released at once.

On several hosts the answers are stamped by clocks the lab knows only to within each host's
measured uncertainty u, and `concurrent` shrinks each interval by it; so a group is released
`margin` (4u plus a little) after its last answer: the overlap the check then sees on the lab's
clock is real, and two intervals the clocks cannot order are never taken to overlap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from lab.plan import Plan, sync_groups

PATIENCE = 0.5  # of the clients' timeout, from the group's first answer


@dataclass
class Group:
    members: tuple[str, ...]
    patience: float  # seconds the answered wait for the others, from the first answer
    first_answer: float | None = None
    settled_at: float | None = None  # when every member was answered or gone
    released: bool = False
    answered: set[str] = field(default_factory=set)


class Barrier:
    def __init__(self, plan: Plan):
        self.groups = [Group(g, PATIENCE * min(float(plan.node(n).params.get("timeout", 5.0)) for n in g))
                       for g in sync_groups(plan)]
        self.of = {n: g for g in self.groups for n in g.members}

    def answered(self, node: str, now: float) -> list[str]:
        """Record a member's answer; returns [node] when its group was already released."""
        group = self.of.get(node)
        if group is None:
            return []
        group.answered.add(node)
        if group.first_answer is None:
            group.first_answer = now
        return [node] if group.released else []

    def gone(self, node: str, settled: Callable[[str], bool]) -> list[str]:
        """`node` has ended: the members of its group still waiting for their reply, once the group
        was released (they count their timeout afresh from now)."""
        group = self.of.get(node)
        if group is None or not group.released:
            return []
        return [n for n in group.members if n != node and n not in group.answered and not settled(n)]

    def due(self, now: float, settled: Callable[[str], bool], margin: float = 0.0) -> list[str]:
        """The answered members of every group now to be released: `margin` s after each member
        was answered or `settled` (ended, or will never start), or when the group's patience ran out."""
        out: list[str] = []
        for g in self.groups:
            if g.released or g.first_answer is None and not all(settled(n) for n in g.members):
                continue
            if g.settled_at is None and all(n in g.answered or settled(n) for n in g.members):
                g.settled_at = now
            done = g.settled_at is not None and now >= g.settled_at + margin
            if done or (g.first_answer is not None and now >= g.first_answer + g.patience):
                g.released = True
                out += [n for n in g.members if n in g.answered and not settled(n)]
        return out

    def next_deadline(self, margin: float = 0.0) -> float:
        """When a group is next due (inf when none is waiting)."""
        waiting = [g for g in self.groups if not g.released and g.first_answer is not None]
        return min([g.first_answer + g.patience for g in waiting if g.first_answer is not None]
                   + [g.settled_at + margin for g in waiting if g.settled_at is not None], default=float("inf"))
