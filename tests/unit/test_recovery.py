"""The timeline's faults carried to the clients they touch (lab/recovery.py): which nodes a step
touches, each client's faults with its server's, and the two ways a run gives their moments to the
checks (`lab run`'s timeline, a kept lab's timeline.json), so that a server that closes connections
on its own fails `echo` and `recovers` wherever it is judged."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

from lab import checks, lifecycle, recovery
from lab.execution import Execution
from lab.orchestrator import check
from lab.outcome import Fault, NodeOutcome
from lab.plan import Plan, make_plan
from lab.rundir import RunDir
from lab.scenario import load_scenario_text
from lab.schedule import Fired, Schedule
from lab.watch import NodeRun
from tests.backend_double import ScriptedBackend
from tests.unit.test_checks import one_line_each
from tests.unit.test_roles import named, outcome, run_client, telnet

ROOT = Path(__file__).resolve().parents[2]

SCENARIO = """name: t
timeout: 5s
networks: {lan: {subnet: 10.9.0.0/24}}
nodes:
  server: {networks: [lan], role: echo-server, with: {port: 7}}
  other: {networks: [lan], role: echo-server, with: {port: 7}}
  client:
    networks: [lan]
    after: server
    role: telnet-client
    with: {connect: "server:7", send: [line 1, line 2, line 3], reconnect: 5s}
timeline:
  - {at: 1s, restart: other}
  - {at: 2s, partition: [[server], [other]]}
  - {at: 3s, heal: true}
  - {at: 4s, down: client}
expect:
  - echo: client
  - recovers: client
"""


def _plan() -> Plan:
    return make_plan(load_scenario_text(SCENARIO, ROOT / "t.yaml"))


def _outcome(name: str) -> NodeOutcome:
    return NodeOutcome(name, True, 0, False, "", [], "")


def test_each_step_touches_the_nodes_it_names_and_a_heal_every_partitioned_one() -> None:
    steps = recovery.steps_of_plan(_plan().timeline)
    assert [label for label, _, _ in steps] == ["restart other", "partition server | other", "heal", "down client"]
    assert recovery.reach(steps) == [{"other"}, {"server", "other"}, {"server", "other"}, {"client"}]
    assert recovery.steps_of_json(_plan().to_json()["timeline"]) == steps  # a kept lab's plan.json says the same


def test_a_client_carries_the_faults_that_touch_it_or_its_server_with_their_moments() -> None:
    runs = {"server": NodeRun("server", True, False, addresses=("10.9.0.2",)),
            "other": NodeRun("other", True, False, addresses=("10.9.0.3",)),
            "client": NodeRun("client", False, True, peer="server", peer_address="10.9.0.2")}
    outcomes = {name: _outcome(name) for name in runs}
    steps = recovery.steps_of_plan(_plan().timeline)
    faulted = recovery.with_faults(outcomes, runs, steps, [10.0, 11.0])  # the last two never fired
    assert faulted["client"].faults == (Fault("partition server | other", 11.0), Fault("heal", None),
                                        Fault("down client", None))
    assert faulted["other"].faults == (Fault("restart other", 10.0), Fault("partition server | other", 11.0),
                                       Fault("heal", None))
    assert recovery.with_faults(outcomes, runs, steps, None)["client"].faults is None  # not known


def test_the_moments_come_from_the_run_s_timeline_on_the_wall_clock() -> None:
    rows = [{"step": "restart other", "fired": True, "t": 1.5}, {"step": "heal", "fired": False, "t": None}]
    assert recovery.fired_at(rows, 1000.0) == [1001.5, None]


def test_the_orchestrator_s_check_fails_a_server_that_closes_after_each_line(tmp_path: Path) -> None:
    plan = _plan()
    backend = ScriptedBackend({"server": [("ready", None)], "other": [("ready", None)],
                               "client": [("ready", None), ("exit", 0)]})
    ex = Execution(plan, backend, lambda line: None, lambda name: "")
    ex.run()
    rundir = RunDir.create(tmp_path / "run", "t")
    rundir.transcript("client").write_text("\n".join(json.dumps(e) for e in one_line_each().transcript))

    def verdicts(fired: list[float | None] | None) -> dict[str, tuple[bool, str]]:
        return {v.result.check: (v.result.passed, v.result.detail)
                for v in check(plan, ex.states, rundir, {}, ex.t0, fired) if v.result.node == "client"}

    judged = verdicts([0.1, None, None, None])  # only `other` was restarted: nothing reached the client
    assert not judged["echo"][0] and "the server closed the connection at +0.61s with no fault in force" \
        in judged["echo"][1]
    assert not judged["recovers"][0]
    assert "before any fault reached it or its server (none that touches them fired)" in judged["recovers"][1]
    assert all(passed for passed, _ in verdicts(None).values())  # a caller that gives no moments: as before


def test_a_kept_lab_s_keeper_records_when_each_step_fired(tmp_path: Path) -> None:
    plan = _plan()
    schedule = Schedule(plan.timeline)
    t0 = time.monotonic() - 10.0
    schedule.fired.append(Fired(plan.timeline[1], t0 + 2.0))
    holder = lifecycle.StatusHolder(-1, "netns")
    holder.journal_folder = tmp_path
    holder.update_timeline(SimpleNamespace(t0=t0, schedule=schedule))  # type: ignore[arg-type]
    fired = lifecycle._fired(SimpleNamespace(folder=tmp_path), plan.to_json())  # type: ignore[arg-type]
    assert fired is not None and fired[0] is None and fired[2:] == [None, None]
    assert fired[1] is not None and abs(fired[1] - (time.time() - 8.0)) < 1.0
    gone = tmp_path / "gone"
    assert lifecycle._fired(SimpleNamespace(folder=gone), plan.to_json()) is None  # type: ignore[arg-type]
    assert lifecycle._fired(SimpleNamespace(folder=gone), {"timeline": []}) == []  # type: ignore[arg-type]


def test_the_real_client_of_a_server_that_closes_after_each_line_fails_echo_and_recovers(tmp_path: Path) -> None:
    """The telnet-client role for real, against recv, send, close: what a review found passing."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]

        def one_line_per_connection() -> None:
            for _ in range(3):
                conn, _ = listener.accept()
                with conn:
                    conn.sendall(conn.recv(100))

        thread = threading.Thread(target=one_line_per_connection, daemon=True)
        thread.start()
        code, events, out = run_client("telnet-client", telnet(port, send=["one", "two", "three"], reconnect=5.0),
                                       tmp_path)
        thread.join(5)
    assert code == 0, out
    assert [(e["why"], e["line"]) for e in named(events, "lost")] == [("closed", 1), ("closed", 2)]
    judged = outcome("client-1", code, events)
    assert all(r.passed for check in ("echo", "recovers") for r in checks.evaluate(check, {}, [judged]))  # unknown
    [echo] = checks.evaluate("echo", {}, [replace(judged, faults=())])
    assert not echo.passed and ": before sending 'two': the server closed the connection at +" in echo.detail
    assert echo.detail.endswith("with no fault in force (an echo server keeps the conversation open)")
    [recovers] = checks.evaluate("recovers", {}, [replace(judged, faults=())])
    assert not recovers.passed and "(closed by the server before the next line was sent), but no fault of the " \
        "timeline touches it or its server: the server's doing, not the network's" in recovers.detail
