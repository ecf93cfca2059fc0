"""Signal dispositions: programs start with every signal at its default, built-in servers survive a
peer that hangs up mid-request, and a process killed by signal N reports 128+N."""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lab.backends.netns import shell_code
from lab.roles import default_signals, run_role

READY_DEADLINE = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _mask(status: str, key: str) -> int:
    line = next(ln for ln in status.splitlines() if ln.startswith(f"{key}:"))
    return int(line.split()[1], 16)


def test_a_program_starts_with_every_signal_at_its_default_and_none_blocked() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # what the netns child and the container agent do before exec
        try:
            os.close(read)
            os.dup2(write, 1)
            for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGUSR1, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2, signal.SIGTERM})
            default_signals()
            os.execv("/bin/cat", ["cat", "/proc/self/status"])
        finally:
            os._exit(127)
    os.close(write)
    with os.fdopen(read) as f:
        status = f.read()
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert _mask(status, "SigIgn") == 0, status
    assert _mask(status, "SigBlk") == 0, status


def test_killed_by_a_signal_is_128_plus_n() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.write(write, b"set\n")  # only now may the signal come: pytest's handlers are gone
            signal.pause()
        finally:
            os._exit(0)
    os.close(write)
    assert select.select([read], [], [], READY_DEADLINE)[0] and os.read(read, 10) == b"set\n"
    os.close(read)
    os.kill(pid, signal.SIGTERM)
    assert shell_code(os.waitpid(pid, 0)[1]) == 143
    pid = os.fork()
    if pid == 0:
        os._exit(3)
    assert shell_code(os.waitpid(pid, 0)[1]) == 3


def _fork_server(role: str, params: dict[str, Any], tmp_path: Path) -> tuple[int, int]:
    """run_role in a forked child whose SIGPIPE is at its default, as in a netns node."""
    read_end, write_end = os.pipe()
    log = os.open(tmp_path / "server.log", os.O_WRONLY | os.O_CREAT, 0o644)
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.close(read_end)
            os.dup2(log, 1)
            os.dup2(log, 2)
            sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - the log, not pytest's capture
            sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
            default_signals()
            os.environ["LAB_STATUS_FD"] = os.environ["LAB_READY_FD"] = str(write_end)
            code = run_role(role, params, str(tmp_path / "server.jsonl"))
        finally:
            os._exit(code)
    os.close(write_end)
    os.close(log)
    return pid, read_end


def _socket_fds(pid: int) -> int:
    """How many sockets the process holds (an fd closed while we look no longer counts)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except FileNotFoundError:
            continue
    return count


def _unaccepted(port: int) -> int:
    """Connections to `port` the server has not accepted yet: half-open ones (SYN_RECV) and those
    in the listener's accept queue (a listener's rx_queue in /proc/net/tcp)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) != port:
            continue
        if fields[3] == "03":
            count += 1
        elif fields[3] == "0A":
            count += int(fields[4].split(":")[1], 16)
    return count


def _dealt_with(pid: int, port: int, sockets: int) -> bool:
    """The server died, or dealt with every connection made so far: none waits to be accepted and
    it holds no socket but those it had when ready (each accepted one was written to, failed or not,
    and closed). Observed, not guessed: no time is assumed enough. The child is not reaped here."""
    if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
        return True
    return _unaccepted(port) == 0 and _socket_fds(pid) == sockets


def _hang_up(port: int, request: bytes) -> None:
    """Send (part of) a request and leave without reading: the server then writes to a closed peer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)


def _get(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize(("role", "params", "request_bytes"), [
    ("http-server", {"pages": {"/": "x" * 2_000_000}}, b"GET / HTTP/1.1\r\nHost: web\r\n\r\n"),
    ("http-server", {"pages": {"/": "hello"}}, b"GET / HTT"),
    ("echo-server", {}, b"y" * 2_000_000),
    ("greeting-server", {"text": "hi " * 100_000}, b"x"),
])
def test_servers_survive_a_peer_that_hangs_up(tmp_path: Path, role: str, params: dict[str, Any],
                                              request_bytes: bytes) -> None:
    port = free_port()
    pid, ready = _fork_server(role, {"port": port, **params}, tmp_path)
    done = 0
    try:
        assert select.select([ready], [], [], READY_DEADLINE)[0], "not ready"
        sockets = _socket_fds(pid)
        for _ in range(20):
            try:
                _hang_up(port, request_bytes)
            except OSError:
                pass  # the server may reset us first: what matters is that it lives on
        deadline = time.monotonic() + READY_DEADLINE
        while not _dealt_with(pid, port, sockets):
            assert time.monotonic() < deadline, "the server still holds the hung-up connections"
            time.sleep(0.005)
        done, status = os.waitpid(pid, os.WNOHANG)
        assert not done, f"the server died: {shell_code(status)}"
        if role == "http-server":
            assert _get(port).startswith(b"HTTP/1.1 200")
    finally:
        os.close(ready)
        if not done:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log
