"""`lab grade`: every student's submission run as its own lab, several at once, scored.

Each entry of the submissions folder (a folder, or a single file) replaces the `files:` of the
graded node in a private copy of the scenario, and runs in a process of its own (`python -m
lab.entry run`, a library entry point): a submission that crashes, hangs or floods its output is
contained (the scenario's timeout, a wall limit on the whole run, an output limit on programs) and
graded like any other; it never stops the batch. Points come from `points:` on expectations
(default 1), reasons from the run's report, hints from `hint:`.

Each grade is appended to `grades.jsonl` as its submission finishes, so a batch cut short (a crash,
Ctrl-C at submission 150) keeps what it graded: `--resume` grades the rest, `--only NAMES` grades
some again; grades.json, grades.csv and index.html are written from all of them at the end.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import html
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab import backends
from lab.errors import LabError, did_you_mean
from lab.execution import HOSTS_LIMIT
from lab.outcome import CheckResult
from lab.plan import SEED, ExpectationPlan, make_plan
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
          backend: str = "netns", progress: Callable[[str], None] = print, *, resume: bool = False,
          only: Sequence[str] = (), seed: int | None = None) -> tuple[Path, list[Grade]]:
    """Grade every submission (`resume`: those the grades folder has no grade for yet; `only`: these
    names again); returns the grades folder (grades.json, grades.csv, index.html) and all its
    grades, in the submissions' order. `progress` gets a line per submission as it is graded."""
    scenario = load_scenario(scenario_path)
    graded = _graded_node(scenario, node)
    backends.load(backend)  # a mistyped one is a usage error before anything exists, not 200 failed labs
    expect = make_plan(scenario).expect
    entries = {_name(entry): entry for entry in _entries(Path(submissions))}
    unknown = [n for n in only if n not in entries]
    if unknown:
        raise GradingError(f"{submissions}: no submission {unknown[0]!r}{did_you_mean(unknown[0], list(entries))}")
    root = _folder(scenario, out, resume or bool(only))
    kept = {} if not (resume or only) else {n: g for n, g in _graded_so_far(root).items() if n not in only}
    todo = [n for n in entries if n not in kept and (not only or n in only)]
    seed = _seed(root, seed, resume or bool(only))
    _record(root, list(kept.values()), fresh=True)
    (root / "work").mkdir(parents=True, exist_ok=True)
    progress(f"grading {len(todo)} submission(s) of {scenario.name} ({node}), {jobs} at a time -> {root}"
             + (f" ({len(kept)} already graded)" if kept else ""))
    batch = Batch()

    def one(name: str) -> Grade | None:
        if batch.stopping:
            return None
        g = _one(scenario, graded, expect, entries[name], root, (backend, [Path(submissions).absolute(), root]),
                 batch, _submission_seed(seed, name))
        with batch.lock:  # as each finishes: a batch cut short keeps it (not one its stop cut short)
            # A lab that died of the stop signal itself was caught by the terminal's Ctrl-C between
            # its fork and its own session (the batch hears of that Ctrl-C later): not a grade.
            if batch.stopping or g.exit_code in (-signal.SIGINT, -signal.SIGTERM):
                return None
            _record(root, [g])
        progress(f"  {g.name:<20} {g.score:g}/{g.max:g}" + (f"  ({g.note})" if g.note else ""))
        return g

    pool = ThreadPoolExecutor(max(1, jobs))
    try:
        done = {g.name: g for g in pool.map(one, todo) if g is not None}
    except BaseException:  # Ctrl-C, SIGTERM: the running labs stop in order, no other starts
        batch.stop()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    shutil.rmtree(root / "work", ignore_errors=True)
    grades = [({**kept, **done})[n] for n in entries if n in kept or n in done]
    _write(root, scenario, grades, expect, seed)
    return root, grades


def _seed(root: Path, given: int | None, existing: bool) -> int:
    """The batch's seed: given, or the one the folder was graded with (--resume, --only: the same
    words as before), or a new one; kept in the folder (batch.json) and in grades.json."""
    path = root / "batch.json"
    if given is None and existing and path.exists():
        given = int(json.loads(path.read_text())["seed"])
    seed = secrets.randbelow(2**31) if given is None else given
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"seed": seed}) + "\n")
    return seed


def _submission_seed(seed: int, name: str) -> int:
    """Each submission's own words, the same for the same batch seed (a hash, not Python's salted one)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:4], "big") & 0x7FFFFFFF


class Batch:
    """The labs a batch is running, so that stopping the batch stops them (each runs in a session
    of its own, out of reach of the terminal's Ctrl-C) and starts no other."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: set[subprocess.Popen[str]] = set()
        self.stopping = False

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            for proc in self.running:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C would: torn down, logs kept


def _name(entry: Path) -> str:
    return _SAFE.sub("_", entry.stem if entry.is_file() else entry.name)


def _folder(scenario: Scenario, out: str | None, existing: bool) -> Path:
    """The grades folder: `out`, or a new one under grades/; resuming without `out`, the latest."""
    if out:
        return Path(out).absolute()
    if existing:
        found = sorted(Path("grades").glob(f"{glob.escape(scenario.name)}-*/grades.jsonl"))
        if not found:
            raise GradingError(f"no grades of {scenario.name} to resume under grades/: give --out FOLDER")
        return found[-1].parent.absolute()
    return Path(f"grades/{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}").absolute()


def _one(scenario: Scenario, graded: Node, expect: Sequence[ExpectationPlan], entry: Path, root: Path,
         how: tuple[str, list[Path]], batch: Batch, seed: int) -> Grade:
    """One submission: copied in, run as its own lab (unless a file it must have is missing), graded.
    `how`: the backend, and the batch's folders no node may see (the instructor's is added)."""
    backend, hidden = how
    name = _name(entry)
    missing = _missing(graded, entry)
    if missing:
        note = f"submission has no {missing}"
        checks = [GradedExpectation(e.label, False, e.points, 0.0, note, "") for e in expect]
        return Grade(name, 0.0, sum(e.points for e in expect), "", 0, 0.0, checks, note)
    copy = _prepare(scenario, graded, entry, root / "work" / name)
    result = _run(copy, root / "runs" / name, backend, scenario.timeout + WALL_MARGIN, [*hidden, scenario.folder],
                  batch, seed)
    return _grade(name, expect, root / "runs" / name, result)


def _missing(graded: Node, entry: Path) -> str:
    """The file the graded node runs that a submission folder lacks ("" when none): the program
    named in `run:` (as the instructor's folder has it)."""
    if not entry.is_dir() or graded.run is None or graded.files is None:
        return ""
    needed = [a for a in graded.run if (graded.files / a).is_file()]
    return next((a for a in needed if not (entry / a).is_file()), "")


def _graded_so_far(root: Path) -> dict[str, Grade]:
    """The grades a folder has recorded (grades.jsonl), the last one of each submission winning."""
    found: dict[str, Grade] = {}
    try:
        lines = (root / "grades.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return found
    for line in lines:
        try:
            data = json.loads(line)
            checks = [GradedExpectation(**c) for c in data.pop("checks")]
            found[data["name"]] = Grade(**data, checks=checks)
        except (ValueError, TypeError, KeyError):
            continue  # a line cut short by a crash: that submission is graded again
    return found


def _record(root: Path, grades: list[Grade], fresh: bool = False) -> None:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "grades.jsonl"
    cut = not fresh and path.exists() and not path.read_bytes().endswith(b"\n") and path.stat().st_size > 0
    with open(path, "w" if fresh else "a") as f:  # (after a line cut short by a crash: on a line of its own)
        f.write("\n" * cut + "".join(json.dumps(asdict(g)) + "\n" for g in grades))
        f.flush()
        os.fsync(f.fileno())


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


def _run(scenario: Path, out: Path, backend: str, wall: float, hidden: list[Path],
         batch: Batch, seed: int) -> subprocess.CompletedProcess[str]:
    """One submission's lab, in a process of its own; no node of it can see `hidden` (the other
    submissions, the batch's folder, the instructor's scenario folder with its reference solution)."""
    with batch.lock:
        if batch.stopping:
            return subprocess.CompletedProcess([], 130, "", "the batch was stopped")
        proc = subprocess.Popen([sys.executable, "-m", "lab.entry", "run", str(scenario), backend, str(out),
                                 *map(str, hidden)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                                env={**os.environ, SEED: str(seed)})
        batch.running.add(proc)
    try:
        return _wait(proc, wall)
    finally:
        with batch.lock:
            batch.running.discard(proc)


def _wait(proc: subprocess.Popen[str], wall: float) -> subprocess.CompletedProcess[str]:
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


def _grade(name: str, expect: Sequence[ExpectationPlan], run: Path, done: subprocess.CompletedProcess[str]) -> Grade:
    """Every expectation of the scenario, scored (one column each, whether or not the run began)."""
    report = _report(run, done)
    starts = [e.result.detail for e in report.results if e.result.check == "start"]
    graded = [_graded(e, report) for e in expect]
    total = sum(e.points for e in expect)
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


def _graded(expectation: ExpectationPlan, report: Report) -> GradedExpectation:
    """An expectation scored from the report: all its points if every node passed."""
    results = [e.result for e in report.results if e.expectation == expectation.label]
    bad = [r for r in results if not r.passed]
    passed = bool(results) and not bad
    reason = (f"{bad[0].node}: {bad[0].detail}" if bad else
              f"{len(results)} node(s) passed" if results else report.error or "not checked")
    points = expectation.points
    return GradedExpectation(expectation.label, passed, points, points if passed else 0.0, reason,
                             expectation.hint if own_fault(bad) else "")


def own_fault(bad: list[CheckResult]) -> bool:
    """A hint addresses an expectation's own fault: not nodes that did not run at all because
    another node failed to start (the start failure's reason says what to fix)."""
    return any(r.ran for r in bad)


def _write(root: Path, scenario: Scenario, grades: list[Grade], expect: Sequence[ExpectationPlan], seed: int) -> None:
    (root / "grades.json").write_text(json.dumps(
        {"scenario": scenario.name, "seed": seed, "grades": [asdict(g) for g in grades]}, indent=2) + "\n")
    labels = [e.label for e in expect]  # one column per expectation, whatever the first submission did
    with open(root / "grades.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["submission", "score", "max", *labels, "note"])
        for g in grades:
            w.writerow([g.name, f"{g.score:g}", f"{g.max:g}", *[f"{v.earned:g}" for v in g.checks], g.note])
    (root / "index.html").write_text(_index(scenario, grades))


INDEX_SCRIPT = """
const rows = () => [...document.querySelectorAll('#grades tbody tr')];
function show() {
  const text = document.getElementById('filter').value.toLowerCase();
  const failing = document.getElementById('failing').checked;
  for (const r of rows()) {
    const hit = r.textContent.toLowerCase().includes(text) && (!failing || r.dataset.full !== '1');
    r.hidden = !hit;
  }
  document.getElementById('shown').textContent = rows().filter(r => !r.hidden).length;
}
function sortBy(key) {
  const body = document.querySelector('#grades tbody');
  const up = body.dataset.sorted !== key;
  const value = r => key === 'name' ? r.dataset.name : Number(r.dataset.score);
  const sorted = rows().sort((a, b) => (value(a) < value(b) ? -1 : value(a) > value(b) ? 1 : 0) * (up ? 1 : -1));
  body.dataset.sorted = up ? key : '';
  for (const r of sorted) body.appendChild(r);
}
"""


def _index(scenario: Scenario, grades: list[Grade]) -> str:
    """The grades as a page: sortable by submission or score (click the header), filtered by any text
    of a row and to the failing submissions alone."""
    e = html.escape
    rows = []
    for g in grades:
        details = "".join(
            f"<li class='{'pass' if v.passed else 'fail'}'>{e(v.expectation)}: {v.earned:g}/{v.points:g} "
            f"&mdash; {e(v.reason)}{(' <em>Hint: ' + e(v.hint) + '</em>') if v.hint else ''}</li>"
            for v in g.checks)
        link = f"<a href='runs/{e(g.name)}/report.html'>{e(g.name)}</a>" if g.run else e(g.name)
        full = "1" if g.score >= g.max else "0"
        rows.append(f"<tr data-name='{e(g.name)}' data-score='{g.score:g}' data-full='{full}'><td>{link}</td>"
                    f"<td class='score'>{g.score:g}/{g.max:g}</td>"
                    f"<td><ul>{details}</ul>{('<p>' + e(g.note) + '</p>') if g.note else ''}</td></tr>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Grades: {e(scenario.name)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}td{vertical-align:top;padding:.4em;"
            "border-bottom:1px solid #ddd}.pass{color:#176f2c}.fail{color:#b00020}.score{font-weight:bold}"
            "th[onclick]{cursor:pointer;text-decoration:underline dotted}</style></head><body>"
            f"<h1>Grades: {e(scenario.name)}</h1><p><input id='filter' placeholder='filter' oninput='show()'> "
            "<label><input type='checkbox' id='failing' onchange='show()'> not full marks only</label> "
            f"<span id='shown'>{len(grades)}</span> of {len(grades)} shown</p><table id='grades'><thead>"
            "<tr><th onclick=\"sortBy('name')\">Submission</th><th onclick=\"sortBy('score')\">Score</th>"
            f"<th>Expectations</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
            f"<script>{INDEX_SCRIPT}</script></body></html>\n")
