"""Seeded chaos: `lab run` killed with SIGKILL at 20 moments of its life per backend (drawn from a
fixed seed, from before the first namespace to teardown), then `lab clean`: the host is exactly as
it was every time. The random moment is the point of the test: it is not a wait for anything."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

from tests.hoststate import changes, host_state

from .conftest import ROOT, door, lab

KILLS = 20
SPAN = {"netns": 1.2, "docker": 4.0}  # s: one whole run of echo.yaml on each backend, teardown included
SEED = 13


def test_kill_9_at_random_moments_then_clean_leaves_the_host_as_it_was(tmp_path: Path, backend: str) -> None:
    moments = random.Random(f"{SEED}-{backend}")
    before = host_state()
    for k in range(KILLS):
        at = moments.uniform(0, SPAN[backend])
        proc = subprocess.Popen(door().argv("run", str(ROOT / "scenarios" / "echo.yaml"),
                                            "--out", str(tmp_path / f"run-{k}"), "--backend", backend),
                                cwd=door().cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        time.sleep(at)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        done = lab("clean")
        assert done.returncode == 0, f"kill {k} at {at:.3f}s: {done.stdout}{done.stderr}"
        changed = changes(before, host_state())
        assert not changed, f"kill {k} at {at:.3f}s, then clean: the host changed: {changed}"
