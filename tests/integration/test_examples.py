"""Every example scenario passes on the netns backend, and its run folder holds what it promises."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .conftest import ROOT

EXAMPLES = sorted((ROOT / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("scenario", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_passes(run_lab, backend: str, scenario: Path) -> None:
    run = run_lab(scenario)
    assert run.code == 0, run.stdout + run.stderr
    report = run.report
    assert report["passed"] is True
    assert report["backend"] == backend
    assert report["checks"], "an example without checks proves nothing"
    assert all(c["passed"] for c in report["checks"])
    for node in report["nodes"]:
        for kind in ("log", "transcript"):
            if node[kind] is not None:
                assert (run.out / node[kind]).exists(), (node["name"], kind)
    assert (run.out / "scenario.yaml").read_text() == scenario.read_text()
    suite = ET.parse(run.out / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    assert f'name="backend" value="{backend}"' in (run.out / "junit.xml").read_text()
    assert int(suite.get("tests", "0")) == len(report["checks"])
    assert int(suite.get("failures", "1")) == 0
    assert len(suite.findall("testcase")) == len(report["checks"])


def test_echo_transcripts_record_every_byte(run_lab) -> None:
    run = run_lab(ROOT / "scenarios" / "echo.yaml")
    assert run.code == 0, run.stderr
    text = (run.out / "nodes" / "client-2.jsonl").read_text()
    assert '"sent"' in text and "hello from client-2\\r\\n" in text
    server = (run.out / "nodes" / "server.jsonl").read_text()
    assert server.count('"accepted"') == 3
    assert "hello from client-1" in server and "hello from client-3" in server
    assert "echo client" in run.stdout and "PASSED" in run.stdout


def test_invoke_task_runs_the_same(tmp_path: Path) -> None:
    import subprocess
    import sys

    inv = Path(sys.executable).parent / "inv"
    done = subprocess.run([str(inv), "run", "scenarios/greeting.yaml", "--out", str(tmp_path / "r")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "r" / "report.json").exists()
