"""Grading a folder of submissions: a correct threaded server, a one-client-at-a-time server, a
crashing one, one that never answers, and one that floods its output."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from lab import grading

from .conftest import HERE, ROOT, door, lab, until

EXPECTED = {"alice": 5, "bob": 2, "carol": 0, "dave": 0, "eve": 0}
# Each student's work: folders, or single files (which take the name of the program the node runs).
SUBMISSIONS = {
    "alice/echo_server.py": ROOT / "scenarios" / "exercises" / "echo_server.py",  # threaded: right
    "bob.py": HERE / "scenarios" / "one_at_a_time.py",
    "carol/echo_server.py": HERE / "scenarios" / "crash.py",
    "dave/echo_server.py": HERE / "scenarios" / "silent.py",
    "eve.py": HERE / "scenarios" / "flood.py",
}


def _submissions(folder: Path) -> Path:
    for name, source in SUBMISSIONS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, folder / name)
    return folder


def _grade(backend: str, out: Path) -> dict[str, dict]:
    submissions = _submissions(out.parent / f"{out.name}-submissions")
    t = time.monotonic()
    done = lab("grade", str(ROOT / "scenarios" / "grade-echo.yaml"), str(submissions),
               "--node", "server", "--jobs", "5", "--backend", backend, "--out", str(out), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert time.monotonic() - t < 90  # five labs at once, each bounded by the scenario's 15 s
    data = json.loads((out / "grades.json").read_text())
    return {g["name"]: g for g in data["grades"]}


def test_grades_are_right_contained_and_explained(backend: str, lab_image: None, tmp_path: Path) -> None:
    grades = _grade(backend, tmp_path / "g")
    assert {name: g["score"] for name, g in grades.items()} == EXPECTED
    assert all(g["max"] == 5 for g in grades.values())
    bob = {v["expectation"]: v for v in grades["bob"]["checks"]}
    assert bob["echo client"]["passed"] and bob["echo client"]["earned"] == 2
    assert not bob["concurrent client"]["passed"]
    assert "answered at once" in bob["concurrent client"]["reason"]
    assert bob["concurrent client"]["hint"] == "start a thread per connection"
    assert "listne" in grades["carol"]["note"]
    dave = {v["expectation"]: v for v in grades["dave"]["checks"]}
    assert "timeout" in dave["echo client"]["reason"]
    assert "output limit" in grades["eve"]["note"]
    assert (tmp_path / "g" / "runs" / "eve" / "nodes" / "server.log").stat().st_size <= 16 * 2**20
    rows = list(csv.reader((tmp_path / "g" / "grades.csv").open()))
    assert rows[0][:3] == ["submission", "score", "max"] and len(rows) == 6
    index = (tmp_path / "g" / "index.html").read_text()
    assert all(f"runs/{name}/report.html" in index for name in EXPECTED)


def test_the_same_submissions_get_the_same_grades(tmp_path: Path) -> None:
    first = _grade("netns", tmp_path / "a")
    second = _grade("netns", tmp_path / "b")
    for name in EXPECTED:
        assert first[name]["score"] == second[name]["score"]
        assert [v["passed"] for v in first[name]["checks"]] == [v["passed"] for v in second[name]["checks"]]


def test_a_stopped_batch_keeps_its_grades_resume_grades_the_rest_and_only_regrades(tmp_path: Path) -> None:
    """Ctrl-C mid-batch keeps every grade recorded so far (the lab running then is stopped in order,
    not graded); --resume grades only the rest; --only grades some again; a submission without the
    program the node runs says so, and every expectation has its column whatever the first did."""
    subs = tmp_path / "subs"
    for name, source in {"alice/echo_server.py": SUBMISSIONS["alice/echo_server.py"],
                         "bob.py": SUBMISSIONS["bob.py"], "carol/echo_server.py": SUBMISSIONS["carol/echo_server.py"],
                         "frank/server.py": SUBMISSIONS["alice/echo_server.py"]}.items():
        (subs / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, subs / name)
    out, scenario = tmp_path / "g", str(ROOT / "scenarios" / "grade-echo.yaml")
    args = ["grade", scenario, str(subs), "--node", "server", "--out", str(out)]
    proc = subprocess.Popen(door().argv(*args, "--jobs", "1"), cwd=door().cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    recorded = out / "grades.jsonl"
    until("a first grade recorded", lambda: recorded.exists() and recorded.read_text().count("\n") >= 1, 120)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 130 and "--resume" in err, err
    kept = [json.loads(line)["name"] for line in recorded.read_text().splitlines()]
    assert kept and len(kept) < 4 and kept[0] == "alice"
    seed = json.loads((out / "batch.json").read_text())["seed"]
    resumed = lab(*args, "--resume", timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert not any(f"  {name} " in resumed.stdout for name in kept), resumed.stdout  # not graded again
    grades = {g["name"]: g for g in json.loads((out / "grades.json").read_text())["grades"]}
    assert {n: g["score"] for n, g in grades.items()} == {"alice": 5, "bob": 2, "carol": 0, "frank": 0}, \
        {n: [c["reason"] for c in g["checks"] if not c["passed"]] for n, g in grades.items()}
    assert grades["frank"]["note"] == "submission has no echo_server.py" and not grades["frank"]["run"]
    assert json.loads((out / "grades.json").read_text())["seed"] == seed  # resumed with the batch's seed
    for name in ("alice", "bob"):  # each submission's words drawn from it and its name
        report = json.loads((out / "runs" / name / "report.json").read_text())
        assert report["seed"] == grading._submission_seed(seed, name)
    header = next(csv.reader((out / "grades.csv").open()))
    assert header[3:-1] == [c["expectation"] for c in grades["alice"]["checks"]] and len(header) == 3 + 2 + 1
    again = lab(*args, "--only", "bob", timeout=300)
    assert again.returncode == 0 and "  bob " in again.stdout and "  alice " not in again.stdout, again.stdout
    assert len(json.loads((out / "grades.json").read_text())["grades"]) == 4
    typo = lab(*args, "--only", "bbo")
    assert typo.returncode == 2 and "did you mean 'bob'?" in typo.stderr, typo.stderr
