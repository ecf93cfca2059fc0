"""The fault timeline and captures as the scenario says them: validation (located), the plan's
concrete steps, when steps fire, what the execution does with them, and the fabric's rules."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from lab.backends import faults
from lab.backends.containers.swarm import refuse_wire_work
from lab.errors import EnvironmentProblem, ScenarioError, UsageError
from lab.execution import Execution
from lab.plan import Plan, make_plan
from lab.scenario import load_scenario_text
from lab.schedule import Schedule
from tests.backend_double import ScriptedBackend

ROOT = Path(__file__).resolve().parents[2]

BASE = """name: t
timeout: 10s
networks:
  lan: {subnet: 10.9.0.0/24}
  wan: {subnet: 10.8.0.0/24}
nodes:
  server: {networks: [lan, wan], role: echo-server, with: {port: 7}}
  client: {networks: [lan], role: telnet-client, after: server, replicas: 2, with: {connect: "server:7"}}
  router: {networks: [wan]}
"""


def _plan(extra: str) -> Plan:
    return make_plan(load_scenario_text(BASE + extra, ROOT / "t.yaml"))


def _problems(extra: str) -> list[str]:
    with pytest.raises(ScenarioError) as e:
        load_scenario_text(BASE + extra, ROOT / "t.yaml")
    return [str(p) for p in e.value.problems]


def test_every_step_kind_is_planned_with_concrete_links_and_nodes() -> None:
    plan = _plan("""timeline:
  - {at: 1s, down: server, network: wan}
  - {at: 1s, up: client}
  - {at: 0s, shape: client-2, rate: 1.5mbit, loss: 10%}
  - {after: server, wait: 2s, restart: server, name: again}
  - {after: again, kill: client-1}
  - {at: 2s, partition: [[client], [server]]}
  - {at: 3s, heal: true}
""")
    down, up, shape, restart, kill, part, heal = plan.timeline
    assert down.links == (("server", "wan"),) and down.label == "down server (wan)"
    assert up.links == (("client-1", "lan"), ("client-2", "lan"))
    assert shape.shape.rate == 1_500_000 and shape.shape.loss == 10.0 and shape.shape.delay is None
    assert (restart.after, restart.wait, restart.nodes) == ("server", 2.0, ("server",))
    assert kill.after == "again"
    assert part.groups == (("client-1", "client-2"), ("server",))
    assert heal.action == "heal" and str(down.loc) == f"{ROOT / 't.yaml'}:11:14"
    assert plan.to_json()["timeline"][2]["rate"] == 1_500_000


@pytest.mark.parametrize(("extra", "expected"), [
    ("timeline: [{at: 1s}]", "t.yaml:10:12: error: timeline[0]: a step has exactly one action"),
    ("timeline: [{at: 1s, down: server, kill: server}]", "found down, kill"),
    ("timeline: [{down: server}]", "exactly one of `at: DURATION`"),
    ("timeline: [{at: 1s, down: servr}]", "unknown node 'servr'"),
    ("timeline: [{at: 1s, stop: router}]", "router is a plain host: it runs nothing to stop"),
    ("timeline: [{at: 1s, down: client, network: wan}]", "client is not on network 'wan'"),
    ("timeline: [{at: 1s, shape: client, rate: 1mbps}]", "rate '1mbps' is ambiguous"),
    ("timeline: [{at: 1s, shape: client, rate: fast}]", "expected a rate like 800kbit"),
    ("timeline: [{at: 1s, shape: client, loss: 120%}]", "at most 100"),
    ("timeline: [{at: 1s, down: client, rate: 1mbit}]", "`rate` goes with `shape`"),
    ("timeline: [{at: 11s, down: client}]", "not before the run's timeout (10s)"),
    ("timeline: [{at: 1s, wait: 1s, down: client}]", "`wait` goes with `after`"),
    ("timeline: [{after: later, down: client}, {at: 1s, up: client, name: later}]", "an earlier step"),
    ("timeline: [{at: 1s, partition: [[client]]}]", "two or more lists of nodes"),
    ("timeline: [{at: 1s, partition: [[client], [client]]}]", "client-1 is already in group 1"),
    ("timeline: [{at: 1s, partition: [[client], [client-2, server]]}]", "client-2 is already in group 1"),
    ("timeline: [{at: 1s, down: client, name: server}]", "'server' is a node's name"),
    ("timeline: [{at: 1s, heal: false}]", "write `heal: true`"),
    ("timeline: [{at: 1s, after: server, down: client}]", "exactly one of"),
    ("capture: {limit: 1KiB}", "capture limit '1KiB' is out of range: expected 64KiB..4GiB"),
    ("capture: {networks: [lann]}", "unknown network 'lann'"),
])
def test_a_wrong_step_or_capture_is_located_and_said_in_one_line(extra: str, expected: str) -> None:
    problems = _problems(extra)
    assert any(expected in p for p in problems), problems
    assert all("\n" not in p and "t.yaml:" in p for p in problems)


def test_captures_are_asked_for_the_whole_lab_or_per_network() -> None:
    assert make_plan(load_scenario_text(BASE, ROOT / "t.yaml")).capture.networks == ()
    assert _plan("capture: true").capture.networks == ("lan", "wan")
    assert _plan("capture: {limit: 1MiB, networks: [wan]}").capture.limit == 2**20
    text = BASE.replace("lan: {subnet: 10.9.0.0/24}", "lan: {subnet: 10.9.0.0/24, capture: true}")
    assert make_plan(load_scenario_text(text, ROOT / "t.yaml")).capture.networks == ("lan",)


def test_at_counts_from_the_lab_being_up_and_after_from_a_node_or_a_step() -> None:
    plan = _plan("""timeline:
  - {at: 1s, down: client, name: cut}
  - {after: cut, wait: 0.5s, up: client}
  - {after: server, wait: 0.2s, pause: server}
""")
    schedule = Schedule(plan.timeline)
    assert schedule.due(100.0, {"server": None}) == []
    assert [s.label for s in schedule.due(100.2, {"server": 99.9})] == ["pause server"]
    schedule.up_at = 50.0
    assert schedule.next_due({"server": 10.0}) == 10.2
    due = schedule.due(51.0, {"server": 10.0})
    assert [s.action for s in due] == ["down", "pause"]


def _timed_plan(steps: str) -> Plan:
    text = """name: t
timeout: 3s
networks: {lan: {subnet: 10.9.0.0/24}}
nodes:
  server: {networks: [lan], run: serve, ready: {tcp: 80}}
  client: {networks: [lan], run: fetch, after: server}
"""
    return make_plan(load_scenario_text(text + steps, ROOT / "t.yaml"))


def test_the_execution_fires_each_step_once_and_a_stopped_service_did_not_crash() -> None:
    plan = _timed_plan("""timeline:
  - {at: 0s, pause: server}
  - {at: 0s, stop: server}
  - {at: 0.1s, down: client}
""")
    backend = ScriptedBackend({"server": [("ready", None)], "client": [("ready", None), ("hang", None)]})
    lines: list[str] = []
    ex = Execution(plan, backend, lines.append, lambda n: "")
    ex.run()
    assert backend.disturbed == ["pause server", "resume server", "down client"]  # resumed before it stops
    server = ex.states["server"]
    assert server.stopped_by_lab and "stop by the timeline at" in server.note and "t.yaml:" in server.note
    assert [f.step.label for f in ex.schedule.fired] == ["pause server", "stop server", "down client"]
    assert any(line.startswith("  fault   stop server") for line in lines)
    rows = ex.schedule.report(ex.t0)
    assert [r["fired"] for r in rows] == [True, True, True] and rows[1]["codes"] == {"server": 143}


def test_a_restarted_node_starts_again_and_its_readiness_is_awaited_again() -> None:
    plan = _timed_plan("timeline: [{at: 0s, restart: server}]")
    backend = ScriptedBackend({"server": [("ready", None)], "client": [("hang", None)]})
    ex = Execution(plan, backend, lambda line: None, lambda n: "")
    ex.run()
    assert backend.started.count("server") == 2 and ex.states["server"].restarts == 1
    assert ex.states["server"].ready_at is not None and not ex.states["server"].failed_start


def test_a_step_the_run_never_reached_is_reported_as_not_fired() -> None:
    plan = _timed_plan("timeline: [{at: 2.9s, down: client}]")
    ex = Execution(plan, ScriptedBackend({"server": [("ready", None)]}), lambda line: None, lambda n: "")
    ex.run()
    assert ex.schedule.report(ex.t0) == [{"step": "down client", "where": str(plan.timeline[0].loc),
                                          "fired": False, "t": None}]


def test_loss_and_partitions_become_one_nftables_table_replaced_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _plan("timeline: [{at: 0s, shape: client-1, loss: 12.5%}, {at: 1s, partition: [[client], [server]]}]")
    ran: list[tuple[list[str], str | None]] = []
    monkeypatch.setattr(faults, "run", lambda argv, stdin=None, missing_ok=False: ran.append((argv, stdin)))
    f = faults.Faults(plan, "lab-x", {n.name: f"lab-x-{n.name}" for n in plan.nodes})
    f.apply(plan.timeline[0])
    assert [a for a, _ in ran[:2]] == [["tc", "-n", "lab-x", "qdisc", "del", "dev", "n1e0", "root"],
                                       ["tc", "-n", "lab-x-client-1", "qdisc", "del", "dev", "eth0", "root"]]
    script = ran[-1][1] or ""
    assert ran[-1][0] == ["ip", "netns", "exec", "lab-x", "nft", "-f", "-"]
    assert 'iifname "n1e0" numgen random mod 10000 < 1250 counter drop' in script
    assert script.startswith("table bridge lab {}\ndelete table bridge lab\n")
    f.apply(plan.timeline[1])
    script = ran[-1][1] or ""
    assert 'iifname { "n1e0", "n2e0" } oifname { "n0e0", "n0e1" } counter drop' in script
    assert 'iifname { "n0e0", "n0e1" } oifname { "n1e0", "n2e0" } counter drop' in script
    assert "ether type ip ip saddr { 10.9.0.2, 10.9.0.3 } ip daddr { 10.9.0.1, 10.8.0.1 } counter drop" in script


def test_a_rate_is_a_tbf_on_both_ends_and_a_delay_needs_netem() -> None:
    assert faults._qdisc(faults.Shape(rate=1_000_000))[:3] == ["tbf", "rate", "1000000bit"]
    assert faults._qdisc(faults.Shape(delay=0.05, rate=8000)) == ["netem", "delay", "50ms", "rate", "8000bit"]
    assert faults._qdisc(faults.Shape()) == []


def test_a_kernel_without_netem_stops_a_delay_before_anything_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = _plan("timeline: [{at: 0s, shape: client, delay: 20ms}]")
    asked: list[list[str]] = []

    def no_netem(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
        asked.append(argv)
        return subprocess.CompletedProcess(argv, 2, b"", b"Error: Specified qdisc kind is unknown.\n")

    monkeypatch.setattr(faults.subprocess, "run", no_netem)
    with pytest.raises(EnvironmentProblem) as e:
        faults.check_kernel(plan)
    assert e.value.exit_code == 3 and "sch_netem" in str(e.value) and "t.yaml:10:21:" in str(e.value)
    assert asked[0][:2] == ["unshare", "--net"]
    faults.check_kernel(_plan("timeline: [{at: 0s, shape: client, rate: 1mbit}]"))  # no delay: no probe
    assert len(asked) == 1


def test_the_swarm_backend_refuses_a_timeline_or_captures_where_they_are_written() -> None:
    with pytest.raises(ScenarioError) as e:
        refuse_wire_work(_plan("timeline: [{at: 0s, down: client}]"))
    assert e.value.exit_code == 2 and "t.yaml:10:21:" in str(e.value)
    with pytest.raises(ScenarioError) as e:
        refuse_wire_work(_plan("capture: true"))
    assert "t.yaml:10:1" in str(e.value)
    plan = _plan("")
    from dataclasses import replace

    from lab.scenario.model import Capture
    with pytest.raises(UsageError):
        refuse_wire_work(replace(plan, capture=Capture(("lan",))))


def test_recovers_on_a_client_that_does_not_reconnect_is_refused_where_it_is_written() -> None:
    problems = _problems("expect:\n  - recovers: client\n")
    assert any("t.yaml:11:5: error: expect[0].recovers: client does not reconnect" in p for p in problems), problems
    text = BASE.replace('with: {connect: "server:7"}', 'with: {connect: "server:7", reconnect: 5s}')
    load_scenario_text(text + "expect:\n  - recovers: client\n", ROOT / "t.yaml")


def test_a_node_may_start_after_a_step_and_the_lab_is_up_without_it() -> None:
    text = """name: t
timeout: 3s
networks: {lan: {subnet: 10.9.0.0/24}}
nodes:
  server: {networks: [lan], run: serve, ready: {tcp: 80}}
  client: {networks: [lan], run: fetch, after: [server, shaped]}
timeline:
  - {at: 0.2s, shape: client, rate: 1mbit, name: shaped}
"""
    plan = make_plan(load_scenario_text(text, ROOT / "t.yaml"))
    assert plan.node("client").after == ("server",) and plan.node("client").after_steps == ("shaped",)
    backend = ScriptedBackend({"server": [("ready", None)]})
    ex = Execution(plan, backend, lambda line: None, lambda n: "")
    ex.run()
    assert backend.started == ["server", "client"] and backend.disturbed == ["shape client"]
    client, [fired] = ex.states["client"], ex.schedule.fired
    assert client.started_at is not None and client.started_at >= fired.at >= ex.schedule.up_at + 0.2
    assert plan.to_json()["nodes"][1]["after_steps"] == ["shaped"]


def test_a_step_after_a_node_that_waits_for_it_is_refused() -> None:
    text = BASE.replace("after: server, replicas: 2", "after: [server, cut], replicas: 2")
    with pytest.raises(ScenarioError) as e:
        load_scenario_text(text + "timeline: [{after: client-1, down: server, name: cut}]", ROOT / "t.yaml")
    assert "timeline[0].after: waits in a circle: client -> cut -> client" in str(e.value)
    text = BASE.replace("after: server, replicas: 2", "after: [server, b], replicas: 2")
    with pytest.raises(ScenarioError) as e:  # a longer circle: a step after a step after a node after the first
        load_scenario_text(text + "timeline: [{after: client-1, up: server, name: a}, {after: a, down: server, "
                           "name: b}]", ROOT / "t.yaml")
    assert "waits in a circle" in str(e.value) and str(e.value).count("\n") == 0


def test_a_loss_too_small_to_round_still_drops_one_in_ten_thousand(monkeypatch: pytest.MonkeyPatch) -> None:
    """0.004% rounds to 0 ten-thousandths, which would never drop: it is raised to the smallest step."""
    plan = _plan("timeline: [{at: 0s, shape: client-1, loss: 0.004%}]")
    ran: list[tuple[list[str], str | None]] = []
    monkeypatch.setattr(faults, "run", lambda argv, stdin=None, missing_ok=False: ran.append((argv, stdin)))
    faults.Faults(plan, "lab-x", {n.name: f"lab-x-{n.name}" for n in plan.nodes}).apply(plan.timeline[0])
    script = ran[-1][1] or ""
    assert 'iifname "n1e0" numgen random mod 10000 < 1 counter drop' in script
    assert 'oifname "n1e0" numgen random mod 10000 < 1 counter drop' in script


class _FakeCapture:
    """A running capture as the fabric sees it: `stop` says its counts (or fails, as told)."""

    def __init__(self, fails: bool = False):
        self.fails, self.stopped = fails, False

    def stop(self) -> dict[str, Any]:
        self.stopped = True
        if self.fails:
            raise RuntimeError("the capture would not stop")
        return {"packets": 1}


def test_a_capture_that_cannot_be_written_up_leaves_no_capture_running_nor_namespace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lab.backends import fabric
    from lab.journal import Journal

    removed: list[bool] = []

    def remove_namespaces(names: list[str], kill: bool, journal: Journal) -> list[str]:
        removed.append(kill)
        return []

    monkeypatch.setattr(fabric, "remove_namespaces", remove_namespaces)
    f = fabric.Fabric(Journal(tmp_path, "aaaa"))
    full, fine, stuck = _FakeCapture(), _FakeCapture(), _FakeCapture(fails=True)
    (tmp_path / "ok").mkdir()
    fakes: dict[Path, Any] = {tmp_path / "gone" / "lan.pcap": full,  # (its NET.json cannot be written: a full disk)
                              tmp_path / "ok" / "wan.pcap": fine, tmp_path / "ok" / "dmz.pcap": stuck}
    f.captures = fakes
    with pytest.raises(OSError):  # the first error, once all is done
        f.remove()
    assert full.stopped and fine.stopped and stuck.stopped and f.captures == {}
    assert removed == [True] and (tmp_path / "ok" / "wan.json").read_text() == '{"packets": 1}\n'


CHAIN = """name: t
timeout: 3s
networks: {lan: {subnet: 10.9.0.0/24}}
nodes:
  web: {networks: [lan], run: serve, ready: {tcp: 80}}
  late: {networks: [lan], run: serve2, ready: {tcp: 81}, after: [web, s1]}
  client: {networks: [lan], run: fetch, after: late}
timeline:
  - {at: 0.1s, shape: late, rate: 1mbit, name: s1}
"""


def test_nodes_waiting_for_a_step_through_another_node_do_not_keep_the_lab_from_being_up() -> None:
    plan = make_plan(load_scenario_text(CHAIN, ROOT / "t.yaml"))
    backend = ScriptedBackend({"web": [("ready", None)], "late": [("ready", None)]})
    ex = Execution(plan, backend, lambda line: None, lambda n: "")
    ex.run()
    assert backend.started == ["web", "late", "client"] and not ex.timed_out
    assert ex.states["client"].exit_code == 0


def test_a_step_after_a_node_that_never_came_up_never_fires_and_its_waiters_say_why() -> None:
    text = CHAIN.replace("{at: 0.1s, shape: late", "{after: web, shape: late").replace("[web, s1]", "[s1]")
    plan = make_plan(load_scenario_text(text, ROOT / "t.yaml"))
    ex = Execution(plan, ScriptedBackend({"web": [("exit", 1)]}), lambda line: None, lambda n: "")
    ex.run()
    late, client = ex.states["late"], ex.states["client"]
    assert late.blocked and "step 's1' cannot happen (web never became ready)" in late.note
    assert client.blocked and not ex.timed_out
    assert ex.schedule.report(ex.t0)[0] == {"step": "shape late", "where": str(plan.timeline[0].loc),
                                           "fired": False, "t": None, "why": "web never became ready"}


def test_a_restart_of_a_node_that_has_not_started_starts_nothing() -> None:
    text = CHAIN.replace("  - {at: 0.1s, shape: late, rate: 1mbit, name: s1}\n",
                         "  - {at: 0.1s, shape: late, rate: 1mbit, name: s1}\n  - {at: 0s, restart: client}\n")
    plan = make_plan(load_scenario_text(text, ROOT / "t.yaml"))
    backend = ScriptedBackend({"web": [("ready", None)], "late": [("ready", None)]})
    lines: list[str] = []
    ex = Execution(plan, backend, lines.append, lambda n: "")
    ex.run()
    assert backend.started == ["web", "late", "client"] and ex.states["client"].restarts == 0
    assert any("client: not running, nothing to restart" in line for line in lines)
