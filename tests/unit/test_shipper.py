"""A node's files streamed on its agent's status channel (swarm): every line one write of at most
PIPE_BUF bytes, every byte sent once in order, and the lab's copy built at the pieces' offsets, onto
which the whole file taken from the engine at the end lands unchanged."""

from __future__ import annotations

import base64
import io
import os
import select
import tarfile
from pathlib import Path

from lab.backends.containers.remote import Channel, extract, store
from lab.roles import shipper
from lab.roles.shipper import Shipper
from lab.rundir import RunDir


def _lines(fd: int) -> list[bytes]:
    data = b""
    while select.select([fd], [], [], 0)[0]:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        data += chunk
    return data.splitlines(keepends=True)


def test_new_bytes_go_out_in_pieces_below_pipe_buf_and_each_byte_once(tmp_path: Path) -> None:
    log, transcript = tmp_path / "n.log", tmp_path / "n.jsonl"
    log.write_bytes(os.urandom(5000))
    read, write = os.pipe()
    s = Shipper(write, {"log": str(log), "jsonl": str(transcript)}, limit=7000)
    s.ship()
    first = _lines(read)
    assert len(first) == 3 and all(len(line) <= select.PIPE_BUF for line in first)
    with open(log, "ab") as f:
        f.write(b"more\n" * 1000)  # past the limit: cut there
    transcript.write_text('{"event": "start"}\n')
    s.finish()
    pieces = [shipper.parse(line.decode().removeprefix("LAB-AGENT ").strip()) for line in first + _lines(read)]
    assert all(p is not None for p in pieces)
    got = {name: b"".join(d for n, _, d in pieces if n == name) for name in ("log", "jsonl")}  # type: ignore[misc]
    assert got["log"] == log.read_bytes()[:7000] and got["jsonl"] == transcript.read_bytes()
    offsets = [o for n, o, _ in pieces if n == "log"]  # type: ignore[misc]
    assert offsets == sorted(offsets) and offsets[0] == 0
    s.ship()
    assert _lines(read) == []  # nothing new: nothing sent


def test_a_damaged_or_foreign_line_is_not_a_piece() -> None:
    assert shipper.parse("data log 0 aGk=") == ("log", 0, b"hi")
    for fact in ("data log x aGk=", "data log 0 a!k=", "ready", "data log 0"):
        assert shipper.parse(fact) is None


def test_the_lab_writes_pieces_at_their_offsets_and_the_final_copy_lands_on_them(tmp_path: Path) -> None:
    rundir = RunDir.create(tmp_path / "run", "x")
    channel = Channel(sock=None)
    whole = b"line one\nline two\nline three\n"
    frames = b""
    for offset in (18, 0, 9, 9):  # out of order, and one twice
        line = f"LAB-AGENT data log {offset} ".encode() + base64.b64encode(whole[offset:offset + 9]) + b"\n"
        frames += bytes([1, 0, 0, 0]) + len(line).to_bytes(4, "big") + line
    for fact in channel.feed(frames):
        store(rundir, "n", fact)
    assert rundir.log("n").read_bytes() == whole[:27]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("out/n.log")
        info.size = len(whole)
        tar.addfile(info, io.BytesIO(whole))
    extract([buf.getvalue()], {"n.log": rundir.log("n")}, limit=1 << 20)
    assert rundir.log("n").read_bytes() == whole  # completed, nothing twice
