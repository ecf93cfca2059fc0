"""The node agent's stdio channel (swarm backend): "go" on stdin, status facts on stdout, the
node's own output in its log file. Run as a plain process: no container or root needed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def agent(tmp_path: Path, spec: dict[str, Any], stdin: bytes) -> tuple[int, list[str], str]:
    spec = {"channel": "stdio", "log": str(tmp_path / "n.log"), "transcript": str(tmp_path / "n.jsonl"),
            "cwd": str(tmp_path), **spec}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "LAB_SPEC": str(tmp_path / "spec.json"), "PYTHONPATH": str(ROOT), "LAB_NODE": "n"}
    done = subprocess.run([sys.executable, "-S", "-m", "lab.roles.agent"], input=stdin, capture_output=True,
                          env=env, timeout=30)
    log = (tmp_path / "n.log").read_text() if (tmp_path / "n.log").exists() else ""
    return done.returncode, done.stdout.decode().splitlines(), log


def test_program_runs_after_go_and_its_exit_code_is_reported(tmp_path: Path) -> None:
    code, lines, log = agent(tmp_path, {"argv": ["sh", "-c", "echo out; exit 3"]}, b"go\n")
    assert code == 3
    assert lines == ["LAB-AGENT exit 3"]
    assert log == "out\n"  # the program's output goes to the log, never onto the channel


def test_eof_before_go_means_the_lab_went_away(tmp_path: Path) -> None:
    code, lines, log = agent(tmp_path, {"argv": ["sh", "-c", "echo should-not-run"]}, b"")
    assert code == 125 and lines == []
    assert "went away" in log and "should-not-run" not in log


@pytest.mark.parametrize(("host", "facts"), [("0.0.0.0", ["LAB-AGENT ready", "LAB-AGENT exit 0"]),
                                              ("127.0.0.1", ["LAB-AGENT exit 0"])])
def test_tcp_readiness_is_observed_inside(tmp_path: Path, host: str, facts: list[str]) -> None:
    # A listener on loopback only is never ready: no other node could connect to it.
    probe = socket.socket()
    probe.bind(("0.0.0.0", 0))
    port = probe.getsockname()[1]
    probe.close()
    server = (f"import socket, time; s = socket.socket(); s.bind(('{host}', {port})); s.listen(); "
              "time.sleep(0.5)")
    code, lines, _ = agent(tmp_path, {"argv": [sys.executable, "-c", server], "ready_tcp": port}, b"go\n")
    assert code == 0
    assert lines == facts


def test_a_program_that_never_listens_is_never_ready(tmp_path: Path) -> None:
    code, lines, _ = agent(tmp_path, {"argv": ["true"], "ready_tcp": 1}, b"go\n")
    assert code == 0 and lines == ["LAB-AGENT exit 0"]
