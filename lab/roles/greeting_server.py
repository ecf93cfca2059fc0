"""greeting-server: sends its text to every client, then closes the connection.

Clients are served one after another from the accept loop: a greeting is a few bytes that fit in
the socket buffer, so a thread per client would buy nothing.
"""

from __future__ import annotations

import socket

from lab.roles.common import Transcript, announce_ready, listening_socket, peer_text, say

TYPE_CHECKING = False  # not typing's: importing typing costs a node ~10 ms at each start
if TYPE_CHECKING:
    from typing import Any

SEND_TIMEOUT = 5.0  # a client that never reads must not stall the others forever


def main(params: dict[str, Any], transcript: Transcript) -> int:
    """Listen on params["port"] and greet every client with params["text"] + CRLF."""
    port = int(params["port"])
    greeting = (str(params["text"]) + "\r\n").encode("utf-8")
    server = listening_socket(port)
    transcript.event("listening", address=f"0.0.0.0:{port}", port=port)
    announce_ready(transcript.role, f"listening on 0.0.0.0:{port}")
    conn_id = 0
    while True:
        try:
            conn, address = server.accept()
        except OSError as exc:
            transcript.error(exc, during="accept")
            continue
        conn_id += 1
        greet(conn, peer_text(address), conn_id, greeting, transcript)


def greet(conn: socket.socket, peer: str, conn_id: int, greeting: bytes, transcript: Transcript) -> None:
    """Send the greeting and close; a peer that already went away is recorded, not fatal."""
    transcript.event("accepted", conn=conn_id, peer=peer)
    say(f"Connected with {peer}")
    by = "self"
    with conn:
        try:
            conn.settimeout(SEND_TIMEOUT)
            conn.sendall(greeting)
            transcript.data("sent", greeting, conn=conn_id)
            conn.shutdown(socket.SHUT_WR)
            drain(conn)
        except OSError as exc:
            if transcript.error(exc, during="greeting", conn=conn_id, peer=peer) == "reset":
                by = "peer"
    transcript.event("closed", conn=conn_id, by=by)
    say(f"Greeted and closed {peer}")


def drain(conn: socket.socket) -> None:
    """Discard what the client already sent: closing with unread data would reset the connection
    (RST) and could destroy the greeting before the client read it."""
    conn.setblocking(False)
    try:
        while conn.recv(4096):
            pass
    except OSError:  # nothing more to read (EAGAIN), or the peer is gone: the greeting was sent
        pass
