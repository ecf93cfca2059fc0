"""Many labs at once: the same scenario with the same static addresses, in parallel, all pass."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .conftest import ROOT, lab


def test_eight_runs_of_the_same_scenario_at_once(backend: str, tmp_path: Path) -> None:
    def one(k: int) -> subprocess.CompletedProcess[str]:
        return lab("run", "scenarios/greeting.yaml", "--backend", backend, "--out", str(tmp_path / f"r{k}"),
                   timeout=180)

    with ThreadPoolExecutor(8) as pool:
        done = list(pool.map(one, range(8)))
    for d in done:
        assert d.returncode == 0, d.stdout + d.stderr


def test_xdist_runs_labs_side_by_side(tmp_path: Path) -> None:
    """pytest-xdist safe: four workers, each running labs, and the session's leak guard at the end."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "4", "-p", "no:cacheprovider",
                           "tests/integration/test_examples.py", "-k", "netns", "--basetemp", str(tmp_path / "b")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "LEAK GUARD" not in done.stdout
