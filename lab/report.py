"""Reports of a run: report.json, junit.xml (a testcase per expectation per node), terminal table."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from typing import Any

from lab.html_report import write_html
from lab.outcome import RunResult

MAX_FAILURES_SHOWN = 5


def to_json(result: RunResult) -> dict[str, Any]:
    plan = result.plan
    nodes = []
    for n in plan.nodes:
        s = result.states.get(n.name)
        nodes.append({
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
        })
    return {
        "scenario": plan.name,
        "backend": result.backend,
        "lab_id": result.lab_id,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(result.started)),
        "duration_s": round(result.duration, 3),
        "passed": result.passed,
        "exit_code": result.exit_code,
        "timed_out": result.timed_out,
        "interrupted": result.interrupted,
        "error": result.error,
        "checks": [
            {"check": v.result.check, "node": v.result.node, "passed": v.result.passed,
             "detail": v.result.detail, "expectation": v.expectation, "ran": v.result.ran}
            for v in result.results
        ],
        "nodes": nodes,
    }


def placement_json(result: RunResult, node: str) -> dict[str, Any]:
    """Where the node ran (multi-host backends): host, endpoint, and that host's clock offset."""
    p = result.placements.get(node)
    if p is None:
        return {}
    return {"host": p.host, "endpoint": p.endpoint, "clock_offset_s": round(p.clock_offset, 6),
            "clock_uncertainty_s": round(p.uncertainty, 6)}


def hosts_line(result: RunResult) -> str:
    """`hosts: h1: server; h2: client-1, client-3` (empty when every node ran here)."""
    by_host: dict[str, list[str]] = defaultdict(list)
    for node, p in result.placements.items():
        by_host[p.host].append(node)
    parts = [f"{host}: {', '.join(nodes[:4])}{f' +{len(nodes) - 4}' if len(nodes) > 4 else ''}"
             for host, nodes in sorted(by_host.items())]
    return f"hosts: {'; '.join(parts)}" if parts else ""


def junit(result: RunResult) -> ET.Element:
    suites = ET.Element("testsuites")
    failures = sum(not v.result.passed for v in result.results)
    errors = 1 if result.error or result.interrupted else 0
    suite = ET.SubElement(suites, "testsuite", name=f"lab.{result.plan.name}",
                          tests=str(len(result.results) + errors),
                          failures=str(failures), errors=str(errors), time=f"{result.duration:.3f}")
    props = ET.SubElement(suite, "properties")
    for key, value in (("backend", result.backend), ("lab_id", result.lab_id)):
        ET.SubElement(props, "property", name=key, value=value)
    for v in result.results:
        case = ET.SubElement(suite, "testcase", classname=f"{result.plan.name}.{v.expectation}",
                             name=f"{v.result.check}[{v.result.node}]", time="0")
        if not v.result.passed:
            failure = ET.SubElement(case, "failure", message=v.result.detail, type=v.result.check)
            failure.text = f"{v.result.node}: {v.result.detail} (see nodes/{v.result.node}.log)"
    if errors:
        case = ET.SubElement(suite, "testcase", classname=f"{result.plan.name}.run", name="run")
        ET.SubElement(case, "error", message=result.error or f"interrupted by signal {result.interrupted}")
    ET.indent(suites)
    return suites


def write_reports(result: RunResult) -> None:
    root = result.rundir.root
    tmp = root / ".report.json.tmp"  # atomic: a reader never sees half a report
    tmp.write_text(json.dumps(to_json(result), indent=2) + "\n")
    ET.ElementTree(junit(result)).write(root / "junit.xml", encoding="unicode", xml_declaration=True)
    tmp.rename(root / "report.json")
    write_html(result)


def table(result: RunResult) -> str:
    """A short table: one row per expectation, then the failing nodes (a few per expectation)."""
    groups: dict[str, list[Any]] = defaultdict(list)
    for v in result.results:
        groups[v.expectation].append(v.result)
    width = max([len(k) for k in groups] + [11])
    lines = [f"{'EXPECTATION':<{width}}  RESULT  DETAIL"]
    for label, results in groups.items():
        bad = [r for r in results if not r.passed]
        verdict = "pass" if not bad else "FAIL"
        detail = results[0].detail if len(results) == 1 else f"{len(results) - len(bad)}/{len(results)} nodes passed"
        lines.append(f"{label:<{width}}  {verdict:<6}  {detail}")
        for r in bad[:MAX_FAILURES_SHOWN] if len(results) > 1 else []:
            lines.append(f"{'':<{width}}  {'':<6}  {r.node}: {r.detail}")
        if len(bad) > MAX_FAILURES_SHOWN and len(results) > 1:
            lines.append(f"{'':<{width}}  {'':<6}  ... and {len(bad) - MAX_FAILURES_SHOWN} more (report.json)")
    status = "PASSED" if result.passed else ("INTERRUPTED" if result.interrupted else "FAILED")
    if result.placements:
        lines.append(hosts_line(result))
    if result.error:
        lines.append(f"error: {result.error}")
    lines.append(f"{status} in {result.duration:.2f}s ({result.backend}) -> {result.rundir.root}")
    return "\n".join(lines)
