"""`python -m lab.backends.capture [--netns PATH] --iface br0 --out FILE [--limit BYTES]`: every frame
that crosses one interface, written to a classic pcap file (what tcpdump and Wireshark open), with
the standard library alone: an AF_PACKET socket, no tcpdump to install in a lab.

A lab's networks are bridges in its own namespace (fabric.py); a socket bound to a bridge in
promiscuous mode sees each frame crossing it once, between whichever ports (as `tcpdump -i br0`).
Each batch of frames is written as it is read, so a lab killed with -9 loses nothing captured; the
file never grows past --limit (a run must not fill the disk): later frames are counted, not
written. `ready` on stdout: the socket is bound, the header written; SIGTERM: one JSON line of counts.

It never outlives the lab that started it (`Capture.start`): a lab killed with -9 cannot stop it, and
a capture left running would keep the lab's namespaces (its bridges, its veths) alive, and in a
rootless lab out of `lab clean`'s reach for good. So the end of its parent ends it as SIGTERM does
(drained, the file closed): `--watch FD` is a pipe whose other end the parent holds while it lives
(EOF: gone), and `--parent PID` arms the kernel's parent-death signal as well.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from lab.backends import linux
from lab.errors import BackendError
from lab.signals import set_parent_death_signal

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC, PACKET_STATISTICS = 1, 1, 6
SO_RCVBUFFORCE = 33
RCVBUF = 4 << 20  # a burst of frames waits here while the file is written
SNAPLEN = 262144  # (a veth passes GSO frames of up to 64 KiB through the bridge)
LINKTYPE_ETHERNET = 1
HEADER = struct.pack("=IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET)
RECORD = struct.Struct("=IIII")  # ts_sec, ts_usec, incl_len, orig_len
SO_TIMESTAMPNS = 35  # SCM_TIMESTAMPNS: a struct timespec with each frame
TIMESPEC = struct.Struct("qq")
STAMP_SPACE = socket.CMSG_SPACE(TIMESPEC.size)
DEFAULT_LIMIT = 64 << 20
BATCH = 256  # frames read before they are written
TICK = 0.2  # s: the longest poll (a signal wakes it at once anyway)
DRAIN = 0.5  # s: the longest drain at the end, were frames to keep coming


def open_socket(iface: str) -> socket.socket:
    """A packet socket on `iface` alone, its device promiscuous while the socket lives. Made with
    protocol 0 and bound with ETH_P_ALL, as libpcap does: a socket made with ETH_P_ALL sees every
    interface's frames (the bridge's ports' too, duplicates) until it is bound."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
    except OSError:  # no CAP_NET_ADMIN: as much as net.core.rmem_max allows
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)  # each frame's arrival, stamped by the kernel
    sock.bind((iface, ETH_P_ALL))
    mreq = struct.pack("iHH8s", socket.if_nametoindex(iface), PACKET_MR_PROMISC, 0, b"")
    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
    sock.setblocking(False)
    return sock


class Writer:
    """The pcap file: a header, then records, while they fit in `limit` bytes (header included).
    The first frame that does not fit ends the writing: the file stays a whole prefix of the
    traffic, and every frame from then on is counted in `over_limit`."""

    def __init__(self, path: str, limit: int):
        self.file = open(path, "wb")  # closed by main
        self.limit, self.size, self.packets, self.over_limit = limit, len(HEADER), 0, 0
        self.write([HEADER])

    def add(self, frames: list[tuple[float, int, bytes]]) -> None:
        chunks = []
        for stamp, length, data in frames:
            record = RECORD.size + len(data)
            if self.over_limit or self.size + record > self.limit:
                self.over_limit += 1
                continue
            sec = int(stamp)
            chunks += [RECORD.pack(sec, int((stamp - sec) * 1e6), len(data), length), data]
            self.size += record
            self.packets += 1
        self.write(chunks)

    def write(self, chunks: list[bytes]) -> None:
        self.file.write(b"".join(chunks))
        self.file.flush()  # in the file now, whatever happens to this process


def read_batch(sock: socket.socket, buf: bytearray) -> list[tuple[float, int, bytes]]:
    """Up to BATCH frames already queued (stamp, length on the wire, captured bytes). The stamp is
    the kernel's, taken as the frame arrived: a busy machine reading late does not move it."""
    frames = []
    for _ in range(BATCH):
        try:  # n: the whole frame's length (MSG_TRUNC)
            n, ancillary, _, _ = sock.recvmsg_into([buf], STAMP_SPACE, socket.MSG_TRUNC)
        except OSError as e:  # none left, or the device went down (said once: it may come back)
            if e.errno in (errno.EAGAIN, errno.ENETDOWN):
                break
            raise
        stamp = next((sec + nsec / 1e9 for level, kind, data in ancillary
                      if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size
                      for sec, nsec in [TIMESPEC.unpack_from(data)]), None)
        frames.append((time.time() if stamp is None else stamp, n, bytes(buf[:min(n, len(buf))])))
    return frames


def capture(sock: socket.socket, writer: Writer, wake: int, stopping: list[int],
            watch: int | None = None) -> dict[str, int]:
    """Frames to the file until a signal is in `stopping`, or `watch` (the parent's pipe, never
    written to) says anything at all: EOF, POLLHUP, or POLLNVAL (no such fd), each one a parent gone."""
    buf = bytearray(SNAPLEN)
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    poller.register(wake, select.POLLIN)
    if watch is not None:
        poller.register(watch, select.POLLIN)
    while not stopping:
        events = poller.poll(TICK * 1000)
        if any(fd == watch for fd, _ in events):
            stopping.append(0)  # (0: no signal, the parent is gone)
        if events:
            writer.add(read_batch(sock, buf))
    end = time.monotonic() + DRAIN
    while time.monotonic() < end and (frames := read_batch(sock, buf)):
        writer.add(frames)
    _, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    return {"packets": writer.packets, "bytes": writer.size, "over_limit": writer.over_limit, "kernel_drops": drops}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.backends.capture")
    parser.add_argument("--netns", help="a network namespace file (/run/netns/NAME); default: this one")
    parser.add_argument("--iface", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="most bytes in the file, header included")
    parser.add_argument("--watch", type=int, help="an inherited pipe's read end: its EOF (the parent gone) stops")
    parser.add_argument("--parent", type=int, help="the parent's pid: its death stops (PR_SET_PDEATHSIG)")
    args = parser.parse_args(argv)
    if args.limit < len(HEADER):
        parser.error(f"--limit {args.limit}: less than the pcap header ({len(HEADER)} bytes)")
    stopping: list[int] = []
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)  # a signal wakes the poll at once (the handler alone would not)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, _: stopping.append(signum))
    if args.parent:  # (after the handlers: the death signal is a stop, drained and flushed, not a kill)
        set_parent_death_signal(signal.SIGTERM)
        if os.getppid() != args.parent:  # the parent died before the signal was armed
            stopping.append(0)
    step = f"namespace {args.netns}"
    try:
        if args.netns:
            with open(args.netns, "rb") as ns:
                linux.setns(ns.fileno(), linux.CLONE_NEWNET)
        step = f"interface {args.iface}"
        sock = open_socket(args.iface)
        step = f"cannot write {args.out}"
        writer = Writer(args.out, args.limit)
        _say(b"ready\n")
        summary = capture(sock, writer, wake_r, stopping, args.watch)
        writer.file.close()
    except OSError as e:
        print(f"capture: {step}: {e.strerror or e}", file=sys.stderr)
        return 2
    _say((json.dumps(summary) + "\n").encode())
    return 0


def _say(line: bytes) -> None:
    """A line on stdout, unless nobody reads it any more (EPIPE: the parent is gone): the file is
    what counts, and it is written whether or not this is."""
    try:
        os.write(1, line)
    except OSError:
        pass


class Capture:
    """The capture program, run for the caller: `Capture.start(...)` returns once it is ready, and
    `stop()` ends it and returns its counts."""

    def __init__(self, proc: subprocess.Popen[bytes], watch: int = -1):
        self.proc = proc
        self.watch = watch  # the write end of its --watch pipe: held open while it is to run (-1: closed)
        self.summary: dict[str, Any] | None = None  # (its counts, once stopped)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    def start(cls, netns: str | None, iface: str, out: Path, limit: int = DEFAULT_LIMIT,
              deadline: float = 10.0) -> Capture:
        """Start it, its own session (a Ctrl-C on the terminal is the lab's to handle, not its), and
        wait for its `ready`; BackendError, with what it said, if it exits or is not ready in time.

        It ends with this process, however this one ends: it is given a pipe's read end whose write
        end only this process holds (not inherited: a node forked from here closes it, an exec'd
        program never has it), and the death signal, armed only when started from the main thread:
        the kernel sends it when the forking *thread* ends, which for a worker thread is not the lab's end."""
        watch_r, watch = os.pipe()  # (both close-on-exec: the capture gets its end by pass_fds alone)
        argv = [sys.executable, "-m", "lab.backends.capture", "--iface", iface, "--out", str(out),
                "--limit", str(limit), *(["--netns", netns] if netns else []), "--watch", str(watch_r)]
        if threading.current_thread() is threading.main_thread():
            argv += ["--parent", str(os.getpid())]
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True, pass_fds=(watch_r,))
        except BaseException:
            os.close(watch)
            raise
        finally:
            os.close(watch_r)
        assert proc.stdout is not None
        fd, seen, end = proc.stdout.fileno(), b"", time.monotonic() + deadline
        try:
            while b"\n" not in seen:
                left = end - time.monotonic()
                chunk = os.read(fd, 4096) if left > 0 and select.select([fd], [], [], left)[0] else b""
                if not chunk:  # exited, or too late
                    proc.kill()
                    why = proc.communicate()[1].decode(errors="replace").strip() or f"not ready within {deadline:g}s"
                    raise BackendError(f"capture of {iface}: {why}")
                seen += chunk
        except BaseException:  # (a Ctrl-C meanwhile too: no capture is left running)
            proc.kill()
            proc.wait()
            os.close(watch)
            raise
        return cls(proc, watch)

    def stop(self, timeout: float = 5.0) -> dict[str, Any]:
        """SIGTERM, then SIGKILL if it has not ended within `timeout` s; its counts ({} if none)."""
        if self.summary is not None:
            return self.summary
        self.proc.send_signal(signal.SIGTERM)  # (nothing, if it has already exited)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        if self.watch >= 0:  # (it has ended: the pipe has nothing more to say)
            os.close(self.watch)
            self.watch = -1
        lines = out.decode(errors="replace").splitlines()
        try:
            found = json.loads(lines[-1]) if lines else {}
        except ValueError:
            found = {}
        self.summary = found if isinstance(found, dict) else {}
        return self.summary


if __name__ == "__main__":
    sys.exit(main())
