"""One lab run, end to end: scenario -> plan -> backend up -> execution -> down -> checks -> report.

Teardown sits in `finally` and runs with signals deferred; logs and transcripts are written by the
nodes straight into the run folder, so they survive every failure path, Ctrl-C included. The run
returns its `RunResult` (lab/outcome.py) and renders nothing: it only has the reports written
(lab/reports), from one `finally`, so every run that created its folder leaves a report in it.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Protocol

from lab import backends, forked, recovery, watch
from lab.backends import Backend, Placement
from lab.checks import evaluate
from lab.errors import Interrupted, LabError, StorageProblem
from lab.execution import Execution, NodeState, Progress
from lab.journal import Journal, new_lab_id, state_dir
from lab.outcome import CheckResult, ExpectationResult, RunResult, log_tail, outcome_of_state
from lab.plan import Plan, make_plan
from lab.reports import write_reports
from lab.rundir import RunDir
from lab.scenario.model import Scenario
from lab.signals import STARTED, SignalGuard


def stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class TerminalProgress:
    """Progress lines on stderr, and on a terminal the status of long work (`hosts 37/101 up`) on one
    line that each update overwrites (elsewhere the status is left out: the lines say each phase).
    The execution finds `status` on the progress it is given; a plain function has none."""

    def __init__(self) -> None:
        self.showing = False

    def __call__(self, line: str) -> None:
        self._clear()
        print(line, file=sys.stderr, flush=True)

    def status(self, text: str) -> None:
        if sys.stderr.isatty():
            self._clear()
            sys.stderr.write(text)
            sys.stderr.flush()
            self.showing = True

    def _clear(self) -> None:
        if self.showing:
            sys.stderr.write("\r\x1b[K")
            self.showing = False


class Holder(Protocol):
    """Keeps a lab running after bring-up (`lab up`), until a signal (`lab down`) ends it."""

    def up(self, lab_id: str, execution: Execution) -> None: ...

    def update(self, execution: Execution) -> None: ...


def run(scenario: Scenario, backend_name: str = "netns", out: Path | None = None,
        progress: Progress = stderr_progress, hold: Holder | None = None,
        options: backends.Options | None = None, guard: SignalGuard | None = None,
        own_process: bool = False, seed: int | None = None) -> RunResult:
    """Run a validated scenario; always tears down; returns the result, its reports written.

    With `hold`, the lab is brought up, announced, and kept running until SIGINT/SIGTERM; the
    expectations are then checked against what happened, and everything is torn down.

    `guard`: the caller's, already in place (`lab run` installs it before its imports); without
    one, the run installs its own once it starts creating things. A signal the caller's guard
    recorded before anything exists raises `Interrupted` here: nothing to tear down or report.
    Once the run folder exists, its reports are written however the run ends.

    `own_process`: this process is the lab's alone (`lab run`, a keeper, `python -m lab.entry`), so
    a backend whose `up` changes its process (a lab without root) may change it; otherwise (a
    library caller: the pytest plugin, a test) that run happens in a child process (lab/forked.py).

    `seed`: what the clients' `{word}`s are drawn from (default: a new one, in the report)."""
    t0, wall0 = time.monotonic(), time.time()
    plan = make_plan(scenario, secrets.randbelow(2**31) if seed is None else seed)
    planned = (t0, time.monotonic(), wall0)
    journal = Journal(state_dir(), new_lab_id())
    backend = backends.create(backend_name, journal, options)
    backend.check(plan)  # environment problems surface before anything is created
    if backend.changes_process() and not own_process:  # not the caller's process: a child's
        with _guarded(guard) as guard:
            return forked.run(lambda p: _run(scenario, (plan, planned), (backend_name, backend), journal, out, p,
                                             hold, guard, os.getppid()), progress, guard)
    return _run(scenario, (plan, planned), (backend_name, backend), journal, out, progress, hold, guard, os.getpid())


def _run(scenario: Scenario, planned: tuple[Plan, tuple[float, float, float]], named: tuple[str, Backend],
         journal: Journal,
         out: Path | None, progress: Progress, hold: Holder | None, guard: SignalGuard | None,
         caller: int) -> RunResult:
    """The run proper; `caller`: the pid that signals go to (the STARTED line names it); `planned`:
    the plan, and when planning began and ended (the lab's clock starts there)."""
    plan, (t0, plan_end, wall0) = planned
    backend_name, backend = named
    raise_fd_limit()
    if guard is not None:
        guard.check()
    rundir = RunDir.create(out, plan.name)
    rundir.write("scenario.yaml", scenario.source)
    rundir.write("plan.json", json.dumps(plan.to_json(), indent=2))
    result = RunResult(plan, rundir, backend_name, journal.lab_id, time.time(), notes=backend.notes(), t0=t0,
                       wall0=wall0, phases={"plan": (0.0, plan_end - t0)})
    for note in result.notes:
        progress(f"lab {plan.name}: {note}")
    try:
        execution = _execute(result, str(scenario.path), backend, journal, progress, hold, guard, caller)
        result.placements = backend.placements()
        if execution is not None:
            _collect(result, execution, backend)
        with _phase(result, "check"):
            result.results = check(plan, result.states, rundir, result.placements, result.clock,
                                   recovery.fired_at(result.timeline, result.wall0))
    except BaseException as e:  # it goes on up; the reports written below say it, never "passed"
        if isinstance(e, Interrupted):
            result.interrupted = result.interrupted or e.signum
        else:
            result.error = result.error or (str(e) if isinstance(e, LabError)
                                            else f"internal error: {type(e).__name__}: {e}")
        raise
    finally:
        try:
            write_reports(result)
        except StorageProblem as e:  # the verdict stands and is returned; the run says what it lost
            result.error = result.error or str(e)
            progress(f"lab {plan.name}: {e}")
    return result


def _execute(result: RunResult, scenario_path: str, backend: Backend, journal: Journal, progress: Progress,
             hold: Holder | None, guard: SignalGuard | None, caller: int) -> Execution | None:
    """Up, execute (or hold), down: always down, with signals deferred. How it ended goes into
    `result` (error, interrupted, duration); the execution, if it began, holds what the nodes did."""
    plan, name, t0 = result.plan, result.plan.name, time.monotonic()
    execution: Execution | None = None
    with _guarded(guard) as guard:
        progress(STARTED.format(name=name, backend=result.backend, pid=caller))
        journal.open(backend=result.backend, scenario=scenario_path, run_dir=str(result.rundir.root),
                     name=name, kept=hold is not None)
        try:
            with _phase(result, "up"):
                backend.up(plan, result.rundir)
            guard.check()
            progress(f"lab {name}: {len(plan.networks)} network(s) up in {time.monotonic() - t0:.2f}s, "
                     f"{len(plan.nodes)} node(s) to start ({result.backend}, lab {journal.lab_id})")
            execution = Execution(plan, backend, progress, lambda n: log_tail(result.rundir, n), guard.check,
                                  began=t0)
            with _phase(result, "run"):
                if hold is None:
                    execution.run()
                else:
                    _hold(execution, hold, journal.lab_id, guard)
        except Interrupted as e:
            result.interrupted = e.signum
            progress(f"lab {name}: interrupted (signal {e.signum}), tearing down")
        except LabError as e:
            result.error = str(e)
            progress(f"lab {name}: error: {e}")
        except Exception as e:  # noqa: BLE001 - a bug must still end in teardown and a report
            result.error = f"internal error: {type(e).__name__}: {e}"
            progress(f"lab {name}: {result.error} (please report it)")
        finally:
            with _phase(result, "down"):
                _down(result, backend, progress)
        if guard.seen and not result.interrupted:
            result.interrupted = guard.seen[0]
    result.duration = time.monotonic() - t0
    return execution


def _down(result: RunResult, backend: Backend, progress: Progress) -> None:
    try:
        backend.down()
    except Exception as e:  # noqa: BLE001 - the reports are still written
        why = str(e) if isinstance(e, LabError) else f"internal error: {type(e).__name__}: {e}"
        result.error = result.error or f"teardown incomplete: {why} (run `lab clean`)"
        progress(f"lab {result.plan.name}: teardown incomplete: {why}; `lab clean` will finish it")


def _collect(result: RunResult, execution: Execution, backend: Backend) -> None:
    """What the nodes did, from the execution: a node still running when the run ended was stopped
    by the teardown, and says why; a node that exited has its code, if the backend knows it."""
    result.states, result.timed_out, result.clock = execution.states, execution.timed_out, execution.t0
    result.timeline = execution.schedule.report(result.t0)  # on the lab's clock, as the reports say
    for s in result.states.values():
        if result.interrupted and s.running:
            s.exited, s.stopped_by_lab, s.note = True, True, "stopped: the run was interrupted"
        elif result.error and s.running:
            s.exited, s.stopped_by_lab, s.note = True, True, f"stopped: {_cut(result.error, 100)}"
        if s.exited and s.exit_code is None and s.plan.runs_something:
            s.exit_code = backend.exit_code(s.plan.name)


@contextmanager
def _phase(result: RunResult, name: str) -> Iterator[None]:
    """Time one phase of the run on the lab's clock (report.json's `timings`), however it ends."""
    start = time.monotonic()
    try:
        yield
    finally:
        result.phases[name] = (start - result.t0, time.monotonic() - result.t0)


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
          placements: dict[str, Placement] | None = None, clock: float = 0.0,
          fired: Sequence[float | None] | None = None) -> list[ExpectationResult]:
    """Evaluate every expectation (and every start failure, timeout and crashed service) from what
    the nodes left behind; `clock` is the run's start (the states' times are measured from it).

    Transcript times are put on the lab's clock first: a node on another host stamped them with
    that host's clock, and `concurrent` compares moments across nodes (knowing each clock only to
    within its measured uncertainty). `fired`: when each step of the plan's timeline fired, wall
    clock (None: it did not; recovery.fired_at makes it of the run's timeline): a reconnecting
    client's loss before any fault touching it or its server is its server's doing (lab/recovery.py).
    Without it (None), the faults are not known, and `echo` and `recovers` judge without them."""
    placements = placements or {}
    runs = watch.runs_from_states(states, clock)
    outcomes = recovery.with_faults({n.name: outcome_of_state(rundir, n.name, states.get(n.name),
                                                              placements.get(n.name)) for n in plan.nodes},
                                    runs, recovery.steps_of_plan(plan.timeline), fired)
    outcomes, crashed = watch.judge(outcomes, runs, ((e.check, e.nodes) for e in plan.expect))
    results = [
        ExpectationResult(f"start {s.plan.name}", CheckResult("start", s.plan.name, False, s.note))
        for s in states.values() if s.failed_start
    ] + [
        ExpectationResult(f"timeout {s.plan.name}", CheckResult("timeout", s.plan.name, False, s.note))
        for s in states.values() if s.killed_at_deadline
    ] + [ExpectationResult(f"service {r.node}", r) for r in crashed]
    for e in plan.expect:
        checked = evaluate(e.check, e.params, [outcomes[n] for n in e.nodes])
        results += [ExpectationResult(e.label, r) for r in checked]
    return results
