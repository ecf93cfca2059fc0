"""The pytest plugin: scenario files as tests (one item per expectation), backends, markers, xdist,
and the `lab` fixture. Each case runs pytest in a subprocess, from the repository's root."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

from .conftest import HERE, ROOT


def pytest_run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def collected(*args: str) -> list[str]:
    """The ids of the items pytest collects (`--collect-only -q`: one id per line), not its summary's
    wording."""
    done = pytest_run("--collect-only", "-q", *args)
    return [line for line in done.stdout.splitlines() if "::" in line]


def junit_cases(junit: Path) -> dict[str, bool]:
    """testcase name -> passed, from a junit XML file."""
    root = ET.parse(junit).getroot()
    return {case.get("name", ""): case.find("failure") is None and case.find("error") is None
            for case in root.iter("testcase")}


def test_each_expectation_is_an_item(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    done = pytest_run("scenarios/echo.yaml", "scenarios/greeting.yaml", f"--junitxml={junit}",
                      "--lab-out", str(tmp_path / "runs"), "-v")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "scenarios/echo.yaml::echo client" in done.stdout  # the item's id (its result: the junit's)
    assert junit_cases(junit) == {"echo client": True, "concurrent client": True, "greeting visitor": True}
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["echo", "greeting"]  # one run per file
    assert (tmp_path / "runs" / "echo" / "report.json").exists()


def test_a_failing_expectation_fails_its_item_only_with_its_reason(tmp_path: Path) -> None:
    for name in ("broken-upper.yaml", "upper.py"):
        shutil.copy(HERE / "scenarios" / name, tmp_path / name)
    junit = tmp_path / "junit.xml"
    done = pytest_run(str(tmp_path / "broken-upper.yaml"), f"--junitxml={junit}")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert junit_cases(junit) == {"echo client": False, "concurrent client": True}
    assert "broken-upper.yaml::echo client" in out
    assert "HELLO FROM" in out  # the reason, and the transcript excerpt
    assert "nodes/client-1.jsonl" in out and "received 'HELLO FROM CLIENT-1\\r\\n'" in out
    assert "run folder: " in out
    assert "Traceback" not in out and "pytest_plugin.py" not in out


def test_an_invalid_scenario_is_one_failing_item(tmp_path: Path) -> None:
    shutil.copy(ROOT / "tests/unit/fixtures/bad/after-cycle.yaml", tmp_path / "cycle.yaml")
    (tmp_path / ".gitlab-ci.yml").write_text("stages: [test]\nname: not a scenario\n")  # not ours
    junit = tmp_path / "junit.xml"
    done = pytest_run(str(tmp_path), f"--junitxml={junit}")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert junit_cases(junit) == {"validate": False}
    assert "cycle.yaml:11:12: error: nodes.server.after: after cycle" in out
    assert "Traceback" not in out


def test_markers_deselect_by_backend() -> None:
    done = pytest_run("scenarios/echo.yaml", "scenarios/greeting.yaml", "-m", "not netns")
    assert done.returncode == 5, done.stdout + done.stderr  # pytest's "no tests collected"
    assert len(collected("scenarios/echo.yaml", "scenarios/greeting.yaml")) == 3
    assert collected("scenarios/echo.yaml", "scenarios/greeting.yaml", "-m", "not netns") == []
    assert len(collected("scenarios/echo.yaml", "-m", "lab and netns and not docker")) == 2


def test_the_docker_backend(lab_image: None, tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    done = pytest_run("scenarios/greeting.yaml", "--lab-backend", "docker", "-m", "docker",
                      "--lab-out", str(tmp_path / "runs"), f"--junitxml={junit}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert junit_cases(junit) == {"greeting visitor": True}
    assert '"backend": "docker"' in (tmp_path / "runs" / "greeting" / "report.json").read_text()


def test_under_xdist_each_scenario_runs_once(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    done = pytest_run("-n", "2", "scenarios/echo.yaml", "scenarios/greeting.yaml", f"--junitxml={junit}",
                      "--lab-out", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(junit_cases(junit)) == {"echo client", "concurrent client", "greeting visitor"}
    runs = sorted(p.name for worker in (tmp_path / "runs").iterdir() for p in worker.iterdir())
    assert runs == ["echo", "greeting"]  # a worker folder each, and each scenario ran once


def test_the_lab_fixture(tmp_path: Path) -> None:
    test = tmp_path / "test_kept_lab.py"
    test.write_text(textwrap.dedent(f"""
        def test_kept_lab(lab):
            kept = lab.up({str(ROOT / "scenarios/exercise-echo.yaml")!r})
            done = kept.exec("prober", "sh", "-c", "printf 'x\\\\r\\\\n' | nc -N server 9999")
            assert done.returncode == 0, done.stderr
            assert done.stdout == "x\\n" and done.stdout_bytes == b"x\\r\\n"  # text, and the exact bytes
            kept.wait()
            assert any(e["event"] == "received" for e in kept.transcript("client-1"))
            assert "Socket listening" in kept.log("server")
            results = kept.check()
            assert {{r.check for r in results}} == {{"echo", "concurrent", "output", "exit"}}
            results.assert_passed()
            assert results.passed and repr(results).startswith("<Checks: ")
            result = kept.down()
            result.assert_passed()
            assert result.exit_code == 0 and repr(result).startswith("<RunResult exercise-echo PASSED")
            assert kept.rundir.file("report.json").exists()
            assert str(kept.rundir.root).startswith({str(tmp_path)!r})

        def test_left_up_goes_down_at_teardown(lab):
            kept = lab.up("name: tiny\\nnetworks: {{lan: {{subnet: 10.0.9.0/24}}}}\\n"
                          "nodes: {{a: {{networks: [lan]}}, b: {{networks: [lan]}}}}\\n")
            assert kept.exec("a", "hostname").stdout.strip() == "a"
    """))
    junit = tmp_path / "junit.xml"
    done = pytest_run(str(test), "--basetemp", str(tmp_path / "tmp"), f"--junitxml={junit}", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert junit_cases(junit) == {"test_kept_lab": True, "test_left_up_goes_down_at_teardown": True}
    ps = subprocess.run([sys.executable, "-m", "lab", "ps"], capture_output=True, text=True, cwd=ROOT).stdout
    assert str(tmp_path) not in ps  # both labs are down (other labs may run: xdist)
