"""Grading a folder of submissions: a correct threaded server, a one-client-at-a-time server, a
crashing one, one that never answers, and one that floods its output."""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

from .conftest import HERE, ROOT, lab

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
