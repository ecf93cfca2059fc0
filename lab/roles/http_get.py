"""http-get: one `GET path HTTP/1.1` over a raw socket, as in the socket tutorial.

A raw socket rather than http.client so that the transcript holds the exact bytes that crossed,
and a broken server's answer is still recorded even when it is not valid HTTP.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from lab.roles.common import Transcript, announce_ready, describe, peer_text, preview, say

CONN = 1
RECV_SIZE = 65536


def main(params: dict[str, Any], transcript: Transcript) -> int:
    """GET params path from host:port. Exit 0 when a response (status line + headers) was parsed."""
    host, port, path = str(params["host"]), int(params["port"]), str(params.get("path") or "/")
    host_header = str(params.get("host_header") or f"{host}:{port}")
    timeout = float(params.get("timeout", 5.0))
    peer = f"{host}:{port}"
    url = str(params.get("url") or f"http://{host_header}{path}")
    announce_ready("http-get", f"fetching {url}")
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
    with sock:
        raw, by = exchange(sock, request_bytes(path, host_header), deadline, timeout, transcript)
    transcript.event("closed", conn=CONN, by=by)
    response = parse_response(raw)
    if response is None:
        if raw:
            transcript.event(
                "error",
                conn=CONN,
                kind="other",
                during="response",
                message=f"not an HTTP response: {preview(raw[:200])}",
            )
        say(f"no HTTP response from {url}")
        return 1
    transcript.event("response", conn=CONN, **response)
    say(f"{response['version']} {response['status']} {response['reason']}")
    say(str(response["body"]))
    return 0


def request_bytes(path: str, host_header: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n".encode()


def exchange(
    sock: socket.socket, request: bytes, deadline: float, timeout: float, transcript: Transcript
) -> tuple[bytes, str]:
    """Send the request and read the answer until EOF, a complete Content-Length body, or the
    deadline. Returns the raw bytes and who closed ("peer" at EOF or reset)."""
    raw, phase = b"", "send"
    try:
        sock.sendall(request)
        transcript.data("sent", request, conn=CONN)
        phase = "response"
        while not complete(raw):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete response within {timeout}s")
            sock.settimeout(remaining)
            chunk = sock.recv(RECV_SIZE)
            if not chunk:
                return raw, "peer"
            transcript.data("received", chunk, conn=CONN)
            raw += chunk
        return raw, "self"
    except OSError as exc:
        kind = error_event(transcript, exc, phase, timeout)
        say(f"error during {phase}: {describe(exc)}")
        return raw, "peer" if kind == "reset" else "self"


def error_event(transcript: Transcript, exc: OSError, phase: str, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        transcript.event(
            "error",
            conn=CONN,
            kind="timeout",
            during=phase,
            timeout=timeout,
            message=f"no complete response within {timeout}s",
        )
        return "timeout"
    return transcript.error(exc, during=phase, conn=CONN)


def split_head(raw: bytes) -> tuple[bytes, bytes] | None:
    """(head, body) once the blank line that ends the headers has arrived."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, body = raw.partition(separator)
        if found:
            return head, body
    return None


def content_length(head: bytes) -> int | None:
    for line in head.split(b"\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value.strip())
    return None


def complete(raw: bytes) -> bool:
    """True when a Content-Length body has fully arrived (otherwise we read until EOF)."""
    parts = split_head(raw)
    if parts is None:
        return False
    length = content_length(parts[0])
    return length is not None and len(parts[1]) >= length


def parse_response(raw: bytes) -> dict[str, Any] | None:
    """Status line, headers (lower-cased names) and body text; None if this is not HTTP."""
    parts = split_head(raw)
    if parts is None:
        return None
    head, body = parts
    lines = head.decode("iso-8859-1").splitlines()
    if not lines:
        return None
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.strip().partition(" ")
    if not version.startswith("HTTP/") or not code.isdigit():
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip():
            headers[name.strip().lower()] = value.strip()
    length = content_length(head)
    if length is not None:
        body = body[:length]
    return {
        "version": version,
        "status": int(code),
        "reason": reason.strip(),
        "headers": headers,
        "body": body.decode("utf-8", errors="replace"),
    }
