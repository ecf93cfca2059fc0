"""The scheduler, against a scripted fake backend: `after` order, readiness, deadlines, blocking."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab.backends import ANSWERED, EXITED, READY, Event
from lab.barrier import Barrier
from lab.execution import Execution
from lab.plan import NodePlan, Plan, make_plan, sync_groups
from lab.scenario import load_scenario_text
from tests.backend_double import ScriptedBackend

ROOT = Path(__file__).resolve().parents[2]

SCENARIO = """
name: t
timeout: {timeout}
networks: {{lan: {{subnet: 10.9.0.0/24}}}}
nodes:
  server:
    networks: [lan]
    run: serve
    ready: {{tcp: 80, timeout: 0.3s}}
  client:
    replicas: 2
    networks: [lan]
    after: server
    run: fetch
"""


def _plan(timeout: str = "5s") -> Plan:
    return make_plan(load_scenario_text(SCENARIO.format(timeout=timeout), ROOT / "t.yaml"))


def _run(script: dict[str, list[tuple[str, int | None]]], timeout: str = "5s") -> tuple[Execution, ScriptedBackend]:
    backend = ScriptedBackend(script)
    ex = Execution(_plan(timeout), backend, lambda line: None, lambda name: "last words")
    ex.run()
    return ex, backend


def test_clients_start_after_the_server_is_ready_and_services_stop_at_the_end() -> None:
    ex, backend = _run({"server": [("ready", None)]})
    assert backend.started == ["server", "client-1", "client-2"]
    assert backend.stopped == ["server"]
    assert ex.states["client-1"].exit_code == 0 and not ex.states["client-1"].stopped_by_lab
    assert ex.states["server"].stopped_by_lab


def test_a_server_that_exits_before_ready_blocks_its_clients_with_its_log() -> None:
    ex, backend = _run({"server": [("exit", 1)]})
    assert backend.started == ["server"]
    server = ex.states["server"]
    assert server.failed_start and "exited with code 1 before it was ready" in server.note
    assert "last words" in server.note
    for c in ("client-1", "client-2"):
        assert ex.states[c].blocked and "server exited with code 1" in ex.states[c].note


def test_readiness_is_bounded() -> None:
    ex, backend = _run({"server": [("hang", None)]})
    server = ex.states["server"]
    assert server.failed_start and "not ready after 0.3s: nothing listens on tcp 80" in server.note
    assert backend.stopped == ["server"]
    assert ex.states["client-1"].blocked


def test_the_run_deadline_stops_hanging_tasks() -> None:
    ex, backend = _run({"server": [("ready", None)], "client-1": [("hang", None)]}, timeout="0.3s")
    assert ex.timed_out
    c1, c2 = ex.states["client-1"], ex.states["client-2"]
    assert c1.stopped_by_lab and "timeout (0.3s)" in c1.note
    assert c2.exit_code == 0 and not c2.stopped_by_lab


def test_a_task_is_ready_once_started_so_its_dependents_do_not_wait_for_it_to_exit() -> None:
    text = """
name: t
timeout: 0.5s
networks: {lan: {subnet: 10.9.0.0/24}}
nodes:
  setup: {networks: [lan], run: prepare}
  user: {networks: [lan], run: use, after: setup}
"""
    backend = ScriptedBackend({"setup": [("hang", None)]})
    ex = Execution(make_plan(load_scenario_text(text, ROOT / "t.yaml")), backend, lambda line: None, lambda n: "")
    ex.run()
    assert backend.started == ["setup", "user"]
    assert not ex.states["setup"].failed_start and ex.states["setup"].killed_at_deadline
    assert ex.states["user"].exit_code == 0


def test_a_signal_interrupts_at_a_safe_point() -> None:
    import pytest

    from lab.errors import Interrupted

    calls = []

    def interrupted() -> None:
        calls.append(1)
        if len(calls) > 1:
            raise Interrupted(2)

    backend = ScriptedBackend({"server": [("ready", None)], "client-1": [("hang", None)]})
    ex = Execution(_plan(), backend, lambda line: None, lambda n: "", interrupted)
    with pytest.raises(Interrupted):
        ex.run()
    assert backend.started == ["server"]  # nothing half-started: the check came before the fork


SYNCED = """
name: t
timeout: 5s
networks: {lan: {subnet: 10.9.0.0/24}}
nodes:
  server: {networks: [lan], role: echo-server, with: {port: 7}}
  client: {replicas: 3, networks: [lan], after: server, role: telnet-client, with: {connect: "server:7"}}
  loner: {networks: [lan], after: server, role: telnet-client, with: {connect: "server:7"}}
expect:
  - concurrent: {nodes: [client-1, client-2], at_least: 2}
  - concurrent: {nodes: [client-2, client-3], at_least: 2}
  - echo: loner
"""


@dataclass
class SyncBackend(ScriptedBackend):
    """Clients report ANSWERED when started; the test decides when each one exits."""

    answered: list[str] = field(default_factory=list)

    def start(self, node: NodePlan) -> bool:
        self.started.append(node.name)
        self.queue.append(Event(node.name, READY))
        if node.name in self.answered:
            self.queue.append(Event(node.name, ANSWERED))
        return True


def _synced(answered: list[str]) -> tuple[Execution, SyncBackend]:
    plan = make_plan(load_scenario_text(SYNCED, ROOT / "t.yaml"))
    backend = SyncBackend({}, answered=answered)
    ex = Execution(plan, backend, lambda line: None, lambda name: "")
    ex.bring_up()
    return ex, backend


def test_groups_of_concurrent_clients_are_joined_and_marked_in_the_plan() -> None:
    plan = make_plan(load_scenario_text(SYNCED, ROOT / "t.yaml"))
    assert sync_groups(plan) == [("client-1", "client-2", "client-3")]
    assert [n.name for n in plan.nodes if n.synced] == ["client-1", "client-2", "client-3"]


def test_a_group_is_released_once_every_member_was_answered() -> None:
    ex, backend = _synced(["client-1", "client-2"])
    ex.watch(0)
    assert backend.released == []  # client-3 is still working
    ex._handle(Event("client-3", ANSWERED))
    ex.watch(0)
    assert backend.released == ["client-1", "client-2", "client-3"]
    ex.watch(0)
    assert backend.released == ["client-1", "client-2", "client-3"]  # once


def test_a_member_that_ends_unanswered_releases_the_others() -> None:
    ex, backend = _synced(["client-1", "client-3"])
    ex._handle(Event("client-2", EXITED, 1))
    ex.watch(0)
    assert backend.released == ["client-1", "client-3"]


def test_the_answered_wait_half_the_clients_timeout_then_late_answers_go_at_once() -> None:
    plan = make_plan(load_scenario_text(SYNCED, ROOT / "t.yaml"))
    barrier = Barrier(plan)
    assert barrier.answered("client-1", 10.0) == []
    assert barrier.due(12.4, lambda n: False) == []  # default timeout 5 s: patience 2.5 s
    assert barrier.next_deadline() == 12.5
    assert barrier.due(12.5, lambda n: False) == ["client-1"]
    assert barrier.answered("client-2", 13.0) == ["client-2"]  # its group is gone: straight on
    assert barrier.answered("loner", 13.0) == []  # not held at all


def test_once_released_each_member_that_ends_renews_the_timeout_of_those_still_waiting() -> None:
    plan = make_plan(load_scenario_text(SYNCED, ROOT / "t.yaml"))
    barrier = Barrier(plan)
    barrier.answered("client-1", 10.0)
    assert barrier.gone("client-1", lambda n: False) == []  # not released yet: nobody was held
    assert barrier.due(12.5, lambda n: False) == ["client-1"]  # a sequential server: patience ran out
    assert barrier.gone("client-1", lambda n: n == "client-1") == ["client-2", "client-3"]
    barrier.answered("client-2", 13.0)
    assert barrier.gone("client-2", lambda n: n in ("client-1", "client-2")) == ["client-3"]
    assert barrier.gone("loner", lambda n: False) == []  # in no group


def test_the_lab_tells_the_waiting_members_when_a_released_one_ends() -> None:
    ex, backend = _synced(["client-1"])
    ex.barrier.groups[0].patience = 0.0  # the sequential server's case: released with one answer
    ex.watch(0)
    assert backend.released == ["client-1"]
    ex._handle(Event("client-1", EXITED, 0))
    assert backend.released == ["client-1", "client-2", "client-3"]  # the two waiting: timeout afresh


def test_on_several_hosts_a_group_is_released_after_the_clocks_uncertainty() -> None:
    plan = make_plan(load_scenario_text(SYNCED, ROOT / "t.yaml"))
    barrier = Barrier(plan)
    for k, name in enumerate(["client-1", "client-2", "client-3"]):
        barrier.answered(name, 10.0 + k * 0.1)
    assert barrier.due(10.2, lambda n: False, margin=0.1) == []  # all answered: the margin starts
    assert abs(barrier.next_deadline(0.1) - 10.3) < 1e-9
    assert barrier.due(10.3, lambda n: False, margin=0.1) == ["client-1", "client-2", "client-3"]


@dataclass
class SlowEngine(ScriptedBackend):
    """Like the container backends: a start is deferred until the node's host exists, which takes
    `creating` seconds of wall time (a busy engine); then the node launches and runs its script."""

    creating: float = 0.0
    asked: dict[str, float] = field(default_factory=dict)

    def start(self, node: NodePlan) -> bool:
        import time

        self.asked[node.name] = time.monotonic()
        return False

    def poll(self, timeout: float) -> list[Event]:
        import time

        from lab.backends import LAUNCHED

        time.sleep(min(timeout, 0.01))
        now = time.monotonic()
        for name, at in list(self.asked.items()):
            if now >= at + self.creating:
                del self.asked[name]
                self.queue.append(Event(name, LAUNCHED))
                self.started.append(name)
                for kind, code in self.script.get(name, [("exit", 0)]):
                    self.queue.append(Event(name, READY if kind == "ready" else EXITED, code))
        return super().poll(timeout)


def test_time_spent_waiting_for_hosts_is_not_the_programs_time() -> None:
    """Hosts that take longer to create than the whole timeout do not turn a correct run into a
    timeout: the run's clock is the programs' time."""
    backend = SlowEngine({"server": [("ready", None)]}, creating=0.4)
    ex = Execution(_plan("0.3s"), backend, lambda line: None, lambda name: "")
    ex.run()
    assert not ex.timed_out
    assert [ex.states[c].exit_code for c in ("client-1", "client-2")] == [0, 0]


def test_a_host_never_created_is_bounded_and_said_so(monkeypatch: object) -> None:
    import lab.execution

    monkeypatch.setattr(lab.execution, "HOSTS_LIMIT", 0.2)  # type: ignore[attr-defined]
    backend = SlowEngine({"server": [("ready", None)]}, creating=60.0)
    ex = Execution(_plan("0.3s"), backend, lambda line: None, lambda name: "")
    ex.run()
    server = ex.states["server"]
    assert ex.timed_out and server.killed_at_deadline
    assert "its host was not created before the run's timeout (0.3s + 0.2s waiting for hosts)" in server.note


def test_hosts_an_engine_creates_slowly_are_counted_as_they_come_up() -> None:
    """A container backend's hosts exist only once launched: the run says how far the engine is (a
    line per quarter) and when every host is up, on the run's clock."""
    text = SCENARIO.format(timeout="5s").replace("replicas: 2", "replicas: 11")
    plan = make_plan(load_scenario_text(text, ROOT / "t.yaml"))
    lines: list[str] = []
    ex = Execution(plan, SlowEngine({"server": [("ready", None)]}, creating=0.02), lines.append, lambda name: "")
    ex.run()
    counts = [line.split()[1] for line in lines if line.startswith("  hosts ")]
    assert counts == ["3/12", "6/12", "9/12"], lines
    (done,) = [line for line in lines if "node(s) up in" in line]  # said once, after the last host
    assert done.startswith("lab t: 12 node(s) up in ")
    assert lines.index(done) > max(k for k, line in enumerate(lines) if line.startswith("  hosts "))


def test_on_a_terminal_every_host_is_counted_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    from lab.orchestrator import TerminalProgress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Tty()
    monkeypatch.setattr(sys, "stderr", screen)
    text = SCENARIO.format(timeout="5s").replace("replicas: 2", "replicas: 3")
    plan = make_plan(load_scenario_text(text, ROOT / "t.yaml"))
    Execution(plan, SlowEngine({"server": [("ready", None)]}, creating=0.02), TerminalProgress(), lambda n: "").run()
    out = screen.getvalue()
    assert [f"hosts   {k}/4 up" in out for k in (1, 2, 3)] == [True] * 3
    assert out.count("\r\x1b[K") == 3  # each status line cleared before what follows it
    assert "lab t: 4 node(s) up in" in out.splitlines()[-1]


def test_the_lab_says_when_every_node_is_up_counting_from_when_it_began() -> None:
    lines: list[str] = []
    ex = Execution(_plan(), ScriptedBackend({"server": [("ready", None)]}), lines.append, lambda name: "",
                   began=0.0)
    ex.run()
    (done,) = [line for line in lines if "node(s) up in" in line]  # the clients start once the server is ready
    assert done.startswith("lab t: 3 node(s) up in ") and float(done.split()[-1].rstrip("s")) > 1.0  # since 0.0
