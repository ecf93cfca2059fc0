"""Verdicts you can trust: services watched for the whole run, reasons that name the cause, servers
that survive a peer hanging up, and the output limit named, on both backends.

Each scenario of scenarios/verdicts/ runs from a staged folder that holds it and a copy of
programs/ (a node's `files:` must lie inside its scenario's folder)."""

from __future__ import annotations

import errno
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

from .conftest import HERE, door, lab, until

SCENARIOS = HERE / "scenarios" / "verdicts"
PROGRAMS = HERE / "programs"


def _stage(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / "lab"
    if not folder.exists():
        shutil.copytree(PROGRAMS, folder / "programs")
    shutil.copy(SCENARIOS / f"{name}.yaml", folder / f"{name}.yaml")
    return folder / f"{name}.yaml"


def _failed(run: Any, check: str) -> list[dict[str, Any]]:
    return [c for c in run.checks(check) if not c["passed"]]


def _node(run: Any, name: str) -> dict[str, Any]:
    return next(n for n in run.report["nodes"] if n["name"] == name)


def test_a_server_that_exits_3_mid_run_fails_with_its_own_line(run_lab, tmp_path: Path) -> None:
    t = time.monotonic()
    run = run_lab(_stage(tmp_path, "exit-mid-run"))
    assert time.monotonic() - t < 30
    assert run.code == 1, run.stderr
    [service] = run.checks("service")
    assert not service["passed"] and service["node"] == "server"
    assert "exited with code 3 at +" in service["detail"] and "while clients were running" in service["detail"]
    assert service["expectation"] == "service server"
    [unserved] = _failed(run, "echo")
    assert unserved["node"] == "late" and "connection refused" in unserved["detail"], unserved
    assert "server exited with code 3 at +" in unserved["detail"]
    server = _node(run, "server")
    assert server["exit_code"] == 3 and server["exited_at_s"] > 0 and not server["stopped_by_lab"]
    html = (run.out / "report.html").read_text()
    assert "exited 3 at +" in html and "(while serving)" in html
    assert "service server" in run.stdout + run.stderr


def test_a_one_shot_server_that_exits_0_is_no_failure_by_itself(run_lab, tmp_path: Path) -> None:
    run = run_lab(_stage(tmp_path, "exit-zero-early"))
    assert run.code == 1, run.stderr
    assert run.checks("service") == []
    assert [c["node"] for c in run.checks("echo") if c["passed"]] == ["first"], run.checks("echo")
    [unserved] = _failed(run, "echo")
    assert unserved["node"] == "late" and "server exited with code 0 at +" in unserved["detail"], unserved
    assert _node(run, "server")["exit_code"] == 0
    assert "exited  server (code 0)" in run.stderr  # shown in the progress lines


def test_a_serving_thread_that_raises_is_named_in_the_client_s_failure(run_lab, tmp_path: Path) -> None:
    run = run_lab(_stage(tmp_path, "thread-raises"))
    assert run.code == 1, run.stderr
    [echo] = _failed(run, "echo")
    log = (run.out / "nodes" / "server.log").read_text()
    last = [ln for ln in log.splitlines() if ln.startswith("ZeroDivisionError")][-1]  # Python's words
    assert f"'{last}'" in echo["detail"], echo  # ours: the server log's error line, quoted
    assert run.checks("service") == []  # the server itself lived on
    assert _node(run, "server")["stopped_by_lab"]


def test_the_http_server_survives_half_requests(run_lab, tmp_path: Path) -> None:
    run = run_lab(_stage(tmp_path, "half-request"))
    assert run.code == 0, json.dumps(run.report["checks"], indent=1) + run.stderr
    log = (run.out / "nodes" / "web.log").read_text()
    assert "Traceback" not in log, log
    # The answers did meet a peer that was gone: one line each, EPIPE or ECONNRESET (whichever the
    # kernel reports first: the peer's FIN or its RST), in Python's "[Errno N]" form.
    assert re.search(rf"connection ended: \[Errno ({errno.EPIPE}|{errno.ECONNRESET})\]", log), log
    web = _node(run, "web")
    assert web["stopped_by_lab"] and web["exit_code"] == 143  # 128 + SIGTERM, on every backend


def test_a_syntax_error_is_named_by_every_expectation(run_lab, tmp_path: Path) -> None:
    run = run_lab(_stage(tmp_path, "syntax-error"))
    assert run.code == 1, run.stderr
    checks = run.report["checks"]
    assert {c["check"] for c in checks} == {"start", "echo", "concurrent", "exit"}
    for c in checks:
        assert not c["passed"] and "SyntaxError" in c["detail"], c
    blocked = [c for c in checks if c["node"].startswith("client-")]
    assert blocked and all(c["detail"].startswith("did not run: server exited with code 1 before it was ready")
                           and not c["ran"] for c in blocked)
    [early] = [c for c in checks if c["node"] == "early"]
    assert early["ran"] and "connection refused" in early["detail"]


def test_the_output_limit_is_named(run_lab, tmp_path: Path) -> None:
    t = time.monotonic()
    run = run_lab(_stage(tmp_path, "output-limit"))
    assert time.monotonic() - t < 30
    assert run.code == 1, run.stderr
    details = {c["node"]: c["detail"] for c in run.checks("exit")}
    assert all("stopped at the output limit of 16 MiB" in d for d in details.values()), details
    assert "exited with code 153 (SIGXFSZ)" in details["spam"], details  # `yes` starts with SIGXFSZ at its default
    assert (run.out / "nodes" / "flood.log").stat().st_size <= 16 * 2**20


def test_lab_check_on_a_kept_lab_reports_a_crashed_service(backend: str, tmp_path: Path) -> None:
    scenario = _stage(tmp_path, "exit-mid-run")
    up = lab("up", str(scenario), "--backend", backend, "--out", str(tmp_path / "r"))
    assert up.returncode == 0, up.stdout + up.stderr
    lab_id = next(ln for ln in up.stdout.splitlines() if " is up " in ln).split()[1]
    try:
        # The event `lab check` judges: the keeper has seen the server exit (its status.json).
        until("the keeper seeing the server exit", lambda: door().node_status(lab_id).get("server", {}).get("exited"))
        check = lab("check", lab_id)
        assert check.returncode == 1, check.stdout + check.stderr
        line = next(ln for ln in check.stdout.splitlines() if ln.startswith("service server"))
        assert "FAIL" in line and "exited with code 3" in line
    finally:
        down = lab("down", lab_id)
    assert down.returncode == 1 and "is down: FAILED" in down.stdout and "service server" in down.stdout, down.stdout
