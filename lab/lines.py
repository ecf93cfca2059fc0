"""Lines and bytes as the checks speak of them: where a reply ends, and how bytes are shown.

Line protocols end a line with LF, CRLF being the same line end; nothing else ends a line (not the
`\\v`, `\\f`, `\\x1c`, `\\x85` or `\\u2028` that `str.splitlines` breaks on). Bytes are shown in an
escaped form where two different byte strings never look alike, so a failure never shows two
identical strings. Pure functions, no I/O.
"""

from __future__ import annotations

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
