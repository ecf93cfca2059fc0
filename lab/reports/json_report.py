"""report.json: a run's result as data, written here and read back here alone (`load_report`).

Grading, `lab down` and the pytest fixture learn how a finished run went from this file (the run
may have been another process's: a graded submission's `lab run`, a kept lab's keeper), so the
format is written and parsed side by side: a field added to one is seen missing from the other.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.outcome import CheckResult, ExpectationResult, RunResult
from lab.plan import NodePlan
from lab.reports.captures import NetworkCapture, captures
from lab.reports.clock import lab_time
from lab.reports.wire import Connection

REPORT_JSON = "report.json"


def to_json(result: RunResult) -> dict[str, Any]:
    caps = captures(result)
    return {
        "scenario": result.plan.name,
        "backend": result.backend,
        "lab_id": result.lab_id,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(result.started)),
        "duration_s": round(result.duration, 3),
        "passed": result.passed,
        "exit_code": result.exit_code,
        "timed_out": result.timed_out,
        "interrupted": result.interrupted,
        "error": result.error,
        "notes": result.notes,
        "timeline": result.timeline,  # the fault steps: when each fired on the lab's clock, or that it did not
        "seed": result.plan.seed,
        "timings": timings_json(result),
        "checks": [
            {"check": e.result.check, "node": e.result.node, "passed": e.result.passed,
             "detail": e.result.detail, "expectation": e.expectation, "ran": e.result.ran}
            for e in result.results
        ],
        "nodes": [node_json(result, n) for n in result.plan.nodes],
        **({"captures": {c.network: capture_json(result, c) for c in caps}} if caps else {}),
    }


def node_json(result: RunResult, n: NodePlan) -> dict[str, Any]:
    """A node as planned (addresses, what it runs, where its files are) and as it ran (`states`)."""
    s = result.states.get(n.name)
    return {
        "name": n.name,
        "group": n.group,
        "addresses": {i.network: str(i.address) for i in n.interfaces},
        "interfaces": {i.name: i.network for i in n.interfaces},
        "role": n.role,
        "run": list(n.argv) if n.argv else None,
        "started": bool(s and s.started_at is not None and not s.blocked),
        "ready_s": round(s.ready_at - s.started_at, 4) if s and s.ready_at and s.started_at else None,
        "exit_code": s.exit_code if s else None,
        "exited_at_s": round(s.exited_at - result.clock, 4) if s and s.exited_at is not None else None,
        "stopped_by_lab": bool(s and s.stopped_by_lab),
        "note": s.note if s else "",
        "log": f"nodes/{n.name}.log" if n.runs_something else None,
        "transcript": f"nodes/{n.name}.jsonl" if n.role else None,
        **placement_json(result, n.name),
    }


def timings_json(result: RunResult) -> dict[str, Any]:
    """Where the time went, in s on the lab's clock (0 = the run began): each phase's start and end,
    and each node's created / started / ready / exited moments."""
    return {"phases": {name: {"start": round(a, 4), "end": round(b, 4), "seconds": round(b - a, 4)}
                       for name, (a, b) in result.phases.items()},
            "nodes": {n.name: result.node_times(n.name) for n in result.plan.nodes}}


def placement_json(result: RunResult, node: str) -> dict[str, Any]:
    """Where the node ran (multi-host backends): host, endpoint, and that host's clock offset."""
    p = result.placements.get(node)
    if p is None:
        return {}
    return {"host": p.host, "endpoint": p.endpoint, "clock_offset_s": round(p.clock_offset, 6),
            "clock_uncertainty_s": round(p.uncertainty, 6)}


def capture_json(result: RunResult, c: NetworkCapture) -> dict[str, Any]:
    """A network's capture: its file, the capturer's counts (packets, bytes, over_limit: packets left
    out at the size limit, kernel_drops), and its TCP connections (the first MAX_CONNECTIONS;
    `more_connections` counts the others)."""
    return {"file": c.file, "packets": c.packets, "bytes": c.stats.get("bytes", c.size),
            "over_limit": c.over_limit, "kernel_drops": c.kernel_drops, "truncated": c.wire.truncated,
            "problem": c.wire.problem, "more_connections": c.wire.more,
            "connections": [connection_json(result, conn) for conn in c.wire.connections]}


def connection_json(result: RunResult, c: Connection) -> dict[str, Any]:
    """A TCP connection on the wire, times in s on the lab's clock. `outcome`: unanswered, refused,
    incomplete, open, closed, half-closed or reset; `events`: SYN, SYN-ACK, ACK (the handshake's
    third), FIN, RST, each with who sent it (the node, else the address) to whom."""
    def at(wall: float) -> float:
        return round(lab_time(result, wall), 6)

    close = c.close
    return {"summary": c.summary(lambda t: lab_time(result, t)), "outcome": c.outcome,
            "client": f"{c.client.address}:{c.client.port}", "client_node": c.client.node or None,
            "server": f"{c.server.address}:{c.server.port}", "server_node": c.server.node or None,
            "mid_connection": c.mid_connection, "one_way": c.one_way or None, "syns": c.syns,
            "handshake": c.handshake,
            "first_seen": at(c.first_t), "last_seen": at(c.last_t),
            "closed": at(close.t) if close else None, "closed_by": close.sender.who if close else None,
            "bytes_out": c.bytes_out, "bytes_in": c.bytes_in, "retransmissions": c.retransmissions,
            "events": [{"t": at(e.t), "event": e.kind, "from": str(e.sender), "to": str(e.receiver)}
                       for e in c.events],
            "events_dropped": c.events_dropped}


def write_json(result: RunResult) -> Path:
    """Atomically: a reader never sees half a report."""
    path = result.rundir.file(REPORT_JSON)
    tmp = result.rundir.file(f".{REPORT_JSON}.tmp")
    tmp.write_text(json.dumps(to_json(result), indent=2) + "\n")
    tmp.rename(path)
    return path


@dataclass(frozen=True)
class Report:
    """report.json read back: how a finished run went, for those that did not run it."""

    passed: bool
    error: str = ""
    duration: float = 0.0
    timed_out: bool = False
    interrupted: int = 0
    results: list[ExpectationResult] = field(default_factory=list)
    scenario: str = ""
    backend: str = ""
    lab_id: str = ""
    phases: dict[str, tuple[float, float]] = field(default_factory=dict)  # timings: (start, end) on the lab's clock


def load_report(run_dir: Path) -> Report:
    """The report in a run folder. Raises OSError when there is none, ValueError when the file is
    not a report. A report from before `ran` existed reads as every node having run."""
    path = Path(run_dir) / REPORT_JSON
    data = json.loads(path.read_text())
    try:
        return Report(
            passed=bool(data["passed"]), error=str(data.get("error", "")),
            duration=float(data.get("duration_s", 0.0)), timed_out=bool(data.get("timed_out")),
            interrupted=int(data.get("interrupted", 0)),
            results=[_expectation_result(c) for c in data.get("checks", [])],
            scenario=str(data.get("scenario", "")), backend=str(data.get("backend", "")),
            lab_id=str(data.get("lab_id", "")),
            phases={name: (float(p["start"]), float(p["end"]))
                    for name, p in data.get("timings", {}).get("phases", {}).items()})
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: not a lab report ({type(e).__name__}: {e})") from e


def _expectation_result(c: dict[str, Any]) -> ExpectationResult:
    return ExpectationResult(str(c["expectation"]), CheckResult(
        str(c["check"]), str(c["node"]), bool(c["passed"]), str(c["detail"]), bool(c.get("ran", True))))
