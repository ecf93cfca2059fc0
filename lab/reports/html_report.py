"""report.html: one self-contained page per run (inline CSS, JS and SVG; nothing fetched to view it).

The topology drawn (each node coloured by its verdict), the timeline and its faults, the
expectations table, each client's sequence of what was sent and received (beside what the wire
saw of it), and each node's log. The timeline, the faults, the sequences and the wire are on the
lab's clock; a node's sequence and its wire table also count from the node's start, one origin
for both (`timeline.node_origin`), so that a line and its segment read alike. Everything that
comes from a scenario, a transcript or a log is hostile text: it only reaches the page through `esc`.
`topology_svg` is a pure function of the plan (the `lab graph` command draws it alone).
"""

from __future__ import annotations

import html
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lab.execution import NodeState
from lab.outcome import ExpectationResult, RunResult, read_log
from lab.plan import NodePlan, Plan
from lab.reports.captures import NetworkCapture, captures
from lab.reports.clock import lab_time
from lab.reports.timeline import faults_table, lab_events, node_origin, requests_table, since, timeline_svg
from lab.reports.wire_html import TIME_HEADS, captures_section, node_wire
from lab.signals import exit_words

LOG_SHOW_LIMIT = 256 * 1024  # bytes of each node's log shown on the page
DATA_SHOW_LIMIT = 2000  # characters of one sent/received payload shown
EVENTS_SHOW_LIMIT = 2000  # transcript events shown per node
SEQUENCE_EVENTS = ("connecting", "connected", "accepted", "sent", "received", "closed", "error",
                   "connect_failed", "lost", "reconnected")  # the last three: a client that reconnects

# Layout of the topology (pixels).
WIDTH, MARGIN, GAP, BAR_H, LINE_H, PAD = 1100, 20, 18, 22, 15, 40
FAULT_LINES = " Dashed red lines: the scenario's faults, when each fired (hover: where it is written)."
COLOURS = {"pass": ("#d7f0dc", "#2e7d32"), "fail": ("#f9d6d9", "#c62828"), "none": ("#eceff1", "#78909c")}


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


# ----------------------------------------------------------------------------------------- topology

def _rows(plan: Plan) -> list[list[NodePlan]]:
    """Node rows around the network bars: row k sits above bar k, row k+1 below it.

    A node on one network goes above its bar when it is a service, below otherwise; a node on
    several networks (a router) goes between the first two of them."""
    index = {n.name: i for i, n in enumerate(plan.networks)}
    rows: list[list[NodePlan]] = [[] for _ in range(len(plan.networks) + 1)]
    for node in plan.nodes:
        nets = sorted(index[i.network] for i in node.interfaces if i.network in index)
        if not nets:
            rows[0].append(node)
        elif len(nets) > 1:
            rows[nets[0] + 1].append(node)
        else:
            rows[nets[0] + (0 if node.service else 1)].append(node)
    return rows


def _node_lines(node: NodePlan) -> list[str]:
    return [node.name] + [f"{i.address.ip} {i.name} ({i.network})" for i in node.interfaces]


def topology_svg(plan: Plan, verdicts: Mapping[str, str] | None = None) -> str:
    """The plan drawn as SVG: networks as bars, nodes as boxes with their addresses, a line from
    each node to each of its networks. `verdicts` (node -> pass|fail) colours the nodes."""
    verdicts = verdicts or {}
    longest = max([len(line) for n in plan.nodes for line in _node_lines(n)] + [12])
    box_w = min(longest * 15 // 2 + 16, WIDTH - 2 * MARGIN)
    per_line = max(1, (WIDTH - 2 * MARGIN + GAP) // (box_w + GAP))
    boxes: dict[str, tuple[int, int, int]] = {}  # node -> x, y, height
    bars: dict[str, int] = {}  # network -> y
    y = bottom = MARGIN
    rows = _rows(plan)
    for k, row in enumerate(rows):
        for start in range(0, len(row), per_line):
            chunk = row[start:start + per_line]
            height = max(len(_node_lines(n)) for n in chunk) * LINE_H + 12
            for j, node in enumerate(chunk):
                boxes[node.name] = (MARGIN + j * (box_w + GAP), y, height)
            bottom = y + height
            y += height + GAP
        if k < len(plan.networks):
            y += PAD - GAP if row else 0
            bars[plan.networks[k].name] = y
            bottom = y + BAR_H
            y += BAR_H + PAD
    height = bottom + MARGIN
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" id="topology" role="img" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" font-family="monospace" font-size="12">',
           f"<title>{esc(plan.name)}: topology</title>"]
    for node in plan.nodes:  # lines first: boxes and bars are drawn over them
        x, by, h = boxes[node.name]
        cx = x + box_w // 2
        for n, iface in enumerate(node.interfaces):
            if iface.network not in bars:
                continue
            bar_y = bars[iface.network]
            lx = cx + (n - (len(node.interfaces) - 1) / 2) * 24
            y1, y2 = (by + h, bar_y) if bar_y > by else (by, bar_y + BAR_H)
            out.append(f'<line class="link" data-node="{esc(node.name)}" data-network="{esc(iface.network)}" '
                       f'x1="{lx:.0f}" y1="{y1}" x2="{lx:.0f}" y2="{y2}" stroke="#546e7a" stroke-width="2"/>')
    for net in plan.networks:
        bar_y = bars[net.name]
        out.append(f'<g class="network" data-network="{esc(net.name)}">'
                   f'<rect x="{MARGIN // 2}" y="{bar_y}" width="{WIDTH - MARGIN}" height="{BAR_H}" rx="4" '
                   f'fill="#37474f"/><text x="{MARGIN}" y="{bar_y + 15}" fill="#ffffff" font-weight="bold">'
                   f"{esc(net.name)} {esc(net.subnet)}</text></g>")
    for node in plan.nodes:
        x, by, h = boxes[node.name]
        verdict = verdicts.get(node.name, "none")
        fill, stroke = COLOURS.get(verdict, COLOURS["none"])
        what = node.role or (" ".join(node.argv) if node.argv else "host")
        out.append(f'<g class="node" data-node="{esc(node.name)}" data-verdict="{esc(verdict)}">'
                   f"<title>{esc(node.name)}: {esc(what)} ({esc(verdict)})</title>"
                   f'<rect x="{x}" y="{by}" width="{box_w}" height="{h}" rx="5" fill="{fill}" '
                   f'stroke="{stroke}" stroke-width="2"/>')
        for n, line in enumerate(_node_lines(node)):
            weight = ' font-weight="bold"' if n == 0 else ""
            out.append(f'<text x="{x + 8}" y="{by + 18 + n * LINE_H}"{weight}>{esc(line)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------- report

def node_verdicts(result: RunResult) -> dict[str, str]:
    """node -> pass|fail, the colour of its box: fail when any of its results failed."""
    verdicts: dict[str, str] = {}
    for e in result.results:
        node = e.result.node
        verdicts[node] = "fail" if not e.result.passed or verdicts.get(node) == "fail" else "pass"
    return verdicts


def exit_text(code: int | None) -> str:
    """`3`, `143 (SIGTERM)`: the checks' wording of an exit code, without its "code"."""
    return "?" if code is None else exit_words(code).removeprefix("code ")


def node_state(s: NodeState | None, clock: float) -> str:
    """How a node's run went, in words: `exited 0 at +0.4s`, `exited 3 at +0.4s (while serving)`,
    `stopped by the lab (143)`, `did not start: ...` (`clock`: the run's start, NodeState's clock)."""
    if s is None:
        return "did not start: the lab did not come up"
    if not s.plan.runs_something:
        return "host (runs nothing)"
    if s.blocked or s.started_at is None:
        return f"did not start: {s.note.removeprefix('not started: ') or 'never started'}"
    if s.failed_start:
        return f"did not start: {s.note}"
    if s.exited_at is not None:
        serving = " (while serving)" if s.plan.service else ""
        return f"exited {exit_text(s.exit_code)} at +{s.exited_at - clock:.1f}s{serving}"
    if s.stopped_by_lab:
        why = f": {s.note}" if s.killed_at_deadline or s.note.startswith("stopped") else ""
        return f"stopped by the lab ({exit_text(s.exit_code)}){why}"
    return "running"


def crashed_nodes(result: RunResult) -> set[str]:
    """Services that ended on their own while the lab needed them (the lab's `service` verdicts)."""
    return {e.result.node for e in result.results if e.result.check == "service" and not e.result.passed}


def _nodes_table(result: RunResult, verdicts: Mapping[str, str]) -> str:
    crashed = crashed_nodes(result)
    rows = "".join(
        f'<tr class="node {esc(verdicts.get(n.name, "none"))}{" crashed" if n.name in crashed else ""}" '
        f'data-node="{esc(n.name)}"><td>{esc(n.name)}</td>'
        f"<td>{esc(n.role or ' '.join(n.argv or ()) or '(host)')}</td>"
        f"<td>{esc(', '.join(str(i.address.ip) for i in n.interfaces))}</td>"
        f'<td class="state">{esc(node_state(result.states.get(n.name), result.clock))}</td></tr>'
        for n in result.plan.nodes)
    return ('<table id="nodes"><thead><tr><th>node</th><th>runs</th><th>addresses</th><th>state</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def _check_row(e: ExpectationResult) -> str:
    r = e.result
    return (f'<tr class="check {"pass" if r.passed else "fail"}" data-node="{esc(r.node)}">'
            f"<td>{esc(e.expectation)}</td><td>{esc(r.check)}</td><td>{esc(r.node)}</td>"
            f'<td class="verdict">{"pass" if r.passed else "FAIL"}</td><td>{esc(r.detail)}</td></tr>')


def _show_data(event: Mapping[str, Any]) -> str:
    if "data_b64" in event:
        raw = str(event["data_b64"])
        return f"(binary, base64) {raw[:DATA_SHOW_LIMIT]}" + ("…" if len(raw) > DATA_SHOW_LIMIT else "")
    text = json.dumps(str(event.get("data", "")), ensure_ascii=False)[1:-1]  # \r\n visible
    if len(text) > DATA_SHOW_LIMIT:
        text = text[:DATA_SHOW_LIMIT] + f"… ({len(text) - DATA_SHOW_LIMIT} more characters)"
    return text


def _event_text(event: Mapping[str, Any]) -> str:
    kind = event.get("event")
    if kind in ("sent", "received"):
        return _show_data(event) if "data" in event or "data_b64" in event else f"{event.get('size', '?')} bytes"
    if kind == "error":
        return f"{event.get('kind', '')} during {event.get('during', '')}: {event.get('message', '')}"
    keys = ("peer", "local", "target", "reason", "why", "kind", "attempt", "after", "attempts")
    return " ".join(f"{k}={event[k]}" for k in keys if k in event)


def _sequence(name: str, events: list[dict[str, Any]], origin: float | None) -> str:
    """A node's transcript as a table: each event's moment on the lab's clock (`events`' "t") and
    from the node's start (`origin`), as its wire table shows its segments."""
    shown = [e for e in events if e.get("event") in SEQUENCE_EVENTS]
    if not shown:
        return ""
    rows = []
    for e in shown[:EVENTS_SHOW_LIMIT]:
        t = e.get("t")
        lab, rel = (f"{t:.3f}s", since(t, origin)) if isinstance(t, int | float) else ("?", "?")
        kind = str(e.get("event"))
        arrow = {"sent": "→ sent", "received": "← received"}.get(kind, kind)
        rows.append(f'<tr class="ev {esc(kind)}"><td class="t">{esc(lab)}</td><td class="t rel">{esc(rel)}</td>'
                    f"<td>{esc(e.get('conn', ''))}</td><td>{esc(arrow)}</td>"
                    f'<td class="data">{esc(_event_text(e))}</td></tr>')
    more = len(shown) - EVENTS_SHOW_LIMIT
    if more > 0:
        rows.append(f'<tr><td colspan="5">… {more} more events (nodes/{esc(name)}.jsonl)</td></tr>')
    return (f'<section class="sequence" id="seq-{esc(name)}" data-node="{esc(name)}"><h3>{esc(name)}'
            f"{_origin(origin)}</h3><table><thead><tr>{TIME_HEADS}<th>conn</th><th>event</th><th>data</th></tr>"
            f"</thead><tbody>{''.join(rows)}</tbody></table></section>")


def _origin(origin: float | None) -> str:
    return "" if origin is None else f' <span class="origin">started at {origin:.3f}s on the lab\'s clock</span>'


def _node_story(result: RunResult, name: str, caps: list[NetworkCapture]) -> str:
    """A node's sequence, then what the wire saw of its connections: one origin for both."""
    events = lab_events(result, name)
    origin = node_origin(result, name, events)
    return _sequence(name, events, origin) + node_wire(name, caps, lambda t: lab_time(result, t), origin)


def _log(name: str, path: Path) -> str:
    text = read_log(path)
    if not text:
        return (f'<details class="log" id="log-{esc(name)}" data-node="{esc(name)}"><summary>{esc(name)} '
                f"(empty)</summary></details>")
    data = text.encode()
    note = ""
    if len(data) > LOG_SHOW_LIMIT:
        size = os.stat(path).st_size if path.exists() else len(data)
        text = data[:LOG_SHOW_LIMIT].decode(errors="ignore")
        note = (f'<p class="cut">cut: showing the first {LOG_SHOW_LIMIT // 1024} KiB of {size} bytes '
                f"(nodes/{esc(name)}.log)</p>")
    lines = text.count("\n")
    return (f'<details class="log" id="log-{esc(name)}" data-node="{esc(name)}"><summary>{esc(name)} '
            f"({lines} lines)</summary>{note}<pre>{esc(text)}</pre></details>")


CSS = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1140px;padding:16px;color:#212121}
h1{margin:0 0 4px}h2{margin-top:28px;border-bottom:1px solid #ccc}
.status{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-weight:bold}
.status.pass{background:#2e7d32}.status.fail{background:#c62828}
.meta span{margin-right:18px}.error{color:#c62828;font-weight:bold}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
tr.check.pass td.verdict{color:#2e7d32;font-weight:bold}tr.check.fail{background:#fdecee}
tr.check.fail td.verdict{color:#c62828;font-weight:bold}tr.node.fail td.state{color:#c62828}
tr.node.crashed td{color:#c62828;font-weight:bold}#timeline-box{overflow-x:auto}
td.data,pre{font-family:monospace;white-space:pre-wrap;word-break:break-all}
td.t{white-space:nowrap;font-family:monospace}tr.ev.sent td{color:#1565c0}tr.ev.received td{color:#2e7d32}
tr.ev.error td{color:#c62828}
pre{background:#f5f5f5;padding:8px;max-height:480px;overflow:auto;font-size:12px}
#topology-box{overflow-x:auto}#topology g.node{cursor:pointer}
.cut{color:#c62828}label{font-size:13px}body.only-failed tr.check.pass{display:none}
p.wire-summary{font-family:monospace;font-size:13px;margin:8px 0 2px}div.conn.unanswered p.wire-summary,
div.conn.refused p.wire-summary,div.conn.reset p.wire-summary,tr.wire.RST td{color:#c62828}
table.wire-events{width:auto}tr.capture.cut td.note{color:#c62828}
td.rel{color:#616161}h3 .origin{font-weight:normal;font-size:13px;color:#616161}
#faults{width:auto}tr.fault.fired td:first-child{color:#d32f2f;font-weight:bold}
tr.fault.not-fired td{color:#c62828;background:#fdecee}td.where{font-family:monospace;font-size:12px}
"""

JS = """
document.getElementById('only-failed').addEventListener('change', function (e) {
  document.body.classList.toggle('only-failed', e.target.checked);
});
document.querySelectorAll('#topology g.node').forEach(function (g) {
  g.addEventListener('click', function () {
    var log = document.getElementById('log-' + g.getAttribute('data-node'));
    if (log) { log.open = true; log.scrollIntoView(); }
  });
});
document.documentElement.setAttribute('data-script', 'ok');
"""


def render(result: RunResult) -> str:
    plan, rundir, status = result.plan, result.rundir, result.status
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(result.started))
    notes = []
    if result.error:
        notes.append(f'<p class="error">error: {esc(result.error)}</p>')
    if result.timed_out:
        notes.append('<p class="error">the run hit its timeout</p>')
    if result.interrupted:
        notes.append(f'<p class="error">interrupted by signal {result.interrupted}</p>')
    checks = "".join(_check_row(e) for e in result.results)
    order = sorted(plan.nodes, key=lambda n: n.service)  # clients first, then the servers
    caps = captures(result)
    sequences = "".join(_node_story(result, n.name, caps) for n in order)
    logs = "".join(_log(n.name, rundir.log(n.name)) for n in plan.nodes if n.runs_something)
    hosts = "".join(
        f"<tr><td>{esc(n)}</td><td>{esc(p.host)}</td><td>{esc(p.endpoint)}</td>"
        f"<td>{p.clock_offset * 1000:+.1f} ms &plusmn; {p.uncertainty * 1000:.1f}</td></tr>"
        for n, p in result.placements.items())
    if hosts:
        hosts = ('<h2>Hosts</h2><table id="hosts"><thead><tr><th>node</th><th>host</th><th>endpoint</th>'
                 f"<th>host clock offset (corrected in checks)</th></tr></thead><tbody>{hosts}</tbody></table>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; \
script-src 'unsafe-inline'; img-src data:">
<title>lab {esc(plan.name)}: {status}</title><style>{CSS}</style></head>
<body>
<header id="summary"><h1>{esc(plan.name)} <span class="status {"pass" if result.passed else "fail"}" \
id="status">{status}</span></h1>
<p class="meta"><span>backend: <b>{esc(result.backend)}</b></span><span>lab: <b>{esc(result.lab_id)}</b></span>\
<span>started: {esc(started)}</span><span>duration: <b>{result.duration:.2f}s</b></span>\
<span>exit code: {result.exit_code}</span></p>{"".join(notes)}</header>
<h2>Topology</h2><div id="topology-box">{topology_svg(plan, node_verdicts(result))}</div>
<h2>Nodes</h2>{_nodes_table(result, node_verdicts(result))}
<h2>Timeline</h2><p>Every node on the lab's clock: its program's run (green passed, red failed or \
crashed, grey no verdict), the moment it was ready (tick), and under it each connection, open to \
closed (hover: who closed it).{FAULT_LINES if result.timeline else ""}</p>
<div id="timeline-box">{timeline_svg(result, node_verdicts(result), crashed_nodes(result))}</div>
{faults_table(result)}
{requests_table(result)}
{hosts}
<h2>Expectations</h2><label><input type="checkbox" id="only-failed"> only failures</label>
<table id="checks"><thead><tr><th>expectation</th><th>check</th><th>node</th><th>result</th><th>detail</th></tr>\
</thead><tbody>{checks}</tbody></table>
<h2>Sequences</h2><div id="sequences"><p>What each node sent and received, and what the wire saw of its \
connections (when the run captured). Times on the lab's clock (as the timeline's and the faults'), and \
from the node's start (its first transcript event): a line and its segments on the wire read the same in both.</p>\
{sequences or "<p>no transcripts</p>"}</div>
{captures_section(caps)}
<h2>Logs</h2><div id="logs">{logs or "<p>no logs</p>"}</div>
<script>{JS}</script>
</body></html>
"""


def write_html(result: RunResult) -> Path:
    """Write report.html into the run folder (atomically) and return its path."""
    path = result.rundir.file("report.html")
    tmp = result.rundir.file(".report.html.tmp")
    tmp.write_text(render(result), encoding="utf-8")
    tmp.rename(path)
    return path
