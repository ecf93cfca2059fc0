"""report.html's view of the wire, when the run captured: beside each node's sequence, the TCP
connections it took part in (one line each, and its SYN/SYN-ACK/ACK/FIN/RST in a small table);
and a Captures section linking each network's pcap, for Wireshark.

What a transcript says the program did, the wire says happened: a client that "connected" and
"got nothing" next to `SYN x4, never answered` or `refused` needs no more explanation. Times are
on the lab's clock, as the timeline's; each segment also from the node's start, counted as its
sequence counts (`timeline.since`): a line sent and its segment read the same, no arithmetic.
Addresses and names come from the run: they go through `esc`.
"""

from __future__ import annotations

import html
from collections.abc import Callable

from lab.reports.captures import NetworkCapture
from lab.reports.timeline import since
from lab.reports.wire import Connection

CONNECTIONS_SHOW_LIMIT = 100  # connections shown per node and network (report.json has them all)
TIME_HEADS = ("<th title=\"seconds since the run began\">lab clock</th>"
              "<th title=\"seconds since the node's first transcript event\">from start</th>")  # both tables'


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _size(n: int) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _connection(net: str, c: Connection, at: Callable[[float], float], origin: float | None) -> str:
    rows = "".join(f'<tr class="wire {esc(e.kind)}"><td class="t">{at(e.t):.3f}s</td>'
                   f'<td class="t rel">{since(at(e.t), origin)}</td><td>{esc(e.kind)}</td>'
                   f"<td>{esc(e.sender)} → {esc(e.receiver)}</td></tr>" for e in c.events)
    if c.events_dropped:
        rows += f'<tr><td colspan="4">… {c.events_dropped} more (report.json)</td></tr>'
    table = (f'<table class="wire-events"><thead><tr>{TIME_HEADS}<th>event</th><th>from → to</th></tr></thead>'
             f"<tbody>{rows}</tbody></table>") if rows else ""
    return (f'<div class="conn {esc(c.outcome)}" data-network="{esc(net)}" data-outcome="{esc(c.outcome)}">'
            f'<p class="wire-summary">on {esc(net)}: {esc(c.summary(at))}</p>{table}</div>')


def node_wire(node: str, caps: list[NetworkCapture], at: Callable[[float], float], origin: float | None = None) -> str:
    """The connections `node` initiated or served, per captured network ("" when none); `origin`:
    the node's start on the lab's clock, which its sequence counts from too."""
    parts = []
    for cap in caps:
        mine = cap.involving(node)
        parts += [_connection(cap.network, c, at, origin) for c in mine[:CONNECTIONS_SHOW_LIMIT]]
        if len(mine) > CONNECTIONS_SHOW_LIMIT:
            parts.append(f'<p class="cut">… {len(mine) - CONNECTIONS_SHOW_LIMIT} more connections on '
                         f"{esc(cap.network)} (report.json, {esc(cap.file)})</p>")
    if not parts:
        return ""
    return (f'<section class="wire" id="wire-{esc(node)}" data-node="{esc(node)}"><h4>{esc(node)} on the wire '
            f"(each line on the lab's clock)</h4>{''.join(parts)}</section>")


def _notes(cap: NetworkCapture) -> str:
    notes = []
    if cap.over_limit:
        notes.append(f"cut at its size limit: {cap.over_limit} packets not written")
    if cap.kernel_drops:
        notes.append(f"{cap.kernel_drops} packets dropped by the kernel")
    if cap.wire.truncated:
        notes.append("its last record is cut short")
    if cap.wire.problem:
        notes.append(cap.wire.problem)
    if cap.wire.more:
        notes.append(f"{len(cap.wire.connections)} connections shown, {cap.wire.more} more not")
    return "; ".join(notes)


def captures_section(caps: list[NetworkCapture]) -> str:
    """Each captured network's pcap, linked (relative to the page), with its size and packets."""
    if not caps:
        return ""
    rows = "".join(
        f'<tr class="capture{" cut" if cap.over_limit or cap.wire.truncated else ""}" '
        f'data-network="{esc(cap.network)}"><td>{esc(cap.network)}</td>'
        f'<td><a href="{esc(cap.file)}">{esc(cap.file)}</a></td><td>{esc(_size(cap.size))}</td>'
        f"<td>{cap.packets}</td><td>{len(cap.wire.connections) + cap.wire.more}</td>"
        f'<td class="note">{esc(_notes(cap))}</td></tr>'
        for cap in caps)
    return ('<h2>Captures</h2><p>Each network\'s packets, for Wireshark; each node\'s TCP connections '
            "are shown under its sequence, times on the lab's clock.</p>"
            '<table id="captures"><thead><tr><th>network</th><th>file</th><th>size</th><th>packets</th>'
            f"<th>TCP connections</th><th>note</th></tr></thead><tbody>{rows}</tbody></table>")
