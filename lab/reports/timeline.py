"""The story of a run on one clock, for report.html: the run's phases, then one lane per node (when
its host existed, when its program ran, when it was ready, how it ended) with each of its
connections (from its transcript: when it was open, and who closed it). A `concurrent` failure
can be read off it: who was connected when. Also the built-in servers' requests, as a table.

Everything is on the lab's clock (0 = the run began): node moments from the run's states,
transcript moments (wall-clock stamps) moved by the run's own wall-clock start and, for a node on
another host, by that host's measured clock offset. Pure functions of the result and its files.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from lab.outcome import RunResult, on_lab_clock, read_transcript
from lab.reports.clock import lab_time

LANES_SHOWN = 300  # nodes drawn; the rest are listed in the nodes table
LEFT, RIGHT, TOP, LANE, AXIS = 130, 20, 34, 22, 1000  # pixels
PHASE_COLOURS = {"plan": "#b0bec5", "up": "#90caf9", "run": "#a5d6a7", "down": "#ffcc80", "check": "#ce93d8"}
VERDICT_COLOURS = {"pass": "#2e7d32", "fail": "#c62828", "none": "#78909c"}


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def connections(result: RunResult, node: str) -> list[dict[str, Any]]:
    """A node's connections on the lab's clock: {"conn", "peer", "opened", "closed", "by"}."""
    placed = result.placements.get(node)
    events = on_lab_clock(read_transcript(result.rundir.transcript(node)), placed.clock_offset if placed else 0.0)
    found: dict[Any, dict[str, Any]] = {}
    for e in events:
        t = e.get("t")
        if not isinstance(t, int | float):
            continue
        at = lab_time(result, t)
        if e.get("event") in ("connected", "accepted"):
            found[e.get("conn")] = {"conn": e.get("conn"), "peer": e.get("peer", ""), "opened": at,
                                    "closed": None, "by": ""}
        elif e.get("event") == "closed" and e.get("conn") in found:
            found[e.get("conn")].update(closed=at, by=str(e.get("by", "")))
    return list(found.values())


def requests(result: RunResult, node: str) -> list[dict[str, Any]]:
    """The requests a built-in server answered ({"t", "peer", "method", "path", "status"})."""
    return [{**e, "t": lab_time(result, e["t"])} for e in read_transcript(result.rundir.transcript(node))
            if e.get("event") == "request" and isinstance(e.get("t"), int | float)]


def timeline_svg(result: RunResult, verdicts: Mapping[str, str], crashed: set[str]) -> str:
    nodes = result.plan.nodes[:LANES_SHOWN]
    end = max([b for _, b in result.phases.values()] + [0.001])
    scale = AXIS / end

    def x(t: float) -> float:
        return LEFT + max(0.0, min(t, end)) * scale

    parts = [_phases(result, x), _axis(end, x, TOP + LANE * len(nodes) + 6)]
    for k, n in enumerate(nodes):
        parts.append(_lane(result, n.name, TOP + k * LANE, x, verdicts.get(n.name, "none"), n.name in crashed))
    height = TOP + LANE * len(nodes) + 26
    return (f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{LEFT + AXIS + RIGHT}" '
            f'height="{height}" font-family="sans-serif" font-size="11">{"".join(parts)}</svg>')


def _phases(result: RunResult, x: Any) -> str:
    out = []
    for name, (a, b) in result.phases.items():
        out.append(f'<g class="phase" data-phase="{esc(name)}"><title>{esc(name)}: {a:.3f}s to {b:.3f}s</title>'
                   f'<rect x="{x(a):.1f}" y="4" width="{max(x(b) - x(a), 1):.1f}" height="14" '
                   f'fill="{PHASE_COLOURS.get(name, "#ddd")}"/>'
                   f'<text x="{x(a) + 2:.1f}" y="15">{esc(name)}</text></g>')
    return "".join(out)


def _axis(end: float, x: Any, y: float) -> str:
    step = next(s for s in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1e9) if end / s <= 12)
    ticks, t = [], 0.0
    while t <= end + 1e-9:
        ticks.append(f'<line x1="{x(t):.1f}" y1="{TOP - 4}" x2="{x(t):.1f}" y2="{y}" stroke="#eee"/>'
                     f'<text x="{x(t):.1f}" y="{y + 12}" text-anchor="middle">{t:g}s</text>')
        t += step
    return "".join(ticks)


def _lane(result: RunResult, node: str, y: float, x: Any, verdict: str, crashed: bool) -> str:
    times = result.node_times(node)
    colour = VERDICT_COLOURS["fail"] if crashed else VERDICT_COLOURS.get(verdict, VERDICT_COLOURS["none"])
    s = result.states.get(node)
    code = "" if s is None or s.exit_code is None else f" exit {s.exit_code}"
    out = [f'<g class="lane{" crashed" if crashed else ""}" data-node="{esc(node)}" data-verdict="{esc(verdict)}">'
           f'<text x="{LEFT - 6}" y="{y + 14}" text-anchor="end" fill="{colour}">{esc(node)}</text>']
    created, started, ready, exited = (times[k] for k in ("created", "started", "ready", "exited"))
    if created is not None:
        out.append(f'<line class="host" x1="{x(created):.1f}" y1="{y + 9}" x2="{x(exited or 1e9):.1f}" y2="{y + 9}" '
                   f'stroke="#cfd8dc" stroke-width="2"/>')
    if started is not None:
        stop = exited if exited is not None else result.phases.get("down", (1e9, 0))[0]
        out.append(f'<rect class="run" x="{x(started):.1f}" y="{y + 3}" width="{max(x(stop) - x(started), 2):.1f}" '
                   f'height="8" fill="{colour}" opacity="0.75"><title>{esc(node)}: started {started:.3f}s'
                   f'{"" if ready is None else f", ready {ready:.3f}s"}'
                   f'{"" if exited is None else f", ended {exited:.3f}s"}{esc(code)}</title></rect>')
    if ready is not None:
        out.append(f'<line class="ready" x1="{x(ready):.1f}" y1="{y + 1}" x2="{x(ready):.1f}" y2="{y + 13}" '
                   f'stroke="#000" stroke-width="1.5"/>')
    for c in connections(result, node):
        closed = c["closed"] if c["closed"] is not None else result.phases.get("down", (1e9, 0))[0]
        out.append(f'<line class="conn" data-closed-by="{esc(c["by"] or "not closed")}" x1="{x(c["opened"]):.1f}" '
                   f'y1="{y + 16}" x2="{max(x(closed), x(c["opened"]) + 2):.1f}" y2="{y + 16}" stroke="#1565c0" '
                   f'stroke-width="3"><title>{esc(node)} conn {esc(c["conn"])} with {esc(c["peer"])}: open '
                   f'{c["opened"]:.3f}s, closed {"-" if c["closed"] is None else format(c["closed"], ".3f") + "s"}'
                   f' by {esc(c["by"] or "nobody (still open at teardown)")}</title></line>')
    if code:
        out.append(f'<text x="{x(exited or 0) + 4:.1f}" y="{y + 11}" fill="{colour}">{esc(code.strip())}</text>')
    out.append("</g>")
    return "".join(out)


def requests_table(result: RunResult) -> str:
    rows = []
    for n in result.plan.nodes:
        for r in requests(result, n.name):
            rows.append(f'<tr class="request" data-node="{esc(n.name)}"><td class="t">{r["t"]:.3f}s</td>'
                        f'<td>{esc(n.name)}</td><td>{esc(r.get("peer", ""))}</td><td>{esc(r.get("method", ""))}</td>'
                        f'<td>{esc(r.get("path", ""))}</td><td>{esc(r.get("status", ""))}</td></tr>')
    if not rows:
        return ""
    return ('<h2>Requests</h2><table id="requests"><thead><tr><th>time</th><th>server</th><th>from</th>'
            f"<th>method</th><th>path</th><th>status</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
