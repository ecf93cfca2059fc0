"""The `expect:` checks: pure functions from what nodes recorded to one result per node (`JUDGES`,
at the end; the checks themselves are declared in lab/scenario/checks.py).

No I/O and no backend knowledge: lab/outcome.py collects each node's outcome (transcript events,
log text, exit status) and hands them here, which keeps every branch testable on literal data.
A failing result says why in one line, with evidence: the node and its peer, what was sent and
what came back (or that the connection was refused, reset, or timed out). A client's connections
are read back by lab/roles/readback.py; a moment is said from the node's start (`+2.31s`), as reports show it.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lab import recovery
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
from lab.roles import readback
from lab.roles.common import event_bytes
from lab.roles.reconnect import spent
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
    """Why the conversation ended without what was expected: an error, a loss, the peer closing, or nothing."""
    error, lost = first(node, "error", start), first(node, "lost", start)
    if lost and (not error or lost[0] < error[0]):
        return (f"sent {quote(last_sent)}: " if last_sent is not None else "") + lost_for_good(node, lost)
    if error:
        return error_phrase(error[1], last_sent)
    closed = first(node, "closed", start)
    prefix = f"sent {quote(last_sent)}: " if last_sent is not None else ""
    if closed and closed[1].get("by") == "peer":
        return prefix + "connection closed by the peer" + (" without a reply" if prefix else "")
    if not node.transcript:
        return "no transcript (this check needs a built-in client role)"
    return prefix + "no reply"


def lost_for_good(node: NodeOutcome, lost: tuple[int, dict[str, Any]]) -> str:
    """`connection lost (reset)`, and that it never came back when it did not."""
    words = f"connection lost ({lost[1].get('message') or lost[1].get('why')})"
    if first(node, "connected", lost[0]):
        return words
    gave = readback.gave_up(node.transcript, lost[0])
    return f"{words}, never reconnected" + (f" {spent(gave)}" if gave else "")


def connection_failure(node: NodeOutcome) -> str | None:
    """Why a client never connected, or None if it did."""
    if first(node, "connected"):
        return None
    error = first(node, "error")
    if error and error[1].get("gave_up"):
        return f"never connected {spent(error[1])}"
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
    next prompt) are not the reply. Lines end in LF; CRLF is accepted as the same line end. A server
    that closes a reconnecting client's connection before any fault fired fails (lab/recovery.py)."""
    here = where(node)
    failure = connection_failure(node) or recovery.closed_by_server(node)  # its server hung up unprovoked
    if failure:
        return False, f"{here}: {failure}"
    sends = readback.line_sends(node.transcript)  # a line sent again after a loss: its last attempt
    if not sends:
        error = first(node, "error")
        return False, f"{here}: sent nothing" + (f" ({error_phrase(error[1], None)})" if error else "")
    for index in sends:
        data = event_bytes(node.transcript[index])
        segment = readback.reply_to(node.transcript, index)
        reply = through_line_ends(segment, max(1, data.count(b"\n")))
        if reply is None:
            return False, f"{here}: {echo_miss(node, index, data, segment)}"
        if lines_of(reply) != lines_of(data):
            return False, f"{here}: {difference(data, reply)}"
    expected = start_params(node).get("send")
    if isinstance(expected, list) and len(sends) < len(expected):
        why = ending(node, None, sends[-1])
        return False, f"{here}: sent only {len(sends)} of {len(expected)} lines ({why})"
    return True, f"{here}: {len(sends)}/{len(sends)} lines echoed"


def echo_miss(node: NodeOutcome, index: int, sent: bytes, segment: bytes) -> str:
    """What came back for the sent line at transcript `index` when no whole reply line did."""
    line = without_eol(sent).decode("utf-8", errors="surrogateescape")
    if not segment:
        return ending(node, line, index)
    error, lost = first(node, "error", index), first(node, "lost", index)
    if lost and (not error or lost[0] < error[0]):
        why = f"; {lost_for_good(node, lost)}"
    elif error and error[1].get("kind") == "timeout":
        why = seconds(error[1].get("timeout"))
    else:
        why = f"; {error_phrase(error[1], None)}" if error else ""
    return f"sent {quote(line)}, got {escape(segment)} (no end of line{why})"


def greeting(node: NodeOutcome, params: Mapping[str, Any]) -> Finding:
    """The text arrived somewhere in what the client received on one connection."""
    here, text = where(node), str(params["text"])
    failure = connection_failure(node)
    if failure:
        return False, f"{here}: {failure}"
    received = received_bytes(node)
    if any(text.encode("utf-8") in got for got in readback.received_by_conn(node.transcript).values()):
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
        kept = f", its first {response['body_kept']} bytes" if "body_kept" in response else ""  # a long one
        return False, f"{request}: body does not contain {quote(str(wanted))} (body{kept}: {quote(body)})"
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


def answered_intervals(node: NodeOutcome) -> list[tuple[float, float]]:
    """When the client was connected and answered, one interval per connection (see
    readback.answered_spans: from its first reply to its `closing`, or the last bytes of a
    connection the server closed). Stamped by another host's clock, each is shrunk by that clock's
    uncertainty at both ends: it then claims no moment the node was not surely connected and answered."""
    u = node.clock_uncertainty
    return [(begin + u, end - u) for begin, end in readback.answered_spans(node.transcript)]


def concurrent(params: Mapping[str, Any], nodes: Sequence[NodeOutcome]) -> list[Finding]:
    """For each node: at some moment of its answered intervals, >= at_least intervals (its own
    included) were open. Serving clients one at a time therefore fails it. (A client's connections
    follow one another: its intervals never overlap, so open intervals count clients.)"""
    need = int(params.get("at_least", 2))
    intervals = {node.name: answered_intervals(node) for node in nodes if node.started}
    spans = {name: [iv for iv in ivs if iv[0] <= iv[1]] for name, ivs in intervals.items()}
    known = {name: (ivs[0][0], ivs[-1][1]) for name, ivs in spans.items() if ivs}  # from first to last
    starts = sorted(begin for ivs in spans.values() for begin, _ in ivs)
    ends = sorted(end for ivs in spans.values() for _, end in ivs)

    def open_at(at: float) -> int:
        return bisect_right(starts, at) - bisect_left(ends, at)

    findings: list[Finding] = []
    for node in nodes:
        interval = known.get(node.name)
        if interval is None and intervals.get(node.name):  # shrunk to nothing by the clocks
            findings.append((False, f"{where(node)}: answered for less than its clock's uncertainty "
                                    f"({2 * node.clock_uncertainty * 1000:.0f} ms): no moment is sure"))
            continue
        if not node.started or interval is None:
            findings.append(not_run(node) or (False, f"{where(node)}: never answered: {unanswered(node)}"))
            continue
        best = max(open_at(at) for at in starts for begin, end in spans[node.name] if begin <= at <= end)
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


# ----------------------------------------------------------------------------- faults


def recovers(node: NodeOutcome, params: Mapping[str, Any]) -> Finding:
    """The client lost its connection after it had worked and, on a later connection, got a reply
    to each line still to send (as many line ends as the line had: `echo` judges the bytes)."""
    here, tr = where(node), node.transcript
    failure = connection_failure(node) or recovery.not_recovered(node)  # a loss before any fault: the server's
    if failure:
        return False, f"{here}: {failure}"
    lost = readback.losses(tr)
    if not lost and not start_params(node).get("reconnect"):
        broke = first(node, "error") or any(e.get("by") == "peer" for e in events(node, "closed"))
        return False, f"{here}: does not reconnect (its `reconnect:` is 0)" + (f"; {ending(node, None)}" * bool(broke))
    if not lost:
        return False, f"{here}: never lost its connection ({recovery.untouched(node)})"
    event = tr[lost[-1]]
    what = f"lost its connection {f'{len(lost)} times, the last ' * (len(lost) > 1)}at " \
           f"+{readback.since_start(tr, event):.2f}s ({event.get('message') or event.get('why')})"
    back = first(node, "connected", lost[-1])
    if back is None:
        gave = readback.gave_up(tr, lost[-1])
        return False, f"{here}: {what} and " + (f"never reconnected {spent(gave)}" if gave
                                               else "had not reconnected when it ended")
    again = f"reconnected at +{readback.since_start(tr, back[1]):.2f}s (conn {back[1].get('conn')})"
    lines = [str(line) for line in start_params(node).get("send") or []]
    left = range(int(event.get("line", 0)), len(lines))
    missing = readback.first_unanswered(tr, back[0], left)
    if missing is not None:
        line, attempt = missing
        why = ending(node, None, back[0] if attempt is None else attempt)  # "no reply": nothing more to say
        return False, (f"{here}: {what}, {again} but {quote(lines[line])} " + ("was never sent after that" if
                       attempt is None else "got no reply") + (f" ({why})" if why != "no reply" else ""))
    if not left and not received_bytes(node, back[0]):
        return False, f"{here}: {what}, {again} but received nothing on it"
    return True, f"{here}: {what}, {again} and got a reply to each of the {len(left)} line(s) left"


def rate(node: NodeOutcome, params: Mapping[str, Any]) -> Finding:
    """The goodput over the window: the bytes that arrived in it, per second; the window counts from the
    client's first received byte, which no slow start of the lab, the server or the connection can move."""
    here, wanted, within = where(node), float(params["rate"]), float(params.get("within", 20.0))
    low, high = (float(x) for x in params["window"])
    span = [secs(x) for x in (low, high)]
    found = readback.arrivals(node.transcript)
    if not found:
        return False, f"{here}: received nothing ({connection_failure(node) or no_response(node)})"
    zero, last = found[0][0], found[-1][0]
    if last - zero < high:
        error = first(node, "error")
        why = f" ({error_phrase(error[1], None)})" if error else " (the whole response had come: serve a bigger page)"
        return False, (f"{here}: the transfer ended at {secs(last - zero)}s, before the window's end "
                       f"{span[1]}s (seconds from its first byte){why}")
    got = readback.goodput(found, zero + low, zero + high)
    passed = abs(8 * got - wanted) <= wanted * within / 100
    return passed, (f"{here}: got {per_s(got, BYTES, got)} ({per_s(8 * got, BITS, wanted)}) over {span[0]}-"
                    f"{span[1]}s from its first byte; expected {per_s(wanted, BITS, wanted)} +-{within:g}%")


BITS = ((1e10, 1e9, "Gbit/s"), (1e7, 1e6, "Mbit/s"), (0.0, 1e3, "kbit/s"))  # (from, per unit, unit)
BYTES = ((1e6, 1e6, "MB/s"), (0.0, 1e3, "kB/s"))


def secs(x: float) -> str:
    """Seconds shown to the tenth, or to the hundredth when that says more: 1.0, 3.2, 0.25, 5.98."""
    return f"{x:.1f}" if round(x, 1) == round(x, 2) else f"{x:.2f}"


def per_s(value: float, units: tuple[tuple[float, float, str], ...], scale: float) -> str:
    """`value` (per second) in the first unit whose threshold `scale` reaches: 998.4 kbit/s, 124.8 kB/s."""
    _, factor, unit = next(u for u in units if scale >= u[0])
    shown = value / factor
    return f"{shown:.0f} {unit}" if shown >= 1000 else f"{shown:.1f} {unit}" if shown >= 10 else f"{shown:.2f} {unit}"


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
    "recovers": each(recovers),
    "rate": each(rate),
}
