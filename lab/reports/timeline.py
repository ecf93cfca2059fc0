"""The story of a run on one clock, for report.html: the run's phases, then one lane per node (when
its host existed, when its program ran, when it was ready, how it ended) with each of its
connections (from its transcript: when it was open, and who closed it). A `concurrent` failure
can be read off it: who was connected when. The fault timeline's steps cross every lane where they
fired, and are listed (with those the run never reached) in a Faults table. Also the built-in
servers' requests, as a table.

Everything is on the lab's clock (0 = the run began): node moments from the run's states,
transcript moments (wall-clock stamps) moved by the run's own wall-clock start and, for a node on
another host, by that host's measured clock offset. A node's own count ("from start", its Sequence's
and its wire table's) starts at its transcript's first event, on that same clock (`node_origin`).
Pure functions of the result and its files.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from lab.outcome import RunResult, on_lab_clock, read_transcript
from lab.reports.clock import lab_time
from lab.signals import exit_words

LANES_SHOWN = 300  # nodes drawn; the rest are listed in the nodes table
LEFT, RIGHT, TOP, LANE, AXIS = 130, 20, 34, 22, 1000  # pixels
PHASE_COLOURS = {"plan": "#b0bec5", "up": "#90caf9", "run": "#a5d6a7", "down": "#ffcc80", "check": "#ce93d8"}
VERDICT_COLOURS = {"pass": "#2e7d32", "fail": "#c62828", "none": "#78909c"}
FAULT_COLOUR = "#d32f2f"
FAULT_ROW, FAULT_CHARS, CHAR_W = 13, 40, 6.2  # a row of fault labels (px), a label's characters, px per one
NOT_REACHED = "not reached (the run ended first)"


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def lab_events(result: RunResult, node: str) -> list[dict[str, Any]]:
    """A node's transcript, each "t" on the lab's clock (another host's clock offset taken off first)."""
    placed = result.placements.get(node)
    events = on_lab_clock(read_transcript(result.rundir.transcript(node)), placed.clock_offset if placed else 0.0)
    return [{**e, "t": lab_time(result, e["t"])} if isinstance(e.get("t"), int | float) else e for e in events]


def node_origin(result: RunResult, node: str, events: list[dict[str, Any]]) -> float | None:
    """Where a node's own count starts, on the lab's clock: its transcript's first event (the role's
    start; a restart appends, so the first start), else the lab's start of its program (None: never).
    Its Sequence and its wire table both count from it: a line and its segment read the same."""
    first = next((e["t"] for e in events if isinstance(e.get("t"), int | float)), None)
    return first if first is not None else result.node_times(node)["started"]


def since(t: float, origin: float | None) -> str:
    """`+0.258s`: a moment on the lab's clock counted from a node's origin ("" without one)."""
    return "" if origin is None else f"{round(t - origin, 3) + 0.0:+.3f}s"


def connections(result: RunResult, node: str) -> list[dict[str, Any]]:
    """A node's connections on the lab's clock: {"conn", "peer", "opened", "closed", "by"}."""
    found: dict[Any, dict[str, Any]] = {}
    for e in lab_events(result, node):
        at = e.get("t")
        if not isinstance(at, int | float):
            continue
        if e.get("event") in ("connected", "accepted"):
            found[e.get("conn")] = {"conn": e.get("conn"), "peer": e.get("peer", ""), "opened": at,
                                    "closed": None, "by": ""}
        elif e.get("event") == "closed" and e.get("conn") in found:
            found[e.get("conn")].update(closed=at, by=str(e.get("by", "")))
    return list(found.values())


def requests(result: RunResult, node: str) -> list[dict[str, Any]]:
    """The requests a built-in server answered ({"t", "peer", "method", "path", "status"})."""
    return [e for e in lab_events(result, node) if e.get("event") == "request" and isinstance(e.get("t"), int | float)]


def fired_steps(result: RunResult) -> list[dict[str, Any]]:
    """The fault steps that fired, in time order (the others have no moment to be drawn at)."""
    fired = [s for s in result.timeline if s.get("fired") and isinstance(s.get("t"), int | float)]
    return sorted(fired, key=lambda s: float(s["t"]))


def timeline_svg(result: RunResult, verdicts: Mapping[str, str], crashed: set[str]) -> str:
    nodes = result.plan.nodes[:LANES_SHOWN]
    end = max([b for _, b in result.phases.values()] + [0.001])
    scale = AXIS / end

    def x(t: float) -> float:
        return LEFT + max(0.0, min(t, end)) * scale

    steps = fired_steps(result)
    rows = _label_rows([(x(float(s["t"])), _label(s)) for s in steps])
    top = TOP + FAULT_ROW * (max(rows) + 1 if rows else 0)  # the lanes go down to leave the labels room
    bottom = top + LANE * len(nodes) + 6
    parts = [_phases(result, x), _axis(end, x, top, bottom)]
    for k, n in enumerate(nodes):
        parts.append(_lane(result, n.name, top + k * LANE, x, verdicts.get(n.name, "none"), n.name in crashed))
    for step, row in zip(steps, rows, strict=True):  # over the lanes: a fault crosses every one
        parts.append(_fault(step, x(float(step["t"])), TOP - 3 + row * FAULT_ROW, bottom))
    height = bottom + 20
    return (f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{LEFT + AXIS + RIGHT}" '
            f'height="{height}" font-family="sans-serif" font-size="11">{"".join(parts)}</svg>')


def _label(step: Mapping[str, Any]) -> str:
    text = str(step.get("step", ""))
    return text if len(text) <= FAULT_CHARS else text[:FAULT_CHARS - 1] + "…"


def _span(at: float, text: str) -> tuple[float, float]:
    """Where a label at the line `at` is written (px): right of its line, or left of it when it
    would run off the chart's right edge."""
    width = len(text) * CHAR_W
    return (at - 4 - width, at - 4) if at + 4 + width > LEFT + AXIS + RIGHT else (at + 4, at + 4 + width)


def _label_rows(labels: list[tuple[float, str]]) -> list[int]:
    """A row for each fault's label (in time order), the first where it overlaps no label already
    there: steps fired close together stack their labels instead of writing over each other."""
    taken: list[list[tuple[float, float]]] = []  # each row: the spans of its labels (px)
    rows = []
    for at, text in labels:
        a, b = _span(at, text)
        row = next((r for r, spans in enumerate(taken) if all(b + 6 <= c or d + 6 <= a for c, d in spans)),
                   len(taken))
        if row == len(taken):
            taken.append([])
        taken[row].append((a, b))
        rows.append(row)
    return rows


def _fault(step: Mapping[str, Any], at: float, baseline: float, bottom: float) -> str:
    """A fired step: a dashed red line across the lanes, its label at the top, the step, its moment
    and where the scenario says it (hover) in its title."""
    t = float(step["t"])
    codes = _codes(step)
    title = f"{step.get('step', '')}: fired at {t:.3f}s ({step.get('where', '')}){'; ' + codes if codes else ''}"
    left = _span(at, _label(step))[1] < at  # written left of its line, ending at it
    anchor = f'x="{at - 4:.1f}" text-anchor="end"' if left else f'x="{at + 4:.1f}"'
    return (f'<g class="fault" data-step="{esc(step.get("step", ""))}" data-t="{t:g}"><title>{esc(title)}</title>'
            f'<line x1="{at:.1f}" y1="{baseline - 9}" x2="{at:.1f}" y2="{bottom}" stroke="transparent" '
            f'stroke-width="7"/><line class="marker" x1="{at:.1f}" y1="{baseline - 9}" x2="{at:.1f}" y2="{bottom}" '
            f'stroke="{FAULT_COLOUR}" stroke-width="1.5" stroke-dasharray="5,3"/>'
            f'<text {anchor} y="{baseline}" fill="{FAULT_COLOUR}" font-weight="bold">{esc(_label(step))}</text></g>')


def _codes(step: Mapping[str, Any]) -> str:
    """`server 143 (SIGTERM)`: how each node a stop, kill or restart ended ("" for other steps)."""
    codes = step.get("codes")
    if not isinstance(codes, Mapping):
        return ""
    return ", ".join(f"{node} {exit_words(code).removeprefix('code ')}" for node, code in codes.items())


def _phases(result: RunResult, x: Any) -> str:
    out = []
    for name, (a, b) in result.phases.items():
        out.append(f'<g class="phase" data-phase="{esc(name)}"><title>{esc(name)}: {a:.3f}s to {b:.3f}s</title>'
                   f'<rect x="{x(a):.1f}" y="4" width="{max(x(b) - x(a), 1):.1f}" height="14" '
                   f'fill="{PHASE_COLOURS.get(name, "#ddd")}"/>'
                   f'<text x="{x(a) + 2:.1f}" y="15">{esc(name)}</text></g>')
    return "".join(out)


def _axis(end: float, x: Any, top: float, y: float) -> str:
    step = next(s for s in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1e9) if end / s <= 12)
    ticks, t = [], 0.0
    while t <= end + 1e-9:
        ticks.append(f'<line x1="{x(t):.1f}" y1="{top - 4}" x2="{x(t):.1f}" y2="{y}" stroke="#eee"/>'
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


def faults_table(result: RunResult) -> str:
    """The scenario's fault timeline as it went: each step (in the order written), when it fired
    on the lab's clock or that the run ended before it did, how the nodes it stopped ended, and
    where the scenario says it. "" when the scenario has no timeline."""
    if not result.timeline:
        return ""
    rows = []
    for s in result.timeline:
        t = s.get("t")
        fired = bool(s.get("fired"))
        when = (f"{t:.3f}s" if isinstance(t, int | float) else "fired (moment not recorded)") if fired else NOT_REACHED
        rows.append(f'<tr class="fault {"fired" if fired else "not-fired"}" data-step="{esc(s.get("step", ""))}">'
                    f'<td>{esc(s.get("step", ""))}</td><td class="t">{esc(when)}</td><td>{esc(_codes(s))}</td>'
                    f'<td class="where">{esc(s.get("where", ""))}</td></tr>')
    missed = sum(not s.get("fired") for s in result.timeline)
    note = (f' <span class="error">{missed} of {len(result.timeline)} not reached: the run ended before '
            f"{'it' if missed == 1 else 'them'}.</span>") if missed else ""
    return ('<h2>Faults</h2><p>The scenario\'s timeline: when each step fired, on the lab\'s clock (the dashed '
            f"red lines above), and how the nodes it stopped ended.{note}</p>"
            '<table id="faults"><thead><tr><th>step</th><th>when (lab\'s clock)</th><th>exit codes</th>'
            f"<th>where</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
