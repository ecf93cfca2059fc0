"""SIGINT, SIGTERM and SIGKILL delivered to the process group at each phase of a run: while the
interpreter starts, after the first namespace exists, while nodes start, while clients run, and
during teardown. Expected: an orderly exit (130/143) in bounded time with logs kept, or, after
SIGKILL, a `lab clean` that restores the host completely (the per-test check compares the host
before and after)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import HERE, ROOT, lab

EXPECTED = {signal.SIGINT: 130, signal.SIGTERM: 143}
PHASES = ["starting", "first-namespace", "nodes-start", "clients-run", "teardown"]


def _until(what: str, test: object, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if test():  # type: ignore[operator]
            return
        time.sleep(0.001)
    raise AssertionError(f"never saw: {what}")


def _read_until(proc: subprocess.Popen[str], needle: str) -> None:
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if needle in line:
            return
    raise AssertionError(f"never saw {needle!r}: {''.join(seen)}")


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_signal_at_each_phase(backend: str, sig: signal.Signals, phase: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "lab", "run", str(HERE / "scenarios" / "long.yaml"),
                             "--backend", backend, "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    if phase == "starting":
        time.sleep(0.05)  # inside the interpreter's start: nothing exists yet
    elif phase == "first-namespace":
        netns = Path("/run/netns")
        _until("a namespace of the lab", lambda: netns.is_dir() and any(p.name.startswith("lab-")
                                                                        for p in netns.iterdir()))
    elif phase == "nodes-start":
        _read_until(proc, "ready   server")  # the clients are being started now
    elif phase == "clients-run":
        _read_until(proc, "ready   server")
        log = out / "nodes" / "client-2.jsonl"
        _until("client-2 connected", lambda: log.exists() and '"connected"' in log.read_text())
    else:  # teardown: a first Ctrl-C starts it, then the signal under test arrives
        _read_until(proc, "ready   server")
        os.killpg(proc.pid, signal.SIGINT)
        _read_until(proc, "tearing down")
    t = time.monotonic()
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t < 20
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        done = lab("clean")
        assert done.returncode == 0, done.stderr
        return
    if phase == "starting":
        # The signal may land inside CPython's own start-up (site imports), before any code of the
        # lab runs: the interpreter's reaction is not ours to assert. Ours: it ends, not with
        # success, and nothing is left behind (the per-test host check).
        assert proc.returncode != 0
        return
    assert "Traceback" not in err
    if phase == "teardown":
        assert proc.returncode == 130  # the first signal decides the code
        if sig == signal.SIGINT:  # a second Ctrl-C leaves at once: `lab clean` finishes the job
            assert lab("clean").returncode == 0
    else:
        assert proc.returncode == EXPECTED[sig], err
        assert (out / "report.json").exists()
    if phase in ("nodes-start", "clients-run", "teardown"):
        assert (out / "nodes" / "server.log").exists()
