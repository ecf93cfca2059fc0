"""A run whose backend changes its process (a lab without root) happens in a child process when the
caller is a library user (lab/forked.py): the caller gets the same result, progress lines and
errors as in-process, its own process is left as it was, and a signal it receives reaches the lab
once. No root needed: a backend double says it changes its process."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from lab import forked, orchestrator
from lab.errors import Interrupted, StorageProblem
from lab.reports.json_report import load_report
from lab.scenario import load_scenario_text
from lab.signals import SignalGuard
from tests.unit.test_reports import SCENARIO, QuietBackend


class ChangingBackend(QuietBackend):
    """Records the pid its `up` ran in (the run's process) in the run folder."""

    def changes_process(self) -> bool:
        return True

    def up(self, plan: Any, rundir: Any) -> None:
        rundir.write("up-pid", str(os.getpid()))
        super().up(plan, rundir)


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: QuietBackend, **kw: Any) -> Any:
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(orchestrator.backends, "create", lambda name, journal, options: backend)
    lines: list[str] = []
    result = orchestrator.run(load_scenario_text(SCENARIO, tmp_path / "t.yaml"), "fake", tmp_path / "run",
                              progress=lines.append, **kw)
    return result, lines


def test_a_library_callers_run_happens_in_a_child_with_the_same_result(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    result, lines = _run(tmp_path, monkeypatch, ChangingBackend())
    ran_in = int((tmp_path / "run" / "up-pid").read_text())
    assert ran_in != os.getpid()  # the caller's process was never the lab's
    assert result.passed and [e.expectation for e in result.results] == ["exit client"]
    assert load_report(tmp_path / "run").results == result.results
    assert any(f"(pid {os.getpid()})" in line for line in lines)  # signals go to the caller: it forwards them


def test_the_lab_command_runs_in_its_own_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, _ = _run(tmp_path, monkeypatch, ChangingBackend(), own_process=True)
    assert int((tmp_path / "run" / "up-pid").read_text()) == os.getpid() and result.passed


def test_a_signal_to_the_caller_reaches_the_lab_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parent = os.getpid()
    with SignalGuard() as guard:
        def ctrl_c() -> None:  # at the caller, mid-up; up ends once the lab (this child) has it
            os.kill(parent, signal.SIGINT)
            deadline = time.monotonic() + 10
            while not guard.seen and time.monotonic() < deadline:  # (the child's copy of the guard)
                time.sleep(0.001)

        result, lines = _run(tmp_path, monkeypatch, ChangingBackend(ctrl_c), guard=guard)
    assert result.interrupted == signal.SIGINT and result.exit_code == 130  # once: a second would leave at once
    assert any("interrupted (signal 2)" in line for line in lines)


def test_errors_come_back_whole(tmp_path: Path) -> None:
    """The lab's own errors with every field (whatever their __init__ takes), and a bug as itself."""
    def failing(error: BaseException) -> Any:
        def body(progress: Any) -> Any:
            progress("before")
            raise error
        return body

    for error in (Interrupted(15), StorageProblem(tmp_path, OSError(28, "No space left on device")),
                  RuntimeError("a bug")):
        lines: list[str] = []
        with SignalGuard() as guard, pytest.raises(type(error)) as got:
            forked.run(failing(error), lines.append, guard)
        assert lines == ["before"] and str(got.value) == str(error)
        assert getattr(got.value, "__dict__", {}) == getattr(error, "__dict__", {})
