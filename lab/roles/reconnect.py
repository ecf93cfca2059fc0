"""Reconnecting: what a well-written client does when its connection cannot be made or is lost.

A person's telnet gives up at the first refusal. A well-written client tries again, a little later
each time (0.2 s, doubling up to 1 s: not so fast that it hammers a server that is restarting, not
so slow that it misses its return by much), and gives up once its budget is spent: `budget` seconds
since the loss without a connection that answered. These pauses are the role's behaviour under test
(what the server, or the network, lets a client do), not a test waiting for something.

Every attempt is recorded, so a check can say what happened: `connecting` (once per connection
number), `connect_failed` (each failed attempt: the error's kind, the attempt's number and the pause
before the next), `connected` and, after a loss, `reconnected` (how long after the loss, in how many
attempts). Giving up is an `error` event with `gave_up`, the budget and the count of each kind of
failure (`{"refused": 7}`): the same `error` every check already reads for a failed connection.
"""

from __future__ import annotations

import socket
import time

from lab.roles.common import Transcript, describe, error_kind, peer_text, say

FIRST_PAUSE = 0.2  # s before the first attempt after a loss, and after the first failed attempt
LONGEST_PAUSE = 1.0  # the pause doubles up to this
SHORTEST_ATTEMPT = 0.1  # s an attempt may take at least, however little of the budget is left


class Redial:
    """Connections to one peer, numbered from 1, each made by as many attempts as the budget allows."""

    def __init__(self, transcript: Transcript, host: str, port: int, target: str, budget: float, timeout: float):
        self.transcript = transcript
        self.address = (host, port)
        self.peer = f"{host}:{port}"
        self.target = target
        self.budget = budget
        self.timeout = timeout  # an attempt's own limit (a dropped SYN is retried by the kernel meanwhile)
        self.conn = 0  # the number of the last connection made

    def connect(self, lost_at: float | None, met: dict[str, int] | None = None,
                last: str = "other") -> socket.socket | None:
        """The next connection (numbered `conn` + 1), or None once the budget is spent: `budget` s
        from `lost_at` (time.monotonic() of the loss), or from now for a first connection. A budget
        already spent (connections made since the loss did not answer) is spent: no more attempts.
        `met`: what the outage met before (losses by their kind, the last `last`), counted on."""
        conn, first = self.conn + 1, lost_at is None
        start = time.monotonic() if lost_at is None else lost_at
        give_up_at = start + self.budget
        pause, attempt = FIRST_PAUSE, 0
        failures = {} if met is None else met
        self.transcript.event("connecting", conn=conn, peer=self.peer, target=self.target)
        say(f"Trying {self.peer} ({self.target})...")
        if not first and time.monotonic() >= give_up_at:
            self.give_up(conn, last, start, attempt, failures, self.timeout)
            return None
        wait = 0.0 if first else min(FIRST_PAUSE, give_up_at - time.monotonic())
        while True:
            time.sleep(max(0.0, wait))
            attempt += 1
            limit = max(SHORTEST_ATTEMPT, min(self.timeout, give_up_at - time.monotonic()))
            try:
                sock = socket.create_connection(self.address, timeout=limit)
            except OSError as exc:
                kind = error_kind(exc)
                failures[kind] = failures.get(kind, 0) + 1
                wait = min(pause, give_up_at - time.monotonic())
                pause = min(2 * pause, LONGEST_PAUSE)
                fields = {"timeout": limit} if kind == "timeout" else {}
                retry = {"retry_in": round(wait, 3)} if wait > 0 else {}
                self.transcript.event("connect_failed", conn=conn, kind=kind, message=describe(exc),
                                      attempt=attempt, **fields, **retry)
                if wait <= 0:
                    self.give_up(conn, kind, start, attempt, failures, limit)
                    return None
                say(f"error: cannot connect to {self.peer} ({self.target}): {describe(exc)}; again in {wait:.1f}s")
                continue
            self.conn = conn
            self.transcript.event("connected", conn=conn, peer=self.peer, local=peer_text(sock.getsockname()),
                                  target=self.target)
            if not first:
                self.transcript.event("reconnected", conn=conn, after=round(time.monotonic() - start, 3),
                                      attempts=attempt)
            say(f"{'Connected' if first else 'Reconnected'} to {self.target} ({self.peer}).")
            return sock

    def give_up(self, conn: int, kind: str, start: float, attempts: int, failures: dict[str, int],
                limit: float) -> None:
        """The `error` that ends the client: the last failure's kind, with every failure counted."""
        counted = tally(failures)
        message = f"gave up after {self.budget:g}s without a working connection ({counted})"
        self.transcript.event("error", conn=conn, kind=kind, during="connect" if conn == 1 else "reconnect",
                              message=message, gave_up=True, budget=self.budget,
                              after=round(time.monotonic() - start, 3), attempts=attempts, failures=failures,
                              peer=self.peer, target=self.target, timeout=limit)
        say(f"error: {self.peer} ({self.target}): {message}")


def tally(failures: dict[str, int]) -> str:
    """`refused x7` or `refused x5, timeout x2`: each kind of failure, in the order they came."""
    return ", ".join(f"{kind} x{count}" for kind, count in failures.items()) or "no attempt in time"


def spent(error: dict[str, object]) -> str:
    """`within 10s (refused x7)`: a give-up `error` in words, the budget spent and what the attempts met."""
    budget, failures = error.get("budget"), error.get("failures")
    return f"within {float(budget) if isinstance(budget, int | float) else 0.0:g}s " \
           f"({tally(failures) if isinstance(failures, dict) else 'no attempt'})"
