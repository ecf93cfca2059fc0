"""A plan executed on a backend that is already up: start in `after` order, each waiting for
readiness -> wait for the tasks (bounded by the scenario's timeout) -> stop the services; for a
kept lab, every node brought up, then watched until it is stopped. Each node's `NodeState` records
how its run went. Bringing the backend up and down, checking and reporting are the orchestrator's
(lab/orchestrator.py), around this.

Single-threaded on purpose: the netns backend forks role processes from this process, which is
only safe while no other thread exists. Every wait has a deadline and every failure names what
was awaited.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lab.backends import ANSWERED, EXITED, LAUNCHED, READY, Backend, Event
from lab.barrier import Barrier
from lab.errors import BackendError, Interrupted, LabError
from lab.plan import STARTED, TCP, NodePlan, Plan, StepPlan
from lab.schedule import NODE_STEPS, Fired, Schedule
from lab.signals import exit_words

Progress = Callable[[str], None]
CLOCK_SLACK = 0.05  # s added to the clocks' measured uncertainty when nodes run on several hosts
HOSTS_LIMIT = 600.0  # s the lab waits, in all, for an engine to create the hosts of nodes it asked to start


@dataclass
class NodeState:
    plan: NodePlan
    started_at: float | None = None
    ready_at: float | None = None
    exit_code: int | None = None
    exited: bool = False
    exited_at: float | None = None  # when it exited on its own (time.monotonic()); None if the lab stopped it
    stopped_by_lab: bool = False
    blocked: bool = False
    failed_start: bool = False
    killed_at_deadline: bool = False
    launching: bool = False  # asked to start, waiting for its host to exist
    launched_at: float | None = None  # when its deferred host came to exist (LAUNCHED), if it was deferred
    paused: StepPlan | None = None  # the timeline's step that paused it, until one resumes it
    restarts: int = 0  # times the timeline restarted it
    cause: str = ""  # why it ended, when a limit ended it (the backend's word)
    note: str = ""

    @property
    def running(self) -> bool:
        return self.started_at is not None and not self.exited


@dataclass
class Execution:
    """One run of a plan's nodes on a backend that is already up."""

    plan: Plan
    backend: Backend
    progress: Progress
    log_tail: Callable[[str], str]
    interrupted: Callable[[], None] = lambda: None  # raises Interrupted at safe points
    states: dict[str, NodeState] = field(default_factory=dict)
    t0: float = field(default_factory=time.monotonic)
    timed_out: bool = False
    host_wait: float = 0.0  # s spent with a node asked to start whose host did not exist yet
    waiting_since: float | None = None
    launched: int = 0  # nodes whose deferred host came to exist (container backends): progress k/N
    began: float | None = None  # when the lab began coming up (monotonic): "N node(s) up in" counts from it
    all_up: bool = False  # said once: every node that can start has its host and its program started
    schedule: Schedule = field(init=False)  # the fault timeline (lab/schedule.py)
    barrier: Barrier = field(init=False)  # clients of `concurrent` expectations, held until released
    clock_margin: float = field(init=False)  # s a group's release waits (see lab/barrier.py)

    def __post_init__(self) -> None:
        self.states = {n.name: NodeState(n) for n in self.plan.nodes}
        self.barrier = Barrier(self.plan)
        self.schedule = Schedule(self.plan.timeline)
        placed = self.backend.placements()  # known once the backend is up: measured, not changing
        self.clock_margin = 4 * max(p.uncertainty for p in placed.values()) + CLOCK_SLACK if placed else 0.0
        for s in self.states.values():
            if not s.plan.runs_something:  # a plain host (e.g. a router) is ready once it exists
                s.started_at = s.ready_at = self.t0
                s.exited = True

    def run(self) -> None:
        """A one-shot run: every task to its end, then the services are stopped."""
        self._drive(self._finished)
        self._stop_services()

    def bring_up(self) -> None:
        """For a lab that keeps running: every node started, every service ready (or failed)."""
        self._drive(self._all_up)

    def watch(self, timeout: float) -> None:
        """Keep track of a running lab (exits, late readiness) for at most `timeout` seconds."""
        for event in self.backend.poll(min(timeout, max(0.0, self._next_step() - time.monotonic()))):
            self._handle(event)
        self._release_groups()
        self._timeline()
        self.interrupted()

    def _deadline(self, now: float) -> float:
        """The run's timeout is the programs' time: time spent waiting for an engine to create the
        hosts of nodes the lab asked to start (a busy machine creates containers slowly) is added to
        it, up to HOSTS_LIMIT in all, so a slow engine never turns a correct program's verdict."""
        waiting = any(s.launching and not s.exited for s in self.states.values())
        if waiting and self.waiting_since is None:
            self.waiting_since = now
        elif not waiting and self.waiting_since is not None:
            self.host_wait, self.waiting_since = self.host_wait + now - self.waiting_since, None
        return self.t0 + self.plan.timeout + min(HOSTS_LIMIT, self._waited(now))

    def _waited(self, now: float) -> float:
        """Seconds spent so far waiting for hosts (see _deadline)."""
        return self.host_wait + (now - self.waiting_since if self.waiting_since is not None else 0.0)

    def _drive(self, done: Callable[[], bool]) -> None:
        self._start_unblocked()
        self._say_all_up()
        while not done():
            now = time.monotonic()
            deadline = self._deadline(now)
            if now >= deadline:
                self._hit_deadline()
                break
            wait = min(0.2, deadline - now, self._next_ready_deadline() - now,
                       self.barrier.next_deadline(self.clock_margin) - now, self._next_step() - now)
            for event in self.backend.poll(max(0.0, wait)):
                self._handle(event)
            self._release_groups()
            self.interrupted()
            self._check_ready_deadlines()
            self._start_unblocked()
            self._say_all_up()
            self._timeline()

    def _all_up(self) -> bool:
        return all(s.blocked or (s.started_at is not None and (s.ready_at is not None or s.exited))
                   for s in self.states.values())

    def stop_all(self) -> None:
        self._stop_services()

    # -- the fault timeline ----------------------------------------------------------------------
    def _ready_times(self) -> dict[str, float | None]:
        return {name: s.ready_at for name, s in self.states.items()}

    def _next_step(self) -> float:
        return self.schedule.next_due(self._ready_times()) if self.plan.timeline else float("inf")

    def _timeline(self) -> None:
        """Fire the steps that are due. The lab is up once every node started and every service is
        ready, leaving out the nodes that wait for a step not yet fired (themselves or through the
        nodes they start after); a step that waits for a node that never came up never fires, and
        the nodes that wait for it are not started, saying why."""
        if not self.plan.timeline:
            return
        if self.schedule.up_at is None:  # (known once: not looked for again at every poll)
            waiting = self._waiting_for_steps()
            if all(name in waiting or s.blocked or (s.started_at is not None and (s.ready_at is not None or s.exited))
                   for name, s in self.states.items()):
                self.schedule.up_at = time.monotonic()
        self._unreachable()
        due = self.schedule.due(time.monotonic(), self._ready_times())
        for step in due:
            fired = Fired(step, time.monotonic())
            self.schedule.fired.append(fired)
            self.progress(f"  fault   {step.label} ({fired.at - self.t0:.2f}s)")
            try:
                self._apply(step, fired)
            except Interrupted:
                raise
            except LabError as e:  # where the scenario asked for it, and what it was
                raise BackendError(f"{step.loc}: {step.label}: {e}") from None
        if due:
            self._start_unblocked()  # nodes waiting for these steps go now

    def _apply(self, step: StepPlan, fired: Fired) -> None:
        if step.action in NODE_STEPS:
            running = [n for n in step.nodes if self.states[n].running]
            if len(running) < len(step.nodes):
                idle = [n for n in step.nodes if n not in running]
                self.progress(f"          {', '.join(idle)}: not running, nothing to {step.action}")
            fired.codes = self._stop_by_timeline(step, running, fired.at)
            if step.action == "restart":
                self._restart(running)
            return
        self.backend.disturb(step)
        for name in step.nodes if step.action in ("pause", "resume") else ():
            self.states[name].paused = step if step.action == "pause" else None

    def _waiting_for_steps(self) -> set[str]:
        """Nodes that wait for a step not yet fired, themselves or through their `after` nodes."""
        waiting = {n for n, s in self.states.items() if not self.schedule.happened(s.plan.after_steps)}
        while more := {n for n, s in self.states.items() if n not in waiting and set(s.plan.after) & waiting}:
            waiting |= more
        return waiting

    def _unreachable(self) -> None:
        """Steps after a node that can no longer become ready, or after such a step, never fire; the
        nodes that wait for them are not started (their note says which step, and why)."""
        for step in self.schedule.pending():
            node = self.states.get(step.after or "")
            if node is not None and node.ready_at is None and (node.blocked or node.failed_start):
                self.schedule.unreachable[step.index] = f"{step.after} never became ready"
            elif step.after in self.schedule.cannot():
                self.schedule.unreachable[step.index] = f"step {step.after!r} cannot happen"
        lost = self.schedule.cannot()
        for s in self.states.values():
            gone = [n for n in s.plan.after_steps if n in lost]
            if gone and s.started_at is None and not s.blocked:
                s.blocked, s.note = True, f"not started: step {gone[0]!r} cannot happen ({lost[gone[0]]})"
                self._block_dependents(s.plan.name, s.note)

    def _stop_by_timeline(self, step: StepPlan, names: list[str], at: float) -> dict[str, int | None]:
        """A node the timeline stops or kills did not crash: the lab stopped it (the service watch
        judges it so), and its note says which step. `kill` is SIGKILL at once."""
        self._resume(names)
        codes = self.backend.stop(names, grace=0.0 if step.action == "kill" else 1.0) if names else {}
        for name in names:
            s = self.states[name]
            if not s.exited:
                s.exited, s.stopped_by_lab, s.exit_code = True, True, codes.get(name)
            s.note = f"{step.action} by the timeline at {at - self.t0:.2f}s ({step.loc})"
        for event in self.backend.poll(0):  # what ended meanwhile; the stopped nodes' own ends are had
            self._handle(event)
        return codes

    def _restart(self, names: list[str]) -> None:
        """Start the nodes again in their hosts, as new: readiness is awaited again, and the run
        waits for a restarted task as for the first."""
        for name in names:
            s = self.states[name]
            s.restarts += 1
            s.exited, s.stopped_by_lab, s.exit_code, s.exited_at, s.ready_at = False, False, None, None, None
            s.failed_start, s.cause = False, ""
            s.started_at = time.monotonic()
            s.launching = not self.backend.start(s.plan)
            if s.plan.ready.kind == STARTED and not s.launching:
                s.ready_at = s.started_at

    def _resume(self, names: list[str]) -> None:
        """Paused nodes are resumed before they are stopped: a frozen process cannot end."""
        for name in names:
            step = self.states[name].paused
            if step is not None:
                self.backend.disturb(StepPlan(-1, "resume", f"resume {name}", step.loc, (name,)))
                self.states[name].paused = None

    # -- scheduling ------------------------------------------------------------------------------
    def _start_unblocked(self) -> None:
        for s in self.states.values():
            if s.started_at is None and not s.blocked and all(
                self.states[a].ready_at is not None for a in s.plan.after
            ) and self.schedule.happened(s.plan.after_steps):
                self.interrupted()
                s.started_at = time.monotonic()
                s.launching = not self.backend.start(s.plan)
                if s.plan.ready.kind == STARTED and not s.launching:  # a task, or a program without `ready:`
                    s.ready_at = s.started_at

    def _finished(self) -> bool:
        for s in self.states.values():
            if s.blocked:
                continue
            if s.started_at is None:
                return False  # waits for its `after` nodes
            if s.running and (not s.plan.service or s.ready_at is None):
                return False  # a task still working, or a service not yet ready
        return True

    def _handle(self, event: Event) -> None:
        s = self.states[event.node]
        if s.exited:
            return  # already accounted for (stopped by the lab)
        if event.kind == LAUNCHED:  # its host is up now: readiness is timed from here
            s.started_at, s.launching = time.monotonic(), False
            s.launched_at = s.started_at
            self._hosts_progress()
            if s.plan.ready.kind == STARTED:
                s.ready_at = s.started_at
        elif event.kind == ANSWERED:
            late = self.barrier.answered(s.plan.name, time.monotonic())
            if late:
                self.backend.release(late)
        elif event.kind == READY and s.ready_at is None:
            s.ready_at = time.monotonic()
            if s.plan.service:
                self.progress(f"  ready   {s.plan.name:<14} {s.plan.address!s:<15} "
                              f"{_what(s.plan)} ({s.ready_at - self.t0:.2f}s)")
        elif event.kind == EXITED:
            s.exited, s.exit_code, s.exited_at, s.cause = True, event.code, time.monotonic(), event.cause
            self._renew_waiting(s.plan.name)
            if s.ready_at is None:
                self._failed_start(s, f"exited with {_code(event.code)} before it was ready")
            elif s.plan.service:
                s.note = f"exited with {_code(event.code)} while serving"
                self.progress(f"  exited  {s.plan.name} ({_code(event.code)})")

    def _say_all_up(self) -> None:
        """Once every node that can start is up (its host exists, its program started): how long the
        lab took to come up, from the moment it began (an engine may create hosts long after)."""
        if self.all_up or not all(s.blocked or s.failed_start or (s.started_at is not None and not s.launching)
                                  for s in self.states.values()):
            return
        self.all_up = True
        up = sum(1 for s in self.states.values() if not s.blocked and not s.failed_start)
        began = self.t0 if self.began is None else self.began
        self.progress(f"lab {self.plan.name}: {up} node(s) up in {time.monotonic() - began:.2f}s")

    def _hosts_progress(self) -> None:
        """While an engine creates the hosts (they exist only once launched), say how far it is:
        a line at each quarter, and when every host is up, since when the run began."""
        self.launched += 1
        total = sum(1 for s in self.states.values() if s.plan.runs_something and not s.blocked and not s.failed_start)
        k, elapsed = self.launched, time.monotonic() - self.t0
        status = getattr(self.progress, "status", None)  # a terminal: every step, on one line
        if status is not None and k < total:
            status(f"  hosts   {k}/{total} up ({elapsed:.1f}s)")
        if k < total and total >= 8 and k * 4 // total > (k - 1) * 4 // total:
            self.progress(f"  hosts   {k}/{total} up ({elapsed:.1f}s)")

    def _release_groups(self) -> None:
        """Let the clients held for `concurrent` go on when the barrier says so (lab/barrier.py)."""
        due = self.barrier.due(time.monotonic(), self._settled, self.clock_margin)
        if due:
            self.backend.release(due)

    def _renew_waiting(self, gone: str) -> None:
        """A client of a released group has ended: those still waiting for their reply (and
        started) count their timeout afresh, the server being free of it (lab/barrier.py)."""
        waiting = [n for n in self.barrier.gone(gone, self._settled)
                   if self.states[n].started_at is not None and not self.states[n].launching]
        if waiting:
            self.backend.release(waiting)

    def _settled(self, node: str) -> bool:
        return self.states[node].exited or self.states[node].blocked

    def _next_ready_deadline(self) -> float:
        pending = [s.started_at + s.plan.ready.timeout for s in self.states.values()
                   if s.running and s.ready_at is None and s.started_at is not None and not s.launching]
        return min(pending, default=float("inf"))

    def _check_ready_deadlines(self) -> None:
        now = time.monotonic()
        for s in self.states.values():
            if s.running and s.ready_at is None and s.started_at is not None and not s.launching \
                    and now >= s.started_at + s.plan.ready.timeout:
                self._stop([s.plan.name])
                what = (f"nothing listens on tcp {s.plan.ready.port} on an address other nodes can reach "
                        "(127.0.0.1 and 'localhost' are not)"
                        if s.plan.ready.kind == TCP
                        else "no readiness line")
                self._failed_start(s, f"not ready after {s.plan.ready.timeout:g}s: {what}")

    def _failed_start(self, s: NodeState, why: str) -> None:
        s.failed_start = True
        tail = self.log_tail(s.plan.name)
        s.note = why + (f" (last output: {tail!r})" if tail else "")
        self.progress(f"  FAILED  {s.plan.name}: {s.note}")
        self._block_dependents(s.plan.name, f"not started: {s.plan.name} {why}" + (f" ({tail})" if tail else ""))

    def _block_dependents(self, name: str, note: str) -> None:
        for s in self.states.values():
            if name in s.plan.after and s.started_at is None and not s.blocked:
                s.blocked, s.note = True, note
                self._block_dependents(s.plan.name, note)

    def _hit_deadline(self) -> None:
        self.timed_out = True
        late = [s for s in self.states.values() if s.running and (not s.plan.service or s.ready_at is None)]
        waited = min(HOSTS_LIMIT, self._waited(time.monotonic()))
        limit = f"{self.plan.timeout:g}s" + (f" + {waited:.1f}s waiting for hosts" if waited >= 0.05 else "")
        for s in late:
            s.killed_at_deadline = True
            s.note = (f"its host was not created before the run's timeout ({limit})" if s.launching
                      else f"killed at the run's timeout ({limit})")
        self._stop([s.plan.name for s in late])
        for s in self.states.values():
            if s.started_at is None and not s.blocked:
                s.blocked, s.note = True, f"not started before the run's timeout ({self.plan.timeout:g}s)"
        self.progress(f"  TIMEOUT after {limit}: stopped {', '.join(s.plan.name for s in late)}")

    def _stop_services(self) -> None:
        for event in self.backend.poll(0):  # exits that already happened are the nodes' own, not the lab's stop
            self._handle(event)
        self._stop([s.plan.name for s in self.states.values() if s.running])

    def _stop(self, names: list[str]) -> None:
        if not names:
            return
        self._resume(names)
        codes = self.backend.stop(names, grace=1.0)
        for name in names:
            s = self.states[name]
            if not s.exited:
                s.exited, s.stopped_by_lab, s.exit_code = True, True, codes.get(name)


def _what(node: NodePlan) -> str:
    if node.role:
        return node.role
    return " ".join(node.argv or ())[:40]


def _code(code: int | None) -> str:
    """`code 3`, `code 143 (SIGTERM)` (killed by signal N is 128+N on every backend)."""
    return exit_words(code)
