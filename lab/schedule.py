"""When the fault timeline's steps are due: pure bookkeeping, which the execution drives and applies.

`at` counts from the moment the lab is up (every node started, every service ready), not from the
run's start: a busy engine that takes seconds to create containers must not move a fault to another
point of the conversation. `after` is a node's readiness, or an earlier step's firing, plus `wait`.
A step fires once; steps the run did not reach are reported as such, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lab.plan import StepPlan

NODE_STEPS = ("stop", "kill", "restart")  # the execution stops (and starts) these itself


@dataclass
class Fired:
    """A step as it happened, on the monotonic clock (the reports put it on the lab's)."""

    step: StepPlan
    at: float
    codes: dict[str, int | None] = field(default_factory=dict)  # stop, kill, restart: how each node ended


@dataclass
class Schedule:
    steps: tuple[StepPlan, ...]
    up_at: float | None = None  # when the lab was up (time.monotonic())
    fired: list[Fired] = field(default_factory=list)
    unreachable: dict[int, str] = field(default_factory=dict)  # step index -> why it can never fire

    def moment(self, step: StepPlan, ready: Mapping[str, float | None]) -> float | None:
        """When the step is due (monotonic), or None while that is not known yet."""
        if step.at is not None:
            return None if self.up_at is None else self.up_at + step.at
        named = next((f.at for f in self.fired if f.step.name and f.step.name == step.after), None)
        if named is None and step.after is not None and not any(s.name == step.after for s in self.steps):
            named = ready.get(step.after)
        return None if named is None else named + step.wait

    def happened(self, names: tuple[str, ...]) -> bool:
        """Whether every step named so has fired (a node may wait for them)."""
        fired = {f.step.name for f in self.fired}
        return all(name in fired for name in names)

    def pending(self) -> list[StepPlan]:
        """The steps that have neither fired nor been found unable to."""
        done = {f.step.index for f in self.fired} | set(self.unreachable)
        return [s for s in self.steps if s.index not in done]

    def cannot(self) -> dict[str, str]:
        """Named steps that can never fire -> why."""
        return {s.name: self.unreachable[s.index] for s in self.steps if s.name and s.index in self.unreachable}

    def next_due(self, ready: Mapping[str, float | None]) -> float:
        """The earliest known moment a pending step is due (inf: none known)."""
        moments = [m for s in self.pending() if (m := self.moment(s, ready)) is not None]
        return min(moments, default=float("inf"))

    def due(self, now: float, ready: Mapping[str, float | None]) -> list[StepPlan]:
        """The pending steps due by `now`, in the order written (one step may enable the next)."""
        return [s for s in self.pending() if (m := self.moment(s, ready)) is not None and m <= now]

    def report(self, clock: float) -> list[dict[str, Any]]:
        """Every step: when it fired on the lab's clock (`clock`: the run's start), or that it did not."""
        fired = {f.step.index: f for f in self.fired}
        rows = []
        for s in self.steps:
            f = fired.get(s.index)
            row: dict[str, Any] = {"step": s.label, "where": str(s.loc), "fired": f is not None,
                                   "t": round(f.at - clock, 3) if f else None}
            if f and f.codes:
                row["codes"] = f.codes
            if s.index in self.unreachable:
                row["why"] = self.unreachable[s.index]
            rows.append(row)
        return rows
