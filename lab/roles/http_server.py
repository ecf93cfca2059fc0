"""http-server: serves fixed pages with the standard library's ThreadingHTTPServer.

The default stderr access log is replaced by transcript `request` events (and one log line each),
so what the server answered is as checkable as what clients received.

A page is a fixed text, or a generated body of a given size (`{bytes: 2MiB}`): the same 64-byte
line over and over, sent with its Content-Length in blocks of 64 KiB, so that a client can pull a
long, steady stream (the `rate` check) and the server never holds more than one block of it.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from lab.roles.common import Transcript, announce_ready, peer_text, say

TYPE_CHECKING = False  # not typing's: importing typing costs a node ~10 ms at each start
if TYPE_CHECKING:
    from typing import Any

IDLE_TIMEOUT = 30.0  # seconds a kept-alive connection may sit idle
LINE = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.\n"  # a generated body's text
BLOCK = LINE * 1024  # 64 KiB: what a generated body is written in


class LabHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer sized for a lab: many simultaneous clients, restartable, killable."""

    request_queue_size = 256  # listen backlog (the default 5 drops bursts of clients)
    allow_reuse_address = True
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A peer that hung up (EPIPE, reset: the role ignores SIGPIPE) ends that one connection: one
        log line, not socketserver's traceback. Anything else is a bug and keeps its traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            say(f"{peer_text(client_address)}: connection ended: {error}")
        else:
            super().handle_error(request, client_address)


def main(params: dict[str, Any], transcript: Transcript) -> int:
    """Serve params["pages"] ({path: body or {"bytes": size}}) on params["port"] until terminated."""
    port = int(params.get("port", 80))
    pages = {str(path): int(body["bytes"]) if isinstance(body, dict) else str(body)
             for path, body in dict(params.get("pages") or {}).items()}
    server = LabHTTPServer(("0.0.0.0", port), make_handler(pages, transcript))
    transcript.event("listening", address=f"0.0.0.0:{port}", port=port, pages=sorted(pages))
    announce_ready(transcript.role, f"listening on 0.0.0.0:{port}")
    server.serve_forever(poll_interval=0.5)
    return 0


def content_type(body: str) -> str:
    """A page that looks like markup is HTML, anything else plain text."""
    kind = "text/html" if body.lstrip().startswith("<") else "text/plain"
    return f"{kind}; charset=utf-8"


def generated(size: int) -> Iterator[bytes]:
    """A generated body of `size` bytes, block by block: LINE repeated, the last block cut short."""
    whole, rest = divmod(size, len(BLOCK))
    for _ in range(whole):
        yield BLOCK
    if rest:
        yield BLOCK[:rest]


def make_handler(pages: Mapping[str, str | int], transcript: Transcript) -> type[BaseHTTPRequestHandler]:
    """A handler class bound to these pages and this transcript (built per run: no global state)."""
    next_conn: Callable[[], int] = itertools.count(1).__next__

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "lab-http-server"
        timeout = IDLE_TIMEOUT
        conn_id = 0

        def setup(self) -> None:
            super().setup()
            self.conn_id = next_conn()

        def do_GET(self) -> None:  # noqa: N802 - name fixed by http.server
            self.answer(with_body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self.answer(with_body=False)

        def answer(self, with_body: bool) -> None:
            path = urlsplit(self.path).path
            body = pages.get(path)
            if body is None:
                self.reply(404, f"not found: {path}\n", "text/plain; charset=utf-8", with_body)
            elif isinstance(body, int):
                self.stream(body, with_body)
            else:
                self.reply(200, body, content_type(body), with_body)

        def reply(self, status: int, body: str, ctype: str, with_body: bool) -> None:
            payload = body.encode("utf-8")
            self.head(status, ctype, len(payload))
            if with_body:
                self.wfile.write(payload)

        def stream(self, size: int, with_body: bool) -> None:
            """A generated body, written a block at a time (a slow link holds the thread, not memory)."""
            self.head(200, "text/plain; charset=utf-8", size)
            if with_body:
                for block in generated(size):
                    self.wfile.write(block)

        def head(self, status: int, ctype: str, length: int) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(length))
            self.end_headers()

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            """Called by send_response (and send_error) once per answered request."""
            peer = f"{self.client_address[0]}:{self.client_address[1]}"
            status = int(code) if isinstance(code, int) else code
            path = getattr(self, "path", None)  # unset when the request line itself was malformed
            transcript.event(
                "request", conn=self.conn_id, peer=peer, method=self.command, path=path, status=status
            )
            say(f"{peer} {self.command} {path} -> {status}")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature fixed
            """Errors (bad requests, timeouts) go to the node's log instead of raw stderr."""
            say(format % args)

    return Handler
