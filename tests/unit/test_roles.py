"""The built-in roles, run for real on 127.0.0.1 with ephemeral ports.

Servers run as `python -m lab.roles ...` (exactly what containers run) and, once, through
`run_role` in a forked child (what the netns backend does). Readiness is awaited with a deadline,
never with a fixed sleep.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import queue
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from lab import checks
from lab.outcome import NodeOutcome
from lab.roles import run_role
from lab.roles.common import Transcript, announce_ready, encode_bytes, error_kind, event_bytes

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
READY_DEADLINE = 10.0
# s a role may take to stop on SIGTERM here: it takes milliseconds; one that did not stop would
# hold on for its `hold`, or forever (a server). Generous, so that a busy machine never fails it: a
# fresh CI ran its unit tests as setup's image imports were still being written out, and a server
# that had just echoed took over 5 s to stop there (never reproduced on a quiet machine in 100 runs).
STOP_DEADLINE = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name]


def role_argv(role: str, params: dict[str, Any], transcript: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lab.roles",
        role,
        "--params",
        json.dumps(params),
        "--transcript",
        str(transcript),
    ]


class Server:
    """A role process whose stdout is read by a thread, so readiness can be awaited with a deadline."""

    def __init__(self, role: str, params: dict[str, Any], transcript: Path):
        self.transcript = transcript
        self.proc = subprocess.Popen(
            role_argv(role, params, transcript),
            cwd=ROOT,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_ready(self) -> str:
        deadline = time.monotonic() + READY_DEADLINE
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line.startswith("LAB-READY "):
                return line
        raise AssertionError(f"not ready in time; exit code {self.proc.poll()}")

    def events(self) -> list[dict[str, Any]]:
        return load(self.transcript)

    def terminate(self) -> int:
        """SIGTERM, then its exit code (killed anyway, whatever happens)."""
        try:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout=STOP_DEADLINE)
        finally:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def serving(role: str, params: dict[str, Any], tmp_path: Path) -> Iterator[Server]:
    server = Server(role, params, tmp_path / f"{role}.jsonl")
    try:
        server.wait_ready()
        yield server
    finally:
        if server.proc.poll() is None:
            server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=5)


def run_client(
    role: str, params: dict[str, Any], tmp_path: Path, name: str = "client"
) -> tuple[int, list[dict[str, Any]], str]:
    transcript = tmp_path / f"{name}.jsonl"
    done = subprocess.run(
        role_argv(role, params, transcript), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=20
    )
    return done.returncode, load(transcript), done.stdout


def telnet(port: int, **extra: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": port,
        "target": f"server:{port}",
        "send": [],
        "read_greeting": False,
        "hold": 0.0,
        "interval": 0.0,
        "timeout": 5.0,
        **extra,
    }


def getter(port: int, path: str, timeout: float = 5.0) -> dict[str, Any]:
    return {
        "url": f"http://web:{port}{path}",
        "host": "127.0.0.1",
        "port": port,
        "path": path,
        "host_header": f"web:{port}",
        "timeout": timeout,
    }


def outcome(name: str, code: int, events: list[dict[str, Any]]) -> NodeOutcome:
    return NodeOutcome(name, True, code, False, "", events, "")


@contextmanager
def silent_listener() -> Iterator[int]:
    """A socket that listens but never accepts nor answers: connects succeed, replies never come."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


# ----------------------------------------------------------------------------- echo


def test_echo_roundtrip_via_module(tmp_path: Path) -> None:
    port = free_port()
    with serving("echo-server", {"port": port}, tmp_path) as server:
        params = telnet(port, send=["hello from client-1", "second line"], interval=0.1)
        code, events, out = run_client("telnet-client", params, tmp_path)
        served = server.events()
    assert code == 0
    assert out.startswith("LAB-READY telnet-client")
    assert [e["event"] for e in events] == [
        "start",
        "connecting",
        "connected",
        "sent",
        "received",
        "answered",
        "sent",
        "received",
        "closing",
        "closed",
        "end",
    ]
    assert events[1]["target"] == f"server:{port}" and events[2]["peer"] == f"127.0.0.1:{port}"
    assert [e["data"] for e in named(events, "sent")] == ["hello from client-1\r\n", "second line\r\n"]
    assert [e["data"] for e in named(events, "received")] == ["hello from client-1\r\n", "second line\r\n"]
    sent_times = [e["t"] for e in named(events, "sent")]
    assert sent_times[1] - sent_times[0] >= 0.1  # the interval
    assert named(events, "closed")[0]["by"] == "self" and events[-1]["code"] == 0
    assert all(isinstance(e["t"], float) for e in events)
    assert [e["event"] for e in served][:3] == ["start", "listening", "accepted"]
    assert named(served, "accepted")[0]["peer"] == events[2]["local"]
    assert "".join(e["data"] for e in named(served, "received")) == "hello from client-1\r\nsecond line\r\n"
    assert named(served, "closed")[0]["by"] == "peer"
    [result] = checks.evaluate("echo", {}, [outcome("client-1", code, events)])
    assert result.passed, result.detail
    assert "2/2 lines echoed" in result.detail


def test_echo_server_keeps_binary_data_lossless(tmp_path: Path) -> None:
    port = free_port()
    with serving("echo-server", {"port": port}, tmp_path) as server:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"\xff\xfe\n")
            assert sock.recv(100) == b"\xff\xfe\n"
        served = server.events()
    received = named(served, "received")[0]
    assert "data" not in received and event_bytes(received) == b"\xff\xfe\n"


def fork_role(name: str, params: dict[str, Any], transcript: Path) -> tuple[int, int]:
    """run_role in a forked child, as the netns backend does; returns (pid, read end of the ready fd)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 99
        try:
            os.close(read_end)
            os.environ["LAB_STATUS_FD"] = str(write_end)
            code = run_role(name, params, str(transcript))
        finally:
            os._exit(code)
    os.close(write_end)
    return pid, read_end


def wait_exit(pid: int, within: float) -> int | None:
    """The child's wait status if it exits within `within` seconds, else None."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    return None


def test_run_role_in_forked_child_signals_ready_fd_and_stops_on_sigterm(tmp_path: Path) -> None:
    port, transcript = free_port(), tmp_path / "server.jsonl"
    pid, ready = fork_role("echo-server", {"port": port}, transcript)
    status: int | None = None
    try:
        readable, _, _ = select.select([ready], [], [], READY_DEADLINE)
        assert readable and os.read(ready, 100) == b"ready\n"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"ping\r\n")
            assert sock.recv(100) == b"ping\r\n"
            os.kill(pid, signal.SIGTERM)  # with a connection thread still open
            status = wait_exit(pid, within=STOP_DEADLINE)
    finally:
        os.close(ready)
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert status is not None, f"the role did not stop within {STOP_DEADLINE:g}s of SIGTERM"
    assert os.waitstatus_to_exitcode(status) == 128 + signal.SIGTERM
    events = load(transcript)
    assert events[0]["event"] == "start" and events[0]["role"] == "echo-server"
    assert events[-1]["event"] == "end" and events[-1]["reason"] == "terminated"


@pytest.mark.parametrize(
    "role, params",
    [
        ("echo-server", {}),
        ("greeting-server", {"text": "hi"}),
        ("http-server", {"pages": {"/": "x"}}),
    ],
)
def test_servers_stop_promptly_on_sigterm(tmp_path: Path, role: str, params: dict[str, Any]) -> None:
    server = Server(role, {"port": free_port(), **params}, tmp_path / "s.jsonl")
    try:
        assert server.wait_ready().startswith(f"LAB-READY {role} listening on 0.0.0.0:")
    finally:
        code = server.terminate()
    assert code == 128 + signal.SIGTERM
    assert server.events()[-1] == {**server.events()[-1], "event": "end", "reason": "terminated"}


def test_a_server_stopped_in_a_container_tells_its_exit_code_where_the_agent_would(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On docker the lab signals the node itself and reads its exit code from the facts folder it
    shares: a role leaving at once on SIGTERM says 143 there, or the lab would have to ask the engine."""
    template = f"{tmp_path}/server.{{fact}}"
    monkeypatch.setitem(ENV, "LAB_FACT_FILE", template)
    server = Server("echo-server", {"port": free_port()}, tmp_path / "s.jsonl")
    try:
        server.wait_ready()
    finally:
        code = server.terminate()
    assert code == 128 + signal.SIGTERM
    assert (tmp_path / "server.exit").read_text() == f"{128 + signal.SIGTERM}\n"


def test_server_whose_port_is_taken_exits_1_with_an_error_event(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, events, _ = run_client("echo-server", {"port": port}, tmp_path)
    assert code == 1
    [error] = named(events, "error")
    assert error["during"] == "role" and os.strerror(errno.EADDRINUSE) in error["message"]  # this libc's words
    assert events[-1] == {**events[-1], "event": "end", "code": 1}


# ----------------------------------------------------------------------------- greeting


def test_greeting_received_then_peer_closes_during_hold(tmp_path: Path) -> None:
    port = free_port()
    with serving("greeting-server", {"port": port, "text": "Thank you for connecting"}, tmp_path) as server:
        # The hold ends when the server closes: one that did not would outlast run_client's 20 s.
        code, events, _ = run_client("telnet-client", telnet(port, read_greeting=True, hold=60.0), tmp_path)
        served = server.events()
    assert code == 0
    assert "".join(e["data"] for e in named(events, "received")) == "Thank you for connecting\r\n"
    assert named(events, "received")[0]["during"] == "greeting"
    assert named(events, "closed")[0]["by"] == "peer"
    assert [e["event"] for e in served[1:]] == ["listening", "accepted", "sent", "closed"]
    expect = {"text": "Thank you for connecting"}
    [result] = checks.evaluate("greeting", expect, [outcome("visitor-1", code, events)])
    assert result.passed, result.detail


# ----------------------------------------------------------------------------- http


def test_http_get_200_and_404(tmp_path: Path) -> None:
    port = free_port()
    pages = {"/": "<h1>It works</h1>", "/hello.txt": "hello, lab"}
    with serving("http-server", {"port": port, "pages": pages}, tmp_path) as server:
        code, events, _ = run_client("http-get", getter(port, "/hello.txt"), tmp_path, "a")
        code_root, events_root, _ = run_client("http-get", getter(port, "/"), tmp_path, "b")
        code_404, events_404, _ = run_client("http-get", getter(port, "/missing"), tmp_path, "c")
        served = server.events()
    assert (code, code_root, code_404) == (0, 0, 0)  # a 404 is still a parsed response
    sent = named(events, "sent")[0]["data"]
    assert sent == f"GET /hello.txt HTTP/1.1\r\nHost: web:{port}\r\nConnection: close\r\n\r\n"
    [response] = named(events, "response")
    assert (response["status"], response["reason"], response["body"]) == (200, "OK", "hello, lab")
    assert response["headers"]["content-type"] == "text/plain; charset=utf-8"
    [root] = named(events_root, "response")
    assert root["body"] == "<h1>It works</h1>" and root["headers"]["content-type"].startswith("text/html")
    assert named(events_404, "response")[0]["status"] == 404
    requests = [(e["method"], e["path"], e["status"]) for e in named(served, "request")]
    assert sorted(requests) == [("GET", "/", 200), ("GET", "/hello.txt", 200), ("GET", "/missing", 404)]
    ok = checks.evaluate("http", {"status": 200, "body_contains": "hello, lab"}, [outcome("b", code, events)])
    assert ok[0].passed, ok[0].detail
    bad = checks.evaluate("http", {"status": 200}, [outcome("b", code_404, events_404)])
    assert not bad[0].passed and "status 404 " in bad[0].detail and bad[0].detail.endswith(", expected 200")


def test_http_server_answers_head_without_body(tmp_path: Path) -> None:
    port = free_port()
    with serving("http-server", {"port": port, "pages": {"/": "<p>x</p>"}}, tmp_path) as server:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("HEAD", "/")
        response = connection.getresponse()
        body = response.read()
        connection.close()
        served = server.events()
    assert response.status == 200 and body == b"" and response.getheader("Content-Length") == "8"
    assert named(served, "request")[0]["method"] == "HEAD"


# ----------------------------------------------------------------------------- failures


def test_refused_when_nothing_listens(tmp_path: Path) -> None:
    port = free_port()
    code, events, out = run_client("telnet-client", telnet(port, send=["x"]), tmp_path, "t")
    assert code == 1 and "LAB-READY telnet-client" in out
    [error] = named(events, "error")
    assert (error["kind"], error["during"], error["conn"]) == ("refused", "connect", 1)
    assert not named(events, "sent") and events[-1]["code"] == 1
    code, events, _ = run_client("http-get", getter(port, "/"), tmp_path, "h")
    assert code == 1 and named(events, "error")[0]["kind"] == "refused"


def test_timeout_when_the_server_never_answers(tmp_path: Path) -> None:
    with silent_listener() as port:
        params = telnet(port, send=["x", "y"], timeout=0.3)
        code, events, _ = run_client("telnet-client", params, tmp_path, "a")
        code_g, events_g, _ = run_client(
            "telnet-client", telnet(port, read_greeting=True, timeout=0.3), tmp_path, "b"
        )
        code_h, events_h, _ = run_client("http-get", getter(port, "/", timeout=0.3), tmp_path, "c")
    assert (code, code_g, code_h) == (1, 1, 1)
    [error] = named(events, "error")
    assert (error["kind"], error["during"], error["timeout"]) == ("timeout", "reply", 0.3)
    assert [e["data"] for e in named(events, "sent")] == ["x\r\n"]  # stops after the first timeout
    assert named(events, "closed")[0]["by"] == "self"
    assert named(events_g, "error")[0]["during"] == "greeting"
    assert named(events_h, "error")[0]["kind"] == "timeout"
    [result] = checks.evaluate("echo", {}, [outcome("client-1", code, events)])
    assert not result.passed and "sent 'x': no reply within 0.3s (timeout)" in result.detail


def test_reset_by_the_server(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def reset_after_first_bytes() -> None:
            conn, _ = listener.accept()
            conn.recv(100)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # linger 0: RST instead of FIN

        thread = threading.Thread(target=reset_after_first_bytes, daemon=True)
        thread.start()
        code, events, _ = run_client("telnet-client", telnet(port, send=["x"]), tmp_path)
        thread.join(5)
    assert code == 1
    [error] = named(events, "error")
    assert (error["kind"], error["during"]) == ("reset", "reply")
    assert named(events, "closed")[0]["by"] == "peer"
    [result] = checks.evaluate("echo", {}, [outcome("client-1", code, events)])
    assert "connection reset after sending 'x'" in result.detail


def test_client_holding_a_connection_stops_promptly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    with serving("echo-server", {"port": port}, tmp_path):
        client = Server("telnet-client", telnet(port, send=["hi"], hold=120.0), tmp_path / "c.jsonl")
        try:
            client.wait_ready()
            deadline = time.monotonic() + READY_DEADLINE
            while not any(e["event"] == "received" for e in client.events()):  # now it holds
                assert time.monotonic() < deadline, "the client was never answered"
                time.sleep(0.01)
            client.proc.send_signal(signal.SIGTERM)
            assert client.proc.wait(timeout=STOP_DEADLINE) == 128 + signal.SIGTERM
        finally:
            client.proc.kill()
            client.proc.wait()
    assert client.events()[-1]["reason"] == "terminated"


class SyncedClient:
    """A telnet-client synced as the lab syncs the clients of a `concurrent` expectation: it says
    `answered` on its status pipe, then keeps its connection open until `release` comes on its
    control pipe. Overlap by events, not by a hold time that a busy machine can outlast."""

    def __init__(self, port: int, i: int, tmp_path: Path, **extra: Any):
        self.transcript = tmp_path / f"{i}.jsonl"
        self.status, status_w = os.pipe()
        control_r, self.control = os.pipe()
        env = {**ENV, "LAB_STATUS_FD": str(status_w), "LAB_CONTROL_FD": str(control_r)}
        argv = role_argv("telnet-client", telnet(port, send=[f"hi {i}"], sync=True, **extra), self.transcript)
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, pass_fds=(status_w, control_r),
                                     stdout=subprocess.DEVNULL)
        os.close(status_w)
        os.close(control_r)

    def wait_answered(self) -> None:
        got, deadline = b"", time.monotonic() + READY_DEADLINE
        while "answered" not in got.decode().splitlines():
            remaining = deadline - time.monotonic()
            assert remaining > 0 and select.select([self.status], [], [], remaining)[0], f"not answered: {got!r}"
            chunk = os.read(self.status, 64)
            assert chunk, f"the client ended before it was answered: {got!r}"
            got += chunk

    def release(self) -> None:
        os.write(self.control, b"release\n")

    def close(self) -> None:
        os.close(self.status)
        os.close(self.control)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def test_three_synced_clients_are_concurrent(tmp_path: Path) -> None:
    port = free_port()
    with serving("echo-server", {"port": port}, tmp_path):
        clients = [SyncedClient(port, i, tmp_path) for i in range(3)]
        try:
            for client in clients:
                client.wait_answered()
            for client in clients:  # all three are connected and answered now
                client.release()
            codes = [client.proc.wait(timeout=READY_DEADLINE) for client in clients]
        finally:
            for client in clients:
                client.close()
    nodes = [outcome(f"client-{i}", code, load(client.transcript))
             for i, (code, client) in enumerate(zip(codes, clients, strict=True))]
    results = checks.evaluate("concurrent", {"at_least": 3}, nodes)
    assert codes == [0, 0, 0]
    assert all(r.passed for r in results), [r.detail for r in results]
    assert all(named(load(c.transcript), "released")[0]["by"] == "lab" for c in clients)


def test_a_synced_client_waiting_for_its_reply_counts_its_timeout_afresh_at_each_word_from_the_lab(
        tmp_path: Path) -> None:
    """A sequential server serves the clients the lab held one after the other: the lab's word when
    one of them has gone gives those still waiting their whole timeout again (lab/barrier.py)."""
    timeout = 2.0
    with silent_listener() as port:
        client = SyncedClient(port, 0, tmp_path, timeout=timeout)
        try:
            deadline = time.monotonic() + READY_DEADLINE
            while b'"event": "sent"' not in (client.transcript.read_bytes() if client.transcript.exists() else b""):
                assert time.monotonic() < deadline and client.proc.poll() is None, "the line was never sent"
                time.sleep(0.01)
            client.release()  # within its first timeout: another client of its group has gone
            code = client.proc.wait(timeout=READY_DEADLINE)
        finally:
            client.close()
    events = load(client.transcript)
    [sent], [renewed], [error] = named(events, "sent"), named(events, "renewed"), named(events, "error")
    assert code == 1 and (error["kind"], error["during"]) == ("timeout", "reply")
    assert error["t"] - renewed["t"] >= timeout * 0.99 and error["t"] - sent["t"] > timeout  # from the word on


# ----------------------------------------------------------------------------- command line and common


@pytest.mark.parametrize(
    "args, message",
    [
        (["no-such-role", "--transcript", "t"], "no-such-role"),  # the wording around it is argparse's
        (["echo-server", "--params", "{port", "--transcript", "t"], "not valid JSON"),
        (["echo-server", "--params", "[1]", "--transcript", "t"], "must be a JSON object"),
        (["echo-server", "--params", "{}"], "--transcript"),
    ],
)
def test_module_rejects_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lab.roles", *args],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 2 and message in done.stderr


def test_error_kinds() -> None:
    assert error_kind(ConnectionRefusedError()) == "refused"
    assert error_kind(ConnectionResetError()) == "reset"
    assert error_kind(BrokenPipeError()) == "reset"
    assert error_kind(TimeoutError()) == "timeout"  # socket.timeout is an alias of TimeoutError
    assert error_kind(OSError(errno.EHOSTUNREACH, "No route to host")) == "unreachable"
    assert error_kind(OSError(errno.ENETUNREACH, "Network is unreachable")) == "unreachable"
    assert error_kind(OSError(errno.EADDRINUSE, "in use")) == "other"
    assert error_kind(ValueError()) == "other"


def test_bytes_are_text_when_utf8_else_base64() -> None:
    assert encode_bytes("héllo\r\n".encode()) == {"data": "héllo\r\n"}
    assert encode_bytes(b"\xff") == {"data_b64": "/w=="}
    for payload in (b"abc", b"\xff\x00\xfe", "é".encode()):
        assert event_bytes(encode_bytes(payload)) == payload


def test_transcript_lines_and_ready_fd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    transcript = Transcript(str(tmp_path / "t.jsonl"))
    transcript.event("hello", x=1)
    assert load(tmp_path / "t.jsonl")[0]["x"] == 1  # written before close: no buffering
    transcript.error(ConnectionRefusedError(111, "Connection refused"), during="connect", conn=1)
    transcript.close()
    first, second = load(tmp_path / "t.jsonl")
    assert first["event"] == "hello" and isinstance(first["t"], float)
    assert (second["kind"], second["during"], second["conn"]) == ("refused", "connect", 1)
    read_end, write_end = os.pipe()
    monkeypatch.setenv("LAB_STATUS_FD", str(write_end))
    announce_ready("echo-server", "listening on 0.0.0.0:1")
    assert capsys.readouterr().out == "LAB-READY echo-server listening on 0.0.0.0:1\n"
    assert os.read(read_end, 100) == b"ready\n"  # the fd stays open for later facts
    os.close(write_end)
    assert os.read(read_end, 100) == b""
    os.close(read_end)


def test_a_transcript_records_at_most_its_data_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lab.roles.common as common

    monkeypatch.setattr(common, "DATA_LIMIT", 10)
    transcript = Transcript(str(tmp_path / "t.jsonl"))
    assert transcript.data("received", b"12345", conn=1)
    assert transcript.data("received", b"67890", conn=1)
    assert not transcript.data("received", b"flood", conn=1)
    assert not transcript.data("received", b"flood", conn=1)
    transcript.close()
    events = load(tmp_path / "t.jsonl")
    assert [e["event"] for e in events] == ["received", "received", "truncated"]
    assert events[2]["of"] == "received" and events[2]["size"] == 5 and "data" not in events[2]


# ----------------------------------------------------------------------------- reconnecting


def read_so_far(path: Path) -> list[dict[str, Any]]:
    """The events a running role has written so far (a line being written is left for later)."""
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return events


def wait_for_event(path: Path, name: str, proc: subprocess.Popen[str]) -> None:
    """Until the role's transcript holds a `name` event (within a deadline; it must not have ended)."""
    deadline = time.monotonic() + READY_DEADLINE
    while not named(read_so_far(path), name):
        assert proc.poll() is None, f"the role ended (code {proc.returncode}) before any {name!r} event"
        assert time.monotonic() < deadline, f"no {name!r} event within {READY_DEADLINE:g}s"
        time.sleep(0.01)


def finish(client: Server) -> int:
    """The client's exit code once it ends on its own (killed if it does not within the deadline)."""
    try:
        return client.proc.wait(timeout=STOP_DEADLINE)
    finally:
        client.proc.kill()
        client.proc.wait()


def test_a_reconnecting_client_goes_on_once_its_server_is_back(tmp_path: Path) -> None:
    """The echo server stops after the first reply and starts again once the client has met a closed
    port: the client loses its connection, tries again, reconnects and sends the rest. (A long
    `interval` keeps the second line from going out before the server stops: the loss cuts it short.)"""
    port = free_port()
    first = Server("echo-server", {"port": port}, tmp_path / "s1.jsonl")
    again: Server | None = None
    params = telnet(port, send=["line 1", "line 2"], interval=30.0, reconnect=20.0, timeout=5.0)
    try:
        first.wait_ready()
        client = Server("telnet-client", params, tmp_path / "c.jsonl")
        wait_for_event(client.transcript, "answered", client.proc)
        assert first.terminate() == 128 + signal.SIGTERM
        wait_for_event(client.transcript, "connect_failed", client.proc)  # it met the closed port
        again = Server("echo-server", {"port": port}, tmp_path / "s2.jsonl")
        again.wait_ready()
        code = finish(client)
    finally:
        for server in (first, again):
            if server is not None and server.proc.poll() is None:
                server.terminate()
    events = client.events()
    assert code == 0
    [lost] = named(events, "lost")
    assert (lost["conn"], lost["line"]) == (1, 1) and lost["why"] in ("closed", "reset")
    assert {e["kind"] for e in named(events, "connect_failed")} == {"refused"}
    assert [e["conn"] for e in named(events, "connected")] == [1, 2]
    [back] = named(events, "reconnected")
    assert back["conn"] == 2 and back["attempts"] == len(named(events, "connect_failed")) + 1
    assert [(e["conn"], e["line"], e["data"]) for e in named(events, "sent")] == [
        (1, 0, "line 1\r\n"), (2, 1, "line 2\r\n")]
    assert [(e["conn"], e["data"]) for e in named(events, "received")] == [(1, "line 1\r\n"), (2, "line 2\r\n")]
    results = [checks.evaluate(c, {}, [outcome("client-1", code, events)])[0] for c in ("echo", "recovers")]
    assert all(r.passed for r in results), [r.detail for r in results]
    assert "reconnected at +" in results[1].detail and "(conn 2)" in results[1].detail


def test_a_reconnecting_client_sends_again_the_line_whose_reply_it_lost(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]

        def reset_then_echo() -> None:
            conn, _ = listener.accept()
            conn.recv(100)  # the first line: no reply, a reset
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            conn, _ = listener.accept()
            with conn:
                while data := conn.recv(100):
                    conn.sendall(data)

        thread = threading.Thread(target=reset_then_echo, daemon=True)
        thread.start()
        params = telnet(port, send=["x", "y"], reconnect=10.0)
        code, events, out = run_client("telnet-client", params, tmp_path)
        thread.join(5)
    assert code == 0, out
    [lost] = named(events, "lost")
    assert (lost["conn"], lost["why"], lost["during"], lost["line"]) == (1, "reset", "reply", 0)
    assert named(events, "closed")[0] == {**named(events, "closed")[0], "conn": 1, "by": "peer"}
    assert [(e["conn"], e["line"]) for e in named(events, "sent")] == [(1, 0), (2, 0), (2, 1)]
    for check in ("echo", "recovers"):
        [result] = checks.evaluate(check, {}, [outcome("client-1", code, events)])
        assert result.passed, result.detail
    assert ": lost its connection at +" in result.detail and " (reset), reconnected at +" in result.detail
    assert result.detail.endswith("(conn 2) and got a reply to each of the 2 line(s) left")


def test_a_reconnecting_client_gives_up_when_its_server_does_not_come_back(tmp_path: Path) -> None:
    port = free_port()
    server = Server("echo-server", {"port": port}, tmp_path / "s.jsonl")
    params = telnet(port, send=["line 1", "line 2"], interval=30.0, reconnect=1.0, timeout=5.0)
    try:
        server.wait_ready()
        client = Server("telnet-client", params, tmp_path / "c.jsonl")
        wait_for_event(client.transcript, "answered", client.proc)
    finally:
        server.terminate()
    code = finish(client)
    events = client.events()
    assert code == 1
    [lost], [error] = named(events, "lost"), named(events, "error")
    failed = named(events, "connect_failed")
    assert failed and {e["kind"] for e in failed} == {"refused"} and [e["attempt"] for e in failed] == list(
        range(1, len(failed) + 1))
    assert all("retry_in" in e for e in failed[:-1]) and "retry_in" not in failed[-1]
    assert (error["gave_up"], error["during"], error["kind"], error["budget"]) == (True, "reconnect", "refused", 1.0)
    assert error["failures"] == {"refused": len(failed)} and error["attempts"] == len(failed)
    assert 0.99 <= error["t"] - lost["t"] < 1.0 + 2.0  # the budget, counted from the loss
    assert named(events, "connected")[-1]["conn"] == 1 and events[-1]["code"] == 1
    [result] = checks.evaluate("recovers", {}, [outcome("client-1", code, events)])
    assert not result.passed
    assert f"and never reconnected within 1s (refused x{len(failed)})" in result.detail


def test_a_reconnecting_client_gives_up_on_connections_that_never_answer(tmp_path: Path) -> None:
    """A server that accepts (here: its listen queue does) but never replies: each connection is lost
    to the reply timeout, and the budget, counted from the first loss, ends the attempts."""
    with silent_listener() as port:
        params = telnet(port, send=["x"], reconnect=0.5, timeout=0.3)
        start = time.monotonic()
        code, events, _ = run_client("telnet-client", params, tmp_path)
        took = time.monotonic() - start
    assert code == 1 and took < 10
    losses = named(events, "lost")
    assert len(losses) >= 2 and {e["why"] for e in losses} == {"timeout"}
    [error] = named(events, "error")
    assert error["gave_up"] and error["failures"] == {"timeout": len(losses) - 1}
    assert error["t"] - losses[0]["t"] < 0.5 + 0.3 + 3.0  # budget + one reply timeout (+ a busy machine's slack)


def test_a_reconnecting_client_that_never_connects_gives_up_after_its_budget(tmp_path: Path) -> None:
    port = free_port()
    code, events, _ = run_client("telnet-client", telnet(port, send=["x"], reconnect=0.5), tmp_path)
    assert code == 1 and len(named(events, "connecting")) == 1
    [error] = named(events, "error")
    assert (error["during"], error["kind"], error["gave_up"]) == ("connect", "refused", True)
    assert error["t"] - named(events, "connecting")[0]["t"] >= 0.49
    [result] = checks.evaluate("echo", {}, [outcome("client-1", code, events)])
    assert result.detail.endswith(f": never connected within 0.5s (refused x{len(named(events, 'connect_failed'))})")


# ----------------------------------------------------------------------------- generated pages


def test_http_server_generates_a_page_of_the_size_asked(tmp_path: Path) -> None:
    port, size = free_port(), 200_003  # three whole blocks and a piece
    with serving("http-server", {"port": port, "pages": {"/big": {"bytes": size}, "/": "x"}}, tmp_path):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/big")
        response = connection.getresponse()
        body = response.read()
        connection.request("HEAD", "/big")
        head = connection.getresponse()
        assert head.read() == b""
        connection.close()
        code, events, _ = run_client("http-get", getter(port, "/big"), tmp_path)
    line = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.\n"
    assert response.status == 200 and response.getheader("Content-Length") == str(size)
    assert body == (line * (size // len(line) + 1))[:size]  # the same line over and over
    assert head.getheader("Content-Length") == str(size) and head.getheader("Content-Type").startswith("text/plain")
    [got] = named(events, "response")
    assert code == 0 and (got["body_bytes"], got["framing"]) == (size, "content-length") and "body_kept" not in got


def test_http_get_records_arrivals_past_the_transcripts_data_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Past the limit, sizes and times without the bytes: `rate` measures the whole stream, and a
    response longer than what was kept is still whole by its Content-Length."""
    import lab.roles.common as common
    import lab.roles.http_get as http_get
    from lab.roles import readback

    limit, size = 256 * 1024, 4 * 1024 * 1024  # the limit above a recv's size: the head is among the bytes kept
    monkeypatch.setattr(common, "DATA_LIMIT", limit)
    monkeypatch.setattr(http_get, "DATA_LIMIT", limit)
    port = free_port()
    with serving("http-server", {"port": port, "pages": {"/big": {"bytes": size}}}, tmp_path):
        transcript = Transcript(str(tmp_path / "get.jsonl"))
        code = http_get.main(getter(port, "/big"), transcript)
        transcript.close()
    capsys.readouterr()
    events = load(tmp_path / "get.jsonl")
    kept = [e for e in named(events, "received") if "data" in e or "data_b64" in e]
    sizes = [e for e in named(events, "received") if "size" in e]
    [cut] = named(events, "truncated")
    [response] = named(events, "response")
    assert code == 0 and sizes and sum(len(event_bytes(e)) for e in kept) <= limit
    assert events.index(cut) < events.index(sizes[0]) and all("data" not in e for e in sizes)
    head = b"".join(event_bytes(e) for e in kept).index(b"\r\n\r\n") + 4
    assert sum(n for _, n in readback.arrivals(events)) == head + size  # every byte, counted once
    assert sum(e["chunks"] for e in sizes) >= len(sizes)
    assert (response["body_bytes"], response["body_kept"]) == (size, len(response["body"]))
    [result] = checks.evaluate("http", {"status": 200, "body_contains": "abcdef"}, [outcome("b", code, events)])
    assert result.passed, result.detail
