"""Services watched for the whole run, and failures that name their cause.

A service (a server role, or a program with `ready:`) that exits non-zero or is killed before the
lab stops it fails the run with a line of its own ("service"), unless an `exit:` expectation covers
it: otherwise a server that crashed after answering its clients would pass unnoticed, and one that
crashed earlier would show only as its clients' refused connections. A service that exits 0 early
(a one-shot server) is no failure by itself: the clients it did not serve fail. A client whose
connection failed points at its server when that server exited or printed a traceback.

Pure functions of `NodeRun`s (what each node did, on the lab's clock) built from a run's states or
from a kept lab's status file, so `lab run`, `lab down` and `lab check` judge alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from lab.execution import NodeState
from lab.outcome import ERROR_SCAN, TRACEBACK, CheckResult, NodeOutcome, last_error_line, last_log_line
from lab.scenario.checks import CHECKS
from lab.signals import exit_words as code_words

Evidence = Callable[[str], str]  # node name -> the line of its log that says how it ended ("" if none)


@dataclass(frozen=True)
class NodeRun:
    """One node's run as the watch sees it; times are seconds on the lab's clock (from the run's start)."""

    name: str
    serves: bool  # a service that runs something: a server role, or a program with `ready:`
    task: bool  # a client role or a program without `ready:`: what services serve
    after: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    peer: str = ""  # the node a client role talks to, as written ("server"), or ""
    peer_address: str = ""  # ... and its address, as resolved by the plan
    started_at: float | None = None  # None: never started
    exited_at: float | None = None  # set only when it exited on its own
    code: int | None = None
    stopped_by_lab: bool = False
    failed_start: bool = False


def peer_of(params: Mapping[str, Any]) -> tuple[str, str]:
    """(name as written, address) of the node a client role talks to: telnet-client's `target`
    ("server:9999"), http-get's `host_header` or `url`; ("", "") for anything else."""
    written = str(params.get("target") or params.get("host_header") or "")
    name = urlsplit(f"//{written}").hostname if written else None
    if not name and params.get("url"):
        name = urlsplit(str(params["url"])).hostname
    if not name:
        return "", ""
    return name, str(params.get("host", ""))


def runs_from_states(states: Mapping[str, NodeState], t0: float) -> dict[str, NodeRun]:
    """The watch's view of a run (`t0`: the run's start, time.monotonic())."""
    runs = {}
    for name, s in states.items():
        n = s.plan
        peer, address = peer_of(n.params) if n.role else ("", "")
        runs[name] = NodeRun(
            name, n.service and n.runs_something, n.runs_something and not n.service, n.after,
            tuple(str(i.address.ip) for i in n.interfaces), peer, address,
            None if s.blocked or s.started_at is None else s.started_at - t0,
            None if s.exited_at is None else s.exited_at - t0, s.exit_code, s.stopped_by_lab, s.failed_start)
    return runs


def runs_from_status(plan: Mapping[str, Any], status: Mapping[str, Mapping[str, Any]]) -> dict[str, NodeRun]:
    """The watch's view of a kept lab: its plan.json and the keeper's status.json."""
    runs = {}
    for n in plan["nodes"]:
        st = status.get(n["name"], {})
        does = bool(n.get("role") or n.get("run"))
        peer, address = peer_of(n.get("params") or {}) if n.get("role") else ("", "")
        runs[n["name"]] = NodeRun(
            n["name"], bool(n.get("service")) and does, does and not n.get("service"), tuple(n.get("after", ())),
            tuple(str(i["address"]).split("/")[0] for i in n.get("interfaces", ())), peer, address,
            st.get("started_at") if st.get("started", False) else None, st.get("exited_at"), st.get("exit_code"),
            bool(st.get("stopped_by_lab")), bool(st.get("failed_start")))
    return runs


def judge(outcomes: Mapping[str, NodeOutcome], runs: Mapping[str, NodeRun],
          expect: Iterable[tuple[str, Sequence[str]]]) -> tuple[dict[str, NodeOutcome], list[CheckResult]]:
    """What the watch adds to a run's outcomes (`lab run`, `lab down` and `lab check` alike): each
    client's outcome with what its server did, and a failing "service" result per crashed service
    that no `exit:` expectation (`expect`: (check, nodes) pairs) covers."""
    explained = explain(outcomes, runs)
    crashed = service_results(runs, exit_covered(expect), lambda n: evidence(explained[n]),
                              lambda n: explained[n].log)
    return explained, crashed


def explain(outcomes: Mapping[str, NodeOutcome], runs: Mapping[str, NodeRun]) -> dict[str, NodeOutcome]:
    """Each client's outcome with what its server did, when its connection failed and that explains it."""
    def log_of(name: str) -> str:
        return outcomes[name].log if name in outcomes else ""

    return {name: replace(o, peer_note=peer_note(runs[name], o.transcript, runs, log_of)) if name in runs else o
            for name, o in outcomes.items()}


def evidence(o: NodeOutcome) -> str:
    """How a node's log says it ended: the output limit, the exception it died of, or its last line."""
    last = last_log_line(o.log)
    return o.cause or last_error_line(o.log) or (f"last log line: {last!r}" if last else "")


def exit_covered(expect: Iterable[tuple[str, Sequence[str]]]) -> set[str]:
    """Nodes an `exit:` expectation (a check that covers exits) covers: their exits are judged there."""
    return {node for check, nodes in expect if CHECKS[check].covers_exit for node in nodes}


STOP_CODES = (128 + 15, 128 + 9)  # SIGTERM, SIGKILL: what the lab's stop makes of a running process


def crashed(r: NodeRun, log: str = "") -> bool:
    """A service that ended on its own, non-zero or killed, after it was ready. One the lab stopped
    counts too when the stop is not what ended it: its code is not the stop signals' (it died of
    something else meanwhile), or its log ends in the traceback of a main thread (a Python program
    takes ~10 ms to exit after an uncaught exception: the lab's SIGTERM can land in that exit)."""
    if not r.serves or r.failed_start or r.code in (0, None):
        return False
    if not r.stopped_by_lab:
        return r.exited_at is not None
    return r.code not in STOP_CODES or died_of_exception(log)


def died_of_exception(log: str) -> bool:
    """The log ends with an uncaught exception's traceback that is not a serving thread's."""
    tail = log[-ERROR_SCAN:]
    start = tail.rfind(TRACEBACK)
    if start < 0:
        return False
    header = tail[:start].rstrip("\n").rsplit("\n", 1)[-1]
    if header.startswith(("Exception in thread", "Exception ignored")):
        return False
    after = [line for line in tail[start + len(TRACEBACK):].splitlines() if line.strip()]
    return bool(after) and len([line for line in after if not line[0].isspace()]) == 1 \
        and not after[-1][0].isspace()


def service_results(runs: Mapping[str, NodeRun], covered: set[str], evidence: Evidence,
                    log_of: Callable[[str], str] = lambda name: "") -> list[CheckResult]:
    """One failing "service" result per crashed service that no `exit:` expectation covers."""
    return [CheckResult("service", r.name, False, service_detail(r, runs, evidence(r.name)))
            for r in runs.values() if crashed(r, log_of(r.name)) and r.name not in covered]


def service_detail(r: NodeRun, runs: Mapping[str, NodeRun], evidence: str) -> str:
    """`exited with code 3 at +0.4s while clients were running (ZeroDivisionError: division by zero)`"""
    if r.exited_at is None:  # it was ending as the lab stopped it
        what = "crashed" if r.code in STOP_CODES else f"exited with {code_words(r.code)}"
        return f"{what} as the lab stopped it, after its clients finished" + (f" ({evidence})" if evidence else "")
    phase = clients_phase(r, runs)
    return (f"exited with {code_words(r.code)} at +{r.exited_at:.1f}s" + (f" {phase}" if phase else "")
            + (f" ({evidence})" if evidence else ""))


def clients_of(r: NodeRun, runs: Mapping[str, NodeRun]) -> list[NodeRun]:
    """The tasks that wait for or talk to this service (all tasks if none does), that started."""
    tasks = [c for c in runs.values() if c.task and c.started_at is not None]
    own = [c for c in tasks if r.name in c.after or talks_to(c, runs) is r]
    return own or tasks


def clients_phase(r: NodeRun, runs: Mapping[str, NodeRun]) -> str:
    clients = clients_of(r, runs)
    if not clients or r.exited_at is None:
        return ""
    t = r.exited_at
    if all(c.exited_at is not None and c.exited_at <= t for c in clients):
        return "after its clients finished"
    return "while clients were running"


def talks_to(c: NodeRun, runs: Mapping[str, NodeRun]) -> NodeRun | None:
    """The node a client role connects to: by the address the plan resolved, else by name."""
    if c.peer_address:
        for r in runs.values():
            if r.name != c.name and c.peer_address in r.addresses:
                return r
    return runs.get(c.peer) if c.peer and c.peer != c.name else None


def connection_failed(transcript: Sequence[Mapping[str, Any]]) -> bool:
    """Refused, reset, timed out, closed by the peer, or never connected."""
    events = [e.get("event") for e in transcript]
    return "connected" not in events or any(
        e.get("event") == "error" or (e.get("event") == "closed" and e.get("by") == "peer") for e in transcript)


def peer_note(c: NodeRun, transcript: Sequence[Mapping[str, Any]], runs: Mapping[str, NodeRun],
              log_of: Callable[[str], str]) -> str:
    """For a client whose connection failed: what its server did, when that explains it
    (`server exited with code 3 at +0.4s; server's log: 'ZeroDivisionError: division by zero'`)."""
    if c.started_at is None or not transcript or not connection_failed(transcript):
        return ""
    peer = talks_to(c, runs)
    if peer is None or not (peer.serves or peer.task):
        return ""
    parts = []
    if peer.exited_at is not None:
        parts.append(f"{peer.name} exited with {code_words(peer.code)} at +{peer.exited_at:.1f}s")
    error = last_error_line(log_of(peer.name))
    if error:
        parts.append(f"{peer.name}'s log: {error!r}")
    return "; ".join(parts)
