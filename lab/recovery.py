"""Whose doing a reconnecting client's lost connection was: the timeline's, or its server's.

A client with `reconnect:` goes on after any loss, so a server that answers one line and closes
(recv, send, close: a classic bug) looks like an outage survived line after line: each line's last
attempt is echoed, and the losses look like recoveries. The timeline tells them apart: a loss is the
network's (or the lab's) doing only once a step that touches the client or the node it talks to has
fired. Each outcome therefore carries those steps and their moments (`with_faults`, for `lab run`
and a kept lab alike), and `echo` and `recovers` (lab/checks.py) ask here whether a loss came first.

The rule is deliberately simple: a fault at or before the loss, whatever it was (a link `up` or a
`heal` follows the fault it ends; a `shape` or a `pause` acts long after it fires). A fault on a node
between the two (a router) touches neither: such a scenario names the client or its server instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from lab.lines import quote, without_eol
from lab.outcome import Fault, NodeOutcome
from lab.plan import StepPlan
from lab.roles import readback
from lab.roles.common import event_bytes
from lab.watch import NodeRun, talks_to

SLACK = 0.05  # s: a step is stamped just before its action; the action's moment and the clocks may differ by this
BY_SERVER = ("closed", "reset")  # the losses the server causes (an echo server never does, unprovoked)

Step = tuple[str, str, frozenset[str]]  # (label, action, the nodes it names)


# ----------------------------------------------------------------------------- the steps and their moments


def steps_of_plan(timeline: Sequence[StepPlan]) -> list[Step]:
    """The plan's steps (`lab run`): each with every node it names, by itself, a link or a group."""
    return [(s.label, s.action, named(s.nodes, s.links, s.groups)) for s in timeline]


def steps_of_json(timeline: Iterable[Mapping[str, Any]]) -> list[Step]:
    """The same from plan.json (a kept lab's `lab check`)."""
    return [(str(s.get("label", "")), str(s.get("action", "")),
             named(s.get("nodes", ()), s.get("links", ()), s.get("groups", ()))) for s in timeline]


def named(nodes: Iterable[str], links: Iterable[Sequence[str]], groups: Iterable[Iterable[str]]) -> frozenset[str]:
    """The nodes a step names: its own, those of its links (node, network), those of its groups."""
    return frozenset((*nodes, *(link[0] for link in links), *(n for group in groups for n in group)))


def reach(steps: Sequence[Step]) -> list[frozenset[str]]:
    """The nodes each step touches: those it names; a `heal` (which names none) every node a
    partition of the timeline separated."""
    partitioned = frozenset(n for _, action, nodes in steps if action == "partition" for n in nodes)
    return [partitioned if action == "heal" else nodes for _, action, nodes in steps]


def fired_at(rows: Sequence[Mapping[str, Any]], wall0: float) -> list[float | None]:
    """When each step fired, wall clock, from the timeline's rows (RunResult.timeline, or a keeper's:
    one per step in the plan's order, `t` in s from the moment whose wall clock is `wall0`)."""
    return [wall0 + float(r["t"]) if r.get("fired") and isinstance(r.get("t"), int | float) else None for r in rows]


def with_faults(outcomes: Mapping[str, NodeOutcome], runs: Mapping[str, NodeRun], steps: Sequence[Step],
                fired: Sequence[float | None] | None) -> dict[str, NodeOutcome]:
    """Each outcome with the steps that touch its node or the node it talks to (`fired`: each
    step's moment, None where it did not fire; a shorter list: the rest did not). With `fired`
    None (not known), the outcomes stay as they are, and the checks judge without them."""
    if fired is None:
        return dict(outcomes)
    touched = reach(steps)

    def faults(name: str) -> tuple[Fault, ...]:
        run = runs.get(name)
        peer = talks_to(run, runs) if run is not None else None
        pair = {name} | ({peer.name} if peer is not None else set())
        return tuple(Fault(steps[k][0], fired[k] if k < len(fired) else None)
                     for k, nodes in enumerate(touched) if nodes & pair)

    return {name: replace(o, faults=faults(name)) for name, o in outcomes.items()}


# ----------------------------------------------------------------------------- the losses before any fault


def first_fault(node: NodeOutcome) -> Fault | None:
    """The first of the node's faults to fire."""
    fired = [f for f in node.faults or () if f.at is not None]
    return min(fired, key=lambda f: f.at or 0.0, default=None)


def unprovoked(node: NodeOutcome, whys: Sequence[str] | None = None) -> tuple[int, dict[str, Any]] | None:
    """(index, event) of the node's first loss (of one of `whys`) before any fault touching it or
    its peer had fired, give or take SLACK and its clock's uncertainty; None when its faults are not
    known, or every such loss followed one."""
    if node.faults is None:
        return None
    fault = first_fault(node)
    for index in readback.losses(node.transcript):
        event = node.transcript[index]
        t = event.get("t")
        if whys is not None and event.get("why") not in whys:
            continue
        if fault is None or (isinstance(t, int | float) and t + SLACK + node.clock_uncertainty < (fault.at or 0.0)):
            return index, event
    return None


def at(node: NodeOutcome, moment: float) -> str:
    """`+0.61s`: a moment (wall clock) from the node's start, as every detail says it."""
    return f"+{readback.since_start(node.transcript, {'t': moment}):.2f}s"


def untouched(node: NodeOutcome) -> str:
    """Why a client never lost its connection: `recovers` in words."""
    return "no fault of the timeline touches it or its server" if node.faults == () else "the fault did not reach it"


def not_recovered(node: NodeOutcome) -> str | None:
    """`recovers`: why the client's losses are no recovery (None: they may be one). Its first loss
    came before any fault reached it or its server: the server's doing (it closed, reset or did not
    answer), never a fault survived."""
    found = unprovoked(node)
    if found is None:
        return None
    event = found[1]
    when = at(node, float(event.get("t") or 0.0))
    what = f"lost its connection at {when} ({event.get('message') or event.get('why')})"
    blame = "not the timeline's doing" if event.get("why") == "unreachable" else "the server's doing, not the network's"
    if not node.faults:
        return f"{what}, but no fault of the timeline touches it or its server: {blame}"
    fault = first_fault(node)
    first = (f" (the first, {quote(fault.label)}, fired at {at(node, fault.at)})" if fault and fault.at is not None
             else " (none that touches them fired)")
    return f"{what} before any fault reached it or its server{first}: {blame}"


def closed_by_server(node: NodeOutcome) -> str | None:
    """`echo` on a reconnecting client: the server closed or reset a connection mid-conversation
    while no fault touching the pair had fired. An echo server keeps the conversation open: a
    client that reconnects must not hide it (each line's last attempt may well be echoed)."""
    found = unprovoked(node, BY_SERVER)
    if found is None:
        return None
    _, event = found
    did = "closed" if event.get("why") == "closed" else "reset"
    line = line_text(node.transcript, event.get("line"))
    prefix = "" if line is None else (f"sent {quote(line)}: " if event.get("during") in ("send", "reply")
                                      else f"before sending {quote(line)}: ")
    return (f"{prefix}the server {did} the connection at {at(node, float(event.get('t') or 0.0))} with no fault "
            "in force (an echo server keeps the conversation open)")


def line_text(transcript: list[dict[str, Any]], line: Any) -> str | None:
    """Line `line` (its index) of a client's conversation: as it went out first, else as the role's
    parameters say it; None if there is no such line."""
    if not isinstance(line, int):
        return None
    for event in transcript:
        if event.get("event") == "sent" and event.get("line") == line:
            return without_eol(event_bytes(event)).decode("utf-8", errors="surrogateescape")
    start = next((e for e in transcript if e.get("event") == "start"), {})
    params = start.get("params") if isinstance(start.get("params"), dict) else {}
    lines = params.get("send") if isinstance(params, dict) else None
    return str(lines[line]) if isinstance(lines, list) and 0 <= line < len(lines) else None
