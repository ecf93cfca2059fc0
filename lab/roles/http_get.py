"""http-get: one `GET path HTTP/1.1` over a raw socket, as in the socket tutorial.

A raw socket rather than http.client's connection so that the transcript holds the exact bytes that
crossed, and a broken server's answer is still recorded even when it is not valid HTTP. The recorded
bytes are then parsed by http.client's own response parser (fed through a stand-in socket), so chunked
bodies, bare-LF headers and close-delimited bodies are read the way real clients read them.

A long response (a generated page pulled through a shaped link, for the `rate` check) is read to
its end whatever its size: its first DATA_LIMIT bytes are kept, recorded and parsed; past them only
their sizes are, with their times (`Incoming`), so the goodput stays measurable to the end while the
transcript and the role's memory stay bounded.
"""

from __future__ import annotations

import encodings.idna  # noqa: F401 - a first name lookup imports it: once, before the lab forks its nodes
import http.client
import io
import socket
import time
from dataclasses import dataclass, replace

from lab.roles.common import DATA_LIMIT, Transcript, announce_ready, describe, peer_text, preview, say

TYPE_CHECKING = False  # not typing's: importing typing costs a node ~10 ms at each start
if TYPE_CHECKING:
    from typing import Any

CONN = 1
RECV_SIZE = 65536
NO_BODY_STATUSES = (204, 304)
SWITCHING_PROTOCOLS = 101
HEAD_CUT = "headers cut short: no blank line after them"
INTERIM_ONLY = "only an interim 1xx response, no final one"
CHUNKED_CUT = "chunked body ended before its last chunk"
TRAILER_CUT = "chunked body ended before the blank line after its last chunk"
NEVER_CLOSED = "a body without Content-Length or chunked framing, and the server did not close the connection"
SIZES_EVERY = 0.01  # s: past the data limit, arrivals closer together than this are one `received` event


def main(params: dict[str, Any], transcript: Transcript) -> int:
    """GET params path from host:port. Exit 0 when a whole response (head and framed body) arrived."""
    host, port, path = str(params["host"]), int(params["port"]), str(params.get("path") or "/")
    host_header = str(params.get("host_header") or f"{host}:{port}")
    timeout = float(params.get("timeout", 5.0))
    peer = f"{host}:{port}"
    url = str(params.get("url") or f"http://{host_header}{path}")
    announce_ready(transcript.role, f"fetching {url}")
    transcript.event("connecting", conn=CONN, peer=peer, target=host_header, url=url, path=path)
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        transcript.error(exc, during="connect", conn=CONN, peer=peer, target=host_header, timeout=timeout)
        say(f"error: cannot connect to {peer} ({host_header}): {describe(exc)}")
        return 1
    local = peer_text(sock.getsockname())
    transcript.event("connected", conn=CONN, peer=peer, local=local, target=host_header)
    incoming = Incoming(transcript)
    with sock:
        raw, by, failure = exchange(sock, request_bytes(path, host_header), deadline, timeout, transcript, incoming)
    transcript.event("closed", conn=CONN, by=by)
    return report(transcript, url, raw, failure, incoming)


def report(transcript: Transcript, url: str, raw: bytes, failure: str | None, incoming: Incoming | None = None) -> int:
    """Record the response, or why there is none. An error the exchange already recorded (a timeout,
    a reset) is not recorded twice: the first error is the one the `http` check explains. A response
    longer than what was kept (`incoming`) is judged on its framing's count: its body as kept, its
    size as it came."""
    if not raw:
        say(f"no HTTP response from {url}")
        return 1
    parsed = parse(raw)
    extra: dict[str, Any] = {}
    if parsed is not None and incoming is not None and incoming.cut:
        if incoming.end is not None and incoming.total >= incoming.end:
            parsed = replace(parsed, missing=None)  # whole: only its end was not kept
        head = len(raw) - len(parsed.body)
        whole = min(incoming.total, incoming.end) if incoming.end is not None else incoming.total
        extra = {"body_bytes": whole - head, "body_kept": len(parsed.body)}
    problem = why_not_whole(parsed, raw, failure)
    if parsed is not None and problem is None:
        transcript.event("response", conn=CONN, **{**parsed.event(), **extra})
        say(f"{parsed.version} {parsed.status} {parsed.reason}")
        say(parsed.text)
        return 0
    if failure is None:
        transcript.event("error", conn=CONN, kind="other", during="response", message=problem)
    say(f"no HTTP response from {url}: {problem}")
    return 1


def why_not_whole(parsed: Parsed | None, raw: bytes, failure: str | None) -> str | None:
    """Why these bytes are not a response to report (None: they are one). A close-delimited body is
    whole only when the peer ended it (EOF, or a reset from a server that closed without reading)."""
    if parsed is None:
        return f"not an HTTP response: {preview(raw[:200])}"
    if parsed.missing is not None:
        return parsed.missing
    if parsed.framing == "close" and failure not in (None, "reset"):
        return NEVER_CLOSED
    return None


def request_bytes(path: str, host_header: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n".encode()


def exchange(
    sock: socket.socket, request: bytes, deadline: float, timeout: float, transcript: Transcript,
    incoming: Incoming | None = None,
) -> tuple[bytes, str, str | None]:
    """Send the request and read the answer until it is complete (see `Incoming.whole`), EOF, or the
    deadline, into `incoming`. Returns the bytes kept, who closed ("peer" at EOF or reset) and the
    kind of the error recorded on the way (None when there was none)."""
    incoming, phase = incoming or Incoming(transcript), "send"
    try:
        sock.sendall(request)
        transcript.data("sent", request, conn=CONN)
        phase = "response"
        while not incoming.whole():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete response within {timeout}s")
            sock.settimeout(remaining)
            chunk = sock.recv(RECV_SIZE)
            if not chunk:
                return bytes(incoming.kept), "peer", None
            incoming.add(chunk)
            if incoming.flood():  # not a page whose end can be found: judged on what came
                incoming.flush()
                transcript.event("error", conn=CONN, kind="other", during="response",
                                 message=f"response larger than {DATA_LIMIT // 2**20} MiB: the rest was not read")
                return bytes(incoming.kept), "self", "other"
        return bytes(incoming.kept), "self", None
    except OSError as exc:
        incoming.flush()
        kind = error_event(transcript, exc, phase, timeout, incoming.missing())
        say(f"error during {phase}: {describe(exc)}")
        return bytes(incoming.kept), "peer" if kind == "reset" else "self", kind
    finally:
        incoming.flush()


class Incoming:
    """What has arrived: its first DATA_LIMIT bytes themselves (parsed and reported), the rest counted.

    Each arrival is recorded with its time: a `received` event with its bytes while the transcript
    takes data, then (after its `truncated` event) `received` events with a `size` and no bytes,
    arrivals less than SIZES_EVERY apart summed into one (stamped with the last one's time), so that
    a stream of any length leaves a transcript of bounded rate."""

    def __init__(self, transcript: Transcript):
        self.transcript = transcript
        self.kept = bytearray()
        self.total = 0  # bytes arrived
        self.framing: str | None = None  # once the final head came: how its body ends (see `framing_of`)
        self.end: int | None = None  # ... and, framed by its length, the whole response's size
        self.over = False  # the transcript takes no more data
        self.pending, self.chunks, self.first, self.last = 0, 0, 0.0, 0.0  # sizes not yet recorded

    @property
    def cut(self) -> bool:
        return self.total > len(self.kept)

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if len(self.kept) < DATA_LIMIT:
            self.kept += chunk[: DATA_LIMIT - len(self.kept)]
        if self.transcript.data("received", chunk, conn=CONN):
            return
        if not self.over:  # its size is in the `truncated` event
            self.over = True
            return
        now = time.time()
        if self.pending and now - self.first >= SIZES_EVERY:
            self.flush()
        if not self.pending:
            self.first = now
        self.pending, self.chunks, self.last = self.pending + len(chunk), self.chunks + 1, now

    def flush(self) -> None:
        if self.pending:
            # stamped with its last arrival's time (`t` given replaces the moment of writing)
            self.transcript.event("received", conn=CONN, size=self.pending, chunks=self.chunks, t=self.last)
            self.pending = self.chunks = 0

    def whole(self) -> bool:
        """A whole response has arrived: counted against its Content-Length once its head came,
        else as `complete` says of the bytes (a close-delimited body never is: EOF ends it)."""
        if self.framing is None and not self.cut:
            self.framing, self.end = framing_of(bytes(self.kept))
        if self.end is not None:
            return self.total >= self.end
        return self.framing == "chunked" and not self.cut and complete(bytes(self.kept))

    def missing(self) -> str:
        """What the response still lacks, in words ("" when nothing came)."""
        if self.cut and self.end is not None:
            return f"{self.total} of its {self.end} bytes arrived (Content-Length)"
        return pending(bytes(self.kept)) if self.kept else ""

    def flood(self) -> bool:
        """More than can be kept of a response whose end its count cannot find (chunked, or not HTTP)."""
        return self.cut and self.end is None and self.framing != "close"


def error_event(transcript: Transcript, exc: OSError, phase: str, timeout: float, missing: str) -> str:
    """Record the error; a timeout says what was still missing, so a student sees which framing hung."""
    if isinstance(exc, TimeoutError):
        message = f"no complete response within {timeout}s"
        if missing:
            message += f": {missing}"
        transcript.event("error", conn=CONN, kind="timeout", during=phase, timeout=timeout, message=message)
        return "timeout"
    return transcript.error(exc, during=phase, conn=CONN)


def pending(raw: bytes) -> str:
    """What an incomplete answer still lacks, in words."""
    parsed = parse(raw)
    if parsed is None:
        return f"not an HTTP response so far: {preview(raw[:200])}"
    return parsed.missing or NEVER_CLOSED


# ----------------------------------------------------------------------------- parsing


class _KeptOpen(io.BytesIO):
    """The response's file. http.client closes it once the body is read; it stays open here so that
    `tell()` still says where the parser stopped (how we know a chunked trailer was finished)."""

    def close(self) -> None:
        """Keep the buffer readable: see the class docstring."""


class _Recorded:
    """A stand-in socket: http.client reads a response only through `makefile()`, here the bytes."""

    def __init__(self, buffer: _KeptOpen) -> None:
        self.buffer = buffer

    def makefile(self, *args: Any, **kwargs: Any) -> _KeptOpen:
        return self.buffer


@dataclass(frozen=True)
class Parsed:
    """What the parser made of the bytes so far. `missing` says why this is not yet a whole response
    (None: it is, except that a "close"-framed body is whole only at EOF)."""

    version: str
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    framing: str  # "content-length" | "chunked" | "close" | "none" (1xx, 204, 304: no body by status)
    missing: str | None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def event(self) -> dict[str, Any]:
        """The fields of the transcript's `response` event."""
        return {
            "version": self.version,
            "status": self.status,
            "reason": self.reason,
            "headers": self.headers,
            "body": self.text,
            "body_bytes": len(self.body),
            "framing": self.framing,
        }


def parse(raw: bytes) -> Parsed | None:
    """Parse raw bytes as one HTTP response; None when they do not start with an HTTP status line."""
    head = final_head(raw)
    if head is None:
        return None
    if isinstance(head, tuple):
        response, buffer = head
        body, framing, missing = read_body(response, buffer, raw)
        return summary(response, body, framing, missing)
    return head


def framing_of(raw: bytes) -> tuple[str | None, int | None]:
    """How the body of the response in `raw` ends, once its final head came: ("content-length" or
    "none", the whole response's size), ("chunked", None) or ("close", None); (None, None) before."""
    head = final_head(raw)
    if not isinstance(head, tuple):
        return None, None
    response, buffer = head
    if response.status in NO_BODY_STATUSES or response.status == SWITCHING_PROTOCOLS:
        return "none", buffer.tell()
    if response.chunked:
        return "chunked", None
    if response.length is None:
        return "close", None
    return "content-length", buffer.tell() + response.length


def complete(raw: bytes) -> bool:
    """True when a whole response has arrived: its head, and a body framed by Content-Length, by
    chunks up to the last one and its trailers, or by its status. A close-delimited body never is:
    only EOF ends it, so the caller reads until then."""
    parsed = parse(raw)
    return parsed is not None and parsed.missing is None and parsed.framing != "close"


def parse_response(raw: bytes) -> dict[str, Any] | None:
    """The `response` event's fields for a whole response read up to EOF; None when the bytes are not
    HTTP or the response was cut short."""
    parsed = parse(raw)
    if parsed is None or parsed.missing is not None:
        return None
    return parsed.event()


def final_head(raw: bytes) -> tuple[http.client.HTTPResponse, _KeptOpen] | Parsed | None:
    """The first non-interim response, its head read (the buffer is then at the body); a Parsed that
    says what is missing when the head is cut short; None when this is not HTTP.

    http.client skips `100 Continue` itself; other 1xx (102, 103) are skipped here. 101 is final."""
    offset = 0
    while True:
        buffer = _KeptOpen(raw)
        buffer.seek(offset)
        response = http.client.HTTPResponse(_Recorded(buffer), method="GET")  # type: ignore[arg-type]
        try:
            response.begin()
        except http.client.RemoteDisconnected:  # EOF where a status line should be: after a 1xx
            return unfinished(INTERIM_ONLY) if raw else None
        except (http.client.HTTPException, ValueError):
            return None
        if not ends_with_blank_line(raw[: buffer.tell()]):
            return summary(response, b"", "none", HEAD_CUT)
        if not is_interim(response.status):
            return response, buffer
        offset = buffer.tell()


def read_body(response: http.client.HTTPResponse, buffer: _KeptOpen, raw: bytes) -> tuple[bytes, str, str | None]:
    """(body, framing, what is missing or None), the body de-chunked."""
    if response.status in NO_BODY_STATUSES or response.status == SWITCHING_PROTOCOLS:
        return b"", "none", None
    if response.chunked:
        return read_chunked(response, buffer, raw)
    if response.length is None:
        return response.read(), "close", None
    wanted = response.length
    try:
        return response.read(), "content-length", None
    except http.client.IncompleteRead as exc:
        return exc.partial, "content-length", f"body cut short: {len(exc.partial)} of {wanted} bytes (Content-Length)"


def read_chunked(response: http.client.HTTPResponse, buffer: _KeptOpen, raw: bytes) -> tuple[bytes, str, str | None]:
    """A chunked body is whole once the 0-size chunk, its trailers and the blank line after them came.
    http.client accepts EOF in the trailers (some servers do that), so that last part is checked here."""
    try:
        body = response.read()
    except http.client.IncompleteRead as exc:
        if buffer.tell() < len(raw):
            return exc.partial, "chunked", f"chunked body has a bad chunk size line near byte {buffer.tell()}"
        return exc.partial, "chunked", CHUNKED_CUT
    except (http.client.HTTPException, ValueError):
        return b"", "chunked", f"chunked body has a bad chunk size line near byte {buffer.tell()}"
    if not ends_with_blank_line(raw[: buffer.tell()]):
        return body, "chunked", TRAILER_CUT
    return body, "chunked", None


def summary(response: http.client.HTTPResponse, body: bytes, framing: str, missing: str | None) -> Parsed:
    return Parsed(
        version="HTTP/1.0" if response.version == 10 else "HTTP/1.1",
        status=response.status,
        reason=response.reason,
        headers=joined_headers(response.msg),
        body=body,
        framing=framing,
        missing=missing,
    )


def unfinished(missing: str) -> Parsed:
    """A response whose final status line has not arrived (only an interim one did)."""
    return Parsed(version="", status=0, reason="", headers={}, body=b"", framing="none", missing=missing)


def joined_headers(message: http.client.HTTPMessage) -> dict[str, str]:
    """Lower-cased names; a repeated header's values joined with ", " (as RFC 9110 allows for lists)."""
    headers: dict[str, str] = {}
    for name, value in message.items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def is_interim(status: int) -> bool:
    return 100 <= status < 200 and status != SWITCHING_PROTOCOLS


def ends_with_blank_line(consumed: bytes) -> bool:
    """The parser stopped right after a blank line (CRLF or bare LF), not at EOF in the middle of a
    head or trailer: with a byte buffer, http.client takes EOF as the end of the headers."""
    return consumed.endswith((b"\n\r\n", b"\n\n"))
