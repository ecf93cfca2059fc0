"""A node's log and transcript, streamed to the lab while it runs (standard library only).

On a remote host (swarm backend) the agent's attach stream is the node's only way out: without
this, its files came back only when it ended, so `lab logs -f` and `lab check` saw nothing of a
running node and a lost host took all of its output. Every SHIP_EVERY seconds, what each file
gained since the last look goes out as status lines, `LAB-AGENT data FILE OFFSET BASE64`, each one
write(2) no longer than PIPE_BUF: a role's own facts, written on the same stream by other threads,
never land inside one. The lab writes each piece at its offset, so the copy it takes when the node
ends (the whole file, from the engine) lands on the same bytes. A lost host loses at most the last
SHIP_EVERY seconds of output. Before each fact the node tells ("ready", "answered", its exit), what
its files hold is sent first: the lab never hears of readiness before the log that led to it.
"""

from __future__ import annotations

import base64
import os
import threading

TYPE_CHECKING = False  # not typing's: importing typing costs a node ~10 ms at each start
if TYPE_CHECKING:
    from collections.abc import Callable

PREFIX = "LAB-AGENT data"  # (lab.roles.agent.STATUS + " data")
SHIP_EVERY = 0.25  # seconds between looks at the files
PIECE = 2 * 1024  # bytes of a file per line: base64 makes that 2732 characters, well under PIPE_BUF


class Shipper:
    """Sends the new bytes of `files` (name -> path) on `status`, up to `limit` bytes of each."""

    def __init__(self, status: int, files: dict[str, str], limit: int) -> None:
        self.status, self.files, self.limit = status, files, limit
        self.sent = dict.fromkeys(files, 0)
        self.lock = threading.Lock()
        self.done = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._loop, name="lab-shipper", daemon=True).start()

    def _loop(self) -> None:
        while not self.done.wait(SHIP_EVERY):
            self.ship()

    def finish(self) -> None:
        """The last of both files, before the agent reports the exit (called once the node ends)."""
        self.done.set()
        self.ship()

    def ship(self) -> None:
        if not self.lock.acquire(timeout=2.0):  # (the loop is mid-write: the lab is not reading)
            return
        try:
            for name, path in self.files.items():
                self._file(name, path)
        except OSError:
            self.done.set()  # the lab is gone: the engine keeps the files for `lab clean` to take
        finally:
            self.lock.release()

    def _file(self, name: str, path: str) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            while self.sent[name] < self.limit:
                data = os.pread(fd, min(PIECE, self.limit - self.sent[name]), self.sent[name])
                if not data:
                    return
                os.write(self.status, f"{PREFIX} {name} {self.sent[name]} ".encode() + base64.b64encode(data) + b"\n")
                self.sent[name] += len(data)
        finally:
            os.close(fd)


def parse(fact: str) -> tuple[str, int, bytes] | None:
    """(file, offset, data) of a `data FILE OFFSET BASE64` fact; None if it is not one (or is damaged)."""
    parts = fact.split(" ")
    if len(parts) != 4 or parts[0] != "data":
        return None
    try:
        return parts[1], int(parts[2]), base64.b64decode(parts[3], validate=True)
    except ValueError:
        return None


def before_leaving(shipper: Shipper, report: Callable[[str], None]) -> Callable[[int], None]:
    """What a role leaving at once (stopped by a signal) does first: the rest of its files, then its code."""

    def leave(code: int) -> None:
        shipper.finish()
        report(f"exit {code}")

    return leave
