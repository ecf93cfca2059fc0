"""Labs that keep running, as library calls: up, labs, exec, logs, check, down (no printing: the
CLI and the pytest fixture present them).

`bring_up` validates, checks the environment, then hands the lab to a keeper: a detached process
(`python -m lab.entry keep`, its own session, so the terminal's Ctrl-C does not reach it) that
runs the same orchestrator as `lab run`, brings every node up, reports on a pipe, and keeps the
lab until `take_down` sends it SIGTERM. The keeper then checks the expectations, writes the report
and tears down, as a run would. Every other call finds the lab from its journal alone (the
scenario file may be gone, the working directory another).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import backends, inventory, recovery, watch
from lab.checks import evaluate
from lab.errors import EnvironmentProblem, LabError
from lab.execution import HOSTS_LIMIT, Execution
from lab.journal import Journal, drop_empty_state, journals, process_start, state_dir
from lab.outcome import ExpectationResult, NodeOutcome, node_outcome
from lab.plan import make_plan
from lab.reports import Report, load_report
from lab.rundir import RunDir
from lab.scenario import load_scenario

# Beyond the scenario's timeout, for the keeper to start and report, and for the engine to create
# its hosts (the run's clock leaves that out, up to HOSTS_LIMIT: see Execution._deadline).
UP_MARGIN = 60.0 + HOSTS_LIMIT
DOWN_TIMEOUT = 60.0


# -- up / keep -------------------------------------------------------------------------------------
def bring_up(scenario_path: str, backend: str = "netns", out: str | None = None,
             cluster: str | None = None) -> tuple[dict[str, Any], RunDir]:
    """`lab up` as a library call: the keeper's status ({"id", "ok", "failures", "backend", "nodes"})
    and the run folder. A lab that did not come up (`ok` false) is already torn down. `cluster`:
    the cluster file (swarm), given to the keeper as an absolute path."""
    backends.load(backend).check_kept()
    scenario = load_scenario(scenario_path)
    plan = make_plan(scenario)
    cluster = str(Path(cluster).absolute()) if cluster else ""
    backends.create(backend, Journal(state_dir(), "check"),  # before anything exists
                    backends.Options(cluster=Path(cluster) if cluster else None)).check(plan)
    rundir = RunDir.create(Path(out) if out else None, plan.name)
    read, write = os.pipe()
    with open(rundir.file("keeper.log"), "ab") as log:
        keeper = subprocess.Popen(
            [sys.executable, "-m", "lab.entry", "keep", str(scenario.path), backend, str(rundir.root), str(write),
             *([cluster] if cluster else [])],
            pass_fds=(write,), stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    os.close(write)
    try:
        status = _read_status(read, plan.timeout + UP_MARGIN)
    finally:
        os.close(read)
    if status is None:
        keeper.kill()
        raise EnvironmentProblem(f"the lab did not report within {plan.timeout + UP_MARGIN:.0f}s "
                                 f"(see {rundir.file('keeper.log')}); `lab clean` removes what is left")
    if not status["ok"]:  # the keeper tears the lab down: return once nothing is left
        try:
            keeper.wait(timeout=DOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    return status, rundir


def _read_status(fd: int, timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
        if data.endswith(b"\n"):
            break
    try:
        status: dict[str, Any] = json.loads(data)
        return status
    except ValueError:
        return None


class StatusHolder:
    """The keeper's side: announce the lab on the status fd, keep status.json current."""

    def __init__(self, fd: int, backend: str):
        self.fd, self.backend = fd, backend
        self.journal_folder: Path | None = None
        self.placed: dict[str, backends.Placement] = {}  # where each node runs (known once up)
        self.last = ""
        self.last_timeline = ""
        self.wall0: float | None = None  # time.time() at the execution's t0 (its steps' moments are on that clock)

    def up(self, lab_id: str, execution: Execution) -> None:
        self.journal_folder = state_dir() / lab_id
        failures = [f"{s.plan.name}: {s.note}" for s in execution.states.values() if s.failed_start]
        if execution.timed_out:
            failures.append(f"not up within {execution.plan.timeout:g}s")
        self.placed = execution.backend.placements()
        status = {"id": lab_id, "ok": not failures, "failures": failures, "backend": self.backend,
                  "nodes": [_node_row(s, self.placed.get(s.plan.name)) for s in execution.states.values()]}
        self.update(execution)
        try:
            os.write(self.fd, (json.dumps(status) + "\n").encode())
            os.close(self.fd)
        except OSError:
            pass  # `lab up` gave up waiting: the lab still runs, `lab ps` shows it

    def update(self, execution: Execution) -> None:
        if self.journal_folder is None:
            return
        text = json.dumps({s.plan.name: _node_status(s, execution.t0, self.placed.get(s.plan.name))
                           for s in execution.states.values()})
        if text != self.last and self.journal_folder.exists():
            _replace(self.journal_folder / "status.json", text)
            self.last = text
        self.update_timeline(execution)

    def update_timeline(self, execution: Execution) -> None:
        """timeline.json: when each step of the timeline fired, so that `lab check` knows which
        faults had reached a client before it lost a connection (lab/recovery.py)."""
        if self.wall0 is None:
            self.wall0 = time.time() - (time.monotonic() - execution.t0)
        text = json.dumps({"wall0": self.wall0, "steps": execution.schedule.report(execution.t0)})
        if self.journal_folder is not None and text != self.last_timeline and self.journal_folder.exists():
            _replace(self.journal_folder / TIMELINE, text)
            self.last_timeline = text


TIMELINE = "timeline.json"  # in a kept lab's journal folder, beside status.json


def _replace(path: Path, text: str) -> None:
    """Write a file a reader finds whole, or not at all (written aside, then renamed over)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.rename(path)


def _node_row(s: Any, placed: backends.Placement | None) -> dict[str, Any]:
    n = s.plan
    runs = n.role or (" ".join(n.argv) if n.argv else "(host)")
    state = inventory.not_started(s.note) if s.blocked else (s.note or ("exited " + str(s.exit_code) if s.exited
                                                                      and n.runs_something else "up"))
    return {"name": n.name, "addresses": {i.name: str(i.address) for i in n.interfaces}, "runs": runs,
            "state": state, "host": placed.host if placed else ""}


def _node_status(s: Any, t0: float, placed: backends.Placement | None) -> dict[str, Any]:
    """What `lab check` needs of a node; times in seconds on the lab's clock (from `t0`); where it
    runs, with that host's clock against the lab's (its transcript's times are the host's)."""
    return {"host": placed.host if placed else "", "placed": dataclasses.asdict(placed) if placed else None,
            "started": s.started_at is not None and not s.blocked, "ready": s.ready_at is not None,
            "exited": s.exited and s.plan.runs_something, "exit_code": s.exit_code, "note": s.note,
            "started_at": None if s.started_at is None else round(s.started_at - t0, 4),
            "exited_at": None if s.exited_at is None else round(s.exited_at - t0, 4),
            "stopped_by_lab": s.stopped_by_lab, "failed_start": s.failed_start, "cause": s.cause}


def keep(scenario_path: str, backend: str, out: str, status_fd: int, cluster: str | None = None) -> int:
    from lab import orchestrator

    scenario = load_scenario(scenario_path)
    result = orchestrator.run(scenario, backend, Path(out), hold=StatusHolder(status_fd, backend),
                              options=backends.Options(cluster=Path(cluster) if cluster else None),
                              own_process=True)
    return result.exit_code


# -- shell / exec / logs / check / down --------------------------------------------------------
def exec_in(ref: str, node: str, argv: list[str], *, interactive: bool = False, capture: bool = False,
            input: str | None = None, timeout: float | None = None) -> backends.ExecResult:
    """Run a command inside a node (see backends.run_in): attached to this terminal, or its output
    captured (as text and as bytes)."""
    j = inventory.find(ref)
    info = inventory.node_plan(j, node)
    at = backends.NodeRef(node, info.get("cwd"), bool(inventory.status(j).get(node, {}).get("exited")))
    return backends.run_in(j, at, argv, interactive=interactive, capture=capture, input=input, timeout=timeout)


def shell_argv() -> list[str]:
    return [os.environ.get("LAB_SHELL", "/bin/bash"), "-i"]


def log_lines(ref: str, node: str | None = None, follow: bool = False,
              tail: int | None = None) -> Iterator[tuple[str, str]]:
    """(node, line) of the lab's logs, in the order written per node; with `follow`, until the lab
    goes down (then what the nodes wrote after the last look)."""
    j = inventory.find(ref)
    rundir = RunDir(Path(j.meta()["run_dir"]))
    names = [node] if node else [n["name"] for n in inventory.plan_json(j)["nodes"]]
    offsets = {n: 0 for n in names}

    def new() -> Iterator[tuple[str, str]]:
        for name in names:
            try:
                with open(rundir.log(name), "rb") as f:
                    f.seek(offsets[name])
                    data = f.read()
            except FileNotFoundError:
                continue
            offsets[name] += len(data)
            for line in data.decode(errors="replace").splitlines():
                yield name, line

    first = list(new())
    if tail is not None:  # each node's last `tail` lines (the order per node is kept)
        kept = {name: [ln for n, ln in first if n == name][-tail:] if tail > 0 else [] for name in names}
        first = [(name, ln) for name in names for ln in kept[name]]
    yield from first
    while follow and j.folder.exists():
        time.sleep(0.2)
        yield from new()
    if follow:
        yield from new()


def check_now(ref: str) -> list[ExpectationResult]:
    """Every expectation's result per node (and every crashed service's), against the running lab now."""
    j = inventory.find(ref)
    plan = inventory.plan_json(j)
    rundir = RunDir(Path(j.meta()["run_dir"]))
    status = inventory.status(j)
    runs = watch.runs_from_status(plan, status)
    outcomes = recovery.with_faults({n["name"]: _outcome(rundir, n["name"], status.get(n["name"], {}))
                                     for n in plan["nodes"]}, runs, recovery.steps_of_json(plan.get("timeline", ())),
                                    _fired(j, plan))
    outcomes, crashed = watch.judge(outcomes, runs, ((e["check"], e["nodes"]) for e in plan["expect"]))
    results = [ExpectationResult(f"service {r.node}", r) for r in crashed]
    for e in plan["expect"]:
        checked = evaluate(e["check"], e["params"], [outcomes[n] for n in e["nodes"]])
        results += [ExpectationResult(str(e["label"]), r) for r in checked]
    return results


def _fired(j: Journal, plan: dict[str, Any]) -> list[float | None] | None:
    """When each step of a kept lab's timeline fired, as its keeper records it (timeline.json); None
    when it has not (a keeper of an older lab), so `echo` and `recovers` judge without the faults."""
    if not plan.get("timeline"):
        return []
    try:
        data = json.loads((j.folder / TIMELINE).read_text())
        return recovery.fired_at(data["steps"], float(data["wall0"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def node_status(ref: str) -> dict[str, Any]:
    """The keeper's view of each node ({"started", "ready", "exited", "exit_code", "note"})."""
    return inventory.status(inventory.find(ref))


def _outcome(rundir: RunDir, name: str, st: dict[str, Any]) -> NodeOutcome:
    """A node's outcome from the keeper's status file (on the lab's clock: a node of another host has
    its transcript's times moved by that host's offset, as a run's are)."""
    placed = backends.Placement(**st["placed"]) if st.get("placed") else None
    return node_outcome(rundir, name, started=bool(st.get("started", True)), exit_code=st.get("exit_code"),
                        stopped_by_lab=False, note=str(st.get("note", "")), cause=str(st.get("cause", "")),
                        placed=placed)


def stop_owner(j: Journal) -> bool:
    """SIGTERM to the lab's owner (a keeper, or a `lab run`); True once it has torn the lab down."""
    meta = j.meta()
    try:
        pid = int(meta["pid"])
        os.kill(pid, signal.SIGTERM)
    except (ProcessLookupError, KeyError, ValueError):
        return not j.folder.exists()
    # Done when the owner has exited (its report is written by then), not just its journal gone.
    deadline = time.monotonic() + DOWN_TIMEOUT
    while process_start(pid) == meta.get("pid_start") and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    return not j.folder.exists()


def _reap(pid: int) -> None:
    """The owner may be a child of this process (a keeper started by `bring_up` in a library
    caller, e.g. the pytest fixture): collect its exit, or it stays a zombie that looks alive."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child: its parent (or init) collects it


def take_down(ref: str) -> tuple[str, Path | None, Report | None]:
    """Stop a lab (its keeper checks, reports and tears down; a lab whose keeper is gone is removed
    from its journal alone): (its id, its run folder, its report if one was written). Idempotent:
    an unknown lab raises UnknownLab, which a caller may take as "already down"."""
    j = inventory.find(ref)
    run_dir = j.meta().get("run_dir")
    if j.alive():
        stop_owner(j)
    if j.folder.exists():
        backends.clean(j)
    if not run_dir:
        return j.lab_id, None, None
    try:
        return j.lab_id, Path(run_dir), load_report(Path(run_dir))
    except FileNotFoundError:
        return j.lab_id, Path(run_dir), None


@dataclass(frozen=True)
class Cleaned:
    """What `clean` did with one lab."""

    id: str
    name: str
    kept: bool = False  # still running, left alone (without `everything`)
    stopped: bool = False  # its owner was asked to stop and tore it down
    removed: tuple[str, ...] = ()  # what was removed from its journal
    error: str = ""  # it could not be cleaned (e.g. a host out of reach): why


def clean(everything: bool = False, ref: str | None = None) -> list[Cleaned]:
    """Remove what dead labs left behind, by their journals only (`everything`: stop running labs
    first, as `down` does; `ref`: that lab alone). One lab's unreachable host does not stop the
    others' cleaning."""
    out: list[Cleaned] = []
    for j in [inventory.find(ref)] if ref is not None else journals(everyone=True):
        name = str(j.meta().get("name", "?"))
        if j.alive() and not everything:
            out.append(Cleaned(j.lab_id, name, kept=True))
            continue
        if j.foreign and not j.meta() and not everything:
            continue  # a user's lab opening its journal this instant (its own `lab clean` finds it)
        if j.foreign:
            out.append(_clean_foreign(j, name))
            continue
        if j.alive() and stop_owner(j):
            out.append(Cleaned(j.lab_id, name, stopped=True))
            continue
        try:
            out.append(Cleaned(j.lab_id, name, removed=tuple(backends.clean(j))))
        except LabError as e:
            out.append(Cleaned(j.lab_id, name, error=str(e)))
    drop_empty_state()
    return out


def _clean_foreign(j: Journal, name: str) -> Cleaned:
    """Root cleaning a user's rootless lab: all it made lives in namespaces of the user's, which end
    with its last process. A running one is asked to stop (it tears down and reports as on `down`),
    then killed if it has not within the deadline; what is left is its journal."""
    if j.alive() and stop_owner(j):
        return Cleaned(j.lab_id, name, stopped=True)
    if j.alive():
        _kill_owner(j)
    j.close()
    return Cleaned(j.lab_id, name, removed=("journal",))


def _kill_owner(j: Journal) -> None:
    meta = j.meta()
    pid = int(meta["pid"])
    with contextlib.suppress(ProcessLookupError):
        if process_start(pid) == meta.get("pid_start"):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + DOWN_TIMEOUT
    while process_start(pid) == meta.get("pid_start") and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
