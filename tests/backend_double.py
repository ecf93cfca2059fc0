"""A test double of the backend protocol (lab.backends.Backend), for tests of what stands above it:
every started node does what its script says, at once, and the double records what it was asked.

    backend = ScriptedBackend({"server": [("ready", None)], "client-1": [("exit", 3)]})
    Execution(plan, backend, ...).run()
    assert backend.started == [...] and backend.stopped == [...]

tests/unit/test_backends.py proves it implements the whole protocol, as each real backend does.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

from lab.backends import EXITED, READY, Command, Event, NodeRef, Options, Placement
from lab.errors import UnknownLab
from lab.journal import Journal
from lab.plan import NodePlan, Plan, StepPlan
from lab.rundir import RunDir

STOPPED = 128 + signal.SIGTERM  # what a node stopped by the lab exits with, on every backend

Script = dict[str, list[tuple[str, int | None]]]


@dataclass
class ScriptedBackend:
    """Each started node does what `script` says: ("ready", None), ("exit", code), or ("hang", None)
    (nothing: it runs until stopped). A node without a script exits 0."""

    script: Script
    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    disturbed: list[str] = field(default_factory=list)  # the timeline's steps applied, by label
    placed: dict[str, Placement] = field(default_factory=dict)
    queue: list[Event] = field(default_factory=list)
    name: str = "double"

    def check(self, plan: Plan) -> None: ...
    def up(self, plan: Plan, rundir: RunDir) -> None: ...
    def down(self) -> None: ...
    def exit_code(self, node: str) -> int | None: return None

    def start(self, node: NodePlan) -> bool:
        self.started.append(node.name)
        for kind, code in self.script.get(node.name, [("exit", 0)]):
            if kind == "ready":
                self.queue.append(Event(node.name, READY))
            elif kind == "exit":
                self.queue.append(Event(node.name, EXITED, code))
        return True

    def poll(self, timeout: float) -> list[Event]:
        events, self.queue = self.queue, []
        return events

    def release(self, nodes: list[str]) -> None:
        self.released += nodes

    def disturb(self, step: StepPlan) -> None:
        self.disturbed.append(step.label)

    def placements(self) -> dict[str, Placement]:
        return self.placed

    def changes_process(self) -> bool:
        return False

    def floor(self, plan: Plan) -> bool:
        return False

    def notes(self) -> list[str]:
        return []

    def stop(self, nodes: list[str], grace: float) -> dict[str, int | None]:
        self.stopped += nodes
        return {n: STOPPED for n in nodes}

    @classmethod
    def prepare(cls) -> None: ...

    @classmethod
    def check_kept(cls) -> None: ...

    @classmethod
    def command(cls, journal: Journal, node: NodeRef, argv: list[str], interactive: bool) -> Command:
        raise UnknownLab(f"lab {journal.lab_id}: a scripted backend runs nothing")

    @classmethod
    def clean(cls, journal: Journal) -> list[str]:
        journal.close()
        return []


class ToyBackend(ScriptedBackend):
    """A new backend, as CONTRIBUTING says one is added: one class and one entry in BACKENDS. Its
    nodes do nothing and exit 0 (the script is empty); `cleaned` lists the labs its `clean` reached."""

    name = "toy"
    cleaned: list[str] = []

    def __init__(self, journal: Journal, options: Options | None = None) -> None:
        super().__init__({})
        self.journal = journal

    def up(self, plan: Plan, rundir: RunDir) -> None:
        self.journal.record_many("toy-host", [n.name for n in plan.nodes])

    def down(self) -> None:
        self.journal.close()

    @classmethod
    def clean(cls, journal: Journal) -> list[str]:
        cls.cleaned.append(journal.lab_id)
        journal.close()
        return []


# A scenario the toy backend runs: one program node, judged by its exit code.
TOY_SCENARIO = """
name: toy
networks: {lan: {subnet: 10.9.0.0/24}}
nodes:
  prober: {networks: [lan], run: [probe]}
expect:
  - exit: {nodes: prober, code: 0}
"""
