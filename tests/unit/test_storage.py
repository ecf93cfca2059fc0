"""A full disk or an unwritable folder (the run folder, the journal, the state folder) is exit 3 with
one line naming the path and the error; what was decided (the verdict) is still printed, what fits
is kept, and nothing is left behind. ENOSPC is real here: /dev/full refuses every write."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lab.backends import BACKENDS
from lab.cli import main
from tests.backend_double import TOY_SCENARIO


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scenario on the toy backend (tests/backend_double.py), with the state folder in tmp_path."""
    monkeypatch.setitem(BACKENDS, "toy", "tests.backend_double:ToyBackend")
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "toy.yaml").write_text(TOY_SCENARIO)
    return tmp_path / "toy.yaml"


def _run(scenario: Path, out: Path) -> int:
    return main(["run", str(scenario), "--backend", "toy", "--out", str(out)])


def test_a_report_the_disk_refuses_is_exit_3_and_the_verdict_is_still_printed(
        toy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    os.symlink("/dev/full", out / ".report.json.tmp")  # report.json is written there first
    assert _run(toy, out) == 3
    printed = capsys.readouterr().out.splitlines()
    assert printed[1].split()[:3] == ["exit", "prober", "pass"]  # the verdict, as decided
    assert f"error: cannot write {out / 'report.json'}: No space left on device" in printed
    assert (out / "junit.xml").exists() and (out / "report.html").exists()  # what fits is kept
    state = tmp_path / "state"
    assert not state.exists() or not any(state.iterdir())  # the lab is down and its journal gone


def test_a_run_folder_that_cannot_be_made_is_one_line_and_nothing_is_created(
        toy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(toy, Path("/dev/full/run")) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("lab: error: cannot write /dev/full/run/nodes: ")
    assert not (tmp_path / "state").exists()


def test_a_state_folder_that_cannot_be_written_is_one_line_and_the_run_folder_says_so(
        toy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LAB_STATE_DIR", "/dev/full/lab")
    out = tmp_path / "run"
    assert _run(toy, out) == 3
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("lab toy: starting")
    assert err[1].startswith("lab: error: cannot write /dev/full: ")  # the path, then the system's words
    report = json.loads((out / "report.json").read_text())  # the run folder was made: its report says so
    assert not report["passed"] and report["exit_code"] == 3 and report["error"].startswith("cannot write /dev/full")
