"""Services watched for the whole run, reasons that name the cause, hints only for an expectation's
own fault, and one exit-code convention (128+N for signal N)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.checks import evaluate
from lab.execution import Execution, _code
from lab.grading import own_fault
from lab.orchestrator import check
from lab.outcome import CheckResult, NodeOutcome, last_error_line
from lab.plan import make_plan
from lab.reports import load_report
from lab.reports.html_report import node_state
from lab.rundir import RunDir
from lab.scenario import load_scenario_text
from lab.watch import NodeRun, peer_note, peer_of, runs_from_status, service_results
from tests.backend_double import ScriptedBackend

ROOT = Path(__file__).resolve().parents[2]


TRACEBACK = """Connected with 10.0.1.1:40000
Traceback (most recent call last):
  File "/srv/server.py", line 12, in <module>
    main()
  File "/srv/server.py", line 9, in main
    1 / 0
    ~~^~~
ZeroDivisionError: division by zero
"""

THREAD = """listening
Exception in thread Thread-1 (serve):
Traceback (most recent call last):
  File "/usr/lib/python3.11/threading.py", line 1038, in _bootstrap_inner
    self.run()
  File "/srv/server.py", line 7, in serve
    raise ValueError("bad line: " + line)
ValueError: bad line: hello
Connected with 10.0.1.2:40002
"""

CHAINED = """Traceback (most recent call last):
  File "x.py", line 2, in <module>
KeyError: 'a'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "x.py", line 4, in <module>
RuntimeError: lookup failed
"""

SYNTAX = """  File "/srv/server.py", line 3
    def serve(conn)
                   ^
SyntaxError: expected ':'
"""


@pytest.mark.parametrize(("log", "line"), [
    (TRACEBACK, "ZeroDivisionError: division by zero"),
    (THREAD, "ValueError: bad line: hello"),
    (CHAINED, "RuntimeError: lookup failed"),
    (SYNTAX, "SyntaxError: expected ':'"),
    (TRACEBACK + THREAD, "ValueError: bad line: hello"),
    ("socket.gaierror: [Errno -2] Name or service not known\nbye\n", "socket.gaierror: [Errno -2] Name or service "
     "not known"),
    ("Traceback (most recent call last):\n  File \"x.py\", line 1\n", ""),  # cut short, nothing after it
    ("listening on 9999\nbye\n", ""),
    ("", ""),
])
def test_last_error_line(log: str, line: str) -> None:
    assert last_error_line(log) == line


@pytest.mark.parametrize(("code", "words"), [
    (0, "code 0"), (3, "code 3"), (143, "code 143 (SIGTERM)"), (137, "code 137 (SIGKILL)"),
    (-15, "code 143 (SIGTERM)"), (None, "unknown status"), (255, "code 255"),
])
def test_exit_codes_are_worded_with_their_signal(code: int | None, words: str) -> None:
    assert _code(code) == words


def _runs(server_code: int | None, server_exit: float | None, client_exit: float | None,
          **server: object) -> dict[str, NodeRun]:
    return {
        "server": NodeRun("server", True, False, addresses=("10.0.1.10",), started_at=0.0, exited_at=server_exit,
                          code=server_code, **server),  # type: ignore[arg-type]
        "client-1": NodeRun("client-1", False, True, after=("server",), peer="server", peer_address="10.0.1.10",
                            started_at=0.1, exited_at=0.2, code=0),
        "client-2": NodeRun("client-2", False, True, after=("server",), peer="server", peer_address="10.0.1.10",
                            started_at=0.1, exited_at=client_exit, code=1),
        "router": NodeRun("router", False, False, addresses=("10.0.1.1",), started_at=0.0),
    }


def test_a_service_that_crashes_while_clients_run_fails_with_its_own_line() -> None:
    [result] = service_results(_runs(3, 0.4, 1.0), set(), lambda n: "ZeroDivisionError: division by zero")
    assert result == CheckResult("service", "server", False, "exited with code 3 at +0.4s while clients were "
                                 "running (ZeroDivisionError: division by zero)")


def test_a_service_killed_after_its_clients_finished() -> None:
    [result] = service_results(_runs(137, 1.5, 1.0), set(), lambda n: "")
    assert result.detail == "exited with code 137 (SIGKILL) at +1.5s after its clients finished"


@pytest.mark.parametrize("case", ["exit 0", "covered", "stopped by the lab", "failed start", "no code"])
def test_services_that_get_no_service_line(case: str) -> None:
    runs = {
        "exit 0": _runs(0, 0.4, 1.0),
        "covered": _runs(3, 0.4, 1.0),
        "stopped by the lab": _runs(143, None, 1.0, stopped_by_lab=True),
        "failed start": _runs(1, 0.1, None, failed_start=True),
        "no code": _runs(None, 0.4, 1.0),
    }[case]
    assert service_results(runs, {"server"} if case == "covered" else set(), lambda n: "") == []


THREAD_TRACEBACK = """Exception in thread Thread-2 (serve):
Traceback (most recent call last):
  File "/srv/server.py", line 9, in serve
    raise ValueError("bad line")
ValueError: bad line
"""


@pytest.mark.parametrize(("code", "log", "detail"), [
    (1, "", "exited with code 1 as the lab stopped it, after its clients finished"),
    (143, TRACEBACK, "crashed as the lab stopped it, after its clients finished (ZeroDivisionError: division by "
                     "zero)"),
])
def test_a_service_that_was_ending_as_the_lab_stopped_it_still_fails(code: int, log: str, detail: str) -> None:
    # A server that crashes a few ms after its last client: the lab's stop lands in its exit.
    runs = _runs(code, None, 1.0, stopped_by_lab=True)
    evidence = "ZeroDivisionError: division by zero" if log else ""
    [result] = service_results(runs, set(), lambda n: evidence, lambda n: log if n == "server" else "")
    assert result.detail == detail


@pytest.mark.parametrize("log", ["", THREAD_TRACEBACK, TRACEBACK + "Connected with 10.0.1.2:40000\n"])
def test_a_stopped_service_whose_log_does_not_end_in_its_own_crash_is_no_failure(log: str) -> None:
    runs = _runs(143, None, 1.0, stopped_by_lab=True)
    assert service_results(runs, set(), lambda n: "", lambda n: log if n == "server" else "") == []


REFUSED = [{"t": 1.0, "event": "start"}, {"t": 1.0, "event": "connecting"},
           {"t": 1.0, "event": "error", "kind": "refused", "during": "connect"}]
ANSWERED = [{"t": 1.0, "event": "connecting"}, {"t": 1.0, "event": "connected"},
            {"t": 1.1, "event": "closed", "by": "self"}]


def test_a_failed_client_points_at_what_its_server_did() -> None:
    runs = _runs(3, 0.4, 1.0)
    logs = {"server": TRACEBACK}
    note = peer_note(runs["client-2"], REFUSED, runs, logs.__getitem__)
    assert note == "server exited with code 3 at +0.4s; server's log: 'ZeroDivisionError: division by zero'"
    assert peer_note(runs["client-2"], ANSWERED, runs, logs.__getitem__) == ""
    running = _runs(None, None, 1.0)
    assert peer_note(running["client-2"], REFUSED, running, {"server": THREAD}.__getitem__) \
        == "server's log: 'ValueError: bad line: hello'"
    assert peer_note(running["client-2"], REFUSED, running, {"server": "ok\n"}.__getitem__) == ""


def test_the_peer_is_found_from_the_role_parameters() -> None:
    assert peer_of({"host": "10.0.1.10", "port": 9999, "target": "server:9999"}) == ("server", "10.0.1.10")
    assert peer_of({"host": "10.0.2.10", "host_header": "web:8080", "url": "http://web:8080/"}) == ("web", "10.0.2.10")
    assert peer_of({"host": "10.0.2.10", "url": "http://web/x"}) == ("web", "10.0.2.10")
    assert peer_of({"port": 9999}) == ("", "")


def _outcome(name: str, started: bool = True, **extra: str) -> NodeOutcome:
    return NodeOutcome(name, started, 1, False, "" if started else "not started: server exited with code 1 before "
                       "it was ready (SyntaxError: expected ':')", REFUSED if started else [], "", **extra)


def test_failing_details_carry_the_cause_and_the_peer_note_and_say_whether_the_node_ran() -> None:
    ran, blocked = evaluate("echo", {}, [
        _outcome("client-1", peer_note="server's log: 'ValueError: x'", cause="stopped at the output limit of 16 MiB"),
        _outcome("client-2", started=False),
    ])
    assert ran.detail.endswith("(stopped at the output limit of 16 MiB) (server's log: 'ValueError: x')")
    assert ran.ran and not blocked.ran
    assert blocked.detail == ("did not run: server exited with code 1 before it was ready "
                              "(SyntaxError: expected ':')")
    [passed] = evaluate("exit", {"code": 1}, [_outcome("client-1", peer_note="server's log: 'x'")])
    assert passed.passed and "server's log" not in passed.detail


def test_hints_only_for_an_expectation_s_own_fault(tmp_path: Path) -> None:
    def failed(ran: bool) -> CheckResult:
        return CheckResult("echo", "client", False, "no reply", ran)

    assert own_fault([failed(True), failed(False)])
    assert not own_fault([failed(False)])
    old = {"passed": False, "checks": [{"check": "echo", "node": "client", "passed": False, "detail": "no reply",
                                        "expectation": "echo client"}]}  # a report from before `ran` existed
    (tmp_path / "report.json").write_text(json.dumps(old))
    assert own_fault([e.result for e in load_report(tmp_path).results])


SCENARIO = """
name: t
timeout: 5s
networks: {lan: {subnet: 10.9.0.0/24}}
nodes:
  server:
    networks: [lan]
    run: serve
    ready: {tcp: 80}
  client:
    networks: [lan]
    after: server
    role: telnet-client
    with: {connect: "server:80", send: [hi]}
expect:
  - echo: client
"""


def test_the_orchestrator_s_check_reports_a_crashed_service_and_its_client_points_at_it(tmp_path: Path) -> None:
    plan = make_plan(load_scenario_text(SCENARIO, ROOT / "t.yaml"))
    backend = ScriptedBackend({"server": [("ready", None), ("exit", 3)], "client": [("ready", None), ("exit", 0)]})
    ex = Execution(plan, backend, lambda line: None, lambda name: "")
    ex.run()
    rundir = RunDir.create(tmp_path / "run", "t")
    rundir.log("server").write_text(TRACEBACK)
    rundir.transcript("client").write_text("\n".join(json.dumps(e) for e in REFUSED))
    results = check(plan, ex.states, rundir, {}, ex.t0)
    service = [v for v in results if v.result.check == "service"]
    assert [v.expectation for v in service] == ["service server"]
    assert "exited with code 3 at +0.0s" in service[0].result.detail
    assert service[0].result.detail.endswith("(ZeroDivisionError: division by zero)")
    [echo] = [v.result for v in results if v.result.check == "echo"]
    assert "connection refused" in echo.detail and "'ZeroDivisionError: division by zero'" in echo.detail
    assert "server exited with code 3" in echo.detail
    assert node_state(ex.states["server"], ex.t0) == "exited 3 at +0.0s (while serving)"
    assert node_state(ex.states["client"], ex.t0) == "exited 0 at +0.0s"


def test_a_blocked_node_and_a_stopped_one_in_words() -> None:
    plan = make_plan(load_scenario_text(SCENARIO, ROOT / "t.yaml"))
    backend = ScriptedBackend({"server": [("exit", 1)]})
    ex = Execution(plan, backend, lambda line: None, lambda name: "SyntaxError: expected ':'")
    ex.run()
    assert ex.states["client"].note.endswith("before it was ready (SyntaxError: expected ':')")
    assert node_state(ex.states["client"], ex.t0).startswith("did not start: server exited with code 1")
    backend = ScriptedBackend({"server": [("ready", None)], "client": [("ready", None), ("exit", 0)]})
    ex = Execution(plan, backend, lambda line: None, lambda name: "")
    ex.run()
    assert node_state(ex.states["server"], ex.t0) == "stopped by the lab (143 (SIGTERM))"


def test_a_kept_lab_s_status_gives_the_same_view() -> None:
    plan = {"nodes": [
        {"name": "server", "role": "echo-server", "run": None, "service": True, "after": [], "params": {"port": 1},
         "interfaces": [{"address": "10.0.1.10/24"}]},
        {"name": "client", "role": "telnet-client", "run": None, "service": False, "after": ["server"],
         "params": {"host": "10.0.1.10", "target": "server:1"}, "interfaces": [{"address": "10.0.1.11/24"}]},
    ]}
    status = {"server": {"started": True, "started_at": 0.0, "exited_at": 0.5, "exit_code": 3},
              "client": {"started": True, "started_at": 0.1, "exited_at": None, "exit_code": None}}
    runs = runs_from_status(plan, status)
    [result] = service_results(runs, set(), lambda n: "")
    assert result.detail == "exited with code 3 at +0.5s while clients were running"
    assert peer_note(runs["client"], REFUSED, runs, lambda n: "") == "server exited with code 3 at +0.5s"
