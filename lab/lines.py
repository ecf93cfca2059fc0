"""Lines and bytes as the checks speak of them: where a reply ends, how bytes are shown, and the
words of a verdict (an error event, the last lines of a log, a detail kept to one line).

Line protocols end a line with LF, CRLF being the same line end; nothing else ends a line (not the
`\\v`, `\\f`, `\\x1c`, `\\x85` or `\\u2028` that `str.splitlines` breaks on). Bytes are shown in an
escaped form where two different byte strings never look alike, so a failure never shows two
identical strings. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

QUOTE_LIMIT = 60


def quote(text: str) -> str:
    """Quoted like `escape` (repr-like, unambiguous), cut to ~60 characters so a detail stays one line."""
    return escape(text.encode("utf-8", errors="surrogateescape"))


ESCAPES = {"\\": "\\\\", "'": "\\'", "\r": "\\r", "\n": "\\n", "\t": "\\t"}


def escape(data: bytes, limit: int = QUOTE_LIMIT) -> str:
    """Bytes in quotes, each shown one way only: printable text as itself, control characters as
    \\xNN (ASCII) or \\uNNNN (other code points), and bytes that are not UTF-8 as \\xNN. So two
    different byte strings never look alike (what a str repr of decoded text cannot promise)."""
    text = data.decode("utf-8", errors="surrogateescape")
    cut = len(text) > limit
    out = []
    for ch in text[:limit]:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not part of valid UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch in ESCAPES:
            out.append(ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        else:
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return "'" + "".join(out) + "'" + ("..." if cut else "")


def through_line_ends(data: bytes, count: int) -> bytes | None:
    """`data` up to and including its `count`-th LF; None when fewer arrived."""
    end = -1
    for _ in range(count):
        end = data.find(b"\n", end + 1)
        if end < 0:
            return None
    return data[: end + 1]


def lines_of(data: bytes) -> list[bytes]:
    """The lines of `data` without their line ends (LF, or CRLF: one CR before the LF)."""
    return [line.removesuffix(b"\r") for line in data.removesuffix(b"\n").split(b"\n")]


def without_eol(data: bytes) -> bytes:
    return b"\n".join(lines_of(data))


def difference(sent: bytes, reply: bytes) -> str:
    """`sent 'a\\x0bb', got 'a\\x0cb' (first difference at byte 1)`, around that byte when long."""
    mine, theirs = without_eol(sent), without_eol(reply)
    at = next((k for k, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b), min(len(mine), len(theirs)))
    start = max(0, at - QUOTE_LIMIT // 2) if at >= QUOTE_LIMIT else 0
    lead = "..." if start else ""
    return (f"sent {lead}{escape(mine[start:])}, got {lead}{escape(theirs[start:])} "
            f"(first difference at byte {at})")


def one_line(text: str) -> str:
    return " ".join(text.splitlines())


def strip_eol(text: str) -> str:
    """A line as the user typed it: without the final CRLF (or LF)."""
    return text.removesuffix("\n").removesuffix("\r")


def seconds(value: Any) -> str:
    return f" within {float(value)}s" if isinstance(value, int | float) else ""


def text_of(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def last_lines(log: str, count: int) -> str:
    lines = [line for line in log.splitlines() if line.strip()][-count:]
    if not lines:
        return "no output"
    label = "last log line" if count == 1 else "last lines"
    return f"{label}: {quote(chr(10).join(lines))}"


def error_phrase(error: Mapping[str, Any], last_sent: str | None) -> str:
    """An `error` event in words: refused / reset / timeout / unreachable, with what was sent."""
    kind, during, message = error.get("kind"), error.get("during"), error.get("message", "")
    if kind == "refused":
        return "connection refused"
    if kind == "unreachable":
        return f"unreachable ({message})"
    if kind == "timeout":
        if during == "connect":
            return f"connect: no answer{seconds(error.get('timeout'))} (timeout)"
        if during == "greeting":
            return f"no greeting{seconds(error.get('timeout'))} (timeout)"
        if during == "reply" and last_sent is not None:
            return f"sent {quote(last_sent)}: no reply{seconds(error.get('timeout'))} (timeout)"
        return f"{message or 'no reply'} (timeout)"
    if kind == "reset":
        if last_sent is not None:
            return f"connection reset after sending {quote(last_sent)}"
        return f"connection reset during {during}"
    return f"error during {during}: {message}"
