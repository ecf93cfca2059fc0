"""The `lab` console script: exit codes and one-line errors, without root."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lab.api
from lab.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _signals_restored() -> Iterator[None]:
    """`lab run` leaves SIG_IGN behind (its outcome is decided): not in the test session."""
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in old.items():
        signal.signal(sig, handler)


def test_validate_ok_and_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnetworks: {lan: {subnet: 10.0.0.0/24}}\n"
                   "nodes:\n  a: {networks: [lan], rol: echo-server}\n")
    assert main(["validate", str(ROOT / "scenarios" / "echo.yaml")]) == 0
    assert "ok:" in capsys.readouterr().out
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{bad}:4:") and "did you mean 'role'" in err and "Traceback" not in err


def test_not_root_on_a_kernel_without_user_namespaces_exits_3_before_creating_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from lab.backends import rootless

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path / "state"))
    knob = tmp_path / "unprivileged_userns_clone"
    knob.write_text("0\n")
    monkeypatch.setattr(rootless, "KNOBS", ((str(knob), "0", "sysctl -w kernel.unprivileged_userns_clone=1"),))
    code = main(["run", str(ROOT / "scenarios" / "echo.yaml"), "--out", str(tmp_path / "run")])
    assert code == 3
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 1 and "unprivileged_userns_clone" in errors[0]  # one line, no "starting" before it
    assert not (tmp_path / "run").exists() and not (tmp_path / "state").exists()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_the_scenario_loads_is_an_orderly_exit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        sig: signal.Signals, code: int) -> None:
    """Delivered while the scenario loads (the guard is in, the run has not started): the exact code,
    one line, nothing created."""
    load = lab.api.load_scenario

    def signalled_load(path: Any) -> Any:
        os.kill(os.getpid(), sig)
        return load(path)

    monkeypatch.setattr(lab.api, "load_scenario", signalled_load)
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path / "state"))
    assert main(["run", str(ROOT / "scenarios" / "echo.yaml"), "--out", str(tmp_path / "run")]) == code
    assert capsys.readouterr().err.splitlines() == [f"lab: interrupted (signal {int(sig)}) before the lab was created"]
    assert not (tmp_path / "run").exists() and not (tmp_path / "state").exists()


def test_clean_drops_a_state_folder_a_killed_lab_left_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """SIGKILL between the state folder's creation and the lab's own folder's leaves it empty, with no
    journal to find it by: `lab clean` still leaves the host as it was."""
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "state").mkdir()
    assert main(["clean"]) == 0
    assert capsys.readouterr().out.strip() == "nothing to clean"
    assert not (tmp_path / "state").exists()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "netns-dir-created").write_text("mounted\n")  # not empty: not ours to drop here
    main(["clean"])
    assert (tmp_path / "state" / "netns-dir-created").exists()


def test_the_advice_to_run_as_root_names_the_program_that_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """`sudo lab` finds no `lab` in a virtualenv (sudo has a PATH of its own): the advice is the
    very command line again, with its absolute program."""
    import sys

    from lab.backends.fabric import as_root

    monkeypatch.setattr(sys, "argv", [".venv/bin/lab", "run", "my lab.yaml", "--backend", "docker"])
    assert as_root() == f"sudo {Path('.venv/bin/lab').absolute()} run 'my lab.yaml' --backend docker"
    monkeypatch.setattr(sys, "argv", ["/x/lab/__main__.py", "run", "a.yaml"])
    assert as_root() == f"sudo {sys.executable} -m lab run a.yaml"
