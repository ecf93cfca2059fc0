"""The bench's measuring and figures (no lab is run here: `lab bench` itself runs them)."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.bench import phase_split, timed
from lab.benchfigures import FLOOR, Point, Sample, markdown, svg, table, write


def test_the_bench_reads_where_the_time_went(tmp_path: Path) -> None:
    """`lab bench` splits lab's time by phase from the runs' report.json (the medians), skipping a
    run that left no report."""
    for k, up in enumerate((0.2, 0.4, 0.3)):
        (tmp_path / f"run-{k}").mkdir()
        phases = {"plan": {"seconds": 0.01}, "up": {"seconds": up}, "run": {"seconds": 1.0 + k}}
        (tmp_path / f"run-{k}" / "report.json").write_text(json.dumps({"timings": {"phases": phases}}))
    runs = [tmp_path / f"run-{k}" for k in range(4)]
    assert phase_split(runs) == {"plan": 0.01, "up": 0.3, "run": 2.0}


def test_a_timed_run_gives_its_time_verdict_last_line_and_peak_memory() -> None:
    s = timed([sys.executable, "-c", "b = bytearray(64 << 20); print('first'); print('last'); raise SystemExit(3)"])
    assert not s.ok and s.last == "last"
    assert s.rss_mib is not None and s.rss_mib >= 64  # the 64 MiB it held, measured by wait4
    assert timed([sys.executable, "-c", "pass"]).ok


def test_a_run_past_its_limit_is_killed_with_its_whole_session() -> None:
    s = timed([sys.executable, "-c", "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"],
              limit=0.5)
    assert not s.ok and s.last == "stopped after 0.5s" and s.seconds < 30


def _points() -> list[Point]:
    lab = Point("netns", "lab", 100, [Sample(1.0, True, 50.0), Sample(1.2, True, 52.0), Sample(0.9, True, 51.0)])
    peer = Point("netns", "mininet", 100, [Sample(9.0, True), Sample(10.0, True), Sample(8.0, True)])
    big = Point("netns", "lab", 1000, [Sample(9.5, True, 80.0), Sample(10.5, False, 81.0, "FAILED: 3 checks")])
    gone = Point("netns", "mininet", 1000, note="over its limit (150s a round)")
    user = Point("rootless", "lab", 100, [Sample(2.1, True)])
    root = Point("rootless", "root", 100, [Sample(2.0, True)])
    return [lab, peer, big, gone, user, root]


def test_the_table_shows_medians_spread_memory_and_ratios_against_lab() -> None:
    rows = table(_points()).splitlines()
    netns100 = next(r for r in rows if r.startswith("netns") and "mininet" in r and " 100 " in r)
    assert "9.00s" in netns100 and "8.00-10.00s" in netns100 and "9.00x" in netns100
    lab100 = next(r for r in rows if r.startswith("netns") and " lab " in r and " 100 " in r)
    assert "1.00s" in lab100 and "52 MiB" in lab100
    assert "FAILED" in next(r for r in rows if " lab " in r and " 1000 " in r)
    assert "over its limit" in next(r for r in rows if "mininet" in r and " 1000 " in r)
    assert "1.05x" in next(r for r in rows if r.startswith("rootless") and "root " in r)  # the user's time / root's


def test_the_figures_are_written_as_json_and_plotted_one_line_per_backend_and_side(tmp_path: Path) -> None:
    points = _points()
    write(tmp_path, points, 3, {"summary": "2 cores"})
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["machine"]["summary"] == "2 cores" and data["rounds"] == 3
    by = {(p["backend"], p["side"], p["n"]): p for p in data["points"]}
    assert by[("netns", "lab", 100)]["seconds"] == [1.0, 1.2, 0.9] and by[("netns", "lab", 100)]["median"] == 1.0
    assert by[("netns", "lab", 1000)]["failures"] == ["FAILED: 3 checks"]
    assert {(r["peer"], r["n"]): r["ratio"] for r in data["ratios"]}[("mininet", 100)] == 9.0
    root = ET.fromstring(svg(points, "bench"))
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 4  # netns lab, netns mininet, rootless lab, rootless root
    assert len(root.findall("{http://www.w3.org/2000/svg}circle")) == 5  # every point with a median
    assert ET.fromstring(svg([], "bench")).find("{http://www.w3.org/2000/svg}text") is not None


def test_the_readme_table_puts_each_peer_beside_lab() -> None:
    text = markdown(_points(), {"summary": "2 cores", "date": "2026-12-02"})
    assert text.startswith("Measured on 2 cores, 2026-12-02")
    row = next(r for r in text.splitlines() if r.startswith("| netns | 100 |"))
    assert "1.00 s (0.90-1.20)" in row and "mininet" in row and "9.00 s (8.00-10.00)" in row and "9.00x" in row
    assert "over its limit" in next(r for r in text.splitlines() if r.startswith("| netns | 1000 |"))
    assert "1.05x" in next(r for r in text.splitlines() if r.startswith("| rootless |"))


def test_lab_is_shown_above_the_engine_s_floor_in_seconds(tmp_path: Path) -> None:
    lab = Point("docker", "lab", 50, [Sample(13.0, True), Sample(13.4, True), Sample(12.9, True)])
    floor = Point("docker", FLOOR, 50, [Sample(12.5, True), Sample(12.8, True), Sample(12.6, True)])
    compose = Point("docker", "compose", 50, [Sample(21.0, True)])
    row = next(r for r in table([lab, floor, compose]).splitlines() if FLOOR in r)
    assert "+0.40s" in row  # lab's median above the floor's, not a speed-up
    assert "| docker | 50 | 13.00 s (12.90-13.40) |" in markdown([lab, floor, compose], {})
    assert "+0.40s" in markdown([lab, floor, compose], {})
    write(tmp_path, [lab, floor, compose], 3, {})
    ratios = json.loads((tmp_path / "bench.json").read_text())["ratios"]
    assert next(r for r in ratios if r["peer"] == FLOOR)["lab_above_s"] == pytest.approx(0.4)
    assert "lab_above_s" not in next(r for r in ratios if r["peer"] == "compose")
