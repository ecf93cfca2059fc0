"""Integration tests: real namespaces, real processes. Each test checks that the host is left
exactly as it was (namespaces, links, routes, mounts, firewall, sysctls, /etc/hosts, processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.hoststate import changes, host_state

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

if os.geteuid() != 0:
    pytest.exit("integration tests need root (network namespaces): run them as root", returncode=3)


@pytest.fixture(autouse=True)
def host_untouched() -> Any:
    if os.environ.get("PYTEST_XDIST_WORKER"):  # labs of other workers come and go: the session
        yield                                  # compares the host once all are done (tests/conftest.py)
        return
    before = host_state()
    yield
    changed = changes(before, host_state())
    assert not changed, f"the lab left the host changed: {changed}"


@dataclass
class LabRun:
    code: int
    stdout: str
    stderr: str
    out: Path

    @property
    def report(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.out / "report.json").read_text())
        return data

    def checks(self, check: str) -> list[dict[str, Any]]:
        return [c for c in self.report["checks"] if c["check"] == check]


def until(what: str, happened: Callable[[], bool], deadline: float = 30.0) -> None:
    """Wait for an observable event (a line in a file, an object of the engine), never for a guessed
    time: look every few ms, fail naming the event once `deadline` s have passed without it."""
    end = time.monotonic() + deadline
    while not happened():
        if time.monotonic() > end:
            raise AssertionError(f"never saw {what} within {deadline:g}s")
        time.sleep(0.005)


def lab(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


BACKENDS = ["netns", "docker"]


@pytest.fixture(scope="session")
def lab_image() -> None:
    """The node image for the docker backend, built once (cached by its content tag)."""
    done = lab("images", timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "docker":
        request.getfixturevalue("lab_image")
    return name


@pytest.fixture
def run_lab(tmp_path: Path, backend: str) -> Any:
    def run(scenario: str | Path, *extra: str) -> LabRun:
        out = tmp_path / "run"
        done = lab("run", str(scenario), "--out", str(out), "--backend", backend, *extra)
        return LabRun(done.returncode, done.stdout, done.stderr, out)

    return run
