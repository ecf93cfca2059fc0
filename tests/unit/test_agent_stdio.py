"""The node agent's stdio channel (swarm backend): "go" on stdin, status facts on stdout, the
node's own output in its log file. Run as a plain process: no container or root needed."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


DEADLINE = 30.0  # s for anything awaited here (an agent and a tiny program: well under a second)


def start_agent(tmp_path: Path, spec: dict[str, Any]) -> subprocess.Popen[bytes]:
    spec = {"channel": "stdio", "log": str(tmp_path / "n.log"), "transcript": str(tmp_path / "n.jsonl"),
            "cwd": str(tmp_path), **spec}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "LAB_SPEC": str(tmp_path / "spec.json"), "PYTHONPATH": str(ROOT), "LAB_NODE": "n"}
    return subprocess.Popen([sys.executable, "-S", "-m", "lab.roles.agent"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def node_log(tmp_path: Path) -> str:
    return (tmp_path / "n.log").read_text() if (tmp_path / "n.log").exists() else ""


def agent(tmp_path: Path, spec: dict[str, Any], stdin: bytes) -> tuple[int, list[str], str]:
    proc = start_agent(tmp_path, spec)
    stdout, _ = proc.communicate(stdin, timeout=DEADLINE)
    return proc.returncode, stdout.decode().splitlines(), node_log(tmp_path)


def first_fact(proc: subprocess.Popen[bytes]) -> str:
    """The agent's first line on its channel, awaited with a deadline (the agent keeps running)."""
    assert proc.stdout is not None
    line = b""
    while not line.endswith(b"\n"):
        assert select.select([proc.stdout], [], [], DEADLINE)[0], f"no fact within {DEADLINE:g}s: {line!r}"
        chunk = os.read(proc.stdout.fileno(), 1)
        assert chunk, f"the channel ended: {line!r}"
        line += chunk
    return line.decode().rstrip("\n")


def until_logged(tmp_path: Path, text: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while text not in node_log(tmp_path):
        assert time.monotonic() < deadline, f"never logged {text!r}: {node_log(tmp_path)!r}"
        time.sleep(0.005)


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
    # A listener on loopback only is never ready: no other node could connect to it. The program
    # serves one connection and leaves; the test connects once the program listens and, on any
    # address but loopback, once the agent has said `ready`: no time is guessed.
    probe = socket.socket()
    probe.bind(("0.0.0.0", 0))
    port = probe.getsockname()[1]
    probe.close()
    server = (f"import socket; s = socket.socket(); s.bind(('{host}', {port})); s.listen(); "
              "print('listening', flush=True); s.accept()")
    proc = start_agent(tmp_path, {"argv": [sys.executable, "-c", server], "ready_tcp": port})
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        until_logged(tmp_path, "listening")
        seen = [first_fact(proc)] if facts[0] == "LAB-AGENT ready" else []
        socket.create_connection(("127.0.0.1", port), timeout=DEADLINE).close()
        stdout, _ = proc.communicate(timeout=DEADLINE)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0
    assert seen + stdout.decode().splitlines() == facts


def test_a_program_that_never_listens_is_never_ready(tmp_path: Path) -> None:
    code, lines, _ = agent(tmp_path, {"argv": ["true"], "ready_tcp": 1}, b"go\n")
    assert code == 0 and lines == ["LAB-AGENT exit 0"]
