"""SIGINT, SIGTERM and SIGKILL delivered to the process group at several moments of a run (while
the interpreter starts, while namespaces or containers are created, while nodes start, while
clients run, during teardown): an orderly exit (130/143) in bounded time, or, after SIGKILL, a
`lab clean` that restores the host completely. The per-test check asserts the host is as before."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import HERE, ROOT, lab

DELAYS = [0.05, 0.25, 0.5, 1.0, 2.0]  # seconds after the process starts
EXPECTED = {signal.SIGINT: 130, signal.SIGTERM: 143}


@pytest.mark.parametrize("delay", DELAYS)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_signal_at_any_phase(backend: str, sig: signal.Signals, delay: float, tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "lab", "run", str(HERE / "scenarios" / "long.yaml"),
                             "--backend", backend, "--out", str(tmp_path / "run")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    time.sleep(delay)  # a moment of the run, not a wait for something: the point is to hit phases
    os.killpg(proc.pid, sig)
    t = time.monotonic()
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t < 20
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        done = lab("clean")
        assert done.returncode == 0, done.stderr
    else:
        assert proc.returncode in (EXPECTED[sig], -sig), err  # -sig: before Python installed handlers
        assert "Traceback" not in err
