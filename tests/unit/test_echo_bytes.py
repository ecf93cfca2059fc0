"""The echo check on bytes: every byte value, every separator `str.splitlines` knows, prompts and
greetings around replies, writes split inside a UTF-8 character. Transcripts are built with the
roles' own encoder, as a client records them."""

from __future__ import annotations

from typing import Any

import pytest

from lab.checks import evaluate
from lab.lines import escape
from lab.outcome import NodeOutcome
from lab.roles.common import encode_bytes

WHERE = "client-1 -> 10.0.1.10:9999 (server:9999)"
SPLITLINES = ["\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


def transcript(*steps: tuple[str, bytes], send: list[str] | None = None) -> list[dict[str, Any]]:
    """("sent"|"received", bytes) steps after a connection, one event each, a second apart."""
    params = {"host": "10.0.1.10", "port": 9999, "target": "server:9999", "send": send or [], "timeout": 5.0}
    events: list[dict[str, Any]] = [
        {"t": 0.0, "event": "start", "role": "telnet-client", "params": params},
        {"t": 0.1, "event": "connecting", "conn": 1, "peer": "10.0.1.10:9999", "target": "server:9999"},
        {"t": 0.2, "event": "connected", "conn": 1, "peer": "10.0.1.10:9999", "target": "server:9999"},
    ]
    for k, (kind, data) in enumerate(steps):
        events.append({"t": 1.0 + k, "event": kind, "conn": 1, **encode_bytes(data)})
    events.append({"t": 99.0, "event": "closed", "conn": 1, "by": "self"})
    return events


def echo(events: list[dict[str, Any]]) -> tuple[bool, str]:
    [result] = evaluate("echo", {}, [NodeOutcome("client-1", True, 0, False, "", events, "")])
    assert "\n" not in result.detail
    return result.passed, result.detail


def roundtrip(line: bytes, reply: bytes | None = None) -> tuple[bool, str]:
    return echo(transcript(("sent", line + b"\r\n"), ("received", line + b"\r\n" if reply is None else reply)))


@pytest.mark.parametrize("byte", [b for b in range(256) if b != 0x0A])
def test_every_byte_value_in_a_line_is_echoed_exactly(byte: int) -> None:
    line = b"a" + bytes([byte]) + b"z"
    assert roundtrip(line) == (True, f"{WHERE}: 1/1 lines echoed")
    changed = b"a" + bytes([byte ^ 0x01 if byte ^ 0x01 != 0x0A else 0x0C]) + b"z"
    passed, detail = roundtrip(line, changed + b"\r\n")
    assert not passed and detail.endswith("(first difference at byte 1)"), detail


@pytest.mark.parametrize("separator", SPLITLINES)
def test_splitlines_separators_are_not_line_ends(separator: str) -> None:
    line = f"vt{separator}ff{separator}end".encode()
    assert roundtrip(line)[0]
    passed, detail = roundtrip(line, line.replace(separator.encode(), b"\x0c") + b"\r\n")
    if separator != "\f":
        sent_part, got_part = detail.split(": sent ", 1)[1].split(", got ")
        assert not passed and sent_part != got_part.split(" (first")[0], detail  # never two look-alikes


def test_a_mismatch_names_the_offset_and_shows_both_sides_escaped() -> None:
    passed, detail = roundtrip(b"vt\x0bff\x0cend", b"vt\x0bff\x0bend\r\n")
    assert not passed
    assert detail == f"{WHERE}: sent 'vt\\x0bff\\x0cend', got 'vt\\x0bff\\x0bend' (first difference at byte 5)"


def test_lf_alone_is_accepted_as_the_line_end_and_a_stray_cr_is_not() -> None:
    assert roundtrip(b"hello", b"hello\n")[0]
    passed, detail = roundtrip(b"hello", b"hello\r\r\n")
    assert not passed and "got 'hello\\r'" in detail


def test_greeting_and_prompts_around_replies_are_not_part_of_them() -> None:
    events = transcript(
        ("received", b"Welcome to the echo server\r\n"), ("received", b"> "),
        ("sent", b"hello\r\n"), ("received", b"hello\r\n> "),
        ("sent", b"second\r\n"), ("received", b"sec"), ("received", b"ond\r\n"), ("received", b"> "),
        send=["hello", "second"],
    )
    assert echo(events) == (True, f"{WHERE}: 2/2 lines echoed")


def test_a_prompt_that_arrives_after_the_send_is_part_of_the_reply() -> None:
    # The client waits until the server is quiet before each line, so a real prompt comes before.
    events = transcript(("sent", b"hello\r\n"), ("received", b"> hello\r\n"))
    passed, detail = echo(events)
    assert not passed and detail.endswith("got '> hello' (first difference at byte 0)")


def test_extra_lines_before_the_echo_fail() -> None:
    events = transcript(("sent", b"hello\r\n"), ("received", b"You said:\r\nhello\r\n"))
    passed, detail = echo(events)
    assert not passed and "got 'You said:'" in detail


def test_writes_split_inside_a_utf8_character() -> None:
    line = "héllo wörld ☃".encode()
    cut = line.index("☃".encode()) + 1
    events = transcript(("sent", line + b"\r\n"), ("received", line[:2]), ("received", line[2:cut]),
                        ("received", line[cut:] + b"\r\n"))
    assert echo(events)[0]


def test_multi_line_send_waits_for_as_many_line_ends() -> None:
    events = transcript(("sent", b"a\r\nb\r\n"), ("received", b"a\r\n"), ("received", b"b\r\n> "))
    assert echo(events)[0]
    events = transcript(("sent", b"a\r\nb\r\n"), ("received", b"a\r\n"))
    passed, detail = echo(events)
    assert not passed and "(no end of line)" in detail


def test_a_reply_without_line_end_is_named() -> None:
    events = transcript(("sent", b"hello\r\n"), ("received", b"hello"))
    assert echo(events) == (False, f"{WHERE}: sent 'hello', got 'hello' (no end of line)")


def test_escape_never_shows_two_byte_strings_alike() -> None:
    samples = [bytes([b]) for b in range(256)] + [ch.encode() for ch in SPLITLINES + ["\\x85", "'", "\\"]]
    shown = [escape(s) for s in samples]
    assert len(set(shown)) == len(set(samples))
