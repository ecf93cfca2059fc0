"""The reports of a run, each rendered from its `RunResult`: report.json (and `load_report`, the
one way back from it), junit.xml, report.html, and the terminal's tables (`reports.terminal`).

`write_reports` writes a run's files; the orchestrator calls it from one place, on every path a
run can end by (Ctrl-C included), and renders nothing itself.
"""

from __future__ import annotations

from lab.errors import StorageProblem
from lab.outcome import RunResult
from lab.reports.html_report import write_html
from lab.reports.json_report import Report, load_report, write_json
from lab.reports.junit import write_junit

__all__ = ["Report", "load_report", "write_reports"]


def write_reports(result: RunResult) -> None:
    """junit.xml, report.json, report.html, in that order: a reader that finds report.json (the
    file readers wait for) finds junit.xml beside it. Each is tried even when another could not be
    written (a full disk keeps what fits); the first failure is then raised, naming its file."""
    failed: list[StorageProblem] = []
    for name, write in (("junit.xml", write_junit), ("report.json", write_json), ("report.html", write_html)):
        try:
            write(result)
        except OSError as e:
            failed.append(StorageProblem(result.rundir.file(name), e))
    if failed:
        raise failed[0]
