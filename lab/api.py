"""The lab as a library: the one API that every door calls (the `lab` command, the invoke tasks
through it, grading and the pytest plugin). Functions return data; printing is the doors' business.

    from lab import api

    result = api.run("scenarios/echo.yaml", backend="netns")   # up, run, check, report, down
    print(result.passed, result.exit_code, result.rundir.root)

    kept = api.up("scenarios/echo.yaml")                        # a lab that keeps running
    print(api.exec(kept.id, "client-1", ["hostname"]).stdout)
    print([(e.expectation, e.result.passed) for e in api.check(kept.id)])
    report = api.down(kept.id)                                   # checked, reported, torn down

Where a separate process is right (a kept lab's keeper, one process per graded submission), the
library starts `python -m lab.entry`, never the command line.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import grading, inventory, lifecycle, orchestrator
from lab.backends import ExecResult, Options
from lab.grading import Grade
from lab.inventory import LabInfo, NodeInfo
from lab.lifecycle import Cleaned
from lab.orchestrator import Progress, stderr_progress
from lab.outcome import ExpectationResult, RunResult
from lab.reports import Report
from lab.rundir import RunDir
from lab.scenario import load_scenario
from lab.scenario.model import Scenario
from lab.scenario.timeline import capture_all
from lab.signals import SignalGuard

__all__ = ["KeptLab", "LabInfo", "Report", "RunResult", "ExpectationResult", "load", "run", "up", "labs",
           "exec", "nodes", "logs", "check", "status", "down", "clean", "Cleaned", "grade", "Grade"]


def load(scenario: str | Path) -> Scenario:
    """A scenario file, validated (ScenarioError, exit code 2, with FILE:LINE:COL for each problem)."""
    return load_scenario(scenario)


def run(scenario: str | Path | Scenario, backend: str = "netns", out: str | Path | None = None, *,
        cluster: str | Path | None = None, progress: Progress = stderr_progress,
        guard: SignalGuard | None = None, hidden: Sequence[str | Path] = (), own_process: bool = False,
        seed: int | None = None, capture: bool = False) -> RunResult:
    """A whole run: up, run, check, report, down, always. Its reports are in `result.rundir`.
    `capture`: every network is recorded (`captures/NET.pcap`), whatever the scenario says.
    No node sees `hidden` (nor the scenario's folder beyond its own files, nor the run folder).
    `own_process`: this process is the lab's alone (see orchestrator.run). `seed`: what the clients'
    `{word}`s are drawn from (default: a new one; the report records it, so a run can be replayed)."""
    loaded = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    loaded = capture_all(loaded) if capture else loaded
    if guard is not None:
        guard.check()  # signalled while loading: nothing exists yet
    options = Options(cluster=Path(cluster) if cluster else None, hidden=tuple(Path(p).absolute() for p in hidden))
    return orchestrator.run(loaded, backend, Path(out) if out else None, progress=progress, options=options,
                            guard=guard, own_process=own_process, seed=seed)


@dataclass(frozen=True)
class KeptLab:
    """A lab brought up by `up`: its id (for every other call), run folder and the keeper's status
    ({"ok", "failures", "backend", "nodes": [{"name", "addresses", "runs", "state"}]})."""

    id: str
    backend: str
    rundir: RunDir
    status: dict[str, Any]

    @property
    def ok(self) -> bool:
        return bool(self.status["ok"])


def up(scenario: str | Path, backend: str = "netns", out: str | Path | None = None, *,
       cluster: str | Path | None = None) -> KeptLab:
    """A lab that keeps running until `down` (`cluster`: the cluster file, for the swarm backend).
    When a node failed to come up (`ok` false), the lab is already torn down and `status["failures"]`
    says why."""
    status, rundir = lifecycle.bring_up(str(scenario), backend, str(out) if out else None,
                                        cluster=str(cluster) if cluster else None)
    return KeptLab(status["id"], status["backend"], rundir, status)


def labs() -> list[LabInfo]:
    """The labs on this machine, found by their journals: kept, running, or dead (for `clean`)."""
    return inventory.labs()


def exec(lab: str, node: str, argv: list[str], *, capture: bool = True, input: str | None = None,  # noqa: A001
         timeout: float | None = None, interactive: bool = False) -> ExecResult:
    """Run a command inside a node of a running lab (`lab` is an id, a prefix or a scenario name):
    its output captured (`capture`: `.stdout` as text, `.stdout_bytes` exactly as written), or
    attached to this terminal. Exit code 128+N: signal N."""
    return lifecycle.exec_in(lab, node, argv, interactive=interactive, capture=capture, input=input,
                             timeout=timeout)


def lab_nodes(lab: str) -> list[NodeInfo]:
    """A lab's nodes as its keeper sees them now: state, exit code, addresses, host, uptime."""
    return inventory.lab_nodes(lab)


def nodes(lab: str) -> list[str]:
    """The names of a lab's nodes, in the plan's order."""
    return inventory.node_names(lab)


def logs(lab: str, node: str | None = None, follow: bool = False, *,
         tail: int | None = None) -> Iterator[tuple[str, str]]:
    """(node, line) of the nodes' logs; `tail`: only each node's last N lines first; `follow`: then
    what they write, until the lab goes down."""
    return lifecycle.log_lines(lab, node, follow, tail)


def check(lab: str) -> list[ExpectationResult]:
    """Every expectation evaluated against the running lab now (one result per node), crashed
    services first."""
    return lifecycle.check_now(lab)


def status(lab: str) -> dict[str, Any]:
    """The keeper's view of each node: {"started", "ready", "exited", "exit_code", "note", ...}."""
    return lifecycle.node_status(lab)


def down(lab: str) -> Report | None:
    """Stop a lab: its expectations are checked, its report written, everything torn down. None
    when no report was written (the keeper was gone). UnknownLab when there is no such lab."""
    return lifecycle.take_down(lab)[2]


def clean(everything: bool = False, lab: str | None = None) -> list[Cleaned]:
    """Remove what dead labs left behind, found by their journals (never by name patterns);
    `everything`: running labs too, each stopped first as `down` does; `lab`: that lab alone."""
    return lifecycle.clean(everything, lab)


def grade(scenario: str | Path, submissions: str | Path, node: str, *, jobs: int = 4, out: str | Path | None = None,
          backend: str = "netns", progress: Progress = print, resume: bool = False,
          only: Sequence[str] = (), seed: int | None = None) -> tuple[Path, list[Grade]]:
    """Each submission (an entry of the `submissions` folder) replaces `node`'s files and runs as its
    own lab, `jobs` at a time; returns the grades folder and the grades. Each grade is recorded as its
    submission finishes: `resume` grades only those the folder (`out`, or the latest) has none for,
    `only` grades these names again. `seed`: the batch's (each submission's clients' `{word}`s are
    drawn from it and the submission's name; default a new one, recorded in grades.json)."""
    return grading.grade(str(scenario), str(submissions), node, jobs, str(out) if out else None, backend, progress,
                         resume=resume, only=only, seed=seed)
