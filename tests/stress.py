"""Stress for the suite: proof that a test passes for a reason, not by timing luck.

- `--repeat N` runs every selected test N times (ids end in `r1`..`rN`); under xdist the rounds of
  one test spread over workers, so a test also runs beside itself.
- `--burn-cpu K` keeps K processes spinning for the whole session (`inv test`: one per core), started
  by the process that owns the session (the xdist controller, never a worker).
- Markers, given here from one table so the policy is in one place:
  `race`: the flake-prone groups (signals, concurrency, parallel labs, swarm), which `inv test`
  runs twice, under `-n 2`, with every core kept busy;
  `host_wide`: a test that looks at or acts on every lab of the host (`lab clean`, `lab ps`, all
  namespaces, a nested session with its own leak guard); it never runs beside another test.
  The swarm tests share one simulated cluster: under xdist they stay on one worker (`GROUPS`, read
  by our own scheduler: xdist 3.8's `loadgroup` renames items through `item._nodeid`, which pytest
  9.2 no longer reads, so its groups are silently ignored).
A burner ends when its test or session ends, when the process that started it dies (kill -9
included: the parent-death signal, and it also watches its parent), or at its deadline.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

BURN = """
import ctypes, os, sys, time
parent, end = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG: SIGKILL when the starter dies
except (OSError, AttributeError):
    pass
while os.getppid() == parent and time.monotonic() < end:
    for _ in range(20000):
        pass
"""

RACE_MODULES = {"test_signal_phases", "test_lifecycle", "test_verdicts", "test_parallel", "test_swarm"}
HOST_WIDE = {
    "test_kept_labs",  # asserts `lab ps` lists no lab at all
    "test_soak",  # asserts no namespace of any lab is left after each cycle
    "test_docker::test_clean_never_removes_an_unlabelled_container",  # clean --all
    "test_lifecycle::test_clean_after_kill_9",  # asserts what `lab clean` found, then "nothing to clean"
    "test_rootless::test_root_cleans_every_users_labs_with_all",  # clean --all
    "test_lifecycle::test_clean_never_touches_an_unmarked_namespace",  # clean --all
    "test_parallel::test_xdist_runs_labs_side_by_side",  # a nested session whose leak guard sees every lab
    "test_swarm::test_a_host_that_goes_away_fails_clearly_and_the_rest_is_removed",  # asserts what clean found
    "test_swarm::test_clean_after_kill_9_removes_everything_and_rescues_the_logs",
}


GROUPS = {"test_swarm": "swarm"}  # module -> the group whose tests run on one worker, in order


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("stress", "prove that tests do not depend on timing luck")
    group.addoption("--repeat", type=int, default=1, metavar="N", help="run every selected test N times")
    group.addoption("--burn-cpu", type=int, default=0, metavar="K",
                    help="keep K cores busy for the whole session (`inv test` passes the core count)")
    group.addoption("--burn-deadline", type=float, default=3600.0, metavar="S",
                    help="a burner stops after S seconds even if the session lives on")


def repeat(metafunc: pytest.Metafunc) -> None:
    rounds = metafunc.config.getoption("repeat")
    if rounds > 1:
        metafunc.fixturenames.append("stress_round")
        metafunc.parametrize("stress_round", range(1, rounds + 1), ids=[f"r{k}" for k in range(1, rounds + 1)])


def mark(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.path.stem
        if module in RACE_MODULES:
            item.add_marker(pytest.mark.race)
        name = getattr(item, "originalname", item.name)
        if module in HOST_WIDE or f"{module}::{name}" in HOST_WIDE:
            item.add_marker(pytest.mark.host_wide)


def make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadgroup`, by module: each test is a unit of its own, except a group's tests."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Grouped(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return GROUPS.get(Path(nodeid.split("::", 1)[0]).stem, nodeid)

    return Grouped(config, log)


def burning(config: pytest.Config) -> bool:
    """Whether the session keeps the cores busy already (the option reaches xdist's workers too)."""
    return bool(config.getoption("burn_cpu"))


def spawn(count: int, deadline: float) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", BURN, str(os.getpid()), str(deadline)]) for _ in range(count)]


def stop(burners: list[subprocess.Popen[bytes]]) -> None:
    for proc in burners:
        proc.kill()
    for proc in burners:
        proc.wait()


@contextmanager
def busy(count: int = 0, deadline: float = 600.0) -> Iterator[None]:
    """Every core (or `count`) kept busy by a process of its own while the block runs."""
    burners = spawn(count or os.cpu_count() or 2, deadline)
    try:
        yield
    finally:
        stop(burners)


_session: list[subprocess.Popen[bytes]] = []


def start_session_burners(config: pytest.Config) -> None:
    count = config.getoption("burn_cpu")
    if not count or hasattr(config, "workerinput"):
        return  # no burner asked for, or an xdist worker (the controller runs them)
    deadline = config.getoption("burn_deadline")
    _session.extend(spawn(count, deadline))
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"stress: {count} CPU burner(s) running for at most {deadline:.0f} s")


def stop_session_burners() -> None:
    stop(_session)
    _session.clear()
