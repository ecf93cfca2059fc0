"""One lab run, end to end: scenario -> plan -> backend up -> execution -> down -> checks -> report.

Teardown sits in `finally` and runs with signals deferred; logs and transcripts are written by the
nodes straight into the run folder, so they survive every failure path, Ctrl-C included.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lab import backends, watch
from lab.backends import Placement
from lab.checks import CheckResult, NodeOutcome, evaluate
from lab.errors import Interrupted, LabError
from lab.execution import Execution, NodeState, Progress
from lab.journal import Journal, new_lab_id, state_dir
from lab.plan import Plan, make_plan
from lab.report import write_reports
from lab.rundir import MAX_OUTPUT, RunDir
from lab.scenario.model import Scenario
from lab.signals import STARTED, SignalGuard

LOG_READ_LIMIT = 16 * 1024 * 1024  # checks read at most this much of a node's log (a flood is cut)
OUTPUT_LIMITED = f"stopped at the output limit of {MAX_OUTPUT // 2**20} MiB"


@dataclass(frozen=True)
class Verdict:
    """One check's result for one node, with the expectation it came from ("echo client")."""

    expectation: str
    result: CheckResult


@dataclass
class RunResult:
    plan: Plan
    rundir: RunDir
    backend: str
    lab_id: str
    started: float
    duration: float = 0.0
    states: dict[str, NodeState] = field(default_factory=dict)
    results: list[Verdict] = field(default_factory=list)
    error: str = ""
    timed_out: bool = False
    interrupted: int = 0  # the signal number, or 0
    placements: dict[str, Placement] = field(default_factory=dict)  # node -> host (multi-host backends)
    clock: float = 0.0  # the lab's clock: time.monotonic() when the nodes' run began (NodeState times)

    @property
    def passed(self) -> bool:
        return not self.error and not self.interrupted and all(v.result.passed for v in self.results)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 128 + self.interrupted
        if self.error:
            return 3
        return 0 if self.passed else 1


def stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Holder(Protocol):
    """Keeps a lab running after bring-up (`lab up`), until a signal (`lab down`) ends it."""

    def up(self, lab_id: str, execution: Execution) -> None: ...

    def update(self, execution: Execution) -> None: ...


def run(scenario: Scenario, backend_name: str = "netns", out: Path | None = None,
        progress: Progress = stderr_progress, hold: Holder | None = None,
        options: backends.Options | None = None, guard: SignalGuard | None = None) -> RunResult:
    """Run a validated scenario; always tears down; returns the result (reports already written).

    With `hold`, the lab is brought up, announced, and kept running until SIGINT/SIGTERM; the
    expectations are then checked against what happened, and everything is torn down.

    `guard`: the caller's, already in place (`lab run` installs it before its imports); without
    one, the run installs its own once it starts creating things. A signal the caller's guard
    recorded before anything exists raises `Interrupted` here: nothing to tear down or report."""
    plan = make_plan(scenario)
    journal = Journal(state_dir(), new_lab_id())
    backend = backends.create(backend_name, journal, options)
    backend.check(plan)  # environment problems surface before anything is created
    raise_fd_limit()
    if guard is not None:
        guard.check()
    rundir = RunDir.create(out, plan.name)
    rundir.file("scenario.yaml").write_text(scenario.source)
    rundir.file("plan.json").write_text(json.dumps(plan.to_json(), indent=2))
    result = RunResult(plan, rundir, backend_name, journal.lab_id, time.time())
    execution: Execution | None = None
    t0 = time.monotonic()
    with _guarded(guard) as guard:
        progress(STARTED.format(name=plan.name, backend=backend_name, pid=os.getpid()))
        journal.open(backend=backend_name, scenario=str(scenario.path), run_dir=str(rundir.root),
                     name=plan.name, kept=hold is not None)
        try:
            backend.up(plan, rundir)
            guard.check()
            progress(f"lab {plan.name}: {len(plan.networks)} network(s), {len(plan.nodes)} node(s) up "
                     f"in {time.monotonic() - t0:.2f}s ({backend_name}, lab {journal.lab_id})")
            execution = Execution(plan, backend, progress, lambda n: log_tail(rundir, n), guard.check)
            if hold is None:
                execution.run()
            else:
                _hold(execution, hold, journal.lab_id, guard)
        except Interrupted as e:
            result.interrupted = e.signum
            progress(f"lab {plan.name}: interrupted (signal {e.signum}), tearing down")
        except LabError as e:
            result.error = str(e)
            progress(f"lab {plan.name}: error: {e}")
        except Exception as e:  # noqa: BLE001 - a bug must still end in teardown and a report
            result.error = f"internal error: {type(e).__name__}: {e}"
            progress(f"lab {plan.name}: {result.error} (please report it)")
        finally:
            try:
                backend.down()
            except Exception as e:  # noqa: BLE001 - the reports are still written
                why = str(e) if isinstance(e, LabError) else f"internal error: {type(e).__name__}: {e}"
                result.error = result.error or f"teardown incomplete: {why} (run `lab clean`)"
                progress(f"lab {plan.name}: teardown incomplete: {why}; `lab clean` will finish it")
        if guard.seen and not result.interrupted:
            result.interrupted = guard.seen[0]
    result.duration = time.monotonic() - t0
    result.placements = backend.placements()
    if execution is not None:
        result.states, result.timed_out, result.clock = execution.states, execution.timed_out, execution.t0
        for s in result.states.values():
            if result.interrupted and s.running:  # stopped by the teardown
                s.exited, s.stopped_by_lab, s.note = True, True, "stopped: the run was interrupted"
            elif result.error and s.running:
                s.exited, s.stopped_by_lab, s.note = True, True, f"stopped: {_cut(result.error, 100)}"
            if s.exited and s.exit_code is None and s.plan.runs_something:
                s.exit_code = backend.exit_code(s.plan.name)
    result.results = check(plan, result.states, rundir, result.placements, result.clock)
    write_reports(result)
    return result


def _guarded(guard: SignalGuard | None) -> AbstractContextManager[SignalGuard]:
    """The caller's guard as it is (it stays in place after the run), or one of the run's own."""
    return nullcontext(guard) if guard is not None else SignalGuard()


def _hold(execution: Execution, hold: Holder, lab_id: str, guard: SignalGuard) -> None:
    execution.bring_up()
    hold.up(lab_id, execution)
    if execution.timed_out or any(s.failed_start for s in execution.states.values()):
        execution.stop_all()  # a lab that did not come up is not kept: the report says why
        return
    try:
        while True:
            execution.watch(0.5)
            hold.update(execution)
    except Interrupted:
        guard.seen.clear()  # the signal is `lab down`: the normal end of a kept lab
    execution.stop_all()


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def raise_fd_limit() -> None:
    """Each node holds a few descriptors (pidfd, readiness pipe): allow as many as the host does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def check(plan: Plan, states: dict[str, NodeState], rundir: RunDir,
          placements: dict[str, Placement] | None = None, clock: float = 0.0) -> list[Verdict]:
    """Evaluate every expectation (and every start failure, timeout and crashed service) from what
    the nodes left behind; `clock` is the run's start (the states' times are measured from it).

    Transcript times are put on the lab's clock first: a node on another host stamped them with
    that host's clock, and `concurrent` compares moments across nodes (knowing each clock only to
    within its measured uncertainty)."""
    placements = placements or {}
    outcomes = {n.name: outcome(rundir, n.name, states.get(n.name), placements.get(n.name)) for n in plan.nodes}
    outcomes, crashed = watch.judge(outcomes, watch.runs_from_states(states, clock),
                                    ((e.check, e.nodes) for e in plan.expect))
    results = [
        Verdict(f"start {s.plan.name}", CheckResult("start", s.plan.name, False, s.note))
        for s in states.values() if s.failed_start
    ] + [
        Verdict(f"timeout {s.plan.name}", CheckResult("timeout", s.plan.name, False, s.note))
        for s in states.values() if s.killed_at_deadline
    ] + [Verdict(f"service {r.node}", r) for r in crashed]
    for e in plan.expect:
        results += [Verdict(e.label, r) for r in evaluate(e.check, e.params, [outcomes[n] for n in e.nodes])]
    return results


def outcome(rundir: RunDir, name: str, state: NodeState | None, placed: Placement | None = None) -> NodeOutcome:
    clock_offset = placed.clock_offset if placed else 0.0
    return NodeOutcome(
        name=name,
        started=state is not None and state.started_at is not None and not state.blocked,
        exit_code=state.exit_code if state else None,
        stopped_by_lab=state.stopped_by_lab if state else False,
        note=(state.note if state else "not started: the lab did not come up"),
        transcript=on_lab_clock(read_transcript(rundir.transcript(name)), clock_offset),
        log=read_log(rundir.log(name)),
        cause=output_limit(rundir, name),
        clock_uncertainty=placed.uncertainty if placed else 0.0,
    )


def output_limit(rundir: RunDir, name: str) -> str:
    """A program stopped at the output limit gets EFBIG or SIGXFSZ: its output cannot say why."""
    try:
        return OUTPUT_LIMITED if rundir.log(name).stat().st_size >= MAX_OUTPUT else ""
    except OSError:
        return ""


def read_transcript(path: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short when the node was killed
                if isinstance(event, dict):
                    events.append(event)
    except FileNotFoundError:
        pass
    return events


def on_lab_clock(events: list[dict[str, Any]], clock_offset: float) -> list[dict[str, Any]]:
    """Events stamped by a host whose clock is `clock_offset` s ahead, with times on the lab's clock."""
    if not clock_offset:
        return events
    return [{**e, "t": e["t"] - clock_offset} if isinstance(e.get("t"), (int, float)) else e for e in events]


def read_log(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(LOG_READ_LIMIT).decode(errors="replace")
    except FileNotFoundError:
        return ""


def log_tail(rundir: RunDir, name: str) -> str:
    """Evidence for start failures: the exception a node died of, else the last line it printed."""
    log = read_log(rundir.log(name))
    last = watch.last_log_line(log)
    if output_limit(rundir, name):
        return f"{OUTPUT_LIMITED}; last: {last[:80]}"
    return watch.last_error_line(log) or last
