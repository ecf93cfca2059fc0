"""A run's results in a terminal: the table `lab run` and `lab check` print, and a failing
expectation explained with its nodes' last events (the pytest plugin's failure text).

One expectation table for both commands, so a kept lab checked now reads like a run that ended.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from lab.outcome import CheckResult, ExpectationResult, RunResult, read_log, read_transcript
from lab.roles.common import event_bytes
from lab.rundir import RunDir

MAX_FAILURES_SHOWN = 5  # failing nodes listed under an expectation; report.json has them all
EXCERPT_EVENTS = 10
DATA_PREVIEW = 80


def table(result: RunResult) -> str:
    """The expectation table, then where the nodes ran, the error, and the verdict line."""
    lines = expectation_table(result.results)
    if result.placements:
        lines.append(hosts_line(result))
    if result.error:
        lines.append(f"error: {result.error}")
    lines.append(verdict_line(result))
    return "\n".join(lines)


def verdict_line(result: RunResult) -> str:
    """The run in one line, with where its reports are (`-q` prints this alone)."""
    return f"{result.status} in {result.duration:.2f}s ({result.backend}) -> {result.rundir.root} (report.html)"


PHASES = ("plan", "up", "run", "down", "check")


def phase_lines(phases: dict[str, tuple[float, float]]) -> list[str]:
    """`-v`: each phase's time and its share of the whole, in the order they happen."""
    total = max((end for _, end in phases.values()), default=0.0) or 1.0
    return [f"  {name:<6} {end - start:7.3f}s  {100 * (end - start) / total:3.0f}%  "
            f"(from {start:.3f}s to {end:.3f}s)" for name in PHASES if name in phases
            for start, end in [phases[name]]]


def row(cells: Sequence[str], widths: Sequence[int], last: str = "") -> str:
    """One table row: each cell fits its width (cut with `…` rather than run into the next column),
    then `last`, which may be as long as it is."""
    fitted = [fit(text, width) for text, width in zip(cells, widths, strict=True)]
    return " ".join([*fitted, last]).rstrip()


def fit(text: str, width: int) -> str:
    return text.ljust(width) if len(text) <= width else text[:width - 1] + "…"


def expectation_table(results: Sequence[ExpectationResult]) -> list[str]:
    """One row per expectation, then its failing nodes (a few of them)."""
    groups: dict[str, list[CheckResult]] = defaultdict(list)
    for e in results:
        groups[e.expectation].append(e.result)
    width = max([len(k) for k in groups] + [11])
    lines = [f"{'EXPECTATION':<{width}}  RESULT  DETAIL"]
    for label, checked in groups.items():
        lines += _expectation_rows(label, checked, width)
    return lines


def _expectation_rows(label: str, checked: list[CheckResult], width: int) -> list[str]:
    bad = [r for r in checked if not r.passed]
    verdict = "pass" if not bad else "FAIL"
    detail = checked[0].detail if len(checked) == 1 else f"{len(checked) - len(bad)}/{len(checked)} nodes passed"
    lines = [f"{label:<{width}}  {verdict:<6}  {detail}"]
    if len(checked) > 1:
        lines += [f"{'':<{width}}  {'':<6}  {_named(r)}" for r in bad[:MAX_FAILURES_SHOWN]]
        if len(bad) > MAX_FAILURES_SHOWN:
            lines.append(f"{'':<{width}}  {'':<6}  ... and {len(bad) - MAX_FAILURES_SHOWN} more (report.json)")
    return lines


def _named(r: CheckResult) -> str:
    """A failing node's detail, naming the node once (a client's detail begins with its name)."""
    return r.detail if r.detail.startswith(f"{r.node} ") else f"{r.node}: {r.detail}"


def hosts_line(result: RunResult) -> str:
    """`hosts: h1: server; h2: client-1, client-3` (empty when every node ran here)."""
    by_host: dict[str, list[str]] = defaultdict(list)
    for node, p in result.placements.items():
        by_host[p.host].append(node)
    parts = [f"{host}: {', '.join(nodes[:4])}{f' +{len(nodes) - 4}' if len(nodes) > 4 else ''}"
             for host, nodes in sorted(by_host.items())]
    return f"hosts: {'; '.join(parts)}" if parts else ""


def failure_text(result: RunResult, label: str, bad: list[CheckResult], problem: str = "") -> str:
    """Why an expectation failed: each failing node with its last events, the start failures and
    timeouts that may explain it, and where the run folder is."""
    total = sum(1 for e in result.results if e.expectation == label)
    lines = [f"{label}: " + (problem if problem and not bad else f"{len(bad)}/{total} node(s) failed")]
    if problem and bad:
        lines.append(problem)
    for r in bad:
        lines.append(f"  {r.node}: {r.detail}")
        lines += [f"      {line}" for line in excerpt(result.rundir, r.node)]
    starts = [e.result for e in result.results if e.result.check in ("start", "timeout")]
    for r in starts:
        lines.append(f"  {r.check} {r.node}: {r.detail}")
    lines.append(f"run folder: {result.rundir.root} ({result.backend}, lab {result.lab_id})")
    return "\n".join(lines)


def excerpt(rundir: RunDir, node: str, count: int = EXCERPT_EVENTS) -> list[str]:
    """The node's last events (sent, received, errors; data escaped), else the end of its log."""
    events = read_transcript(rundir.transcript(node))
    if events:
        t0 = float(events[0].get("t", 0.0))
        shown = [e for e in events if e.get("event") in ("connected", "sent", "received", "error", "closed")]
        lines = [f"nodes/{node}.jsonl (last {min(count, len(shown))} of {len(shown)} events):"]
        for e in shown[-count:]:
            lines.append(f"+{float(e.get('t', t0)) - t0:.3f}s {_event_text(e)}")
        return lines
    log = [ln for ln in read_log(rundir.log(node))[-8192:].splitlines() if ln.strip()]
    if not log:
        return []
    return [f"nodes/{node}.log (last {min(count, len(log))} lines):"] + [_clip(repr(ln)[1:-1]) for ln in log[-count:]]


def _event_text(e: dict[str, Any]) -> str:
    kind = str(e.get("event"))
    if kind in ("sent", "received"):
        return f"{kind:<8} {_clip(repr(event_bytes(e).decode('utf-8', 'replace')))}"
    if kind == "error":
        return f"error    {e.get('kind')} during {e.get('during')}: {_clip(str(e.get('message', '')))}"
    if kind == "connected":
        return f"connected {e.get('peer', e.get('target', ''))}"
    return f"closed   by {e.get('by', '?')}"


def _clip(text: str) -> str:
    return text if len(text) <= DATA_PREVIEW else text[:DATA_PREVIEW] + "..."
