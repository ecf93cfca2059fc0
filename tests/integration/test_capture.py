"""The capture program (lab/backends/capture.py) on a real bridge: a scratch fabric namespace holds
`br0` and two veth ports whose peers are two scratch node namespaces (10.77.0.1, 10.77.0.2); a
real TCP connection between them must be in the pcap file, each of its frames once, as tcpdump
reads it.

The scratch namespaces are held by processes (`unshare --net`), never named in /run/netns: `ip
netns add` would create and mount /run/netns, which `ip netns del` leaves behind. A holder reads its
stdin until EOF, so a killed test leaves none of them either.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.backends.capture import HEADER, Capture
from lab.errors import BackendError

PORT = 5577
TAG = "labcapt-"
HOLD = "import sys; print('ready', flush=True); sys.stdin.read()"
SERVER = f"""\
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.77.0.2", {PORT}))
s.listen(1)
print("listening", flush=True)
c, _ = s.accept()
data = b""
while len(data) < SIZE:
    data += c.recv(65536)
c.sendall(data)
while c.recv(65536):  # until the client's FIN: ours comes after it
    pass
c.close()
"""
CLIENT = f"""\
import socket
c = socket.create_connection(("10.77.0.2", {PORT}), timeout=10)
c.sendall(b"x" * SIZE)
got = 0
while got < SIZE:
    got += len(c.recv(65536))
c.shutdown(socket.SHUT_WR)
while c.recv(65536):  # until the server's FIN: it has crossed the bridge
    pass
print(c.getsockname()[1])
"""


@dataclass
class Scratch:
    tag: str
    holders: dict[str, subprocess.Popen[str]]

    def netns(self, name: str) -> str:
        return f"/proc/{self.holders[name].pid}/ns/net"

    def inside(self, name: str, *argv: str) -> list[str]:
        return ["nsenter", f"--net={self.netns(name)}", "--", *argv]

    def run(self, name: str, *argv: str) -> None:
        subprocess.run(self.inside(name, *argv), check=True, capture_output=True, timeout=30)


def _hold(name: str) -> subprocess.Popen[str]:
    holder = subprocess.Popen(["unshare", "--net", "--", sys.executable, "-c", HOLD, name], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline() == "ready\n"  # unshared by then
    return holder


def _leftovers() -> list[str]:
    found = [f"/run/netns/{n}" for n in (os.listdir("/run/netns") if os.path.isdir("/run/netns") else [])
             if n.startswith(TAG)]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    found += [line for line in links.splitlines() if TAG in line]
    for entry in os.scandir("/proc"):
        try:
            if entry.name.isdigit() and TAG.encode() in Path(f"/proc/{entry.name}/cmdline").read_bytes():
                found.append(f"process {entry.name}")
        except OSError:
            continue
    return found


@pytest.fixture
def fabric() -> Iterator[Scratch]:
    tag = TAG + secrets.token_hex(3)
    net = Scratch(tag, {})
    try:
        for name in ("fabric", "a", "b"):
            net.holders[name] = _hold(f"{tag}-{name}")
            net.run(name, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1")  # a quiet bridge: only the test's frames
            net.run(name, "ip", "link", "set", "lo", "up")
        net.run("fabric", "ip", "link", "add", "br0", "type", "bridge")
        net.run("fabric", "ip", "link", "set", "br0", "up")
        for k, name in enumerate(("a", "b"), start=1):
            port = f"{TAG}p{k}"
            net.run("fabric", "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns",
                    str(net.holders[name].pid))
            net.run("fabric", "ip", "link", "set", port, "master", "br0", "up")
            net.run(name, "ip", "addr", "add", f"10.77.0.{k}/24", "dev", "eth0")
            net.run(name, "ip", "link", "set", "eth0", "up")
        yield net
    finally:
        for holder in net.holders.values():
            holder.kill()  # (its namespace, and the links in it, go with it)
            holder.communicate()
        left = _leftovers()
        assert not left, f"left behind: {left}"


def exchange(net: Scratch, size: int = 1000) -> int:
    """One TCP connection from a to b: `size` bytes there and back, then both FINs. Its client port."""
    server = subprocess.Popen(net.inside("b", sys.executable, "-c", SERVER.replace("SIZE", str(size))),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline() == "listening\n"
        client = subprocess.run(net.inside("a", sys.executable, "-c", CLIENT.replace("SIZE", str(size))),
                                capture_output=True, text=True, timeout=30, check=True)
        assert server.wait(timeout=30) == 0
        return int(client.stdout)
    finally:
        server.kill()
        server.communicate()


def read_pcap(path: Path) -> list[str]:
    tcpdump = shutil.which("tcpdump") or pytest.fail("tcpdump is not installed: apt-get install -y tcpdump")
    done = subprocess.run([tcpdump, "-r", str(path), "-nn"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "truncated" not in done.stderr, done.stderr
    return done.stdout.splitlines()


def test_each_frame_of_a_connection_once(fabric: Scratch, tmp_path: Path) -> None:
    out = tmp_path / "lan.pcap"
    capture = Capture.start(fabric.netns("fabric"), "br0", out, limit=64 << 20)
    try:
        client = exchange(fabric)
    finally:
        summary = capture.stop()
    assert capture.proc.returncode == 0
    assert out.read_bytes()[:24] == HEADER == struct.pack("=IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    lines = read_pcap(out)
    there, back = f"10.77.0.1.{client} > 10.77.0.2.{PORT}:", f"10.77.0.2.{PORT} > 10.77.0.1.{client}:"
    for direction, flags in ((there, "[S]"), (back, "[S.]"), (there, "[F.]"), (back, "[F.]")):
        assert sum(f"{direction} Flags {flags}," in line for line in lines) == 1, (direction, flags, lines)
    assert summary["packets"] == len(lines) and summary["bytes"] == out.stat().st_size, summary
    assert summary["over_limit"] == 0 and summary["kernel_drops"] == 0, summary


def test_the_file_stays_under_its_limit(fabric: Scratch, tmp_path: Path) -> None:
    out = tmp_path / "lan.pcap"
    capture = Capture.start(fabric.netns("fabric"), "br0", out, limit=2000)
    try:
        exchange(fabric, size=20000)
    finally:
        summary = capture.stop()
    assert out.stat().st_size <= 2000 and summary["bytes"] == out.stat().st_size, summary
    assert summary["over_limit"] > 0 and summary["packets"] == len(read_pcap(out)) > 0, summary


def test_a_kill_loses_nothing_written(fabric: Scratch, tmp_path: Path) -> None:
    out = tmp_path / "lan.pcap"
    capture = Capture.start(fabric.netns("fabric"), "br0", out)
    try:
        client = exchange(fabric)
        deadline = time.monotonic() + 10  # written as it comes: wait for the file to hold it, then kill
        while sum(f"10.77.0.1.{client} > 10.77.0.2.{PORT}: Flags [F.]," in line for line in read_pcap(out)) != 1:
            assert time.monotonic() < deadline, "the connection's last FIN never reached the file"
            time.sleep(0.01)
        os.kill(capture.pid, signal.SIGKILL)
    finally:
        summary = capture.stop()
    assert summary == {} and capture.proc.returncode == -signal.SIGKILL
    assert sum("Flags [S]," in line for line in read_pcap(out)) == 1


def test_stop_is_prompt_without_traffic(fabric: Scratch, tmp_path: Path) -> None:
    out = tmp_path / "lan.pcap"
    capture = Capture.start(fabric.netns("fabric"), "br0", out)
    started = time.monotonic()
    summary = capture.stop()
    assert time.monotonic() - started < 2.0
    assert capture.proc.returncode == 0 and set(summary) == {"packets", "bytes", "over_limit", "kernel_drops"}


def test_what_cannot_be_captured_is_one_line_and_exit_2(fabric: Scratch, tmp_path: Path) -> None:
    out = tmp_path / "lan.pcap"
    cases = [(["--netns", fabric.netns("fabric"), "--iface", "nosuch0", "--out", str(out)], "nosuch0"),
             (["--netns", f"/run/netns/{TAG}missing", "--iface", "br0", "--out", str(out)], f"{TAG}missing"),
             (["--netns", fabric.netns("fabric"), "--iface", "br0", "--out", str(tmp_path / "no" / "x")], "no/x")]
    for argv, named in cases:
        done = subprocess.run([sys.executable, "-m", "lab.backends.capture", *argv], capture_output=True,
                              text=True, timeout=30)
        assert done.returncode == 2 and done.stdout == "", (argv, done)
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("capture: ") and named in done.stderr
    assert not out.exists()
    with pytest.raises(BackendError, match="nosuch0"):
        Capture.start(fabric.netns("fabric"), "nosuch0", out)


PARENT = """\
import os, subprocess, sys, threading
from pathlib import Path
from lab.backends.capture import Capture
netns, out, how = sys.argv[1:4]
if how == "main":  # as the lab starts it: the pipe and the death signal both
    pid = Capture.start(netns, "br0", Path(out)).pid
elif how == "thread":  # from a worker thread that then ends: the pipe alone (no death signal)
    got = []
    worker = threading.Thread(target=lambda: got.append(Capture.start(netns, "br0", Path(out))))
    worker.start()
    worker.join()
    pid = got[0].pid
else:  # the death signal alone (no pipe)
    proc = subprocess.Popen([sys.executable, "-m", "lab.backends.capture", "--netns", netns, "--iface", "br0",
                             "--out", out, "--parent", str(os.getpid())], stdout=subprocess.PIPE,
                            start_new_session=True)
    assert proc.stdout.readline() == b"ready\\n"
    pid = proc.pid
print(pid, flush=True)
sys.stdin.read()
"""


def _running(pid: int) -> bool:
    """The process exists and has not exited (a zombie nobody reaps has: its parent was killed)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@pytest.mark.parametrize("how", ["main", "thread", "pdeathsig"])
def test_a_capture_ends_with_its_parent_killed(fabric: Scratch, tmp_path: Path, how: str) -> None:
    """A lab killed with -9 cannot stop its captures: each must see its parent go (the pipe's EOF,
    the death signal: each alone suffices), drain, close its file and exit, else it would keep the
    lab's namespace (bridges, veths) alive. A capture started from a thread outlives the thread."""
    out = tmp_path / f"{TAG}lan.pcap"  # (TAG in its command line: the fixture's check sees a stray one)
    parent = subprocess.Popen([sys.executable, "-c", PARENT, fabric.netns("fabric"), str(out), how],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pid = 0
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        client = exchange(fabric)
        deadline = time.monotonic() + 10  # the connection in the file: the capture runs (the thread's end
        while sum(f"10.77.0.1.{client} > 10.77.0.2.{PORT}: Flags [F.]," in line for line in read_pcap(out)) != 1:
            assert time.monotonic() < deadline, "the connection's last FIN never reached the file"
            time.sleep(0.01)  # ... did not stop it)
        assert _running(pid)
        parent.kill()
        parent.communicate()
        deadline = time.monotonic() + 10
        while _running(pid):
            assert time.monotonic() < deadline, f"capture {pid} ({how}) still runs 10s after its parent was killed"
            time.sleep(0.01)
    finally:
        parent.kill()
        parent.communicate()
        if pid and _running(pid):
            os.kill(pid, signal.SIGKILL)
    assert out.read_bytes()[:24] == HEADER
    lines = read_pcap(out)
    assert sum(f"10.77.0.1.{client} > 10.77.0.2.{PORT}: Flags [S]," in line for line in lines) == 1, lines
