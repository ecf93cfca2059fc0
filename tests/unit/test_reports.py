"""The reports layer: report.json written and read back by one pair of functions, one expectation
table for `lab run` and `lab check`, and a report written however a run ends."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from lab import cli, lifecycle, orchestrator
from lab.backends import EXITED, READY, Event, Placement
from lab.outcome import CheckResult, Checks, ExpectationResult, RunResult
from lab.plan import NodePlan, Plan, make_plan
from lab.reports import load_report, write_reports
from lab.reports.terminal import MAX_FAILURES_SHOWN, expectation_table, table
from lab.rundir import RunDir
from lab.scenario import load_scenario, load_scenario_text
from lab.signals import SignalGuard

ROOT = Path(__file__).resolve().parents[2]


def _result(tmp_path: Path, results: list[ExpectationResult], **kw: Any) -> RunResult:
    plan = make_plan(load_scenario(ROOT / "scenarios" / "echo.yaml"))
    rundir = RunDir.create(tmp_path / "run", plan.name)
    return RunResult(plan, rundir, "netns", "abcd1234", 1_700_000_000.0, duration=1.25, results=results, **kw)


def _echo(node: str, passed: bool, ran: bool = True) -> ExpectationResult:
    return ExpectationResult("echo client", CheckResult("echo", node, passed, f"{node}: detail", ran))


def test_a_report_reads_back_as_it_was_written(tmp_path: Path) -> None:
    results = [_echo("client-1", True), _echo("client-2", False), _echo("client-3", False, ran=False)]
    result = _result(tmp_path, results, error="teardown incomplete", timed_out=True, interrupted=15)
    write_reports(result)
    assert sorted(p.name for p in result.rundir.root.iterdir()) == ["junit.xml", "nodes", "report.html",
                                                                   "report.json"]  # no temporary file left
    report = load_report(result.rundir.root)
    assert report.results == results
    assert (report.passed, report.error, report.timed_out, report.interrupted, report.duration) == (
        False, "teardown incomplete", True, 15, 1.25)
    assert (report.scenario, report.backend, report.lab_id) == ("echo", "netns", "abcd1234")
    assert "captures" not in json.loads(result.rundir.file("report.json").read_text())  # the run captured nothing


def test_what_is_no_report_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_report(tmp_path)
    for text in ("[]", "{}", '{"passed": true, "checks": [{"check": "echo"}]}', "not json"):
        (tmp_path / "report.json").write_text(text)
        with pytest.raises(ValueError):
            load_report(tmp_path)


def test_the_expectation_table_lists_a_few_failing_nodes(tmp_path: Path) -> None:
    bad = [_echo(f"client-{k}", False) for k in range(MAX_FAILURES_SHOWN + 2)]
    lines = expectation_table([ExpectationResult("service server", CheckResult("service", "server", False, "x")),
                               _echo("client-0", True), *bad])
    assert lines[0].split() == ["EXPECTATION", "RESULT", "DETAIL"]
    assert lines[1].split() == ["service", "server", "FAIL", "x"]
    assert lines[2].split()[:5] == ["echo", "client", "FAIL", f"1/{len(bad) + 1}", "nodes"]
    assert len(lines) == 3 + MAX_FAILURES_SHOWN + 1 and lines[-1].strip() == "... and 2 more (report.json)"


def test_lab_check_prints_the_table_lab_run_prints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    results = [_echo("client-1", True), _echo("client-2", False)]
    monkeypatch.setattr(lifecycle, "check_now", lambda ref: results)
    assert cli.cmd_check("abcd") == 1
    printed = capsys.readouterr().out.splitlines()
    assert printed == expectation_table(results) == table(_result(tmp_path, results)).splitlines()[:-1]


SCENARIO = """
name: t
timeout: 5s
networks: {lan: {subnet: 10.9.0.0/24}}
nodes:
  server:
    networks: [lan]
    run: serve
    ready: {tcp: 80, timeout: 1s}
  client:
    networks: [lan]
    after: server
    run: fetch
expect:
  - exit: {nodes: client, code: 0}
"""


class QuietBackend:
    """Every node comes up and exits 0 at once; `on_up` runs as the backend comes up."""

    name = "fake"

    def __init__(self, on_up: Any = None) -> None:
        self.on_up = on_up
        self.queue: list[Event] = []

    def check(self, plan: Plan) -> None: ...
    def up(self, plan: Plan, rundir: RunDir) -> None:
        if self.on_up:
            self.on_up()

    def start(self, node: NodePlan) -> bool:
        self.queue += [Event(node.name, READY), Event(node.name, EXITED, 0)]
        return True

    def poll(self, timeout: float) -> list[Event]:
        events, self.queue = self.queue, []
        return events

    def release(self, nodes: list[str]) -> None: ...
    def stop(self, nodes: list[str], grace: float) -> dict[str, int | None]: return {}
    def exit_code(self, node: str) -> int | None: return None
    def down(self) -> None: ...
    def placements(self) -> dict[str, Placement]: return {}
    def changes_process(self) -> bool: return False
    def notes(self) -> list[str]: return []


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: QuietBackend,
         guard: SignalGuard | None = None) -> RunResult:
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(orchestrator.backends, "create", lambda name, journal, options: backend)
    scenario = load_scenario_text(SCENARIO, tmp_path / "t.yaml")
    return orchestrator.run(scenario, "fake", tmp_path / "run", progress=lambda line: None, guard=guard)


def test_a_run_returns_its_result_with_its_report_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run(tmp_path, monkeypatch, QuietBackend())
    assert result.passed and [e.expectation for e in result.results] == ["exit client"]
    assert load_report(tmp_path / "run").results == result.results


def test_an_interrupted_run_has_its_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    guard = SignalGuard()  # the caller's; a signal arrives while the backend comes up
    result = _run(tmp_path, monkeypatch, QuietBackend(lambda: guard.seen.append(signal.SIGINT)), guard)
    assert result.exit_code == 130
    assert json.loads((tmp_path / "run" / "report.json").read_text())["interrupted"] == signal.SIGINT


def test_a_run_whose_checking_fails_still_leaves_a_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> list[ExpectationResult]:
        raise RuntimeError("a bug in a check")

    monkeypatch.setattr(orchestrator, "check", broken)
    with pytest.raises(RuntimeError):
        _run(tmp_path, monkeypatch, QuietBackend())
    assert load_report(tmp_path / "run").results == []


def test_the_report_says_where_the_time_went(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each phase's start and end and each node's moments, on one clock, in the order they happen."""
    _run(tmp_path, monkeypatch, QuietBackend())
    timings = json.loads((tmp_path / "run" / "report.json").read_text())["timings"]
    phases = timings["phases"]
    assert list(phases) == ["plan", "up", "run", "down", "check"]
    order = [t for name in phases for t in (phases[name]["start"], phases[name]["end"])]
    assert order == sorted(order) and phases["plan"]["start"] == 0
    assert all(abs(p["seconds"] - (p["end"] - p["start"])) < 1e-3 for p in phases.values())
    for node in ("server", "client"):
        moments = timings["nodes"][node]
        assert None not in moments.values(), moments
        assert phases["up"]["end"] == moments["created"] <= moments["started"] <= moments["ready"] \
            <= moments["exited"] <= phases["run"]["end"], moments
    assert timings["nodes"]["server"]["ready"] <= timings["nodes"]["client"]["started"]  # after: server


def test_a_result_in_an_assertion_is_short_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`assert result.passed` shows a one-line repr (not the whole plan); `assert_passed()` fails with
    each failing expectation, its node and detail, and the run folder."""
    result = _run(tmp_path, monkeypatch, QuietBackend())
    assert repr(result).startswith("<RunResult t PASSED (1/1 checks passed") and len(repr(result)) < 200
    result.assert_passed()
    failing = CheckResult("echo", "client-1", False, "expected 'hi', got 'HI'")
    result.results = [ExpectationResult("echo client", failing)]
    with pytest.raises(AssertionError) as failed:
        result.assert_passed()
    lines = str(failed.value).splitlines()
    assert lines[0].startswith("lab t FAILED") and "  echo client: client-1: expected 'hi', got 'HI'" in lines
    assert lines[-1] == f"run folder: {tmp_path / 'run'} (report.html)"


def test_checks_now_say_their_verdict_and_each_failure() -> None:
    good, bad = CheckResult("echo", "a", True, "echoed"), CheckResult("echo", "b", False, "no reply")
    assert Checks([good]).passed and not Checks([good, bad]).passed
    assert repr(Checks([good, bad], "runs/x")) == "<Checks: 1/2 passed; failed: [<echo b: FAIL: no reply>]>"
    with pytest.raises(AssertionError, match=r"(?s)1 of 2 check\(s\) failed:\n  echo b: no reply\nrun folder: runs/x"):
        Checks([good, bad], "runs/x").assert_passed()


def test_the_report_has_each_captured_network_and_its_connections(tmp_path: Path) -> None:
    """`captures`: per network its pcap, the capturer's counts and each TCP connection on the lab's clock."""
    from tests.unit.test_html_report import _captured

    result = _captured(_result(tmp_path, [_echo("client-1", True)]))
    write_reports(result)
    captures = json.loads(result.rundir.file("report.json").read_text())["captures"]
    assert list(captures) == ["lan"]
    lan = captures["lan"]
    assert {k: lan[k] for k in ("file", "packets", "bytes", "over_limit", "kernel_drops", "truncated",
                                "more_connections")} == {"file": "captures/lan.pcap", "packets": 10, "bytes": 900,
                                                         "over_limit": 3, "kernel_drops": 0, "truncated": False,
                                                         "more_connections": 0}
    echo, refused = lan["connections"]
    assert {k: echo[k] for k in ("client_node", "server", "server_node", "outcome", "syns", "handshake", "bytes_out",
                                 "bytes_in", "retransmissions", "closed", "closed_by")} == {
        "client_node": "client-1", "server": "10.0.1.10:9999", "server_node": "server", "outcome": "closed",
        "syns": 1, "handshake": True, "bytes_out": 12, "bytes_in": 12, "retransmissions": 0, "closed": 2.02,
        "closed_by": "client-1"}
    assert [(e["t"], e["event"], e["from"], e["to"]) for e in echo["events"]][:2] == [
        (2.0, "SYN", "client-1:40112", "server:9999"), (2.001, "SYN-ACK", "server:9999", "client-1:40112")]
    assert echo["summary"].startswith("client-1:40112 -> server:9999 opened 2.000s (SYN 2.000, SYN-ACK 2.001")
    assert (refused["outcome"], refused["client_node"], refused["closed_by"]) == ("refused", "client-2", "server")
    assert load_report(result.rundir.root).passed  # the report still reads back


def test_exec_results_keep_the_exact_bytes() -> None:
    from lab.backends import ExecResult

    done = ExecResult(["x"], 0, b"hello\r\nworld\r\n\xff", b"")
    assert done.stdout_bytes == b"hello\r\nworld\r\n\xff" and done.stdout.startswith("hello\nworld\n")
    assert done.returncode == 0 and done.stderr == ""
