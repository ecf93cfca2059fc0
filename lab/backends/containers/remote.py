"""Talking to a node on another host, through its engine's API only (no shared folder, no ssh).

- `Channel`: the container's attach stream. The lab writes "go" to the agent's stdin; the agent
  answers with status lines on its stdout (lab/roles/agent.py). Docker multiplexes stdout and
  stderr in frames (8-byte header: stream, 0, 0, 0, big-endian size); `Channel.feed` parses them.
- `clock_offset`: a host's clock against ours, from the engine's SystemTime (midpoint method).
- `tar_files` / `extract`: files in and out of a container (put_archive / get_archive); `store`:
  a piece of a node's file the agent streamed.
- `ship_image`: an image saved from the local engine and loaded into hosts that lack it.
"""

from __future__ import annotations

import io
import os
import ssl
import tarfile
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lab.errors import BackendError
from lab.roles.shipper import parse as parse_piece
from lab.rundir import RunDir

STATUS = "LAB-AGENT"  # the agent's status lines (lab.roles.agent.STATUS)
HEADER = 8
OUTPUT_LIMIT = 64 * 1024  # bytes of a container's own output kept as evidence
STREAMED = ("log", "jsonl")  # the files an agent streams (lab/roles/shipper.py)


@dataclass
class Channel:
    """One node's attach stream: status facts in, "go" out."""

    sock: Any  # the hijacked HTTP connection (a socket)
    pending: bytearray = field(default_factory=bytearray)
    line: bytearray = field(default_factory=bytearray)
    output: bytearray = field(default_factory=bytearray)  # what the container printed that is not status
    closed: bool = False

    def fileno(self) -> int:
        return int(self.sock.fileno())

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> list[str]:
        """The status facts that arrived ("ready", "exit 3"); sets `closed` at end of stream."""
        try:
            data = self.sock.recv(65536)
            while data and getattr(self.sock, "pending", lambda: 0)():  # (TLS: decrypted, which select never sees)
                data += self.sock.recv(65536)
        except (BlockingIOError, ssl.SSLWantReadError):  # (TLS: part of a record so far)
            return []
        except OSError:
            data = b""
        if not data:
            self.closed = True
        return self.feed(data)

    def feed(self, data: bytes) -> list[str]:
        self.pending += data
        facts: list[str] = []
        while len(self.pending) >= HEADER:
            size = int.from_bytes(self.pending[4:HEADER], "big")
            if len(self.pending) < HEADER + size:
                break
            payload = bytes(self.pending[HEADER:HEADER + size])
            del self.pending[:HEADER + size]
            facts += self._lines(payload)
        return facts

    def _lines(self, payload: bytes) -> list[str]:
        self.line += payload
        facts: list[str] = []
        while b"\n" in self.line:
            raw, _, rest = bytes(self.line).partition(b"\n")
            self.line = bytearray(rest)
            text = raw.decode(errors="replace").strip()
            if text in ("ready", "answered"):  # a role's own facts, on the fd it was given
                facts.append(text)
            elif text.startswith(STATUS + " "):
                facts.append(text[len(STATUS) + 1:])
            elif len(self.output) < OUTPUT_LIMIT:
                self.output += raw + b"\n"
        return facts

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def open_channel(api: Any, container: str) -> Channel:
    """Attach to stdin/stdout/stderr of a created (not yet started) container."""
    sock = api.attach_socket(container, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    raw = getattr(sock, "_sock", sock)  # the SDK wraps the socket in a SocketIO
    raw.setblocking(False)
    return Channel(raw)


# ----------------------------------------------------------------------------- clock


def clock_offset(client: Any, samples: int = 3) -> tuple[float, float]:
    """(host clock - our clock, uncertainty) in seconds, from the sample with the shortest round trip."""
    best: tuple[float, float] | None = None
    for _ in range(samples):
        t0 = time.time()
        system_time = client.api.info()["SystemTime"]
        t1 = time.time()
        offset = parse_time(system_time) - (t0 + t1) / 2
        if best is None or (t1 - t0) / 2 < best[1]:
            best = (offset, (t1 - t0) / 2)
    assert best is not None
    return best


def parse_time(text: str) -> float:
    """RFC 3339 with nanoseconds ("2026-11-21T07:28:04.187557182Z" or "+01:00"), as a timestamp."""
    text = text.strip().replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    return datetime.fromisoformat(text).timestamp()


# ----------------------------------------------------------------------------- files


def tar_files(files: Iterable[tuple[str, bytes]], folders: Iterable[tuple[str, Path]] = (),
              skip: Iterable[str] = ()) -> bytes:
    """A tar of literal files (name, data) and of whole folders (name in the tar, path here), without
    `skip` (paths relative to a folder)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
            tar.addfile(info, io.BytesIO(data))
        for name, path in folders:  # root's, readable: the agent copies them before it drops to the node
            left_out = {f"{name}/{s}" for s in skip}

            def keep(info: tarfile.TarInfo, out: set[str] = left_out) -> tarfile.TarInfo | None:
                return None if info.name in out else _readable(info)

            tar.add(str(path), arcname=name, filter=keep)
    return buf.getvalue()


def _readable(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode |= 0o555 if info.isdir() else 0o444
    return info


def store(rundir: RunDir, node: str, fact: str) -> None:
    """A piece of a node's log or transcript streamed by its agent, written at its offset (a piece
    written twice, or again by `extract`, lands on the same bytes)."""
    piece = parse_piece(fact)
    if piece is None or piece[0] not in STREAMED:
        return
    name, offset, data = piece
    _write_at(rundir.log(node) if name == "log" else rundir.transcript(node), data, offset)


def _write_at(path: Path, data: bytes, offset: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def extract(stream: Iterable[bytes], wanted: dict[str, Path], limit: int) -> list[str]:
    """Write the members of a get_archive stream named in `wanted` (basename -> local path), each
    cut at `limit` bytes, from the start of the local file (onto what was streamed of it, and under
    what the lab added after it); returns the names written."""
    data = io.BytesIO(b"".join(stream))
    written: list[str] = []
    with tarfile.open(fileobj=data, mode="r|") as tar:
        for member in tar:
            base = member.name.rsplit("/", 1)[-1]
            if not member.isfile() or base not in wanted:
                continue
            source = tar.extractfile(member)
            if source is None:
                continue
            _write_at(wanted[base], source.read(limit), 0)
            written.append(base)
    return written


# ----------------------------------------------------------------------------- images


def ship_image(local: Any, tag: str, targets: dict[str, Any]) -> None:
    """Save `tag` from the local engine once, load it into every target engine (name -> client)."""
    from concurrent.futures import ThreadPoolExecutor

    with tempfile.TemporaryDirectory(prefix="lab-image-") as folder:
        path = Path(folder) / "image.tar"
        try:
            with open(path, "wb") as f:
                for chunk in local.api.get_image(tag):
                    f.write(chunk)
        except Exception as e:  # noqa: BLE001
            raise BackendError(f"docker: save image {tag} from the local engine: {e}") from None

        def load(item: tuple[str, Any]) -> None:
            host, client = item
            try:
                with open(path, "rb") as f:
                    list(client.api.load_image(f))
            except Exception as e:  # noqa: BLE001
                raise BackendError(f"docker: load image {tag} into host {host}: {e}") from None

        with ThreadPoolExecutor(max(1, len(targets))) as pool:
            list(pool.map(load, targets.items()))
