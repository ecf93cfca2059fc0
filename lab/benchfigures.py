"""The bench's figures: the terminal's table, a JSON of every sample, and an SVG of time against N.

The plot is log-log so that every size from 10 to 1000 is readable and a line of slope 1 is linear
scaling; each backend and each peer is one line through the medians, with the spread of the rounds
drawn as a bar at each size.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

FLOOR = "floor"  # the side that is the engine's own floor (Backend.floor): lab is measured above it
SLOWER = ("rootless", "swarm")  # compared with lab itself elsewhere: shown as how many times slower


@dataclass
class Sample:
    """One timed run, end to end as a fresh process."""

    seconds: float
    ok: bool
    rss_mib: float | None = None  # peak resident set of the process and those it waited for
    last: str = ""  # the last line it printed (a failure's reason)


@dataclass
class Point:
    """Every round of one side (lab on a backend, or a peer) at one size."""

    backend: str
    side: str  # "lab", a peer's name ("mininet", "compose", "root" for rootless), or FLOOR
    n: int
    samples: list[Sample] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # lab's: median seconds per phase
    note: str = ""  # e.g. why a peer stopped being timed

    @property
    def times(self) -> list[float]:
        return [s.seconds for s in self.samples]

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.samples else None

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.samples)

    @property
    def rss_mib(self) -> float | None:
        seen = [s.rss_mib for s in self.samples if s.rss_mib is not None]
        return max(seen) if seen else None

    def as_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "side": self.side, "n": self.n, "seconds": self.times,
                "median": self.median, "min": min(self.times, default=None), "max": max(self.times, default=None),
                "ok": self.ok, "peak_rss_mib": self.rss_mib, "phases": self.phases, "note": self.note,
                "failures": [s.last for s in self.samples if not s.ok]}


def above(lab: Point, floor: Point) -> float | None:
    """Seconds lab's median takes above the engine's floor (None without both)."""
    if lab.median is None or floor.median is None:
        return None
    return lab.median - floor.median


def ratio(lab: Point, peer: Point) -> float | None:
    """How many times faster lab's median is than the peer's (None without both)."""
    if lab.median is None or peer.median is None or lab.median <= 0:
        return None
    return peer.median / lab.median


Scale = Callable[[float], float]
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"]
W, H, LEFT, RIGHT, TOP, BOTTOM = 720, 440, 70, 190, 40, 50


def svg(points: list[Point], title: str) -> str:
    """Time (s) against N, log-log: one line per backend and side through the medians."""
    shown = [p for p in points if p.median is not None]
    if not shown:
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="80"><text x="10" y="40">' \
               f'{escape(title)}: no figures</text></svg>\n'
    ns = sorted({p.n for p in shown})
    lows = [min(p.times) for p in shown]
    highs = [max(p.times) for p in shown]
    x = _axis(min(ns), max(ns), LEFT, W - RIGHT)
    y = _axis(min(lows), max(highs), H - BOTTOM, TOP)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" '
           f'font-size="12">', f'<text x="{LEFT}" y="22" font-size="14">{escape(title)}</text>']
    out += _grid(ns, x, y, min(lows), max(highs))
    lines: dict[tuple[str, str], list[Point]] = {}
    for p in shown:
        lines.setdefault((p.backend, p.side), []).append(p)
    for k, ((backend, side), line) in enumerate(sorted(lines.items())):
        color = COLORS[k % len(COLORS)]
        line.sort(key=lambda p: p.n)
        path = " ".join(f"{x(p.n):.1f},{y(p.median or 0):.1f}" for p in line)
        dash = "" if side == "lab" else ' stroke-dasharray="6 4"'
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{path}"/>')
        for p in line:
            px = x(p.n)
            out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{y(min(p.times)):.1f}" y2="{y(max(p.times)):.1f}" '
                       f'stroke="{color}"/>')
            out.append(f'<circle cx="{px:.1f}" cy="{y(p.median or 0):.1f}" r="3.5" '
                       f'fill="{color if p.ok else "white"}" stroke="{color}"><title>{escape(backend)} '
                       f'{escape(side)} N={p.n}: {p.median:.2f}s</title></circle>')
        label = f"{backend}: {'lab' if side == 'lab' else side}"
        ly = TOP + 10 + 18 * k
        out.append(f'<line x1="{W - RIGHT + 15}" x2="{W - RIGHT + 40}" y1="{ly}" y2="{ly}" stroke="{color}" '
                   f'stroke-width="2"{dash}/><text x="{W - RIGHT + 46}" y="{ly + 4}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _axis(low: float, high: float, start: float, end: float) -> Scale:
    """A log scale mapping [low, high] (padded a little) onto [start, end] in pixels."""
    lo, hi = math.log10(max(low, 1e-3)) - 0.05, math.log10(max(high, low * 1.01, 1e-3)) + 0.05
    return lambda v: start + (math.log10(max(v, 1e-3)) - lo) / (hi - lo) * (end - start)


def _grid(ns: list[int], x: Scale, y: Scale, low: float, high: float) -> list[str]:
    """The axes: a tick at every size measured, and at 1-2-5 steps of seconds."""
    out = [f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{H - BOTTOM}" y2="{H - BOTTOM}" stroke="black"/>',
           f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{H - BOTTOM}" stroke="black"/>',
           f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 12}" text-anchor="middle">N (hosts running a client; '
           'log scale)</text>',
           f'<text x="16" y="{(TOP + H - BOTTOM) / 2}" transform="rotate(-90 16 {(TOP + H - BOTTOM) / 2})" '
           'text-anchor="middle">seconds, end to end (log scale)</text>']
    for n in ns:
        out.append(f'<text x="{x(n):.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">{n}</text>')
    for tick in _ticks(low, high):
        ty = y(tick)
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end">{tick:g}</text>')
    return out


def _ticks(low: float, high: float) -> list[float]:
    ticks = []
    for exp in range(math.floor(math.log10(max(low, 1e-3))) - 1, math.ceil(math.log10(max(high, 1e-3))) + 1):
        for m in (1, 2, 5):
            v = m * 10.0 ** exp
            if low * 0.9 <= v <= high * 1.1:
                ticks.append(v)
    return ticks


def table(points: list[Point]) -> str:
    """One row per backend, side and size: median (min-max) of the rounds, peak memory, and the
    ratio against lab on the same backend and size (a peer's time over lab's; for rootless, the
    user's time over root's, so 1.05x means 5% slower; for swarm, its time over the docker backend's)."""
    rows = [f"{'backend':<9} {'side':<9} {'N':>5}  {'median':>8}  {'min-max':>15}  {'peak RSS':>9}  {'vs lab':>8}"]
    labs = _labs(points)
    for p in points:
        spread = f"{min(p.times):.2f}-{max(p.times):.2f}s" if p.samples else p.note[:15]
        median = f"{p.median:.2f}s" if p.median is not None else "-"
        rss = f"{p.rss_mib:.0f} MiB" if p.rss_mib is not None else "-"
        lab = labs.get((p.backend, p.n))
        shown = _versus(lab, p) if lab is not None and p is not lab else ""
        rows.append(f"{p.backend:<9} {p.side:<9} {p.n:>5}  {median:>8}  {spread:>15}  {rss:>9}  {shown:>8}"
                    + ("" if p.ok else "  FAILED"))
    return "\n".join(rows)


def write(folder: Path, points: list[Point], rounds: int, machine: dict[str, str]) -> None:
    """bench.json: the machine, every sample of every point, and the ratios."""
    labs = _labs(points)
    ratios = [{"backend": p.backend, "n": p.n, "peer": p.side, "ratio": ratio(labs[(p.backend, p.n)], p),
               **({"lab_above_s": above(labs[(p.backend, p.n)], p)} if p.side == FLOOR else {})}
              for p in points if p.side != "lab" and (p.backend, p.n) in labs]
    data = {"machine": machine, "rounds": rounds, "points": [p.as_json() for p in points], "ratios": ratios}
    (folder / "bench.json").write_text(json.dumps(data, indent=1) + "\n")


def markdown(points: list[Point], machine: dict[str, str]) -> str:
    """The figures as the README shows them: one row per backend and size, lab against each peer."""
    rows = ["| backend | N | lab: median (min-max) | peak RSS | peer | peer: median (min-max) | lab's speed-up "
            "(rootless, swarm: how many times slower; floor: lab's time above it) |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    labs = _labs(points)
    for p in points:
        lab = labs.get((p.backend, p.n))
        if p.side == "lab" or lab is None:
            continue
        rows.append(f"| {p.backend} | {p.n} | {_cell(lab)} | {lab.rss_mib or 0:.0f} MiB | {p.side} | {_cell(p)} | "
                    f"{_versus(lab, p) or '-'} |")
    return f"Measured on {machine.get('summary', '?')}, {machine.get('date', '')}:\n\n" + "\n".join(rows) + "\n"


def _labs(points: list[Point]) -> dict[tuple[str, int], Point]:
    return {(p.backend, p.n): p for p in points if p.side == "lab"}


def _versus(lab: Point, p: Point) -> str:
    """`p` beside lab, as the tables show it: the peer's time over lab's ("" without both; a
    stopped peer's is a lower bound: ">"); for rootless, the user's time over root's, and for swarm
    its time over the docker backend's (both "how much slower"); for the engine's floor, the seconds
    lab takes above it."""
    if p.side == FLOOR:
        extra = above(lab, p)
        return "" if extra is None else f"{extra:+.2f}s"
    r = ratio(lab, p)
    if r is None:
        return ""
    return ("" if p.ok else ">") + f"{1 / r if p.backend in SLOWER else r:.2f}x"


def _cell(p: Point) -> str:
    if p.median is None:
        return p.note or "-"
    return f"{p.median:.2f} s ({min(p.times):.2f}-{max(p.times):.2f})" + ("" if p.ok else f" ({p.note or 'failed'})")
