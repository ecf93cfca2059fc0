"""Every pass/fail branch of every check, on hand-written transcripts (no network, no processes)."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

import pytest

from lab.checks import evaluate
from lab.outcome import CheckResult, Fault, NodeOutcome

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
    reconnect: float | None = None,
) -> list[dict[str, Any]]:
    """A telnet-client transcript: start, connecting, (connected), then `middle`."""
    params = {
        "host": peer.split(":")[0],
        "port": int(peer.split(":")[1]),
        "target": target,
        "send": send if send is not None else [],
        "timeout": 5.0,
        **({"reconnect": reconnect} if reconnect is not None else {}),
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


# ----------------------------------------------------------------------------- reconnecting clients

LINES = ["line 1", "line 2", "line 3"]


def on(conn: int, t: float, event: str, **fields: Any) -> dict[str, Any]:
    return ev(t, event, conn=conn, **fields)


def line_sent(conn: int, t: float, index: int, line: str | None = None) -> dict[str, Any]:
    return on(conn, t, "sent", line=index, data=(line if line is not None else LINES[index]) + "\r\n")


def echoed(conn: int, t: float, index: int) -> dict[str, Any]:
    return on(conn, t, "received", data=LINES[index] + "\r\n")


def lost(conn: int, t: float, line: int, why: str = "reset", message: str = "reset") -> list[dict[str, Any]]:
    """A loss as the role records it: `lost`, then the connection's close."""
    return [on(conn, t, "lost", why=why, during="reply", line=line, message=message),
            on(conn, t, "closing"), on(conn, t, "closed", by="peer" if why in ("reset", "closed") else "self")]


def back(conn: int, t: float, after: float, attempts: int = 3) -> list[dict[str, Any]]:
    """Attempts refused, then a connection: `connecting`, `connect_failed`..., `connected`, `reconnected`."""
    failed = [on(conn, t - 0.1 * (attempts - k), "connect_failed", kind="refused", message="refused", attempt=k)
              for k in range(1, attempts)]
    return [on(conn, t - after, "connecting", peer=PEER, target="server:9999"), *failed,
            on(conn, t, "connected", peer=PEER, local="10.0.1.11:40002", target="server:9999"),
            on(conn, t, "reconnected", after=after, attempts=attempts)]


def gave_up(conn: int, t: float, refused: int = 7) -> dict[str, Any]:
    return on(conn, t, "error", kind="refused", during="reconnect", message=f"gave up (refused x{refused})",
              gave_up=True, budget=10.0, after=10.0, attempts=refused, failures={"refused": refused})


def recovered(*, reply_on_2: str = "line 2") -> NodeOutcome:
    """Line 1 answered on conn 1; the reply to line 2 lost with the connection (reset) at 2.31 s; on
    conn 2 (4.02 s) line 2 again, then line 3."""
    return node(client(
        line_sent(1, 1.0, 0), echoed(1, 1.01, 0), on(1, 1.02, "answered"),
        line_sent(1, 2.0, 1), on(1, 2.1, "received", data="li"), *lost(1, 2.31, 1),
        *back(2, 4.02, after=1.71),
        line_sent(2, 4.3, 1), on(2, 4.31, "received", data=reply_on_2 + "\r\n"), on(2, 4.32, "answered"),
        line_sent(2, 5.0, 2), echoed(2, 5.01, 2), on(2, 6, "closing"), on(2, 6, "closed", by="self"),
        send=LINES, reconnect=10.0))


def test_echo_judges_each_line_by_its_last_attempt_on_its_own_connection() -> None:
    result = one("echo", {}, recovered())
    assert result.passed and result.detail == f"{WHERE}: 3/3 lines echoed"
    wrong = one("echo", {}, recovered(reply_on_2="LINE 2"))
    assert not wrong.passed and "sent 'line 2', got 'LINE 2' (first difference at byte 0)" in wrong.detail


def test_echo_does_not_take_bytes_of_another_connection_for_a_reply() -> None:
    # The echo of line 2 arrives on conn 1 after the line went out again on conn 2, where nothing came.
    tr = client(line_sent(1, 1.0, 0), echoed(1, 1.01, 0), line_sent(1, 2.0, 1), *lost(1, 7.0, 1, "timeout",
                "no reply within 5.0s"), *back(2, 7.5, after=0.5), line_sent(2, 7.6, 1), echoed(1, 7.7, 1),
                *lost(2, 12.6, 1, "timeout", "no reply within 5.0s"), gave_up(3, 22.6),
                send=LINES[:2], reconnect=10.0)
    result = one("echo", {}, node(tr, code=1))
    assert not result.passed
    assert result.detail == (f"{WHERE}: sent 'line 2': connection lost (no reply within 5.0s), never reconnected "
                             "within 10s (refused x7)")


def test_greeting_must_arrive_on_one_connection() -> None:
    split = client(on(1, 1, "received", data="Thank you "), *lost(1, 1.1, 0, "closed", "closed by the server"),
                   *back(2, 2, after=0.9), on(2, 2.1, "received", data="for connecting\r\n"), reconnect=10.0)
    assert not one("greeting", GREETING, node(split)).passed
    whole = client(*lost(1, 1.1, 0, "closed"), *back(2, 2, after=0.9),
                   on(2, 2.1, "received", data="Thank you for connecting\r\n"), reconnect=10.0)
    assert one("greeting", GREETING, node(whole)).passed


def test_concurrent_counts_each_connection_of_a_client_that_reconnected() -> None:
    # client-1 was answered on conn 1 (0.5-1.0), then on conn 2 from 3.0: that is when client-2 was.
    first = node(client(line_sent(1, 0.4, 0), echoed(1, 0.5, 0), on(1, 0.5, "answered"), *lost(1, 1.0, 1),
                        *back(2, 3.0, after=2.0), line_sent(2, 3.0, 1), echoed(2, 3.1, 1), on(2, 3.1, "answered"),
                        on(2, 5.0, "closing"), on(2, 5.0, "closed", by="self"), send=LINES, reconnect=10.0))
    second = answered("client-2", 2.0, 3.5, 4.5)
    results = evaluate("concurrent", {"at_least": 2}, [first, second])
    assert all(r.passed for r in results), [r.detail for r in results]
    alone = answered("client-2", 1.5, 2.0, 2.5)  # between client-1's two connections: never both
    assert not any(r.passed for r in evaluate("concurrent", {"at_least": 2}, [first, alone]))


def test_recovers_passes_when_every_line_left_got_a_reply_on_a_later_connection() -> None:
    result = one("recovers", {}, recovered())
    assert result.passed
    assert result.detail == (f"{WHERE}: lost its connection at +2.31s (reset), reconnected at +4.02s (conn 2) "
                             "and got a reply to each of the 2 line(s) left")


def test_recovers_judges_replies_not_their_bytes() -> None:
    assert one("recovers", {}, recovered(reply_on_2="LINE 2")).passed  # echo says they differ


def test_recovers_fails_when_the_fault_did_not_reach_the_client() -> None:
    tr = client(line_sent(1, 1, 0), echoed(1, 1.1, 0), on(1, 2, "closing"), on(1, 2, "closed", by="self"),
                send=LINES[:1], reconnect=10.0)
    result = one("recovers", {}, node(tr))
    assert not result.passed
    assert result.detail == f"{WHERE}: never lost its connection (the fault did not reach it)"


def test_recovers_fails_when_the_client_never_reconnected() -> None:
    tr = client(line_sent(1, 1, 0), echoed(1, 1.1, 0), line_sent(1, 2.2, 1), *lost(1, 2.31, 1),
                on(2, 2.31, "connecting", peer=PEER, target="server:9999"), gave_up(2, 12.31),
                ev(12.32, "end", code=1), send=LINES, reconnect=10.0)
    result = one("recovers", {}, node(tr, code=1))
    assert not result.passed
    assert result.detail == (f"{WHERE}: lost its connection at +2.31s (reset) and never reconnected within 10s "
                             "(refused x7)")
    killed = node(tr[:-2], code=None, stopped=True, note="killed at the run deadline")
    assert one("recovers", {}, killed).detail == (f"{WHERE}: lost its connection at +2.31s (reset) and had not "
                                                  "reconnected when it ended (killed at the run deadline)")


def test_recovers_fails_when_a_line_got_no_reply_after_reconnecting() -> None:
    tr = client(line_sent(1, 1, 0), echoed(1, 1.1, 0), line_sent(1, 2.2, 1), *lost(1, 2.31, 1),
                *back(2, 4.02, after=1.71), line_sent(2, 4.1, 1), echoed(2, 4.2, 1),
                line_sent(2, 4.5, 2), on(2, 9.5, "lost", why="timeout", during="reply", line=2,
                                          message="no reply within 5.0s"),
                send=LINES, reconnect=10.0)
    result = one("recovers", {}, node(tr, code=None, stopped=True))
    assert not result.passed
    assert result.detail == (f"{WHERE}: lost its connection 2 times, the last at +9.50s (no reply within 5.0s) "
                             "and had not reconnected when it ended")
    before_the_loss = node(tr[:-1], code=None, stopped=True)
    assert one("recovers", {}, before_the_loss).detail == (
        f"{WHERE}: lost its connection at +2.31s (reset), reconnected at +4.02s (conn 2) but 'line 3' got no "
        "reply")
    unsent = node(tr[:-4], code=None, stopped=True)
    assert one("recovers", {}, unsent).detail.endswith("but 'line 2' was never sent after that")


def test_recovers_fails_for_a_client_that_does_not_reconnect() -> None:
    tr = client(sent(1, "line 1"), got(1.1, "line 1\r\n"), sent(2, "line 2"), error(2.1, "reset", "reply"),
                closed(2.1, "peer"), send=LINES[:2])
    result = one("recovers", {}, node(tr, code=1))
    assert not result.passed
    assert result.detail == (f"{WHERE}: does not reconnect (its `reconnect:` is 0); connection reset during reply")


def test_recovers_and_echo_fail_for_a_client_that_never_connected() -> None:
    tr = client(*[on(1, 0.2 * k, "connect_failed", kind="refused", message="refused", attempt=k) for k in (1, 2)],
                on(1, 10.0, "error", kind="refused", during="connect", message="gave up", gave_up=True, budget=10.0,
                   failures={"refused": 2}), connected=False, send=LINES, reconnect=10.0)
    for check in ("recovers", "echo"):
        result = one(check, {}, node(tr, code=1))
        assert result.detail == f"{WHERE}: never connected within 10s (refused x2)"


def test_recovers_for_a_node_that_did_not_run() -> None:
    assert one("recovers", {}, NOT_STARTED).detail.startswith("did not run:")


# ----------------------------------------------------------------------------- losses and the timeline's faults

NO_FAULT = "with no fault in force (an echo server keeps the conversation open)"
SERVERS_DOING = "the server's doing, not the network's"


def faulted(outcome: NodeOutcome, *faults: tuple[str, float | None]) -> NodeOutcome:
    """The outcome as a run judges it: with the steps that touch the client or its server, and when
    each fired (None: it did not)."""
    return replace(outcome, faults=tuple(Fault(label, at) for label, at in faults))


def hung_up(conn: int, t: float, line: int) -> list[dict[str, Any]]:
    """The server closed the connection after answering, before the client sent line `line`."""
    return [on(conn, t, "lost", why="closed", during="interval", line=line,
               message="closed by the server before the next line was sent"),
            on(conn, t, "closing"), on(conn, t, "closed", by="peer")]


def one_line_each() -> NodeOutcome:
    """A server that answers one line per connection, then closes (recv, send, close): each line's last
    attempt is echoed, on a connection of its own."""
    return node(client(
        line_sent(1, 0.3, 0), echoed(1, 0.31, 0), on(1, 0.31, "answered"), *hung_up(1, 0.61, 1),
        *back(2, 0.81, after=0.2, attempts=1), line_sent(2, 1.1, 1), echoed(2, 1.11, 1), *hung_up(2, 1.41, 2),
        *back(3, 1.61, after=0.2, attempts=1), line_sent(3, 1.9, 2), echoed(3, 1.91, 2),
        on(3, 2.2, "closing"), on(3, 2.2, "closed", by="peer"), send=LINES, reconnect=10.0))


def test_a_server_that_closes_after_each_line_fails_echo_and_recovers_without_a_fault() -> None:
    broken = faulted(one_line_each())  # no step of the timeline touches the client or its server
    echo = one("echo", {}, broken)
    assert not echo.passed
    assert echo.detail == f"{WHERE}: before sending 'line 2': the server closed the connection at +0.61s {NO_FAULT}"
    recovers = one("recovers", {}, broken)
    assert not recovers.passed
    assert recovers.detail == (f"{WHERE}: lost its connection at +0.61s (closed by the server before the next line "
                               f"was sent), but no fault of the timeline touches it or its server: {SERVERS_DOING}")


def test_a_loss_before_the_first_fault_fired_is_no_recovery() -> None:
    later = faulted(one_line_each(), ("restart server", 1.0), ("down client", 5.0))
    result = one("recovers", {}, later)
    assert not result.passed
    assert result.detail == (f"{WHERE}: lost its connection at +0.61s (closed by the server before the next line "
                             f"was sent) before any fault reached it or its server (the first, 'restart server', "
                             f"fired at +1.00s): {SERVERS_DOING}")
    assert one("echo", {}, later).detail.endswith(f"the server closed the connection at +0.61s {NO_FAULT}")
    never = one("recovers", {}, faulted(one_line_each(), ("restart server", None)))
    assert "before any fault reached it or its server (none that touches them fired)" in never.detail


def test_faults_not_known_leave_the_judgement_as_it_was() -> None:
    assert one_line_each().faults is None  # an outcome no run gave its faults: judged without them
    assert one("echo", {}, one_line_each()).passed and one("recovers", {}, one_line_each()).passed


def test_a_correct_server_restarted_by_the_timeline_passes_echo_and_recovers() -> None:
    restarted = faulted(recovered(), ("restart server", 2.3))  # the reset came at 2.31 s
    assert one("echo", {}, restarted).passed
    result = one("recovers", {}, restarted)
    assert result.passed and result.detail.startswith(f"{WHERE}: lost its connection at +2.31s (reset), reconnected")
    assert one("recovers", {}, faulted(recovered(), ("restart server", 2.35))).passed  # within the slack
    early = faulted(recovered(), ("restart server", 2.4))
    assert not one("recovers", {}, early).passed
    reset = one("echo", {}, early)
    assert reset.detail == f"{WHERE}: sent 'line 2': the server reset the connection at +2.31s {NO_FAULT}"


def test_a_link_down_passes_echo_and_recovers() -> None:
    cut = node(client(
        line_sent(1, 1.0, 0), echoed(1, 1.01, 0), on(1, 1.02, "answered"), line_sent(1, 2.0, 1),
        *lost(1, 7.0, 1, "timeout", "no reply within 5.0s"), *back(2, 9.6, after=2.6),
        line_sent(2, 9.9, 1), echoed(2, 9.91, 1), line_sent(2, 10.9, 2), echoed(2, 10.91, 2),
        on(2, 11.0, "closing"), on(2, 11.0, "closed", by="self"), send=LINES, reconnect=10.0))
    down = faulted(cut, ("down server", 1.5), ("up server", 4.5))
    assert one("echo", {}, down).passed
    result = one("recovers", {}, down)
    assert result.passed and "(no reply within 5.0s), reconnected at +9.60s" in result.detail
    assert not one("recovers", {}, faulted(cut)).passed  # no reply, and no fault: the server's


def test_a_server_answering_wrong_bytes_after_a_fault_recovers_and_fails_echo() -> None:
    wrong = faulted(recovered(reply_on_2="LINE 2"), ("restart server", 2.0))
    assert one("recovers", {}, wrong).passed  # replies came: `echo` judges their bytes
    assert "sent 'line 2', got 'LINE 2'" in one("echo", {}, wrong).detail


def test_never_lost_says_when_no_fault_touches_the_pair() -> None:
    tr = client(line_sent(1, 1, 0), echoed(1, 1.1, 0), on(1, 2, "closing"), on(1, 2, "closed", by="self"),
                send=LINES[:1], reconnect=10.0)
    result = one("recovers", {}, faulted(node(tr)))
    assert result.detail == f"{WHERE}: never lost its connection (no fault of the timeline touches it or its server)"
    assert one("recovers", {}, faulted(node(tr), ("down server", None))).detail.endswith("(the fault did not reach it)")


def test_a_client_that_does_not_reconnect_is_judged_as_before() -> None:
    tr = client(sent(1, "line 1"), got(1.1, "line 1\r\n"), closed(1.2, "peer"), send=LINES[:1])
    assert one("echo", {}, faulted(node(tr))).passed  # one connection, closed after the last line: no loss
    refused = one("recovers", {}, faulted(node(tr)))
    assert refused.detail.startswith(f"{WHERE}: does not reconnect")


# ----------------------------------------------------------------------------- rate

RATE = {"rate": 1_000_000, "window": [1.0, 6.0], "within": 20.0}


def stream(per_second: int, until: float, t0: float = 10.0, step: float = 0.05) -> list[dict[str, Any]]:
    """`received` events of `per_second` bytes a second, from t0 (the first byte) to t0 + until."""
    size = int(per_second * step)
    return [ev(t0 + k * step, "received", conn=1, data="x" * size) for k in range(int(until / step) + 1)]


def test_rate_passes_within_the_tolerance() -> None:
    result = one("rate", RATE, browser(*stream(124_800, until=8)))
    assert result.passed
    assert result.detail == (f"{BROWSER}: got 124.8 kB/s (998.4 kbit/s) over 1.0-6.0s from its first byte; "
                             "expected 1000 kbit/s +-20%")


def test_rate_fails_outside_the_tolerance() -> None:
    result = one("rate", RATE, browser(*stream(60_000, until=8)))
    assert not result.passed
    assert result.detail == (f"{BROWSER}: got 60.0 kB/s (480.0 kbit/s) over 1.0-6.0s from its first byte; "
                             "expected 1000 kbit/s +-20%")
    assert not one("rate", RATE, browser(*stream(200_000, until=8))).passed  # too fast fails too
    assert one("rate", {**RATE, "within": 60.0}, browser(*stream(60_000, until=8))).passed


def test_rate_counts_from_the_first_byte_and_shows_big_rates_in_their_units() -> None:
    late = browser(*stream(1_250_000, until=8, t0=50.0, step=0.01))
    result = one("rate", {**RATE, "rate": 10_000_000}, late)
    assert result.passed and "got 1.25 MB/s (10.0 Mbit/s)" in result.detail and "expected 10.0 Mbit/s" in result.detail


def test_rate_fails_when_the_transfer_ended_before_the_window() -> None:
    result = one("rate", RATE, browser(*stream(125_000, until=3.2), response(200, "OK", "x")))
    assert not result.passed
    assert result.detail == (f"{BROWSER}: the transfer ended at 3.2s, before the window's end 6.0s (seconds from "
                             "its first byte) (the whole response had come: serve a bigger page)")
    cut = one("rate", RATE, browser(*stream(125_000, until=4.0),
                                    error(14, "timeout", "response", message="no complete response within 5.0s")))
    assert cut.detail.endswith("(no complete response within 5.0s (timeout))")


def test_rate_counts_arrivals_past_the_transcripts_data_limit() -> None:
    # Bytes, then the `truncated` event (its chunk's size), then sizes alone: all count.
    head = [ev(10.0 + k * 0.05, "received", conn=1, data="x" * 6250) for k in range(40)]  # to 11.95 s
    cut = ev(12.0, "truncated", conn=1, of="received", size=6250, limit=8 * 2**20)
    sizes = [ev(12.05 + k * 0.05, "received", conn=1, size=6250, chunks=2) for k in range(100)]  # to 17 s
    result = one("rate", RATE, browser(*head, cut, *sizes))
    assert result.passed and "got 125.0 kB/s (1000 kbit/s)" in result.detail


def test_rate_fails_when_nothing_arrived() -> None:
    result = one("rate", RATE, browser(error(0.1, "refused", "connect"), connected=False))
    assert result.detail == f"{BROWSER}: received nothing (connection refused)"
    assert one("rate", RATE, NOT_STARTED).detail.startswith("did not run:")


def test_echo_says_how_a_half_reply_was_lost() -> None:
    tr = client(line_sent(1, 1.0, 0), on(1, 1.1, "received", data="lin"), *lost(1, 6.0, 0, "timeout",
                "no reply within 5.0s"), on(2, 6.0, "connecting", peer=PEER, target="server:9999"),
                gave_up(2, 16.0, refused=9), send=LINES[:1], reconnect=10.0)
    assert one("echo", {}, node(tr, code=1)).detail == (
        f"{WHERE}: sent 'line 1', got 'lin' (no end of line; connection lost (no reply within 5.0s), never "
        "reconnected within 10s (refused x9))")
