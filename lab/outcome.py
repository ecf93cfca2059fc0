"""What a run left behind: its result, each node's outcome, and the one way to read a run folder.

The results are data that every later stage shares: the checks judge `NodeOutcome`s and return
`CheckResult`s, the orchestrator returns a `RunResult`, the reports (lab/reports) render it, and
the CLI, grading and the pytest plugin read it. They live here, below the orchestrator and the
reports alike, so that neither has to reach into the other for them.

A node's outcome is built in one place (`node_outcome`), whoever knows how the node's run went:
the run's own states (`lab run`, a kept lab's keeper) or a kept lab's status file (`lab check`).
Logs and transcripts are read here alone: a flood is cut at a limit, a line cut short by a kill
is skipped, and another host's timestamps are put on the lab's clock.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.backends import Placement
from lab.execution import NodeState
from lab.plan import Plan
from lab.rundir import MAX_OUTPUT, RunDir

LOG_READ_LIMIT = 16 * 1024 * 1024  # checks read at most this much of a node's log (a flood is cut)
OUTPUT_LIMITED = f"stopped at the output limit of {MAX_OUTPUT // 2**20} MiB"
TRACEBACK = "Traceback (most recent call last):"
ERROR_LINE = re.compile(r"[A-Za-z_][\w.]*(?:Error|Exception|error)(?:: .*)?")  # socket.gaierror too
ERROR_SCAN = 64 * 1024  # characters at the end of a log searched for a bare `SomethingError: ...` line
LINE_LIMIT = 200
NOT_UP = "not started: the lab did not come up"


@dataclass(frozen=True)
class Fault:
    """A step of the fault timeline that touches a node or the node it talks to (lab/recovery.py):
    a lost connection is the network's doing only once one of these has fired."""

    label: str  # as written, e.g. "restart server"
    at: float | None  # when it fired, wall clock on the lab's clock (as transcript times are); None: it never did


@dataclass(frozen=True)
class NodeOutcome:
    """What one node did, as the checks see it (built by `node_outcome`)."""

    name: str
    started: bool
    exit_code: int | None  # None: never exited on its own (stopped by the lab) or never started
    stopped_by_lab: bool  # still running at teardown (services), or killed at the run deadline
    note: str  # why it did not start / was killed; "" if nothing to say
    transcript: list[dict[str, Any]]
    log: str
    cause: str = ""  # how it ended, when the lab knows and its output may not say (the output limit)
    peer_note: str = ""  # its connection failed and its server exited or raised: what the server did
    clock_uncertainty: float = 0.0  # s: its times are on the lab's clock to within this (another host's clock)
    faults: tuple[Fault, ...] | None = None  # the steps touching it or its peer; None: not known, judged without


@dataclass(frozen=True)
class CheckResult:
    """One check's result for one node: what `checks.evaluate` returns."""

    check: str
    node: str
    passed: bool
    detail: str
    ran: bool = True  # False: the node did not run (blocked by another's failure), so no fault of its own

    def __repr__(self) -> str:  # what an assertion on a result shows: short, the verdict and why
        return f"<{self.check} {self.node}: {'pass' if self.passed else 'FAIL'}: {self.detail}>"


class Checks(list[CheckResult]):
    """Results of a kept lab's expectations now (`lab.check()` in the pytest fixture): a list, whose
    `passed` and `assert_passed()` say the verdict, the latter with each failure and the run folder."""

    def __init__(self, results: list[CheckResult], where: str = ""):
        super().__init__(results)
        self.where = where

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self)

    def assert_passed(self) -> None:
        """Raise AssertionError listing each failing check with its detail, and where to look."""
        bad = [r for r in self if not r.passed]
        if bad:
            raise AssertionError("\n".join([f"{len(bad)} of {len(self)} check(s) failed:",
                                            *(f"  {r.check} {r.node}: {r.detail}" for r in bad),
                                            *([f"run folder: {self.where}"] if self.where else [])]))

    def __repr__(self) -> str:
        bad = [r for r in self if not r.passed]
        return f"<Checks: {len(self) - len(bad)}/{len(self)} passed{'; failed: ' + repr(bad) if bad else ''}>"


@dataclass(frozen=True)
class ExpectationResult:
    """A check's result for one node, with the expectation it answers: a scenario's ("echo client")
    or the lab's own ("start server", "timeout client-1", "service server")."""

    expectation: str
    result: CheckResult


@dataclass
class RunResult:
    """One run, as `orchestrator.run` returns it and every report renders it."""

    plan: Plan
    rundir: RunDir
    backend: str
    lab_id: str
    started: float
    duration: float = 0.0
    states: dict[str, NodeState] = field(default_factory=dict)
    results: list[ExpectationResult] = field(default_factory=list)
    error: str = ""
    timed_out: bool = False
    interrupted: int = 0  # the signal number, or 0
    placements: dict[str, Placement] = field(default_factory=dict)  # node -> host (multi-host backends)
    clock: float = 0.0  # the lab's clock: time.monotonic() when the nodes' run began (NodeState times)
    notes: list[str] = field(default_factory=list)  # what the backend said of this machine (limits it cannot enforce)
    timeline: list[dict[str, Any]] = field(default_factory=list)  # each fault step: when it fired, or not
    t0: float = 0.0  # the lab's clock: time.monotonic() when the run began (planning); timings count from it
    wall0: float = 0.0  # time.time() at that moment (transcripts are stamped with the wall clock)
    phases: dict[str, tuple[float, float]] = field(default_factory=dict)  # plan/up/run/down/check: (start, end) s

    def node_times(self, node: str) -> dict[str, float | None]:
        """When a node's host existed (`created`: the end of `up`, or its deferred launch), its
        program started, it was ready and it exited, in s on the lab's clock (None: it never did)."""
        s = self.states.get(node)
        up_end = round(self.phases.get("up", (0.0, 0.0))[1], 4)

        def at(moment: float | None) -> float | None:
            return None if moment is None else round(moment - self.t0, 4)

        if s is None:
            return {"created": None, "started": None, "ready": None, "exited": None}
        created = at(s.launched_at) if s.launched_at is not None else (up_end if s.started_at is not None else None)
        return {"created": created, "started": at(s.started_at), "ready": at(s.ready_at),
                "exited": at(s.exited_at) if s.exited_at is not None else self._stopped_at(s)}

    def _stopped_at(self, s: NodeState) -> float | None:
        """A node the lab stopped ended as teardown began."""
        return round(self.phases["down"][0], 4) if s.stopped_by_lab and "down" in self.phases else None

    @property
    def passed(self) -> bool:
        return not self.error and not self.interrupted and all(e.result.passed for e in self.results)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 128 + self.interrupted
        if self.error:
            return 3
        return 0 if self.passed else 1

    @property
    def status(self) -> str:
        """The run in one word, as the terminal table and the page lead with it."""
        return "PASSED" if self.passed else ("INTERRUPTED" if self.interrupted else "FAILED")

    def __repr__(self) -> str:  # an assertion on a result shows this, not the whole plan
        good = sum(e.result.passed for e in self.results)
        return (f"<RunResult {self.plan.name} {self.status} ({good}/{len(self.results)} checks passed; "
                f"{self.backend}, lab {self.lab_id}) -> {self.rundir.root}>")

    def assert_passed(self) -> None:
        """Raise AssertionError saying why the run failed: its error or signal, each failing
        expectation with its node and detail, and the run folder (report.html, the nodes' logs)."""
        if self.passed:
            return
        lines = [f"lab {self.plan.name} {self.status} ({self.backend}, lab {self.lab_id})"]
        lines += [f"error: {self.error}"] if self.error else []
        lines += [f"interrupted by signal {self.interrupted}"] if self.interrupted else []
        lines += [f"  {e.expectation}: {e.result.node}: {e.result.detail}" for e in self.results if not e.result.passed]
        lines.append(f"run folder: {self.rundir.root} (report.html)")
        raise AssertionError("\n".join(lines))


# ------------------------------------------------------------------------------------ node outcomes

def node_outcome(rundir: RunDir, name: str, *, started: bool, exit_code: int | None, stopped_by_lab: bool,
                 note: str, placed: Placement | None = None, cause: str = "") -> NodeOutcome:
    """The one place a node's outcome is made: how its run went (from whoever knows it), with what
    it left in the run folder; a node on another host has its times put on the lab's clock."""
    return NodeOutcome(
        name=name, started=started, exit_code=exit_code, stopped_by_lab=stopped_by_lab, note=note,
        transcript=on_lab_clock(read_transcript(rundir.transcript(name)), placed.clock_offset if placed else 0.0),
        log=read_log(rundir.log(name)),
        cause=cause or output_limit(rundir, name),
        clock_uncertainty=placed.uncertainty if placed else 0.0,
    )


def outcome_of_state(rundir: RunDir, name: str, state: NodeState | None,
                     placed: Placement | None = None) -> NodeOutcome:
    """A node's outcome from the run's own record of it (None: the lab did not come up that far)."""
    if state is None:
        return node_outcome(rundir, name, started=False, exit_code=None, stopped_by_lab=False, note=NOT_UP,
                            placed=placed)
    return node_outcome(rundir, name, started=state.started_at is not None and not state.blocked,
                        exit_code=state.exit_code, stopped_by_lab=state.stopped_by_lab, note=state.note,
                        placed=placed, cause=state.cause)


# ---------------------------------------------------------------------------------- run folder files

def read_transcript(path: Path) -> list[dict[str, Any]]:
    """A role's transcript events; a line cut short (the node was killed mid-write) is skipped."""
    events: list[dict[str, Any]] = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
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
    """A node's stdout and stderr, at most LOG_READ_LIMIT bytes of it: a flood stays bounded."""
    try:
        with open(path, "rb") as f:
            return f.read(LOG_READ_LIMIT).decode(errors="replace")
    except FileNotFoundError:
        return ""


def output_limit(rundir: RunDir, name: str) -> str:
    """A program stopped at the output limit gets EFBIG or SIGXFSZ: its output cannot say why."""
    try:
        return OUTPUT_LIMITED if rundir.log(name).stat().st_size >= MAX_OUTPUT else ""
    except OSError:
        return ""


def log_tail(rundir: RunDir, name: str) -> str:
    """Evidence for start failures: the exception a node died of, else the last line it printed."""
    log = read_log(rundir.log(name))
    last = last_log_line(log)
    if output_limit(rundir, name):
        return f"{OUTPUT_LIMITED}; last: {last[:80]}"
    return last_error_line(log) or last


def last_error_line(log: str) -> str:
    """The exception line that ends the last traceback of a log, else the last line that looks like
    `SomethingError: ...` (a SyntaxError has no traceback header), else "": what a Python program
    died of, or what killed one of its serving threads (`Exception in thread ...`)."""
    start = log.rfind(TRACEBACK)
    pos = start + len(TRACEBACK) if start >= 0 else len(log)
    while pos < len(log):  # line by line: the traceback may sit early in a long log
        end = log.find("\n", pos)
        end = len(log) if end < 0 else end
        line = log[pos:end]
        if line.strip() and not line[0].isspace():
            return line.strip()[:LINE_LIMIT]
        pos = end + 1
    for line in reversed(log[-ERROR_SCAN:].splitlines()):
        if ERROR_LINE.fullmatch(line.strip()):
            return line.strip()[:LINE_LIMIT]
    return ""


def last_log_line(log: str) -> str:
    lines = [ln.strip() for ln in log[-4096:].splitlines() if ln.strip()]
    return lines[-1][:LINE_LIMIT] if lines else ""
