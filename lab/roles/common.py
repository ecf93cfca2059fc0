"""What every built-in role shares: the transcript, the readiness signal, byte encoding, error kinds.

Standard library only: the roles run unchanged in a namespace (forked from the orchestrator) or in a
container (`python3 -m lab.roles`). Nothing here keeps module-level mutable state, because a forked
child inherits whatever the parent had.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable

TYPE_CHECKING = False  # not typing's: importing typing costs a node ~10 ms at each start
if TYPE_CHECKING:
    from typing import Any

STATUS_FD_ENV = "LAB_STATUS_FD"  # a pipe or stream to the lab: one fact per line ("ready", "answered")
FACT_FILE_ENV = "LAB_FACT_FILE"  # containers: a path template, "{fact}" replaced by the fact's name
CONTROL_FD_ENV = "LAB_CONTROL_FD"  # from the lab: one word per line ("release")
PREVIEW = 60  # characters of data shown in human-readable log lines
DATA_LIMIT = 8 * 1024 * 1024  # bytes of sent/received data one transcript records (a flood is cut)
# The swarm agent's (lab/roles/shipper.py; empty elsewhere): what is done before a fact is told (the
# node's files sent up to now, so the lab never hears "ready" before the log that led to it), and what
# a role leaving at once does before it goes, given its exit code (the rest of its files, then the code).
BEFORE_TELLING: list[Callable[[], None]] = []
LEAVING: list[Callable[[int], None]] = []
STOPPING: list[Callable[[], None]] = []  # a role's last words when the lab stops it, before its `end` event


class Transcript:
    """A JSON-lines event log: one event per line, written whole and unbuffered at each event.

    Unbuffered so a role killed at teardown loses nothing already recorded; locked because server
    roles record from a thread per connection. The lock is re-entrant because the SIGTERM handler
    (which runs in the main thread, between any two bytecodes) writes the final event too.
    """

    def __init__(self, path: str | int, role: str = ""):
        self.role = role  # the name the role runs under (its catalogue entry's), for its messages
        self._file = open(path, "ab", buffering=0)  # appended: a node the timeline restarts goes on
        self._lock = threading.RLock()
        self._recorded = 0  # bytes of data recorded so far
        self._truncated = False

    def event(self, event: str, **fields: Any) -> None:
        """Record one event: {"t": time.time(), "event": event, **fields}."""
        record = {"t": time.time(), "event": event, **fields}
        line = (json.dumps(record, default=str) + "\n").encode()
        with self._lock:
            if not self._file.closed:
                self._file.write(line)

    def data(self, event: str, payload: bytes, **fields: Any) -> bool:
        """Record a `sent`/`received` event carrying bytes (see `encode_bytes`). Returns False once
        the transcript holds DATA_LIMIT bytes of data: a peer that floods must not fill the disk. The
        first event past the limit is recorded as `truncated` (with its size, without its bytes)."""
        with self._lock:
            self._recorded += len(payload)
            over = self._recorded > DATA_LIMIT
            first_over, self._truncated = over and not self._truncated, self._truncated or over
        if first_over:
            self.event("truncated", **fields, of=event, size=len(payload), limit=DATA_LIMIT)
        if over:
            return False
        self.event(event, **fields, **encode_bytes(payload))
        return True

    def error(self, exc: BaseException, during: str, **fields: Any) -> str:
        """Record an `error` event classified by `error_kind`; returns the kind."""
        kind = error_kind(exc)
        self.event("error", **fields, kind=kind, during=during, message=describe(exc))
        return kind

    def close(self) -> None:
        with self._lock:
            self._file.close()


def encode_bytes(payload: bytes) -> dict[str, str]:
    """{"data": text} when the bytes are UTF-8, else {"data_b64": base64}: readable yet lossless."""
    try:
        return {"data": payload.decode("utf-8")}
    except UnicodeDecodeError:
        return {"data_b64": base64.b64encode(payload).decode("ascii")}


def event_bytes(event: dict[str, Any]) -> bytes:
    """The bytes a `sent`/`received` event carries (inverse of `encode_bytes`)."""
    if "data_b64" in event:
        return base64.b64decode(event["data_b64"])
    return str(event.get("data", "")).encode("utf-8")


def error_kind(exc: BaseException) -> str:
    """The kind of a network error, as checks and users speak of it."""
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "reset"
    if isinstance(exc, TimeoutError):  # socket.timeout is an alias since 3.10
        return "timeout"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "unreachable"
    return "other"


def describe(exc: BaseException) -> str:
    """A one-line message for an exception (some, like socket.timeout, have an empty str())."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def announce_ready(role: str, detail: str) -> None:
    """Tell the orchestrator this role is ready: a `LAB-READY` stdout line, then the `ready` fact."""
    say(f"LAB-READY {role} {detail}")
    tell_lab("ready")


def tell_lab(fact: str) -> None:
    """One fact for the lab ("ready", "answered"), on whichever channel the backend gave: a status fd
    (a pipe on netns, the attach stream on swarm) or a file in the folder the lab shares (docker).

    The fd stays open for the next fact; the lab reads lines until the role exits."""
    for before in BEFORE_TELLING:
        before()
    _fact_file(fact, fact)
    fd_text = os.environ.get(STATUS_FD_ENV, "")
    if fd_text:
        try:
            os.write(int(fd_text), f"{fact}\n".encode())
        except (ValueError, OSError) as exc:
            print(f"lab: cannot tell the lab {fact!r} on fd {fd_text!r}: {exc}", file=sys.stderr, flush=True)


def tell_exit(code: int) -> None:
    """The exit code of a role leaving at once (stopped by a signal), where its agent would have told
    it: in the fact folder the lab shares (docker), or on the agent's stream after the rest of the
    node's files (swarm: LEAVING), so the lab needs no word from the engine. On netns the lab has it
    already (the role is its child)."""
    for leave in LEAVING:
        leave(code)
    _fact_file("exit", str(code))


def _fact_file(fact: str, text: str) -> None:
    template = os.environ.get(FACT_FILE_ENV, "")
    if template:
        path = template.replace("{fact}", fact)
        try:
            with open(path + ".tmp", "w") as f:
                f.write(text + "\n")
            os.rename(path + ".tmp", path)  # whole or absent: the lab never reads half a fact
        except OSError as exc:
            print(f"lab: cannot tell the lab {fact!r} in {path!r}: {exc}", file=sys.stderr, flush=True)


def control_fd() -> int | None:
    """The fd on which the lab sends words to this role (None when it gave none)."""
    try:
        return int(os.environ[CONTROL_FD_ENV])
    except (KeyError, ValueError):
        return None


def say(message: str) -> None:
    """One human-readable line for the node's log (flushed: the log must be complete at any kill)."""
    print(message, flush=True)


def preview(payload: bytes) -> str:
    """Bytes shown in a log line: repr-like, line endings visible, cut to PREVIEW characters."""
    text = payload.decode("utf-8", errors="replace")
    return repr(text) if len(text) <= PREVIEW else repr(text[:PREVIEW]) + "..."


def peer_text(address: Any) -> str:
    """'ip:port' for a socket address tuple."""
    return f"{address[0]}:{address[1]}"


def listening_socket(port: int, backlog: int = 256) -> socket.socket:
    """A TCP socket listening on 0.0.0.0:port with SO_REUSEADDR (restarts must not wait TIME_WAIT)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


LOOPBACK_V4 = "7F"  # /proc/net/tcp writes an IPv4 address as little-endian hex: 127.x ends in 7F
LOOPBACK_V6 = ("00000000000000000000000001000000", "0000000000000000FFFF0000")  # ::1, ::ffff:0:0/96


def listening_tcp_ports(pid: int) -> set[int]:
    """Ports with a socket in LISTEN state, on an address other nodes can reach, in the network
    namespace of `pid`.

    Read from /proc/PID/net/tcp{,6}: readiness is observed without connecting, so a one-shot
    server is not consumed by the probe. A listener on loopback only (a server bound to 127.0.0.1
    or "localhost") does not count: no other node can connect to it. (Used by the netns and docker
    backends from outside, and by a swarm node's agent from inside.)
    """
    ports: set[int] = set()
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{name}") as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] == "0A":
                        address, _, port = fields[1].rpartition(":")
                        if not loopback(address):
                            ports.add(int(port, 16))
        except OSError:
            continue
    return ports


def loopback(address: str) -> bool:
    """Whether a /proc/net/tcp{,6} local address (hex) is a loopback address."""
    if len(address) == 8:
        return address.upper().endswith(LOOPBACK_V4)
    upper = address.upper()
    return upper == LOOPBACK_V6[0] or (upper.startswith(LOOPBACK_V6[1]) and upper.endswith(LOOPBACK_V4))


def copy_files(source: str, dest: str, skip: Iterable[str] = ()) -> None:
    """A node's own copy of its files (links copied as links), without `skip` (paths relative to
    `source`: the lab's run folders found inside them). In a namespace or a container alike."""
    import shutil

    left_out = {os.path.normpath(p) for p in skip}

    def ignore(folder: str, names: list[str]) -> list[str]:
        rel = os.path.relpath(folder, source)
        return [n for n in names if os.path.normpath(os.path.join(rel, n)) in left_out]

    shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True, ignore=ignore if left_out else None)


def chown_tree(folder: str | os.PathLike[str], uid: int) -> None:
    """Give a node's copy of its files to the node's uid (links themselves, never their targets)."""
    for root, _, names in os.walk(folder):
        os.lchown(root, uid, uid)
        for name in names:
            os.lchown(os.path.join(root, name), uid, uid)
