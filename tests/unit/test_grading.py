"""Grading's bookkeeping, without running a lab: the grades recorded as each submission finishes
(and read back after a crash), the file a submission must have, and the grades page's controls."""

from __future__ import annotations

import json
from pathlib import Path

from lab import grading
from lab.grading import Grade, GradedExpectation
from lab.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]


def _grade(name: str, score: float) -> Grade:
    return Grade(name, score, 5.0, f"runs/{name}", 0, 1.0,
                 [GradedExpectation("echo client", score > 0, 2.0, min(score, 2.0), "ok", "")], "")


def test_grades_recorded_one_by_one_survive_a_crash_mid_line(tmp_path: Path) -> None:
    grading._record(tmp_path, [_grade("alice", 5)], fresh=True)
    grading._record(tmp_path, [_grade("bob", 2)])
    with open(tmp_path / "grades.jsonl", "a") as f:
        f.write(json.dumps({"name": "carol", "score": 0})[:15])  # the process died while writing
    found = grading._graded_so_far(tmp_path)
    assert list(found) == ["alice", "bob"] and found["bob"] == _grade("bob", 2)  # carol is graded again
    grading._record(tmp_path, [_grade("bob", 3)])  # graded again (--only): the last one wins
    assert grading._graded_so_far(tmp_path)["bob"].score == 3


def test_a_submission_folder_without_the_program_says_which(tmp_path: Path) -> None:
    scenario = load_scenario(ROOT / "scenarios" / "grade-echo.yaml")
    node = next(n for n in scenario.nodes if n.name == "server")
    (tmp_path / "right").mkdir()
    (tmp_path / "right" / "echo_server.py").write_text("")
    (tmp_path / "wrong").mkdir()
    (tmp_path / "wrong" / "server.py").write_text("")
    assert grading._missing(node, tmp_path / "right") == ""
    assert grading._missing(node, tmp_path / "wrong") == "echo_server.py"
    (tmp_path / "single.py").write_text("")
    assert grading._missing(node, tmp_path / "single.py") == ""  # a single file takes the program's name


def test_the_grades_page_sorts_and_filters() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "grade-echo.yaml")
    page = grading._index(scenario, [_grade("alice", 5), _grade("bob", 2), Grade("frank", 0, 5, "", 0, 0.0)])
    assert "sortBy('name')" in page and "sortBy('score')" in page and "id='filter'" in page
    assert "data-name='bob' data-score='2' data-full='0'" in page
    assert "runs/alice/report.html" in page and "runs/frank/" not in page  # never ran: no report to link


def test_each_submission_has_its_own_seed_and_a_resumed_batch_keeps_its_own(tmp_path: Path) -> None:
    assert grading._submission_seed(7, "alice") == grading._submission_seed(7, "alice")
    assert len({grading._submission_seed(7, n) for n in ("alice", "bob", "carol")}) == 3
    assert grading._submission_seed(7, "alice") != grading._submission_seed(8, "alice")
    first = grading._seed(tmp_path, None, existing=False)
    assert grading._seed(tmp_path, None, existing=True) == first  # --resume, --only: the same words
    assert grading._seed(tmp_path, 42, existing=True) == 42  # unless given
