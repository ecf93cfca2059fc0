"""report.html in a real browser: headless Chromium renders the page of a real run, the DOM has the
topology, the checks and the sequences, the console stays clean, and a screenshot is kept
(test-artifacts/). Not skipped without Chromium: scripts/setup.sh installs it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from .conftest import HERE, ROOT, lab

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT = 90
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]
# This Chromium logs every console message (console.error and uncaught exceptions included) as
# "...:INFO:CONSOLE:LINE] "message", source: ...": the page logs nothing, so any such line is an error.
CONSOLE_MARKERS = (":CONSOLE", "Uncaught")


@dataclass
class Browser:
    stdout: str
    stderr: str

    @property
    def console(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if any(m in ln for m in CONSOLE_MARKERS)]


def chromium(page: Path, *args: str) -> Browser:
    """One bounded headless Chromium run in a fresh profile; no process of it survives."""
    assert Path(CHROMIUM).exists(), "chromium is not installed: run scripts/setup.sh (apt-get install chromium)"
    profile = tempfile.mkdtemp(prefix="lab-chromium-")
    try:
        proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail(f"chromium did not finish within {TIMEOUT}s on {page}")
        assert proc.returncode == 0, err[-2000:]
        assert not _processes_using(profile), "chromium left processes behind"
        return Browser(out, err)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _processes_using(marker: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry.name}/cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class Dom(HTMLParser):
    """The elements of a dumped DOM, as (tag, attributes); and the id of each element's section."""

    def __init__(self, text: str):
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements
                if (tag is None or t == tag) and (cls is None or cls in a.get("class", "").split())
                and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]


def test_console_check_trips_on_a_script_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><p>x</p><script>missingFunction();</script></body></html>")
    assert any("Uncaught ReferenceError" in ln for ln in chromium(bad, "--dump-dom").console)


CASES = {
    "echo": (ROOT / "scenarios" / "echo.yaml", 0,
             {"server": "none", "client-1": "pass", "client-2": "pass", "client-3": "pass"}),
    "broken-upper": (HERE / "scenarios" / "broken-upper.yaml", 1,
                     {"server": "none", "client-1": "fail", "client-2": "fail", "client-3": "fail"}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_report_renders_in_chromium(name: str, tmp_path: Path) -> None:
    scenario, code, verdicts = CASES[name]
    out = tmp_path / "run"
    done = lab("run", str(scenario), "--out", str(out))
    assert done.returncode == code, done.stdout + done.stderr
    page = out / "report.html"
    assert page.is_file()

    browser = chromium(page, "--dump-dom")
    assert not browser.console, browser.console
    dom = Dom(browser.stdout)
    assert dom.find("html", data_script="ok"), "the page's script did not run to its end"
    assert dom.find("svg", id="topology")
    nodes = {a["data-node"]: a["data-verdict"] for a in dom.find("g", cls="node")}
    assert nodes == verdicts
    assert len(dom.find("g", cls="network")) == 1

    assert {a["data-node"] for a in dom.find("g", cls="lane")} == set(verdicts)  # the timeline: a lane each
    closed_by = [a["data-closed-by"] for a in dom.find("line", cls="conn")]
    assert len(closed_by) >= 3 and "not closed" not in closed_by, closed_by  # every connection, and its end
    assert [a["data-phase"] for a in dom.find("g", cls="phase")] == ["plan", "up", "run", "down", "check"]

    assert dom.find("table", id="checks")
    rows = [(a["data-node"], a["class"]) for a in dom.find("tr", cls="check")]
    assert len(rows) == 6  # echo + concurrent, for 3 clients
    failing = {n for n, cls in rows if cls == "check fail"}
    assert failing == ({f"client-{i}" for i in (1, 2, 3)} if code else set())
    assert len([1 for _, cls in rows if cls == "check pass"]) == (3 if code else 6)

    assert dom.find("div", id="sequences") and dom.find("div", id="logs")
    sequences = {a["data-node"] for a in dom.find("section", cls="sequence")}
    assert {"client-1", "client-2", "client-3"} <= sequences
    assert "hello from client-1\\r\\n" in browser.stdout
    if code:
        assert "HELLO FROM CLIENT-1" in browser.stdout
    assert {a["data-node"] for a in dom.find("details", cls="log")} == set(verdicts)

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"report-{name}.png"
    shot.unlink(missing_ok=True)
    browser = chromium(page, f"--screenshot={shot}", "--window-size=1280,2000")
    assert not browser.console, browser.console
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
