"""telnet-client: what a student does by hand with telnet, recorded byte for byte.

One connection: optionally read a greeting, send lines with CRLF (waiting for each reply), then
hold the connection open so that clients overlap in time (which is what `concurrent` checks).
"""

from __future__ import annotations

import socket
import time
from typing import Any

from lab.roles.common import Transcript, announce_ready, describe, peer_text, preview, say

CONN = 1  # a client has exactly one connection
RECV_SIZE = 4096


class Session:
    """The connected socket plus what the conversation has established so far."""

    def __init__(self, sock: socket.socket, transcript: Transcript):
        self.sock = sock
        self.transcript = transcript
        self.connected_at = time.monotonic()
        self.first_reply: float | None = None  # monotonic time of the first bytes after a send
        self.eof = False
        self.phase = "connect"

    def read(self, deadline: float, until_newline: bool) -> str:
        """Record what arrives until a newline (if asked), EOF, or the deadline (monotonic).

        Returns "line", "eof" or "deadline"; errors such as a reset propagate.
        """
        got = b""
        while not (until_newline and b"\n" in got):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "deadline"
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(RECV_SIZE)
            except TimeoutError:
                return "deadline"
            if not chunk:
                self.eof = True
                return "eof"
            if self.phase == "reply" and self.first_reply is None:
                self.first_reply = time.monotonic()
            self.transcript.data("received", chunk, conn=CONN, during=self.phase)
            say(f"< {preview(chunk)}")
            got += chunk
        return "line"

    def send(self, line: str, timeout: float) -> None:
        data = (line + "\r\n").encode("utf-8")
        self.phase = "send"
        self.sock.settimeout(timeout)
        self.sock.sendall(data)
        self.transcript.data("sent", data, conn=CONN)
        say(f"> {preview(data)}")

    def timed_out(self, timeout: float) -> None:
        what = "greeting" if self.phase == "greeting" else "reply"
        self.transcript.event(
            "error",
            conn=CONN,
            kind="timeout",
            during=self.phase,
            message=f"no {what} within {timeout}s",
            timeout=timeout,
        )
        say(f"error: no {what} within {timeout}s")


def main(params: dict[str, Any], transcript: Transcript) -> int:
    """Connect to params host:port, converse, close. Exit 0 if no error happened, else 1."""
    host, port = str(params["host"]), int(params["port"])
    target = str(params.get("target") or f"{host}:{port}")
    timeout = float(params.get("timeout", 5.0))
    peer = f"{host}:{port}"
    announce_ready("telnet-client", f"connecting to {target}")
    transcript.event("connecting", conn=CONN, peer=peer, target=target)
    say(f"Trying {peer} ({target})...")
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        transcript.error(exc, during="connect", conn=CONN, peer=peer, target=target, timeout=timeout)
        say(f"error: cannot connect to {peer} ({target}): {describe(exc)}")
        return 1
    transcript.event("connected", conn=CONN, peer=peer, local=peer_text(sock.getsockname()), target=target)
    say(f"Connected to {target} ({peer}).")
    session = Session(sock, transcript)
    with sock:
        ok = converse(session, params, timeout)
    by = "peer" if session.eof else "self"
    transcript.event("closed", conn=CONN, by=by)
    say(f"Connection closed by {'foreign host' if by == 'peer' else 'client'}.")
    return 0 if ok else 1


def converse(session: Session, params: dict[str, Any], timeout: float) -> bool:
    """Greeting, lines, hold. False when an error was recorded (the connection is then given up)."""
    try:
        return talk(session, params, timeout)
    except OSError as exc:
        if session.transcript.error(exc, during=session.phase, conn=CONN) == "reset":
            session.eof = True  # the peer ended the connection
        say(f"error during {session.phase}: {describe(exc)}")
        return False


def talk(session: Session, params: dict[str, Any], timeout: float) -> bool:
    lines = [str(line) for line in params.get("send") or []]
    interval = float(params.get("interval", 0.0))
    if params.get("read_greeting"):
        session.phase = "greeting"
        status = session.read(time.monotonic() + timeout, until_newline=True)
        if status == "deadline":
            session.timed_out(timeout)
            return False
        if session.eof:
            return True
    for index, line in enumerate(lines):
        if index and interval > 0:
            session.phase = "interval"
            if session.read(time.monotonic() + interval, until_newline=False) == "eof":
                return True
        session.send(line, timeout)
        session.phase = "reply"
        status = session.read(time.monotonic() + timeout, until_newline=True)
        if status == "deadline":
            session.timed_out(timeout)
            return False
        if session.eof:
            return True
    hold_from = session.first_reply if session.first_reply is not None else session.connected_at
    session.phase = "hold"
    session.read(hold_from + float(params.get("hold", 0.0)), until_newline=False)
    return True
