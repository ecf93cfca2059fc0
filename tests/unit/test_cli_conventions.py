"""The command line as people expect it, table-driven: every positional and option has a help line,
`--help` ends with the exit codes (and `run --help` with examples), `--version`, a mistyped choice is
a usage error (exit 2) naming the closest, `ps --json` / `ps LAB`, `logs --tail`, `clean LAB`,
`down` exiting 1 on a failed lab, `-q`/`-qq`/`-v`, and tables that never run into the next column.
Labs are journals written here (no root, nothing started)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import pytest

import lab
from lab import cli, lifecycle
from lab.cliargs import parser
from lab.outcome import CheckResult, ExpectationResult
from lab.reports import Report
from lab.reports.terminal import row

ROOT = Path(__file__).resolve().parents[2]
ECHO = str(ROOT / "scenarios" / "echo.yaml")


def exit_code(argv: list[str]) -> int:
    """What `lab ARGV` exits with (argparse's own usage errors leave through SystemExit)."""
    try:
        return cli.main(argv)
    except SystemExit as e:
        return int(e.code or 0)


def commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("name", sorted(commands()))
def test_every_positional_and_option_has_a_help_line_and_the_exit_codes(name: str, capsys: Any) -> None:
    command = commands()[name]
    missing = [a.dest for a in command._actions if not a.help or a.help == argparse.SUPPRESS]
    assert not missing, f"lab {name}: no help for {missing}"
    assert exit_code([name, "--help"]) == 0
    text = capsys.readouterr().out
    codes = text[text.index("exit codes:"):]
    assert all(f"  {code} " in codes or f"{code}:" in codes for code in (0, 1, 2, 3, 130, 143)), codes


def test_run_help_ends_with_examples_then_the_exit_codes(capsys: Any) -> None:
    exit_code(["run", "--help"])
    text = capsys.readouterr().out
    assert text.index("examples:") < text.index("exit codes:") and "lab run scenarios/echo.yaml" in text


def test_the_top_help_lists_every_command_and_no_internal_one(capsys: Any) -> None:
    exit_code(["--help"])
    text = capsys.readouterr().out
    assert all(f"    {name}" in text for name in commands()) and "keep" not in commands()


def test_version(capsys: Any) -> None:
    assert exit_code(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"lab {lab.__version__}"


@pytest.mark.parametrize(("argv", "closest"), [
    (["run", ECHO, "--backend", "dokcer"], "'docker'"),
    (["up", ECHO, "--backend", "netn"], "'netns'"),
    (["grade", str(ROOT / "scenarios" / "grade-echo.yaml"), ".", "--node", "server", "--backend", "swarn"], "'swarm'"),
    (["cluster", "dwon"], "'down'"),
])
def test_a_mistyped_choice_is_a_usage_error_that_names_the_closest(argv: list[str], closest: str, capsys: Any,
                                                                   tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    assert f"did you mean {closest}?" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # nothing was created


# -- labs as their journals say them ---------------------------------------------------------------
def _journal(state: Path, lab_id: str, run_dir: Path, *, pid: int, status: dict[str, Any] | None = None) -> None:
    """A lab as `lab up` leaves it: its journal (meta, status) and its run folder (plan, logs)."""
    folder = state / lab_id
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"id": lab_id, "pid": pid, "pid_start": _start(pid),
                                                  "started": 1.0, "name": "echo", "backend": "netns",
                                                  "run_dir": str(run_dir), "kept": True}))
    (folder / "status.json").write_text(json.dumps(status or {}))
    (run_dir / "nodes").mkdir(parents=True)
    nodes = [{"name": n, "interfaces": [{"name": "eth0", "network": "lan", "address": f"10.0.0.{k}/24"}]}
             for k, n in enumerate(("server", "client"), 1)]
    (run_dir / "plan.json").write_text(json.dumps({"nodes": nodes}))


def _start(pid: int) -> int | None:
    from lab.journal import process_start

    return process_start(pid)


@pytest.fixture
def state(tmp_path: Path, monkeypatch: Any) -> Path:
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def test_ps_as_json_and_one_labs_nodes(state: Path, tmp_path: Path, capsys: Any) -> None:
    _journal(state, "abcd1234", tmp_path / "run", pid=os.getpid(), status={
        "server": {"started": True, "ready": True, "exited": False, "started_at": 0.1},
        "client": {"started": True, "exited": True, "exit_code": 3, "started_at": 0.2, "exited_at": 1.2}})
    assert exit_code(["ps", "--json"]) == 0
    (info,) = json.loads(capsys.readouterr().out)
    assert info["id"] == "abcd1234" and info["nodes"] == 2 and info["state"] == "kept"
    assert exit_code(["ps", "abcd", "--json"]) == 0
    nodes = {n["name"]: n for n in json.loads(capsys.readouterr().out)}
    assert nodes["server"]["state"] == "ready" and nodes["server"]["addresses"] == {"eth0": "10.0.0.1/24"}
    assert nodes["client"]["state"] == "exited" and nodes["client"]["exit_code"] == 3
    assert nodes["client"]["uptime"] == pytest.approx(1.0)
    assert exit_code(["ps", "abcd"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:5] == ["NODE", "STATE", "EXIT", "HOST", "UPTIME"] and "10.0.0.2/24 (eth0)" in table[2]


def test_logs_tail_gives_each_nodes_last_lines(state: Path, tmp_path: Path, capsys: Any) -> None:
    _journal(state, "abcd1234", tmp_path / "run", pid=os.getpid())
    for node in ("server", "client"):
        (tmp_path / "run" / "nodes" / f"{node}.log").write_text("".join(f"{node} {k}\n" for k in range(10)))
    assert exit_code(["logs", "abcd1234", "--tail", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == ["server | server 8", "server | server 9",
                                                    "client | client 8", "client | client 9"]
    assert exit_code(["logs", "abcd1234", "client", "-n", "1"]) == 0
    assert capsys.readouterr().out.splitlines() == ["client 9"]


def test_clean_one_lab_leaves_the_others(state: Path, tmp_path: Path, capsys: Any) -> None:
    dead = 2 ** 22 + 1  # above pid_max's default: no process has it
    _journal(state, "dead0001", tmp_path / "a", pid=dead)
    _journal(state, "dead0002", tmp_path / "b", pid=dead)
    assert exit_code(["clean", "dead0001"]) == 0
    assert "cleaned lab dead0001" in capsys.readouterr().out
    assert sorted(p.name for p in state.iterdir()) == ["dead0002"]
    _journal(state, "live0001", tmp_path / "c", pid=os.getpid())
    assert exit_code(["clean", "live0001"]) == 0  # a running lab is left alone, and says how to stop it
    assert "lab down live0001" in capsys.readouterr().out and (state / "live0001").exists()
    assert exit_code(["clean", "nope"]) == 2


def _report(passed: bool) -> Report:
    result = CheckResult("echo", "client-1", passed, "echoed" if passed else "expected 'hi', got 'HI'")
    return Report(passed=passed, results=[ExpectationResult("echo client", result)],
                  phases={"plan": (0.0, 0.01), "up": (0.01, 0.5), "run": (0.5, 1.5), "down": (1.5, 1.7)})


@pytest.mark.parametrize(("passed", "code"), [(True, 0), (False, 1)])
def test_down_exits_1_when_the_lab_failed(passed: bool, code: int, monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.setattr(lifecycle, "take_down", lambda ref: ("abcd1234", Path("runs/x"), _report(passed)))
    assert exit_code(["down", "abcd1234", "-v"]) == code
    out = capsys.readouterr().out
    assert "runs/x (report.html)" in out and "FAILED (echo client-1)" in out if not passed else "PASSED" in out
    assert "run " in out and "59%" in out  # -v: each phase and its share (run: 1.0 s of 1.7 s)
    assert exit_code(["down", "abcd1234", "-qq"]) == code
    assert (capsys.readouterr().out == "") == passed  # -qq: nothing when it went well


def test_a_table_cell_never_runs_into_the_next_column() -> None:
    line = row(("a-very-long-scenario-name", "nobody"), (10, 8), "runs/x")
    assert line == "a-very-lo… nobody   runs/x"
