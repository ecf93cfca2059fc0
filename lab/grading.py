"""`lab grade`: every student's submission run as its own lab, several at once, scored.

Each entry of the submissions folder (a folder, or a single file) replaces the `files:` of the
graded node in a private copy of the scenario, and runs in a process of its own (`python -m
lab.entry run`, a library entry point): a submission that crashes, hangs or floods its output is
contained (the scenario's timeout, a wall limit on the whole run, an output limit on programs) and
graded like any other; it never stops the batch. Points come from `points:` on expectations
(default 1), reasons from the run's report, hints from `hint:`.
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab import backends
from lab.errors import LabError
from lab.execution import HOSTS_LIMIT
from lab.outcome import CheckResult
from lab.reports import Report, load_report
from lab.scenario import load_scenario
from lab.scenario.model import Node, Scenario

WALL_MARGIN = 60.0 + HOSTS_LIMIT  # beyond the scenario's timeout: bring-up, the hosts' creation, teardown
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class GradingError(LabError):
    exit_code = 2


@dataclass
class GradedExpectation:
    """One expectation of one submission: the points it earned, why, and the hint if it failed."""

    expectation: str
    passed: bool
    points: float
    earned: float
    reason: str
    hint: str


@dataclass
class Grade:
    name: str
    score: float
    max: float
    run: str
    exit_code: int
    duration_s: float
    checks: list[GradedExpectation] = field(default_factory=list)
    note: str = ""


def grade(scenario_path: str, submissions: str, node: str, jobs: int = 4, out: str | None = None,
          backend: str = "netns", progress: Callable[[str], None] = print) -> tuple[Path, list[Grade]]:
    """Grade every submission; returns the grades folder (grades.json, grades.csv, index.html) and
    the grades, in the submissions' order. `progress` gets a line per submission as it is graded."""
    scenario = load_scenario(scenario_path)
    graded = _graded_node(scenario, node)
    backends.load(backend)  # a mistyped one is a usage error before anything exists, not 200 failed labs
    entries = _entries(Path(submissions))
    root = Path(out or f"grades/{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}").absolute()
    (root / "work").mkdir(parents=True, exist_ok=True)
    progress(f"grading {len(entries)} submission(s) of {scenario.name} ({node}), {jobs} at a time -> {root}")

    def one(entry: Path) -> Grade:
        name = _SAFE.sub("_", entry.stem if entry.is_file() else entry.name)
        copy = _prepare(scenario, graded, entry, root / "work" / name)
        hidden = [Path(submissions).absolute(), root, scenario.folder]  # the batch's and the instructor's
        result = _run(copy, root / "runs" / name, backend, scenario.timeout + WALL_MARGIN, hidden)
        g = _grade(name, scenario, root / "runs" / name, result)
        progress(f"  {g.name:<20} {g.score:g}/{g.max:g}" + (f"  ({g.note})" if g.note else ""))
        return g

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        grades = list(pool.map(one, entries))
    shutil.rmtree(root / "work", ignore_errors=True)
    _write(root, scenario, grades)
    return root, grades


def _graded_node(scenario: Scenario, name: str) -> Node:
    nodes = {n.name: n for n in scenario.nodes}
    if name not in nodes:
        raise GradingError(f"{scenario.path}: no node {name!r} (nodes: {', '.join(nodes)})")
    node = nodes[name]
    if node.files is None or node.run is None:
        raise GradingError(f"{scenario.path}: node {name!r} needs `files:` and `run:` to take a submission")
    return node


def _entries(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise GradingError(f"{folder}: not a folder of submissions")
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    if not entries:
        raise GradingError(f"{folder}: no submissions in it")
    return entries


def _prepare(scenario: Scenario, graded: Node, entry: Path, dest: Path) -> Path:
    """A private copy of the scenario: its file, every node's files, the submission for the graded
    node's (a single file takes the name of the program the node runs)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    (dest / scenario.path.name).write_text(scenario.source)
    for node in scenario.nodes:
        if node.files is None:
            continue
        target = dest / node.files.relative_to(scenario.folder)
        if node.name != graded.name:
            if not target.exists():
                shutil.copytree(node.files, target, symlinks=True)
        elif entry.is_dir():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(entry, target, symlinks=True)
        else:
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(node.files, target, symlinks=True)
            assert graded.run is not None and graded.files is not None
            names = [a for a in graded.run if (graded.files / a).is_file()]
            shutil.copy(entry, target / (names[0] if names else entry.name))
    return dest / scenario.path.name


def _run(scenario: Path, out: Path, backend: str, wall: float, hidden: list[Path]) -> subprocess.CompletedProcess[str]:
    """One submission's lab, in a process of its own; no node of it can see `hidden` (the other
    submissions, the batch's folder, the instructor's scenario folder with its reference solution)."""
    proc = subprocess.Popen([sys.executable, "-m", "lab.entry", "run", str(scenario), backend, str(out),
                             *map(str, hidden)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=wall)
    except subprocess.TimeoutExpired:  # the lab's own deadlines failed: stop it like Ctrl-C would
        os.killpg(proc.pid, signal.SIGINT)
        try:
            stdout, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            from lab import lifecycle

            try:
                lifecycle.clean()  # what the killed run left behind (dead labs only)
            except Exception:  # noqa: BLE001 - one submission's leftovers never stop the batch; `lab clean` finishes
                pass
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _grade(name: str, scenario: Scenario, run: Path, done: subprocess.CompletedProcess[str]) -> Grade:
    report = _report(run, done)
    plan = json.loads((run / "plan.json").read_text()) if (run / "plan.json").exists() else {"expect": []}
    starts = [e.result.detail for e in report.results if e.result.check == "start"]
    graded = [_graded(e, report) for e in plan["expect"]]
    total = sum(e.points for e in scenario.expect)
    note = report.error or (starts[0] if starts else "")
    return Grade(name, sum(g.earned for g in graded), total, str(run), done.returncode, report.duration, graded,
                 note[:200])


def _report(run: Path, done: subprocess.CompletedProcess[str]) -> Report:
    """The submission's report; without one (the run died), a failed run whose error is its last words."""
    try:
        return load_report(run)
    except (OSError, ValueError):
        error = (done.stderr.strip().splitlines() or ["no report"])[-1]
        return Report(passed=False, error=error)


def _graded(expectation: dict[str, Any], report: Report) -> GradedExpectation:
    """An expectation (as in plan.json) scored from the report: all its points if every node passed."""
    results = [e.result for e in report.results if e.expectation == expectation["label"]]
    bad = [r for r in results if not r.passed]
    passed = bool(results) and not bad
    reason = (f"{bad[0].node}: {bad[0].detail}" if bad else
              f"{len(results)} node(s) passed" if results else report.error or "not checked")
    points = expectation["points"]
    return GradedExpectation(expectation["label"], passed, points, points if passed else 0.0, reason,
                             expectation["hint"] if own_fault(bad) else "")


def own_fault(bad: list[CheckResult]) -> bool:
    """A hint addresses an expectation's own fault: not nodes that did not run at all because
    another node failed to start (the start failure's reason says what to fix)."""
    return any(r.ran for r in bad)


def _write(root: Path, scenario: Scenario, grades: list[Grade]) -> None:
    (root / "grades.json").write_text(json.dumps(
        {"scenario": scenario.name, "grades": [asdict(g) for g in grades]}, indent=2) + "\n")
    labels = [v.expectation for v in grades[0].checks] if grades else []
    with open(root / "grades.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["submission", "score", "max", *labels, "note"])
        for g in grades:
            w.writerow([g.name, f"{g.score:g}", f"{g.max:g}", *[f"{v.earned:g}" for v in g.checks], g.note])
    (root / "index.html").write_text(_index(scenario, grades))
    print(f"grades: {root / 'grades.csv'}, {root / 'grades.json'}, {root / 'index.html'}")


def _index(scenario: Scenario, grades: list[Grade]) -> str:
    e = html.escape
    rows = []
    for g in grades:
        details = "".join(
            f"<li class='{'pass' if v.passed else 'fail'}'>{e(v.expectation)}: {v.earned:g}/{v.points:g} "
            f"&mdash; {e(v.reason)}{(' <em>Hint: ' + e(v.hint) + '</em>') if v.hint else ''}</li>"
            for v in g.checks)
        link = f"runs/{e(g.name)}/report.html"
        rows.append(f"<tr><td><a href='{link}'>{e(g.name)}</a></td><td class='score'>{g.score:g}/{g.max:g}</td>"
                    f"<td><ul>{details}</ul>{('<p>' + e(g.note) + '</p>') if g.note else ''}</td></tr>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Grades: {e(scenario.name)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}td{vertical-align:top;padding:.4em;"
            "border-bottom:1px solid #ddd}.pass{color:#176f2c}.fail{color:#b00020}.score{font-weight:bold}"
            f"</style></head><body><h1>Grades: {e(scenario.name)}</h1><table id='grades'>"
            f"<tr><th>Submission</th><th>Score</th><th>Expectations</th></tr>{''.join(rows)}</table>"
            "</body></html>\n")
