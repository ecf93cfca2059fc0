"""A node's limits are the kernel's, on every backend: memory (killed, with that reason), processes
(forks refused), open files (opens refused), CPU time (killed, with that reason); a normal pair of
nodes beside them passes. Each hostile program is bounded in its own code, so a broken limit cannot
take the machine down."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .conftest import door

SCENARIO = Path(__file__).parent / "scenarios" / "limits" / "limits.yaml"


def test_every_limit_stops_its_node_with_the_right_reason(run_lab: Any) -> None:
    run = run_lab(SCENARIO)
    assert run.code == 1, run.stdout + run.stderr  # hog and spinner fail, as they should
    report = json.loads((run.out / "report.json").read_text())
    checks = {(c["check"], c["node"]): c for c in report["checks"]}
    hog, spinner = checks["exit", "hog"], checks["exit", "spinner"]
    assert not spinner["passed"] and "killed: CPU time limit 1s reached" in spinner["detail"], spinner
    opener = (run.out / "nodes" / "opener.log").read_text()
    assert checks["output", "opener"]["passed"] and int(opener.split("after ")[1].split()[0]) < 64, opener
    assert checks["echo", "client"]["passed"], checks["echo", "client"]
    if door().uid is not None:  # rootless (no cgroup): the run says which limits it cannot enforce
        assert any("memory and processes are not" in note for note in report["notes"]), report["notes"]
        assert run.code == 1 and "memory and processes are not" in run.stdout + run.stderr
        return
    assert not hog["passed"] and "killed: memory limit 64 MiB reached" in hog["detail"], hog
    log = (run.out / "nodes" / "hog.log").read_text()
    assert "did not stop me" not in log and "holding 64 MiB" not in log, log
    assert checks["output", "forker"]["passed"], checks["output", "forker"]  # refused before 20
