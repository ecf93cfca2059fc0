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
   (another client of the group has gone: a sequential server may serve this one now);
4. with `reconnect: S` (default 0: what a person's telnet does, one connection and the first failure
   ends it), what a well-written client does instead: a connection that cannot be made (refused,
   unreachable, timed out) or is lost before the last line's reply (reset, closed by the server, no
   reply within `timeout`) is recorded (`connect_failed`, `lost`), and after a short pause
   (lab/roles/reconnect.py) a new connection, with the next `conn` number, goes on where the last
   one was lost: its greeting is read again and the line whose reply had not come is sent again
   (`sent` events then carry the line's index, `line`). It gives up once S seconds have passed since
   a loss without a connection that answered a line.
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

from lab.roles.common import (
    Transcript,
    announce_ready,
    control_fd,
    describe,
    error_kind,
    peer_text,
    preview,
    say,
    tell_lab,
)
from lab.roles.reconnect import Redial

TYPE_CHECKING = False  # not typing's: importing typing costs a node ~10 ms at each start
if TYPE_CHECKING:
    from typing import Any

CONN = 1  # the number of a client's first connection (its only one, unless it reconnects)
RECV_SIZE = 4096
QUIET = 0.25  # default seconds of silence that end what the server says before a line is sent


class Lost(Exception):
    """A reconnecting client's connection failed before the conversation was done: why (an error's
    kind, or "closed" when the server closed it), in words too."""

    def __init__(self, why: str, message: str):
        super().__init__(message)
        self.why = why
        self.message = message


class Session:
    """The connected socket plus what the conversation has established so far."""

    def __init__(self, sock: socket.socket, transcript: Transcript, conn: int = CONN, reconnect: bool = False,
                 first_line: int = 0):
        self.sock = sock
        self.transcript = transcript
        self.conn = conn
        self.reconnect = reconnect  # a loss raises Lost (the next connection goes on) instead of ending it
        self.first_line = first_line  # the index of the first line this connection sends
        self.line = first_line  # ... of the line being sent or answered now
        self.done = first_line  # lines answered so far, on this connection and the ones before
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
                self.transcript.event("renewed", conn=self.conn, timeout=renew)
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
        """Read what the server says for `minimum` s (the interval), then until it has been quiet for
        `quiet` s, bounded by `limit` s: a server that never stops talking is not waited for."""
        if minimum > 0:  # the interval is the user's, whole: never cut by the reply timeout
            status = self.pump(time.monotonic() + minimum, lambda got: False)
            if status == "eof":
                return status
        return self.pump(time.monotonic() + limit, lambda got: False, quiet=quiet)

    def send(self, line: str, timeout: float) -> bytes:
        data = (line + "\r\n").encode("utf-8")
        self.phase = "send"
        self.sock.settimeout(timeout)
        self.sock.sendall(data)
        self.transcript.data("sent", data, conn=self.conn, **({"line": self.line} if self.reconnect else {}))
        say(f"> {preview(data)}")
        return data

    def timed_out(self, timeout: float) -> None:
        what = "greeting" if self.phase == "greeting" else "reply"
        if self.reconnect:
            raise Lost("timeout", f"no {what} within {timeout}s")
        self.transcript.event(
            "error",
            conn=self.conn,
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
        if self.transcript.data("received", chunk, conn=self.conn, during=self.phase):
            say(f"< {preview(chunk)}")  # (past the transcript's limit, the log is spared the flood too)

    def answered(self) -> None:
        """The first reply is complete: from now on this client counts as answered."""
        if self.first_reply is None:
            self.first_reply = time.monotonic()
            self.transcript.event("answered", conn=self.conn)

    def closed_early(self, what: str) -> None:
        """The server closed the connection before `what`: the end of a person's conversation (the
        check says what was missing), a loss for a reconnecting client."""
        if self.reconnect:
            raise Lost("closed", f"closed by the server before {what}")


def main(params: dict[str, Any], transcript: Transcript) -> int:
    """Connect to params host:port, converse, close. Exit 0 if no error happened, else 1."""
    host, port = str(params["host"]), int(params["port"])
    target = str(params.get("target") or f"{host}:{port}")
    timeout = float(params.get("timeout", 5.0))
    peer = f"{host}:{port}"
    announce_ready(transcript.role, f"connecting to {target}")
    if float(params.get("reconnect") or 0.0) > 0:
        return reconnecting(params, transcript, host, port, target, timeout)
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


def reconnecting(params: dict[str, Any], transcript: Transcript, host: str, port: int, target: str,
                 timeout: float) -> int:
    """`main` for a client that reconnects: connection after connection, each going on where the last
    was lost, until the conversation is done (0) or the budget is spent without one that answers (1)."""
    redial = Redial(transcript, host, port, target, float(params["reconnect"]), timeout)
    control = control_fd() if params.get("sync") else None
    done, lost_at = 0, None  # lines answered; time.monotonic() of the loss the budget counts from
    met: dict[str, int] = {}  # what the reconnections of this outage met: their losses, by kind
    why = "other"  # ... and the last loss's kind
    while True:
        sock = redial.connect(lost_at, met, why)
        if sock is None:
            return 1
        session = Session(sock, transcript, redial.conn, reconnect=True, first_line=done)
        session.control = control
        lost: Lost | None = None
        with sock:
            try:
                ok = converse(session, params, timeout)
            except Lost as exc:
                lost = exc
                transcript.event("lost", conn=session.conn, why=exc.why, during=session.phase, line=session.line,
                                 message=exc.message)
                say(f"connection lost during {session.phase}: {exc.message}; reconnecting")
            transcript.event("closing", conn=session.conn)
        by = "peer" if session.eof or (lost is not None and lost.why == "reset") else "self"
        transcript.event("closed", conn=session.conn, by=by)
        if lost is None:
            say(f"Connection closed by {'foreign host' if by == 'peer' else 'client'}.")
            return 0 if ok else 1
        if lost_at is None or session.done > done:  # this connection answered: a new outage begins
            lost_at, met = time.monotonic(), {}
        else:  # a reconnection that did not answer: part of the same outage
            met[lost.why] = met.get(lost.why, 0) + 1
        done, control, why = session.done, session.control, lost.why


def converse(session: Session, params: dict[str, Any], timeout: float) -> bool:
    """Greeting, lines, sync, hold. False when an error was recorded (the connection is then given up).
    A reconnecting client's connection that fails before the hold raises Lost instead."""
    try:
        return talk(session, params, timeout)
    except OSError as exc:
        if session.reconnect and session.phase != "hold":
            kind = error_kind(exc)  # its kind says it (reset, unreachable...): the log has the rest
            say(f"error during {session.phase}: {describe(exc)}")
            raise Lost(kind, describe(exc) if kind == "other" else kind) from None
        if session.transcript.error(exc, during=session.phase, conn=session.conn) == "reset":
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
            session.closed_early("its greeting")
            if session.heard and not lines:
                session.answered()
            return True
    for index in range(session.first_line, len(lines)):
        line, later = lines[index], index > session.first_line  # a connection's first line follows its greeting
        session.line = index
        session.phase = "interval" if later else "greeting"
        if session.settle(quiet, interval if later else 0.0, timeout) == "eof":
            session.closed_early("the next line was sent")
            return True  # the server hung up before this line: the check says what was missing
        data = session.send(line, timeout)
        session.phase = "reply"
        wanted = max(1, data.count(b"\n"))
        status = session.pump(time.monotonic() + timeout, line_ends(wanted), renew=timeout)
        if status == "deadline":
            session.timed_out(timeout)
            return False
        if session.eof:
            session.closed_early("the reply")
            return True
        session.answered()
        session.done = index + 1
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
            session.transcript.event("released", conn=session.conn, by="timeout")
            return
        watched: list[Any] = [fd, session.sock]
        readable, _, _ = select.select(watched, [], [], remaining)
        if fd in readable:
            word = os.read(fd, 64)
            session.transcript.event("released", conn=session.conn, by="lab" if word else "lab-gone")
            return
        if session.sock in readable:
            session.read_once()
