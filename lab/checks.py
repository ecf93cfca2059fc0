"""The `expect:` checks: pure functions from what nodes recorded to one result per node (`JUDGES`,
at the end; the checks themselves are declared in lab/scenario/checks.py).

No I/O and no backend knowledge: lab/outcome.py collects each node's outcome (transcript events,
log text, exit status) and hands them here, which keeps every branch testable on literal data.
A failing result says why in one line, with evidence: the node and its peer, what was sent and
what came back (or that the connection was refused, reset, or timed out).
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lab.lines import (
    difference,
    error_phrase,
    escape,
    last_lines,
    lines_of,
    one_line,
    quote,
    seconds,
    strip_eol,
    text_of,
    through_line_ends,
    without_eol,
)
from lab.outcome import CheckResult, NodeOutcome
from lab.roles.common import event_bytes
from lab.signals import exit_words

Finding = tuple[bool, str]  # (passed, detail): what a check found for one node, before `evaluate` words it


def evaluate(check: str, params: Mapping[str, Any], nodes: Sequence[NodeOutcome]) -> list[CheckResult]:
    """One result per node, in the order given (JUDGES says how each check is judged). Raises
    ValueError for an unknown check."""
    if check not in JUDGES:
        raise ValueError(f"unknown check {check!r}")
    findings = JUDGES[check](params, nodes)
    return [
        CheckResult(check, node.name, passed, one_line(with_causes(node, passed, with_note(node, passed, detail))),
                    node.started)
        for node, (passed, detail) in zip(nodes, findings, strict=True)
    ]


# ----------------------------------------------------------------------------- verdicts in words


def not_run(node: NodeOutcome) -> Finding | None:
    if node.started:
        return None
    return False, f"did not run: {node.note.removeprefix('not started: ') or 'never started'}"


def with_note(node: NodeOutcome, passed: bool, detail: str) -> str:
    """A failure of a node the lab had to stop says so (e.g. killed at the run deadline)."""
    if passed or not node.started or not node.stopped_by_lab or not node.note or node.note in detail:
        return detail
    return f"{detail} ({node.note})"


def with_causes(node: NodeOutcome, passed: bool, detail: str) -> str:
    """A failure says what the lab knows of its cause: the node's own end (the output limit), and
    what its server did when its connection failed (exited, or raised)."""
    for cause in (node.cause, node.peer_note):
        if not passed and cause and cause not in detail:
            detail = f"{detail} ({cause})"
    return detail


# ----------------------------------------------------------------------------- transcript queries


def events(node: NodeOutcome, name: str) -> list[dict[str, Any]]:
    return [event for event in node.transcript if event.get("event") == name]


def first(node: NodeOutcome, name: str, start: int = 0) -> tuple[int, dict[str, Any]] | None:
    """(index, event) of the first `name` event at or after index `start`."""
    for index in range(start, len(node.transcript)):
        if node.transcript[index].get("event") == name:
            return index, node.transcript[index]
    return None


def start_params(node: NodeOutcome) -> dict[str, Any]:
    found = first(node, "start")
    params = found[1].get("params") if found else None
    return params if isinstance(params, dict) else {}


def where(node: NodeOutcome) -> str:
    """'client-1 -> 10.0.1.10:9999 (server:9999)': the node, its peer, and the peer as written."""
    found = first(node, "connecting") or first(node, "connected")
    event = found[1] if found else {}
    params = start_params(node)
    peer = event.get("peer") or (f"{params['host']}:{params['port']}" if "host" in params else "")
    target = event.get("target") or params.get("target") or params.get("host_header") or ""
    if not peer:
        return node.name
    return f"{node.name} -> {peer}" + (f" ({target})" if target and target != peer else "")


def received_bytes(node: NodeOutcome, start: int = 0, stop: int | None = None) -> bytes:
    window = node.transcript[start:stop]
    return b"".join(event_bytes(event) for event in window if event.get("event") == "received")


def ending(node: NodeOutcome, last_sent: str | None, start: int = 0) -> str:
    """Why the conversation ended without what was expected: an error, the peer closing, or nothing."""
    error = first(node, "error", start)
    if error:
        return error_phrase(error[1], last_sent)
    closed = first(node, "closed", start)
    prefix = f"sent {quote(last_sent)}: " if last_sent is not None else ""
    if closed and closed[1].get("by") == "peer":
        return prefix + "connection closed by the peer" + (" without a reply" if prefix else "")
    if not node.transcript:
        return "no transcript (this check needs a built-in client role)"
    return prefix + "no reply"


def connection_failure(node: NodeOutcome) -> str | None:
    """Why a client never connected, or None if it did."""
    if first(node, "connected"):
        return None
    error = first(node, "error")
    if error:
        return error_phrase(error[1], None)
    if not node.transcript:
        return "no transcript (this check needs a built-in client role)"
    return "never connected"


# ----------------------------------------------------------------------------- per-node checks


def echo(node: NodeOutcome, params: Mapping[str, Any]) -> Finding:
    """Every line sent came back unchanged, byte for byte, as the reply to that line.

    The reply to a line is what the client received after sending it (before its next line), up to
    as many line ends as the line had: bytes before it (a greeting, a `> ` prompt) and after it (the
    next prompt) are not the reply. Lines end in LF; CRLF is accepted as the same line end."""
    here = where(node)
    failure = connection_failure(node)
    if failure:
        return False, f"{here}: {failure}"
    sends = [(i, event_bytes(e)) for i, e in enumerate(node.transcript) if e.get("event") == "sent"]
    if not sends:
        error = first(node, "error")
        return False, f"{here}: sent nothing" + (f" ({error_phrase(error[1], None)})" if error else "")
    for k, (index, data) in enumerate(sends):
        stop = sends[k + 1][0] if k + 1 < len(sends) else None
        segment = received_bytes(node, index + 1, stop)
        reply = through_line_ends(segment, max(1, data.count(b"\n")))
        if reply is None:
            return False, f"{here}: {echo_miss(node, index, data, segment)}"
        if lines_of(reply) != lines_of(data):
            return False, f"{here}: {difference(data, reply)}"
    expected = start_params(node).get("send")
    if isinstance(expected, list) and len(sends) < len(expected):
        why = ending(node, None, sends[-1][0])
        return False, f"{here}: sent only {len(sends)} of {len(expected)} lines ({why})"
    return True, f"{here}: {len(sends)}/{len(sends)} lines echoed"


def echo_miss(node: NodeOutcome, index: int, sent: bytes, segment: bytes) -> str:
    """What came back for the sent line at transcript `index` when no whole reply line did."""
    line = without_eol(sent).decode("utf-8", errors="surrogateescape")
    if not segment:
        return ending(node, line, index)
    error = first(node, "error", index)
    if error and error[1].get("kind") == "timeout":
        why = seconds(error[1].get("timeout"))
    else:
        why = f"; {error_phrase(error[1], None)}" if error else ""
    return f"sent {quote(line)}, got {escape(segment)} (no end of line{why})"


def greeting(node: NodeOutcome, params: Mapping[str, Any]) -> Finding:
    """The text arrived somewhere in what the client received."""
    here, text = where(node), str(params["text"])
    failure = connection_failure(node)
    if failure:
        return False, f"{here}: {failure}"
    received = received_bytes(node)
    if text.encode("utf-8") in received:
        return True, f"{here}: got {quote(text)}"
    if received:
        return False, f"{here}: expected {quote(text)}, got {escape(without_eol(received))}"
    return False, f"{here}: expected {quote(text)}, got nothing: {ending(node, None)}"


def http(node: NodeOutcome, params: Mapping[str, Any]) -> Finding:
    """The last response has the expected status, and its body contains the text if one is given."""
    here = where(node)
    found = first(node, "connecting")
    path = (found[1].get("path") if found else None) or start_params(node).get("path") or "/"
    request = f"{here}: GET {path}"
    responses = events(node, "response")
    if not responses:
        return False, f"{request}: {connection_failure(node) or no_response(node)}"
    response = responses[-1]
    status, reason, body = response.get("status"), response.get("reason", ""), str(response.get("body", ""))
    if status != params.get("status", 200):
        return False, f"{request}: status {status} {reason}, expected {params.get('status', 200)}"
    wanted = params.get("body_contains")
    if wanted is not None and str(wanted) not in body:
        return False, f"{request}: body does not contain {quote(str(wanted))} (body: {quote(body)})"
    return True, f"{request}: {status} {reason}" + (f", body contains {quote(str(wanted))}" if wanted else "")


def no_response(node: NodeOutcome) -> str:
    """Why an http-get client has no response. The role's own words when it judged the bytes (cut
    short, not HTTP): they already name what was missing, "error during response" would only pad them."""
    error = first(node, "error")
    if error:
        if error[1].get("kind") == "other" and error[1].get("during") == "response" and error[1].get("message"):
            return str(error[1]["message"])
        return error_phrase(error[1], None)
    raw = text_of(received_bytes(node))
    return f"not an HTTP response: {quote(raw)}" if raw else "no response (connection closed without data)"


def exit_status(node: NodeOutcome, params: Mapping[str, Any]) -> Finding:
    """The node exited on its own with the expected code."""
    code = params.get("code", 0)
    if node.exit_code is not None:
        if node.exit_code == code:
            return True, f"exited with code {code}"
        return False, f"exited with {exit_words(node.exit_code)}, expected {code} ({last_lines(node.log, 1)})"
    if node.stopped_by_lab:
        return False, "still running when the lab stopped it"
    return False, "exit code unknown"


def output(node: NodeOutcome, params: Mapping[str, Any]) -> Finding:
    """The node's stdout+stderr contains a text, or matches a regular expression."""
    if "regex" in params and params["regex"] is not None:
        pattern = str(params["regex"])
        try:
            match = re.search(pattern, node.log, re.MULTILINE)
        except re.error as exc:
            return False, f"invalid regex {quote(pattern)}: {exc}"
        if match:
            return True, f"output matches {quote(pattern)}: {quote(match.group(0))}"
        return False, f"output does not match {quote(pattern)} ({last_lines(node.log, 3)})"
    wanted = str(params.get("contains", ""))
    if wanted in node.log:
        return True, f"output contains {quote(wanted)}"
    return False, f"output does not contain {quote(wanted)} ({last_lines(node.log, 3)})"


# ----------------------------------------------------------------------------- concurrent


def answered_interval(node: NodeOutcome) -> tuple[float, float] | None:
    """When the client was connected and answered: from its `answered` event (taken after the recv
    that completed its first reply) to its `closing` (taken before close()), an error, or its end.
    A connection the server closed counts only up to the last bytes the client received on it.

    Stamped by another host's clock, the interval is shrunk by that clock's uncertainty at both ends:
    it then claims no moment the node was not surely connected and answered.

    None when the node never connected or was never answered. (Transcripts without `answered`
    events count from the first bytes received after connecting.)"""
    connected = first(node, "connected")
    if not connected:
        return None
    answer = first(node, "answered", connected[0]) or first(node, "received", connected[0])
    if not answer:
        return None
    begin, end = stamped_interval(node, answer)
    u = node.clock_uncertainty
    return begin + u, end - u


def stamped_interval(node: NodeOutcome, answer: tuple[int, dict[str, Any]]) -> tuple[float, float]:
    """The answered interval as the node's own clock stamped it (see `answered_interval`)."""
    begin = float(answer[1].get("t", 0.0))
    after = node.transcript[answer[0] + 1 :]
    by_peer = any(e.get("event") == "closed" and e.get("by") == "peer" for e in after)
    last = begin
    for event in after:
        kind = event.get("event")
        if kind in ("closing", "closed", "error", "end"):
            return begin, last if by_peer else float(event.get("t", begin))
        if kind == "received":
            last = float(event.get("t", last))
    return begin, max(begin, float(node.transcript[-1].get("t", begin)))


def concurrent(params: Mapping[str, Any], nodes: Sequence[NodeOutcome]) -> list[Finding]:
    """For each node: at some moment of its answered interval, >= at_least intervals (its own
    included) were open. Serving clients one at a time therefore fails it."""
    need = int(params.get("at_least", 2))
    intervals = {node.name: answered_interval(node) for node in nodes if node.started}
    known = {name: iv for name, iv in intervals.items() if iv is not None and iv[0] <= iv[1]}
    starts = sorted(begin for begin, _ in known.values())
    ends = sorted(end for _, end in known.values())

    def open_at(moment: float) -> int:
        return bisect_right(starts, moment) - bisect_left(ends, moment)

    findings: list[Finding] = []
    for node in nodes:
        interval = known.get(node.name)
        if interval is None and intervals.get(node.name) is not None:  # shrunk to nothing by the clocks
            findings.append((False, f"{where(node)}: answered for less than its clock's uncertainty "
                                    f"({2 * node.clock_uncertainty * 1000:.0f} ms): no moment is sure"))
            continue
        if not node.started or interval is None:
            findings.append(not_run(node) or (False, f"{where(node)}: never answered: {unanswered(node)}"))
            continue
        begin, end = interval
        best = max(open_at(moment) for moment in starts if begin <= moment <= end)
        if best >= need:
            findings.append((True, f"{best} clients connected and answered at once (need {need})"))
        else:
            why = overlap_evidence(node.name, known, nodes, need)
            detail = f"at most {best} client(s) connected and answered at once (need {need}){why}"
            findings.append((False, detail))
    return findings


def unanswered(node: NodeOutcome) -> str:
    failure = connection_failure(node)
    if failure:
        return failure
    sent = events(node, "sent")
    return ending(node, strip_eol(text_of(event_bytes(sent[0]))) if sent else None)


def overlap_evidence(
    name: str, known: Mapping[str, tuple[float, float]], nodes: Sequence[NodeOutcome], need: int
) -> str:
    """Best-effort why: a client missing its answer, or one served only after another closed."""
    if len(nodes) < need:
        return f"; the check covers only {len(nodes)} node(s)"
    missing = [node.name for node in nodes if node.name not in known]
    if len(known) < need and missing:
        return f"; {len(missing)} client(s) never answered ({', '.join(missing[:3])})"
    begin, end = known[name]
    before = [(other_end, other) for other, (_, other_end) in known.items() if other_end < begin]
    if before:
        return f"; {name} was answered only after {max(before)[1]} closed"
    after = [(other_begin, other) for other, (other_begin, _) in known.items() if other_begin > end]
    if after:
        return f"; {min(after)[1]} was answered only after {name} closed"
    return ""


# ----------------------------------------------------------------------------- the judges

Judge = Callable[[Mapping[str, Any], Sequence[NodeOutcome]], list[Finding]]


def each(check: Callable[[NodeOutcome, Mapping[str, Any]], Finding]) -> Judge:
    """A judge from a check of one node at a time; a node that did not run fails with why."""
    return lambda params, nodes: [not_run(node) or check(node, params) for node in nodes]


# How each check of the catalogue (lab/scenario/checks.py) is judged: the same names, kept equal by
# tests/unit/test_catalogue.py.
JUDGES: dict[str, Judge] = {
    "echo": each(echo),
    "greeting": each(greeting),
    "http": each(http),
    "concurrent": concurrent,
    "exit": each(exit_status),
    "output": each(output),
}
