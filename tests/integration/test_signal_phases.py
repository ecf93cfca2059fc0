"""SIGINT, SIGTERM and SIGKILL delivered to the process group at each phase of a run: as soon as
`lab run` says its handlers are in place (its first stderr line), after the lab's first namespace
exists, while nodes start, while clients run, and during teardown. Every signal is sent once the
phase is observed (a line, a file), never after a sleep. Expected: an orderly exit (130/143) in
bounded time with logs kept, or, after SIGKILL, a `lab clean` that restores the host completely (the
per-test check compares the host before and after).

A signal while the interpreter itself starts, before that first line, is outside the contract."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lab.signals import STARTED

from .conftest import HERE, door, lab, until

EXPECTED = {signal.SIGINT: 130, signal.SIGTERM: 143}
PHASES = ["starting", "first-namespace", "nodes-start", "clients-run", "teardown"]
ENDS_WITHIN = 20  # s from the signal to the exit: the scenario would otherwise run for 60 s


def _read_until(proc: subprocess.Popen[str], needle: str) -> None:
    """Read the lab's stderr up to the first line containing `needle` (the lab ends in bounded time:
    if it never writes the line, EOF ends the wait)."""
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if needle in line:
            return
    raise AssertionError(f"never saw {needle!r}: {''.join(seen)}")


def _first_namespace(out: Path) -> bool:
    """Whether the lab writing to `out` has created its own namespace (`lab-ID`); found through its
    journal, so that another lab's namespaces never count."""
    for meta in door().state.glob("*/meta.json"):
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        if data.get("run_dir") == str(out):
            return door().netns(data["pid"], data["id"]).exists()
    return False


def _logged(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text()


def _reach(phase: str, proc: subprocess.Popen[str], out: Path, backend: str) -> None:
    """Wait until the run is observably in `phase`."""
    _read_until(proc, STARTED.format(name="long", backend=backend, pid=proc.pid))  # the handlers are in place
    if phase == "first-namespace":
        until("the lab's first namespace", lambda: _first_namespace(out))
    elif phase == "nodes-start":
        _read_until(proc, "ready   server")  # the clients are being started now
    elif phase == "clients-run":
        _read_until(proc, "ready   server")
        until("client-2 connected", lambda: _logged(out / "nodes" / "client-2.jsonl", '"connected"'))
    elif phase == "teardown":  # a first Ctrl-C starts it, then the signal under test arrives
        _read_until(proc, "ready   server")
        # The sleeper ignores SIGTERM: the teardown then waits the stop grace (1 s) for it, a window
        # that is the lab's, not luck, for the signal under test to land in.
        until("the sleeper ignoring SIGTERM", lambda: _logged(out / "nodes" / "sleeper.log", "ignoring SIGTERM"))
        os.killpg(proc.pid, signal.SIGINT)
        _read_until(proc, "tearing down")


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_signal_at_each_phase(backend: str, sig: signal.Signals, phase: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(door().argv("run", str(HERE / "scenarios" / "long.yaml"), "--backend", backend,
                                        "--out", str(out)),
                            cwd=door().cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _reach(phase, proc, out, backend)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):  # the run still tears down: the host check holds
            os.killpg(proc.pid, signal.SIGINT)
        proc.communicate(timeout=60)
        raise
    t = time.monotonic()
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - t < ENDS_WITHIN
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        done = lab("clean")
        assert done.returncode == 0, done.stderr
        return
    assert "Traceback" not in err
    if phase == "teardown":
        assert proc.returncode == 130, err  # the first signal decides the code
        if sig == signal.SIGINT:  # a second Ctrl-C leaves at once: `lab clean` finishes the job
            assert "second Ctrl-C: leaving now" in err
            assert lab("clean").returncode == 0
    else:
        assert proc.returncode == EXPECTED[sig], err
        # Signalled before its run folder existed, the lab created nothing; after, it reports.
        assert (out / "report.json").exists() or (phase == "starting" and not out.exists()), err
    if phase in ("nodes-start", "clients-run", "teardown"):
        assert (out / "nodes" / "server.log").exists()
