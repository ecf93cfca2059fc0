"""Correctness at scale (speed is `lab bench`'s, not a test's): 300 clients of one server, each on
a host of its own, all pass; the kernel's machine-wide neighbour table is not what decides it."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.bench import SCENARIO

from .conftest import USER_BACKEND

SIZE = 300


@pytest.mark.parametrize("backend", ["netns", USER_BACKEND], indirect=True)
def test_three_hundred_clients_of_one_server_all_pass(run_lab, tmp_path: Path) -> None:
    scenario = tmp_path / "scale.yaml"
    scenario.write_text(SCENARIO.format(n=SIZE))
    scenario.chmod(0o644)
    run = run_lab(scenario)
    assert run.code == 0, run.stdout[-2000:] + run.stderr[-2000:]
    echo = run.checks("echo")
    assert len(echo) == SIZE and all(c["passed"] for c in echo)
