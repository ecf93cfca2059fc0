"""echo-server: sends back whatever each client sends, with a thread per connection.

Deliberately the classic socket-tutorial design (accept loop + one thread per client) so that the
lab's reference server behaves like the students' servers; the backlog is large because a scale
scenario connects 100+ clients at the same instant.
"""

from __future__ import annotations

import socket
import threading

from lab.roles.common import STOPPING, Transcript, announce_ready, listening_socket, peer_text, preview, say

TYPE_CHECKING = False  # not typing's: importing typing costs a node ~10 ms at each start
if TYPE_CHECKING:
    from typing import Any

RECV_SIZE = 4096


def main(params: dict[str, Any], transcript: Transcript) -> int:
    """Listen on params["port"] and echo every connection until terminated."""
    port = int(params["port"])
    server = listening_socket(port)
    transcript.event("listening", address=f"0.0.0.0:{port}", port=port)
    announce_ready(transcript.role, f"listening on 0.0.0.0:{port}")
    conn_id = 0
    STOPPING.append(lambda: stopped_open(transcript))
    while True:
        try:
            conn, address = server.accept()
        except OSError as exc:  # e.g. EMFILE: record it and keep serving the others
            transcript.error(exc, during="accept")
            continue
        conn_id += 1
        threading.Thread(
            target=serve, args=(conn, address, conn_id, transcript), daemon=True, name=f"conn-{conn_id}"
        ).start()


OPEN: set[int] = set()  # connections accepted and not yet closed


def stopped_open(transcript: Transcript) -> None:
    """Stopped by the lab: each connection still open ends here, and the transcript says so (a
    client's close the thread had not yet read included), so no connection is left without an end."""
    for conn_id in sorted(OPEN):
        transcript.event("closed", conn=conn_id, by="stopped")


def serve(conn: socket.socket, address: Any, conn_id: int, transcript: Transcript) -> None:
    """Echo one connection until the peer closes it (or it fails)."""
    peer = peer_text(address)
    OPEN.add(conn_id)
    transcript.event("accepted", conn=conn_id, peer=peer)
    say(f"Connected with {peer}")
    by = "self"
    with conn:
        try:
            by = echo_until_closed(conn, conn_id, transcript)
        except OSError as exc:
            kind = transcript.error(exc, during="echo", conn=conn_id, peer=peer)
            by = "peer" if kind == "reset" else "self"
            say(f"Error with {peer}: {exc}")
    OPEN.discard(conn_id)
    transcript.event("closed", conn=conn_id, by=by)
    say(f"Closed {peer} (by {by})")


def echo_until_closed(conn: socket.socket, conn_id: int, transcript: Transcript) -> str:
    """The echo loop; returns who closed ("peer" at EOF)."""
    while True:
        data = conn.recv(RECV_SIZE)
        if not data:
            return "peer"
        transcript.data("received", data, conn=conn_id)
        conn.sendall(data)
        if transcript.data("sent", data, conn=conn_id):
            say(f"[{conn_id}] echoed {preview(data)}")
