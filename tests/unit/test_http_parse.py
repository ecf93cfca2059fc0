"""The http-get role's response parsing on literal bytes, and the `http` check on transcripts that the
role's own reporting code recorded from those bytes (no network, no processes)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from lab.checks import evaluate
from lab.outcome import CheckResult, NodeOutcome
from lab.roles.common import Transcript
from lab.roles.http_get import complete, exchange, parse_response, report

CHUNKED = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/html\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"Trailer: X-Done\r\n"
    b"\r\n"
    b"4\r\n<h1>\r\n"
    b"5;ext=1\r\nhello\r\n"
    b"5\r\n</h1>\r\n"
    b"0\r\n"
    b"X-Done: yes\r\n"
    b"\r\n"
)
BARE_LF = b"HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 13\n\nab\r\n\r\ncd\r\nefg"
HTTP10_CLOSE = b"HTTP/1.0 200 OK\r\nServer: toy\r\n\r\nline one\r\n\r\nline two\r\n"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nContent-Type: text/plain\r\n\r\nnot found"
EXTRA_AFTER_BODY = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA BYTES"
CUT_SHORT = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nhello world!"
CHUNKED_CUT = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n<h1>\r\n5\r\nhel"
GARBAGE = b"SSH-2.0-OpenSSH_9.6\r\n"


# ----------------------------------------------------------------------------- parse_response / complete


def test_chunked_with_trailers_is_dechunked() -> None:
    assert complete(CHUNKED)
    response = parse_response(CHUNKED)
    assert response is not None
    assert (response["version"], response["status"], response["reason"]) == ("HTTP/1.1", 200, "OK")
    assert response["body"] == "<h1>hello</h1>" and response["body_bytes"] == 14
    assert response["framing"] == "chunked"
    assert response["headers"]["content-type"] == "text/html"


@pytest.mark.parametrize("split", range(1, len(CHUNKED)))
def test_chunked_split_anywhere_is_complete_only_at_the_end(split: int) -> None:
    """Every proper prefix: not complete (keep reading), and no response should the server stop there."""
    assert not complete(CHUNKED[:split])
    assert parse_response(CHUNKED[:split]) is None


def test_exchange_stops_at_the_last_chunk_without_waiting_for_the_close(tmp_path: Path) -> None:
    client, server = socket.socketpair()
    with client, server:
        for piece in (CHUNKED[:60], CHUNKED[60:75], CHUNKED[75:]):
            server.sendall(piece)
        transcript = Transcript(str(tmp_path / "t.jsonl"))
        raw, by, failure = exchange(client, b"GET / HTTP/1.1\r\n\r\n", time.monotonic() + 5, 5.0, transcript)
        transcript.close()
    assert (raw, by, failure) == (CHUNKED, "self", None)


def test_exchange_times_out_on_a_close_delimited_body_never_closed(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    client, server = socket.socketpair()
    with client, server:
        server.sendall(HTTP10_CLOSE)
        transcript = Transcript(str(path))
        raw, _, failure = exchange(client, b"GET / HTTP/1.1\r\n\r\n", time.monotonic() + 0.3, 0.3, transcript)
        transcript.close()
    assert (raw, failure) == (HTTP10_CLOSE, "timeout")
    [error] = [e for e in map(json.loads, path.read_text().splitlines()) if e["event"] == "error"]
    assert error["kind"] == "timeout" and error["message"].startswith("no complete response within 0.3s: ")


def test_bare_lf_headers_keep_a_blank_crlf_line_in_the_body() -> None:
    assert complete(BARE_LF)
    response = parse_response(BARE_LF)
    assert response is not None
    assert response["body"] == "ab\r\n\r\ncd\r\nefg" and response["body_bytes"] == 13
    assert response["headers"] == {"content-type": "text/plain", "content-length": "13"}
    assert response["framing"] == "content-length"


def test_http10_body_is_delimited_by_close() -> None:
    assert not complete(HTTP10_CLOSE)  # only EOF ends such a body: keep reading
    response = parse_response(HTTP10_CLOSE)
    assert response is not None
    assert (response["version"], response["framing"]) == ("HTTP/1.0", "close")
    assert response["body"] == "line one\r\n\r\nline two\r\n"


def test_404_with_body() -> None:
    assert complete(NOT_FOUND)
    response = parse_response(NOT_FOUND)
    assert response is not None
    assert (response["status"], response["reason"], response["body"]) == (404, "Not Found", "not found")


def test_bytes_after_a_content_length_body_are_not_body() -> None:
    assert complete(EXTRA_AFTER_BODY)
    response = parse_response(EXTRA_AFTER_BODY)
    assert response is not None and response["body"] == "hello" and response["body_bytes"] == 5


@pytest.mark.parametrize("raw", [CUT_SHORT, CHUNKED_CUT, CHUNKED[:-2], CHUNKED[:-15]])
def test_a_response_cut_short_is_not_a_response(raw: bytes) -> None:
    assert not complete(raw)
    assert parse_response(raw) is None


@pytest.mark.parametrize("raw", [GARBAGE, b"", b"hello\r\n\r\n", b"\r\n\r\n"])
def test_garbage_is_not_a_response(raw: bytes) -> None:
    assert not complete(raw)
    assert parse_response(raw) is None


def test_interim_responses_are_skipped_and_204_has_no_body() -> None:
    raw = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
        b"HTTP/1.1 204 No Content\r\n\r\n"
    )
    assert complete(raw)
    response = parse_response(raw)
    assert response is not None
    assert (response["status"], response["body"], response["body_bytes"]) == (204, "", 0)
    assert not complete(raw[: raw.index(b"HTTP/1.1 204")])


def test_repeated_headers_are_joined() -> None:
    raw = b"HTTP/1.1 200 OK\r\nVary: a\r\nContent-Length: 0\r\nVARY: b\r\n\r\n"
    response = parse_response(raw)
    assert response is not None and response["headers"]["vary"] == "a, b"


# ----------------------------------------------------------------------------- the http check


def recorded(tmp_path: Path, raw: bytes, failure: str | None = None) -> NodeOutcome:
    """The transcript the http-get role writes for an answer of `raw` bytes ended by the server."""
    path = tmp_path / "browser.jsonl"
    transcript = Transcript(str(path))
    params = {"url": "http://web:8080/", "host": "10.0.3.80", "port": 8080, "path": "/", "host_header": "web:8080"}
    transcript.event("start", role="http-get", pid=1, params=params)
    transcript.event("connecting", conn=1, peer="10.0.3.80:8080", target="web:8080", url=params["url"], path="/")
    transcript.event("connected", conn=1, peer="10.0.3.80:8080", local="10.0.4.20:5000", target="web:8080")
    transcript.data("sent", b"GET / HTTP/1.1\r\nHost: web:8080\r\nConnection: close\r\n\r\n", conn=1)
    if raw:
        transcript.data("received", raw, conn=1)
    transcript.event("closed", conn=1, by="peer")
    code = report(transcript, params["url"], raw, failure)
    transcript.event("end", code=code)
    transcript.close()
    events = [json.loads(line) for line in path.read_text().splitlines()]
    return NodeOutcome(
        name="browser", started=True, exit_code=code, stopped_by_lab=False, note="", transcript=events, log=""
    )


def check(outcome: NodeOutcome, **params: Any) -> CheckResult:
    [result] = evaluate("http", {"status": 200, **params}, [outcome])
    assert "\n" not in result.detail
    return result


def events_named(outcome: NodeOutcome, name: str) -> list[dict[str, Any]]:
    return [e for e in outcome.transcript if e["event"] == name]


@pytest.mark.parametrize(
    ("raw", "body"),
    [(CHUNKED, "<h1>hello</h1>"), (BARE_LF, "cd\r\nefg"), (HTTP10_CLOSE, "line two"), (EXTRA_AFTER_BODY, "hello")],
)
def test_http_passes_on_a_whole_response(tmp_path: Path, raw: bytes, body: str) -> None:
    outcome = recorded(tmp_path, raw)
    assert outcome.exit_code == 0
    result = check(outcome, body_contains=body)
    assert result.passed, result.detail
    assert body in events_named(outcome, "response")[0]["body"]


def test_http_records_the_dechunked_body_and_its_framing(tmp_path: Path) -> None:
    [response] = events_named(recorded(tmp_path, CHUNKED), "response")
    assert (response["body"], response["body_bytes"], response["framing"]) == ("<h1>hello</h1>", 14, "chunked")


def test_http_fails_on_404_with_its_status(tmp_path: Path) -> None:
    outcome = recorded(tmp_path, NOT_FOUND)
    assert outcome.exit_code == 0  # a 404 is still a response
    result = check(outcome)
    assert not result.passed and "404" in result.detail


def test_http_fails_when_the_body_lacks_the_text(tmp_path: Path) -> None:
    result = check(recorded(tmp_path, CHUNKED), body_contains="<h1>goodbye</h1>")
    assert not result.passed and "<h1>goodbye</h1>" in result.detail


def test_http_fails_on_a_content_length_body_cut_short(tmp_path: Path) -> None:
    outcome = recorded(tmp_path, CUT_SHORT)
    assert outcome.exit_code == 1 and not events_named(outcome, "response")
    [error] = events_named(outcome, "error")
    assert (error["kind"], error["during"]) == ("other", "response")
    result = check(outcome, body_contains="hello")
    assert not result.passed
    assert result.detail.endswith("GET /: body cut short: 12 of 50 bytes (Content-Length)")


def test_http_fails_on_a_chunked_body_without_its_last_chunk(tmp_path: Path) -> None:
    outcome = recorded(tmp_path, CHUNKED_CUT)
    assert outcome.exit_code == 1 and not events_named(outcome, "response")
    result = check(outcome)
    assert not result.passed and result.detail.endswith("GET /: chunked body ended before its last chunk")


def test_http_fails_on_garbage(tmp_path: Path) -> None:
    outcome = recorded(tmp_path, GARBAGE)
    assert outcome.exit_code == 1
    result = check(outcome)
    assert not result.passed and "GET /: not an HTTP response: 'SSH-2.0-OpenSSH_9.6" in result.detail


def test_http_fails_on_an_empty_answer(tmp_path: Path) -> None:
    outcome = recorded(tmp_path, b"")
    assert outcome.exit_code == 1 and not events_named(outcome, "error")
    assert "no response" in check(outcome).detail


def test_a_close_delimited_body_needs_the_close(tmp_path: Path) -> None:
    """A timeout (recorded by the exchange, with its reason) is not the end of a close-delimited body."""
    outcome = recorded(tmp_path, HTTP10_CLOSE, failure="timeout")
    assert outcome.exit_code == 1 and not events_named(outcome, "response")
    assert not events_named(outcome, "error")  # the exchange records its own error, not report()
