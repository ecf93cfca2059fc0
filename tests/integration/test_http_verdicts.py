"""The `http` check on a student's raw-socket server that answers with a chunked body: it passes with
CRLF and bare-LF header lines alike (as curl does), and fails, saying why, when the body lacks the
expected text or ends before its last chunk. Run on every backend (the `run_lab` fixture)."""

from __future__ import annotations

from typing import Any

from .conftest import HERE

VERDICTS = HERE / "scenarios" / "verdicts"


def by_node(run: Any, check: str) -> dict[str, dict[str, Any]]:
    found = {c["node"]: c for c in run.checks(check)}
    assert found, run.stdout + run.stderr
    return found


def test_chunked_responses_pass(run_lab) -> None:
    run = run_lab(VERDICTS / "chunked-http.yaml")
    assert run.code == 0, run.stdout + run.stderr
    http = by_node(run, "http")
    assert set(http) == {"browser", "browserlf"}
    assert all(c["passed"] for c in http.values()), http
    assert all("200 OK" in c["detail"] for c in http.values()), http
    assert all(c["passed"] for c in run.report["checks"]), run.report["checks"]  # curl agrees
    for name in ("browser", "browserlf"):
        text = (run.out / "nodes" / f"{name}.jsonl").read_text()
        assert '"body": "<h1>hello</h1>"' in text and '"framing": "chunked"' in text, text


def test_a_wrong_body_and_a_cut_body_fail(run_lab) -> None:
    run = run_lab(VERDICTS / "chunked-http-broken.yaml")
    assert run.code == 1, run.stdout + run.stderr
    http = by_node(run, "http")
    assert not http["wrong"]["passed"]
    assert "body does not contain '<h1>goodbye</h1>'" in http["wrong"]["detail"]
    assert not http["cut"]["passed"]
    assert http["cut"]["detail"].endswith("GET /: chunked body ended before its last chunk"), http["cut"]
