"""What labs there are and what their nodes do, from the journals alone: `lab ps` (every lab, or
one lab's nodes), and finding a lab by id, prefix or scenario name for every other command.

A lab's journal records its run folder (where its plan is) and its keeper's status of each node
(status.json, on the lab's clock); the scenario file may be gone and the working directory another.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import LabError, UnknownLab
from lab.journal import Journal, journals, owner_name


def find(ref: str) -> Journal:
    """A lab by id, id prefix, or scenario name (when one running lab has it)."""
    labs = journals()
    exact = [j for j in labs if j.lab_id == ref]
    if exact:
        return exact[0]
    matches = [j for j in labs if j.lab_id.startswith(ref)] or [j for j in labs if j.meta().get("name") == ref]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(f"{j.lab_id} ({j.meta().get('name', '?')})" for j in labs) or "none"
    what = "ambiguous" if matches else "unknown"
    raise UnknownLab(f"{what} lab {ref!r} (labs: {known})")


def plan_json(j: Journal) -> dict[str, Any]:
    run_dir = j.meta().get("run_dir")
    if not run_dir:
        raise UnknownLab(f"lab {j.lab_id} has no run folder recorded")
    data: dict[str, Any] = json.loads((Path(run_dir) / "plan.json").read_text())
    return data


def node_plan(j: Journal, name: str) -> dict[str, Any]:
    nodes = {n["name"]: n for n in plan_json(j)["nodes"]}
    if name not in nodes:
        raise UnknownLab(f"lab {j.lab_id} has no node {name!r} (nodes: {', '.join(nodes)})")
    return nodes[name]


def status(j: Journal) -> dict[str, Any]:
    """The keeper's view of each node ({"started", "ready", "exited", "exit_code", "note", ...})."""
    try:
        data: dict[str, Any] = json.loads((j.folder / "status.json").read_text())
        return data
    except (OSError, ValueError):
        return {}


def node_names(ref: str) -> list[str]:
    return [n["name"] for n in plan_json(find(ref))["nodes"]]


@dataclass(frozen=True)
class LabInfo:
    """One lab on this machine, from its journal: what `lab ps` shows."""

    id: str
    name: str
    backend: str
    nodes: int
    age: float  # seconds since it started
    state: str  # kept | running | dead (lab clean)
    run_dir: str
    owner: str = ""  # the user whose lab it is (root sees every user's rootless labs)


def labs() -> list[LabInfo]:
    """This user's labs; root's view includes every user's rootless labs, with their owner."""
    out = []
    for j in journals(everyone=True):
        meta = j.meta()
        try:
            nodes = len(plan_json(j)["nodes"])
        except (LabError, OSError, ValueError):
            nodes = 0
        state = ("kept" if meta.get("kept") else "running") if j.alive() else "dead (lab clean)"
        out.append(LabInfo(j.lab_id, str(meta.get("name", "?")), str(meta.get("backend", "?")), nodes,
                           time.time() - float(meta.get("started", time.time())), state, str(meta.get("run_dir", "")),
                           owner_name(j.owner)))
    return out


@dataclass(frozen=True)
class NodeInfo:
    """One node of a lab, as `lab ps LAB` shows it."""

    name: str
    state: str  # starting | up | ready | exited | not started: why | stopped
    exit_code: int | None
    addresses: dict[str, str]  # interface -> address/prefix
    host: str  # where it runs ("" for this machine)
    uptime: float | None  # s it has run (until it exited), None if it never started


def lab_nodes(ref: str) -> list[NodeInfo]:
    j = find(ref)
    seen = status(j)
    since = time.time() - float(j.meta().get("started", time.time()))  # s on the lab's clock, roughly
    return [_node_info(n, seen.get(n["name"], {}), since) for n in plan_json(j)["nodes"]]


def not_started(note: str) -> str:
    """`not started: why`, said once (the note of a node blocked by another already says it)."""
    return note if note.startswith("not started") else f"not started: {note}"


def _node_info(plan: dict[str, Any], st: dict[str, Any], now: float) -> NodeInfo:
    started, exited = st.get("started_at"), st.get("exited_at")
    if not st.get("started", False):
        note = str(st.get("note", ""))
        state = not_started(note) if note else "starting"
    elif st.get("exited"):
        state = "stopped" if st.get("stopped_by_lab") else "exited"
    else:
        state = "ready" if st.get("ready") else "up"
    uptime = None if started is None else max(0.0, (exited if exited is not None else now) - started)
    return NodeInfo(plan["name"], state, st.get("exit_code"),
                    {i["name"]: i["address"] for i in plan.get("interfaces", [])}, str(st.get("host", "")), uptime)
