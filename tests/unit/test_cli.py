"""The `lab` console script: exit codes and one-line errors, without root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_validate_ok_and_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnetworks: {lan: {subnet: 10.0.0.0/24}}\n"
                   "nodes:\n  a: {networks: [lan], rol: echo-server}\n")
    assert main(["validate", str(ROOT / "scenarios" / "echo.yaml")]) == 0
    assert "ok:" in capsys.readouterr().out
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{bad}:4:") and "did you mean 'role'" in err and "Traceback" not in err


def test_not_root_exits_3_before_creating_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path / "state"))
    code = main(["run", str(ROOT / "scenarios" / "echo.yaml"), "--out", str(tmp_path / "run")])
    assert code == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs root" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "state").exists()


def test_unknown_backend_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", str(ROOT / "scenarios" / "echo.yaml"), "--backend", "nope", "--out", str(tmp_path / "r")])
    assert code == 3
    assert "unknown backend 'nope'" in capsys.readouterr().err
