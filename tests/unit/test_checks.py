"""Every pass/fail branch of every check, on hand-written transcripts (no network, no processes)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from lab.checks import evaluate
from lab.outcome import CheckResult, NodeOutcome

PEER = "10.0.1.10:9999"
WHERE = f"client-1 -> {PEER} (server:9999)"


def ev(t: float, event: str, **fields: Any) -> dict[str, Any]:
    return {"t": t, "event": event, **fields}


def sent(t: float, line: str) -> dict[str, Any]:
    return ev(t, "sent", conn=1, data=line + "\r\n")


def got(t: float, data: str) -> dict[str, Any]:
    return ev(t, "received", conn=1, data=data)


def closed(t: float, by: str = "self") -> dict[str, Any]:
    return ev(t, "closed", conn=1, by=by)


def error(t: float, kind: str, during: str, **fields: Any) -> dict[str, Any]:
    return ev(t, "error", conn=1, kind=kind, during=during, message=fields.pop("message", kind), **fields)


def client(
    *middle: dict[str, Any],
    send: list[str] | None = None,
    connected: bool = True,
    t0: float = 0.0,
    peer: str = PEER,
    target: str = "server:9999",
) -> list[dict[str, Any]]:
    """A telnet-client transcript: start, connecting, (connected), then `middle`."""
    params = {
        "host": peer.split(":")[0],
        "port": int(peer.split(":")[1]),
        "target": target,
        "send": send if send is not None else [],
        "timeout": 5.0,
    }
    head = [
        ev(t0, "start", role="telnet-client", pid=1, params=params),
        ev(t0 + 0.001, "connecting", conn=1, peer=peer, target=target),
    ]
    if connected:
        head.append(ev(t0 + 0.002, "connected", conn=1, peer=peer, local="10.0.1.11:40000", target=target))
    return head + list(middle)


def node(
    transcript: list[dict[str, Any]],
    name: str = "client-1",
    *,
    code: int | None = 0,
    started: bool = True,
    stopped: bool = False,
    note: str = "",
    log: str = "",
) -> NodeOutcome:
    return NodeOutcome(name, started, code, stopped, note, transcript, log)


def one(check: str, params: dict[str, Any], outcome: NodeOutcome) -> CheckResult:
    [result] = evaluate(check, params, [outcome])
    assert result.check == check and result.node == outcome.name
    assert "\n" not in result.detail
    return result


NOT_STARTED = node(
    [], started=False, code=None, note="not started: server exited with code 1 before it was ready"
)


# ----------------------------------------------------------------------------- echo


def test_echo_passes_when_every_line_comes_back() -> None:
    tr = client(
        sent(1, "hello from client-1"),
        got(1.1, "hello from client-1\r\n"),
        sent(2, "second line"),
        got(2.1, "second line\r\n"),
        closed(3),
        send=["hello from client-1", "x"],
    )
    result = one("echo", {}, node(tr))
    assert result.passed and result.detail == f"{WHERE}: 2/2 lines echoed"


def test_echo_passes_with_split_chunks_a_greeting_and_base64_data() -> None:
    raw = "é\r\n".encode()  # split inside the UTF-8 sequence: both halves are recorded as base64
    halves = [base64.b64encode(part).decode() for part in (raw[:1], raw[1:])]
    tr = client(
        got(0.5, "Welcome\r\n"),
        sent(1, "hel"),
        got(1.1, "h"),
        got(1.2, "el\r\n"),
        sent(2, "é"),
        ev(2.1, "received", conn=1, data_b64=halves[0]),
        ev(2.2, "received", conn=1, data_b64=halves[1]),
        closed(3),
    )
    result = one("echo", {}, node(tr))
    assert result.passed and result.detail.endswith("2/2 lines echoed")


def test_echo_fails_on_a_changed_line() -> None:
    tr = client(sent(1, "hello from client-1"), got(1.1, "HELLO FROM CLIENT-1\r\n"), closed(2))
    result = one("echo", {}, node(tr))
    assert not result.passed
    expected = f"{WHERE}: sent 'hello from client-1', got 'HELLO FROM CLIENT-1' (first difference at byte 0)"
    assert result.detail == expected


def test_echo_fails_on_timeout() -> None:
    tr = client(sent(1, "x"), error(6, "timeout", "reply", timeout=5.0), closed(6))
    result = one("echo", {}, node(tr, code=1))
    assert not result.passed and result.detail == f"{WHERE}: sent 'x': no reply within 5.0s (timeout)"


def test_echo_fails_when_refused() -> None:
    tr = client(error(0.1, "refused", "connect", peer=PEER), connected=False)
    result = one("echo", {}, node(tr, code=1))
    assert not result.passed and result.detail == f"{WHERE}: connection refused"


def test_echo_fails_when_unreachable() -> None:
    tr = client(
        error(0.1, "unreachable", "connect", message="OSError: [Errno 113] No route to host"), connected=False
    )
    result = one("echo", {}, node(tr, code=1))
    assert not result.passed and "unreachable" in result.detail and "No route to host" in result.detail


def test_echo_fails_when_connect_times_out() -> None:
    tr = client(error(5, "timeout", "connect", timeout=5.0), connected=False)
    assert "connect: no answer within 5.0s (timeout)" in one("echo", {}, node(tr, code=1)).detail


def test_echo_fails_on_reset() -> None:
    tr = client(sent(1, "x"), error(1.1, "reset", "reply"), closed(1.1, "peer"))
    result = one("echo", {}, node(tr, code=1))
    assert not result.passed and result.detail == f"{WHERE}: connection reset after sending 'x'"


def test_echo_fails_when_nothing_was_sent() -> None:
    result = one("echo", {}, node(client(closed(1))))
    assert not result.passed and result.detail == f"{WHERE}: sent nothing"


def test_echo_fails_when_the_peer_closes_without_reply() -> None:
    tr = client(sent(1, "x"), closed(1.1, "peer"))
    result = one("echo", {}, node(tr))
    assert result.detail == f"{WHERE}: sent 'x': connection closed by the peer without a reply"


def test_echo_fails_on_an_incomplete_line() -> None:
    tr = client(sent(1, "hello"), got(1.1, "hello"), error(6, "timeout", "reply", timeout=5.0), closed(6))
    detail = one("echo", {}, node(tr, code=1)).detail
    assert detail == f"{WHERE}: sent 'hello', got 'hello' (no end of line within 5.0s)"


def test_echo_fails_when_not_all_lines_were_sent() -> None:
    tr = client(sent(1, "a"), got(1.1, "a\r\n"), closed(1.2, "peer"), send=["a", "b"])
    result = one("echo", {}, node(tr))
    assert not result.passed
    assert result.detail == f"{WHERE}: sent only 1 of 2 lines (connection closed by the peer)"


def test_echo_fails_on_lines_out_of_order() -> None:
    tr = client(sent(1, "a"), got(1.05, "b\r\n"), sent(1.1, "b"), got(1.2, "a\r\n"), closed(2))
    result = one("echo", {}, node(tr))
    assert not result.passed and "sent 'a', got 'b' (first difference at byte 0)" in result.detail


def test_echo_truncates_long_data() -> None:
    line = "x" * 500
    tr = client(sent(1, line), got(1.1, line.upper() + "\r\n"), closed(2))
    detail = one("echo", {}, node(tr)).detail
    assert f"sent '{'x' * 60}'..., got '{'X' * 60}'..." in detail and len(detail) < 250


def test_echo_fails_for_a_node_without_transcript() -> None:
    result = one("echo", {}, node([], log="hello"))
    assert (
        not result.passed
        and result.detail == "client-1: no transcript (this check needs a built-in client role)"
    )


def test_echo_mentions_that_the_lab_killed_the_node() -> None:
    tr = client(sent(1, "x"))
    result = one("echo", {}, node(tr, code=None, stopped=True, note="killed at the run deadline"))
    assert result.detail == f"{WHERE}: sent 'x': no reply (killed at the run deadline)"


def test_echo_fails_for_a_node_that_did_not_run() -> None:
    result = one("echo", {}, NOT_STARTED)
    assert not result.passed
    assert result.detail == "did not run: server exited with code 1 before it was ready"


# ----------------------------------------------------------------------------- greeting

GREETING = {"text": "Thank you for connecting"}
VISITOR = "visitor-1 -> 10.0.2.10:12345 (server:12345)"


def visitor(*middle: dict[str, Any], connected: bool = True) -> NodeOutcome:
    tr = client(*middle, connected=connected, peer="10.0.2.10:12345", target="server:12345")
    return node(tr, "visitor-1")


def test_greeting_passes() -> None:
    result = one(
        "greeting", GREETING, visitor(got(1, "Thank you "), got(1.1, "for connecting\r\n"), closed(2, "peer"))
    )
    assert result.passed and result.detail == f"{VISITOR}: got 'Thank you for connecting'"


def test_greeting_fails_on_other_text() -> None:
    result = one("greeting", GREETING, visitor(got(1, "Hello\r\n"), closed(2, "peer")))
    assert (
        not result.passed and result.detail == f"{VISITOR}: expected 'Thank you for connecting', got 'Hello'"
    )


def test_greeting_fails_when_the_peer_closes_silently() -> None:
    result = one("greeting", GREETING, visitor(closed(1, "peer")))
    assert (
        result.detail
        == f"{VISITOR}: expected 'Thank you for connecting', got nothing: connection closed by the peer"
    )


def test_greeting_fails_on_timeout() -> None:
    result = one("greeting", GREETING, visitor(error(5, "timeout", "greeting", timeout=5.0), closed(5)))
    assert not result.passed and result.detail.endswith("got nothing: no greeting within 5.0s (timeout)")


def test_greeting_fails_when_refused() -> None:
    result = one("greeting", GREETING, visitor(error(0.1, "refused", "connect"), connected=False))
    assert result.detail == f"{VISITOR}: connection refused"


def test_greeting_fails_for_a_node_that_did_not_run() -> None:
    assert one("greeting", GREETING, NOT_STARTED).detail.startswith("did not run: server exited")


# ----------------------------------------------------------------------------- http

BROWSER = "browser -> 10.0.3.80:8080 (web:8080)"


def browser(*middle: dict[str, Any], connected: bool = True) -> NodeOutcome:
    params = {
        "url": "http://web:8080/hello.txt",
        "host": "10.0.3.80",
        "port": 8080,
        "path": "/hello.txt",
        "host_header": "web:8080",
        "timeout": 5.0,
    }
    tr = [
        ev(0, "start", role="http-get", pid=1, params=params),
        ev(
            0.01,
            "connecting",
            conn=1,
            peer="10.0.3.80:8080",
            target="web:8080",
            url=params["url"],
            path="/hello.txt",
        ),
    ]
    if connected:
        tr.append(
            ev(0.02, "connected", conn=1, peer="10.0.3.80:8080", local="10.0.4.20:5000", target="web:8080")
        )
    return node(tr + list(middle), "browser")


def response(status: int, reason: str, body: str) -> dict[str, Any]:
    return ev(
        1,
        "response",
        conn=1,
        version="HTTP/1.1",
        status=status,
        reason=reason,
        headers={"content-type": "text/plain; charset=utf-8"},
        body=body,
    )


def test_http_passes() -> None:
    result = one(
        "http", {"status": 200, "body_contains": "hello"}, browser(response(200, "OK", "hello, lab"))
    )
    assert result.passed and result.detail == f"{BROWSER}: GET /hello.txt: 200 OK, body contains 'hello'"


def test_http_passes_without_body_contains() -> None:
    assert one("http", {"status": 200}, browser(response(200, "OK", ""))).passed


def test_http_uses_the_last_response() -> None:
    outcome = browser(response(500, "Oops", ""), response(200, "OK", "hello"))
    assert one("http", {"status": 200, "body_contains": None}, outcome).passed


def test_http_fails_on_status() -> None:
    result = one("http", {"status": 200}, browser(response(404, "Not Found", "not found")))
    assert not result.passed
    assert result.detail == f"{BROWSER}: GET /hello.txt: status 404 Not Found, expected 200"


def test_http_fails_on_body() -> None:
    result = one("http", {"status": 200, "body_contains": "hello, lab"}, browser(response(200, "OK", "bye")))
    assert not result.passed
    assert result.detail == f"{BROWSER}: GET /hello.txt: body does not contain 'hello, lab' (body: 'bye')"


def test_http_fails_when_refused() -> None:
    result = one("http", {"status": 200}, browser(error(0.1, "refused", "connect"), connected=False))
    assert not result.passed and result.detail == f"{BROWSER}: GET /hello.txt: connection refused"


def test_http_fails_on_timeout() -> None:
    outcome = browser(error(5, "timeout", "response", message="no complete response within 5.0s"), closed(5))
    result = one("http", {"status": 200}, outcome)
    assert result.detail == f"{BROWSER}: GET /hello.txt: no complete response within 5.0s (timeout)"


def test_http_fails_on_a_non_http_answer() -> None:
    result = one("http", {"status": 200}, browser(got(1, "garbage"), closed(1, "peer")))
    assert result.detail == f"{BROWSER}: GET /hello.txt: not an HTTP response: 'garbage'"


def test_http_fails_on_an_empty_answer() -> None:
    result = one("http", {"status": 200}, browser(closed(1, "peer")))
    assert "no response (connection closed without data)" in result.detail


def test_http_fails_for_a_node_that_did_not_run() -> None:
    assert one("http", {"status": 200}, NOT_STARTED).detail.startswith("did not run:")


# ----------------------------------------------------------------------------- concurrent


def answered(name: str, connect: float, answer: float, close: float, by: str = "self") -> NodeOutcome:
    tr = client(sent(connect + 0.01, "hi"), got(answer, "hi\r\n"), closed(close, by), t0=connect)
    return node(tr, name)


def test_concurrent_passes_for_overlapping_clients() -> None:
    nodes = [
        answered("client-1", 0, 1.0, 3.0),
        answered("client-2", 0, 1.5, 3.5),
        answered("client-3", 0, 2.0, 4),
    ]
    results = evaluate("concurrent", {"at_least": 3}, nodes)
    assert [r.node for r in results] == ["client-1", "client-2", "client-3"]
    assert all(r.passed for r in results)
    assert results[0].detail == "3 clients connected and answered at once (need 3)"


def test_concurrent_fails_for_clients_served_one_at_a_time() -> None:
    nodes = [
        answered("client-1", 0, 0.1, 1.0),
        answered("client-2", 0, 1.1, 2.0),
        answered("client-3", 0, 2.1, 3),
    ]
    results = evaluate("concurrent", {"at_least": 3}, nodes)
    assert not any(r.passed for r in results)
    assert results[1].detail == (
        "at most 1 client(s) connected and answered at once (need 3); "
        "client-2 was answered only after client-1 closed"
    )
    assert results[0].detail.endswith("; client-2 was answered only after client-1 closed")


def test_concurrent_is_judged_per_node() -> None:
    nodes = [
        answered("client-1", 0, 1.0, 3.0),
        answered("client-2", 0, 2.0, 4.0),
        answered("client-3", 0, 5, 6),
    ]
    results = evaluate("concurrent", {"at_least": 2}, nodes)
    assert [r.passed for r in results] == [True, True, False]
    assert results[2].detail.endswith("client-3 was answered only after client-2 closed")


def test_concurrent_fails_for_a_client_that_was_never_answered() -> None:
    refused = node(client(error(0.1, "refused", "connect"), connected=False), "client-3", code=1)
    timed_out = node(client(sent(0.1, "hi"), error(5, "timeout", "reply", timeout=5.0)), "client-4", code=1)
    nodes = [answered("client-1", 0, 1.0, 3.0), answered("client-2", 0, 1.5, 3.5), refused, timed_out]
    results = evaluate("concurrent", {"at_least": 3}, nodes)
    assert [r.passed for r in results] == [False] * 4
    assert results[0].detail == (
        "at most 2 client(s) connected and answered at once (need 3); "
        "2 client(s) never answered (client-3, client-4)"
    )
    assert results[2].detail == "client-3 -> 10.0.1.10:9999 (server:9999): never answered: connection refused"
    assert results[3].detail.endswith("never answered: sent 'hi': no reply within 5.0s (timeout)")


def test_concurrent_interval_ends_at_the_end_event_or_last_event() -> None:
    killed = node(client(got(1.0, "hi\r\n"), ev(9.0, "end", reason="terminated")), "client-1", code=None)
    open_ended = node(client(got(2.0, "hi\r\n"), got(8.0, "more")), "client-2")
    results = evaluate("concurrent", {"at_least": 2}, [killed, open_ended])
    assert all(r.passed for r in results)


def test_concurrent_counts_from_answered_to_closing_not_to_closed() -> None:
    # A sequential server: client-2 is answered right after client-1 *began* closing, but before
    # client-1 got to record `closed`. Times on the safe side of each call keep them apart.
    first = node(client(sent(0.1, "hi"), got(0.2, "hi\r\n"), ev(0.21, "answered", conn=1),
                        ev(1.0, "closing", conn=1), closed(1.3)), "client-1")
    second = node(client(sent(0.1, "hi"), got(1.1, "hi\r\n"), ev(1.11, "answered", conn=1),
                         ev(2.0, "closing", conn=1), closed(2.1)), "client-2")
    results = evaluate("concurrent", {"at_least": 2}, [first, second])
    assert not any(r.passed for r in results)


def test_concurrent_counts_a_connection_closed_by_the_server_up_to_its_last_bytes() -> None:
    first = node(client(sent(0.1, "hi"), got(0.2, "hi\r\n"), ev(0.21, "answered", conn=1),
                        ev(1.5, "closing", conn=1), closed(1.5, "peer")), "client-1")
    second = node(client(sent(0.1, "hi"), got(1.1, "hi\r\n"), ev(1.11, "answered", conn=1),
                         ev(2.0, "closing", conn=1), closed(2.0)), "client-2")
    results = evaluate("concurrent", {"at_least": 2}, [first, second])
    assert not any(r.passed for r in results)


def test_concurrent_needs_enough_nodes_and_reports_unstarted() -> None:
    results = evaluate("concurrent", {"at_least": 3}, [answered("client-1", 0, 1, 2), NOT_STARTED])
    assert results[0].detail.endswith("; the check covers only 2 node(s)")
    assert results[1].detail.startswith("did not run:")


# ----------------------------------------------------------------------------- exit and output


def test_exit_passes() -> None:
    result = one("exit", {"code": 0}, node([], "prober", code=0))
    assert result.passed and result.detail == "exited with code 0"


def test_exit_fails_with_the_last_log_line() -> None:
    result = one("exit", {"code": 0}, node([], "prober", code=1, log="hi\nnc: connection refused\n\n"))
    assert not result.passed
    assert result.detail == "exited with code 1, expected 0 (last log line: 'nc: connection refused')"


def test_exit_fails_without_output() -> None:
    assert one("exit", {"code": 3}, node([], code=0)).detail == "exited with code 0, expected 3 (no output)"


def test_exit_fails_when_still_running() -> None:
    result = one("exit", {"code": 0}, node([], code=None, stopped=True))
    assert not result.passed and result.detail == "still running when the lab stopped it"
    killed = one("exit", {"code": 0}, node([], code=None, stopped=True, note="killed at the run deadline"))
    assert killed.detail == "still running when the lab stopped it (killed at the run deadline)"


def test_exit_fails_when_unknown_or_not_run() -> None:
    assert one("exit", {"code": 0}, node([], code=None)).detail == "exit code unknown"
    assert one("exit", {"code": 0}, NOT_STARTED).detail.startswith("did not run: server exited")


def test_output_contains() -> None:
    result = one("output", {"contains": "hi"}, node([], "prober", log="hi\r\n"))
    assert result.passed and result.detail == "output contains 'hi'"


def test_output_does_not_contain() -> None:
    result = one("output", {"contains": "hi"}, node([], "prober", log="a\nb\nc\nd\n"))
    assert not result.passed and result.detail == "output does not contain 'hi' (last lines: 'b\\nc\\nd')"
    assert one("output", {"contains": "hi"}, node([])).detail == "output does not contain 'hi' (no output)"


def test_output_regex() -> None:
    result = one("output", {"regex": r"h\w+"}, node([], log="say hello\n"))
    assert result.passed and result.detail == "output matches 'h\\\\w+': 'hello'"
    failed = one("output", {"regex": "^bye$"}, node([], log="hello\n"))
    assert not failed.passed and failed.detail == "output does not match '^bye$' (last lines: 'hello')"


def test_output_for_a_node_that_did_not_run() -> None:
    assert one("output", {"contains": "x"}, NOT_STARTED).detail.startswith("did not run:")


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_gives_one_result_per_node_in_order() -> None:
    nodes = [node([], "a", code=0), node([], "b", code=2)]
    assert [(r.node, r.passed) for r in evaluate("exit", {"code": 0}, nodes)] == [("a", True), ("b", False)]


def test_evaluate_rejects_an_unknown_check() -> None:
    with pytest.raises(ValueError, match="unknown check 'ping'"):
        evaluate("ping", {}, [])


def test_details_are_one_line() -> None:
    tr = client(error(0.1, "other", "connect", message="first\nsecond"), connected=False)
    assert "\n" not in one("echo", {}, node(tr)).detail


def test_concurrent_does_not_take_intervals_the_clocks_cannot_order_for_an_overlap() -> None:
    # Two hosts' clocks known to within 5 ms: client-2 answered 2 ms before client-1 began closing,
    # as stamped, which they cannot tell apart from 2 ms after.
    def held(name: str, answer: float, closing: float) -> NodeOutcome:
        tr = client(sent(0.1, "hi"), got(answer, "hi\r\n"), ev(answer, "answered", conn=1),
                    ev(closing, "closing", conn=1), closed(closing))
        return NodeOutcome(name, True, 0, False, "", tr, "", clock_uncertainty=0.005)

    results = evaluate("concurrent", {"at_least": 2}, [held("client-1", 0.2, 1.000), held("client-2", 0.998, 2.0)])
    assert not any(r.passed for r in results)
    results = evaluate("concurrent", {"at_least": 2}, [held("client-1", 0.2, 1.1), held("client-2", 0.998, 2.0)])
    assert all(r.passed for r in results)
    [short] = evaluate("concurrent", {"at_least": 1}, [held("client-1", 0.2, 0.205)])
    assert not short.passed and "less than its clock's uncertainty (10 ms)" in short.detail
