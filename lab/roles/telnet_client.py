"""telnet-client: what a student does by hand with telnet, recorded byte for byte.

One connection, used the way a person at a terminal uses it:
1. after connecting, read what the server says (a welcome line, a `> ` prompt) until it has been
   quiet for `quiet` seconds (with `read_greeting`, first wait for at least one whole line);
2. for each line: send it with CRLF, then read the reply: what arrives after the send, up to as
   many line ends as the line had (one); then again read until the server is quiet, so a prompt
   written after the reply is read before the next line is sent, never taken for its reply;
3. with `sync` (set by the lab for clients of a `concurrent` expectation), tell the lab the client
   was answered and keep the connection open until the lab releases it (every client of that
   expectation answered) or `timeout` passes; then hold until `hold` s after the first reply.
   Still waiting for a reply, such a client counts its timeout afresh at each word from the lab
   (another client of the group has gone: a sequential server may serve this one now).
Event times are taken on the safe side of each call: `answered` after the recv that completed the
reply, `closing` before close(), so an interval of "connected and answered" never claims more.
"""

from __future__ import annotations

import encodings.idna  # noqa: F401 - a first name lookup imports it: once, before the lab forks its nodes
import os
import select
import socket
import time
from collections.abc import Callable

from lab.roles.common import Transcript, announce_ready, control_fd, describe, peer_text, preview, say, tell_lab

TYPE_CHECKING = False  # not typing's: importing typing costs a node ~10 ms at each start
if TYPE_CHECKING:
    from typing import Any

CONN = 1  # a client has exactly one connection
RECV_SIZE = 4096
QUIET = 0.25  # default seconds of silence that end what the server says before a line is sent


class Session:
    """The connected socket plus what the conversation has established so far."""

    def __init__(self, sock: socket.socket, transcript: Transcript):
        self.sock = sock
        self.transcript = transcript
        self.connected_at = time.monotonic()
        self.first_reply: float | None = None  # monotonic time the first reply was complete
        self.eof = False
        self.heard = False  # some bytes arrived
        self.phase = "connect"
        self.control: int | None = None  # a synced client: where the lab's words come (see pump's `renew`)

    def pump(self, deadline: float, enough: Callable[[bytes], bool], quiet: float | None = None,
             renew: float | None = None) -> str:
        """Record what arrives until `enough(bytes so far)`, EOF, the deadline (monotonic), or (with
        `quiet`) a silence of that many seconds. Returns "done", "eof", "deadline" or "quiet";
        errors such as a reset propagate. With `renew`, a word from the lab (another client of this
        one's `concurrent` group has gone, after the lab held it: see lab/barrier.py) sets the
        deadline `renew` s from then: a server that serves one client at a time is busy with the
        others, and the time the lab held them is not this client's to lose."""
        got = b""
        while not enough(got):
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                return "deadline"
            wait = min(remaining, quiet) if quiet is not None else remaining
            heard = self.lab_spoke(wait) if renew is not None else "socket"
            if heard == "lab":
                deadline = time.monotonic() + float(renew or 0.0)
                self.transcript.event("renewed", conn=CONN, timeout=renew)
                continue
            if heard == "nothing":
                return "quiet" if quiet is not None and time.monotonic() < deadline else "deadline"
            self.sock.settimeout(wait)
            try:
                chunk = self.sock.recv(RECV_SIZE)
            except TimeoutError:
                if quiet is not None and time.monotonic() < deadline:
                    return "quiet"
                return "deadline"
            if not chunk:
                self.eof = True
                return "eof"
            self.record(chunk)
            got += chunk
        return "done"

    def lab_spoke(self, wait: float) -> str:
        """Wait up to `wait` s for the server's bytes or a word from the lab: "socket" (readable, or
        no lab to listen to), "lab" (a word, read), or "nothing" (neither came)."""
        if self.control is None:
            return "socket"
        watched: list[Any] = [self.sock, self.control]
        readable, _, _ = select.select(watched, [], [], wait)
        if self.control in readable:
            if os.read(self.control, 64):
                return "lab"
            self.control = None  # the lab is gone: the socket alone from now on
            return "socket"
        return "socket" if readable else "nothing"

    def settle(self, quiet: float, minimum: float, limit: float) -> str:
        """Read what the server says until it has been quiet for `quiet` s (and at least `minimum`
        s have passed), bounded by `limit` s: a server that never stops talking is not waited for."""
        start = time.monotonic()
        deadline = start + limit
        if minimum > 0:
            status = self.pump(min(deadline, start + minimum), lambda got: False)
            if status == "eof":
                return status
        status = self.pump(deadline, lambda got: False, quiet=quiet)
        return status

    def send(self, line: str, timeout: float) -> bytes:
        data = (line + "\r\n").encode("utf-8")
        self.phase = "send"
        self.sock.settimeout(timeout)
        self.sock.sendall(data)
        self.transcript.data("sent", data, conn=CONN)
        say(f"> {preview(data)}")
        return data

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

    def read_once(self) -> None:
        """One recv on a socket known to be readable: record the bytes, or note EOF."""
        self.sock.settimeout(1.0)
        try:
            chunk = self.sock.recv(RECV_SIZE)
        except TimeoutError:
            return
        if not chunk:
            self.eof = True
            return
        self.record(chunk)

    def record(self, chunk: bytes) -> None:
        self.heard = True
        if self.transcript.data("received", chunk, conn=CONN, during=self.phase):
            say(f"< {preview(chunk)}")  # (past the transcript's limit, the log is spared the flood too)

    def answered(self) -> None:
        """The first reply is complete: from now on this client counts as answered."""
        if self.first_reply is None:
            self.first_reply = time.monotonic()
            self.transcript.event("answered", conn=CONN)


def main(params: dict[str, Any], transcript: Transcript) -> int:
    """Connect to params host:port, converse, close. Exit 0 if no error happened, else 1."""
    host, port = str(params["host"]), int(params["port"])
    target = str(params.get("target") or f"{host}:{port}")
    timeout = float(params.get("timeout", 5.0))
    peer = f"{host}:{port}"
    announce_ready(transcript.role, f"connecting to {target}")
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
    session.control = control_fd() if params.get("sync") else None
    with sock:
        ok = converse(session, params, timeout)
        transcript.event("closing", conn=CONN)
    by = "peer" if session.eof else "self"
    transcript.event("closed", conn=CONN, by=by)
    say(f"Connection closed by {'foreign host' if by == 'peer' else 'client'}.")
    return 0 if ok else 1


def converse(session: Session, params: dict[str, Any], timeout: float) -> bool:
    """Greeting, lines, sync, hold. False when an error was recorded (the connection is then given up)."""
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
    quiet = float(params.get("quiet", QUIET))
    session.phase = "greeting"
    if params.get("read_greeting"):
        status = session.pump(time.monotonic() + timeout, lambda got: b"\n" in got, renew=timeout)
        if status == "deadline":
            session.timed_out(timeout)
            return False
        if session.eof:
            if session.heard and not lines:
                session.answered()
            return True
    for index, line in enumerate(lines):
        session.phase = "interval" if index else "greeting"
        if session.settle(quiet, interval if index else 0.0, timeout) == "eof":
            return True  # the server hung up before this line: the check says what was missing
        data = session.send(line, timeout)
        session.phase = "reply"
        wanted = max(1, data.count(b"\n"))
        status = session.pump(time.monotonic() + timeout, line_ends(wanted), renew=timeout)
        if status == "deadline":
            session.timed_out(timeout)
            return False
        if session.eof:
            return True
        session.answered()
    if not lines:
        if not params.get("read_greeting") and not session.eof:
            session.settle(quiet, 0.0, timeout)
        if session.heard:  # a client that only listens is answered by what the server says
            session.answered()
    session.phase = "hold"
    if params.get("sync") and session.first_reply is not None:
        wait_for_release(session, timeout)
    hold_from = session.first_reply if session.first_reply is not None else session.connected_at
    if not session.eof:
        session.pump(hold_from + float(params.get("hold", 0.0)), lambda got: False)
    return True


def line_ends(count: int) -> Callable[[bytes], bool]:
    """A reply is complete with as many line ends as the line sent had."""
    return lambda got: got.count(b"\n") >= count


def wait_for_release(session: Session, timeout: float) -> None:
    """Tell the lab this client was answered, then keep the connection open until the lab says
    every client of its `concurrent` expectation was answered, the server hangs up, or `timeout`."""
    fd = control_fd()
    if fd is None:
        return
    tell_lab("answered")
    deadline = time.monotonic() + timeout
    while not session.eof:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            session.transcript.event("released", conn=CONN, by="timeout")
            return
        watched: list[Any] = [fd, session.sock]
        readable, _, _ = select.select(watched, [], [], remaining)
        if fd in readable:
            word = os.read(fd, 64)
            session.transcript.event("released", conn=CONN, by="lab" if word else "lab-gone")
            return
        if session.sock in readable:
            session.read_once()
