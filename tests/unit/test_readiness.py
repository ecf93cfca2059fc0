"""TCP readiness counts only listeners other nodes can reach: not one bound to loopback."""

from __future__ import annotations

import os
import socket

import pytest

from lab.roles.common import listening_tcp_ports, loopback


@pytest.mark.parametrize(("address", "expected"), [
    ("0100007F", True), ("0500007F", True), ("00000000", False), ("0A00000A", False),
    ("00000000000000000000000001000000", True), ("0000000000000000FFFF00000100007F", True),
    ("00000000000000000000000000000000", False), ("0000000000000000FFFF00000A00000A", False),
])
def test_loopback_addresses_as_proc_writes_them(address: str, expected: bool) -> None:
    assert loopback(address) is expected


@pytest.mark.parametrize(("host", "reachable"), [("127.0.0.1", False), ("0.0.0.0", True)])
def test_a_listener_on_loopback_only_is_not_ready(host: str, reachable: bool) -> None:
    with socket.socket() as sock:
        sock.bind((host, 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        assert (port in listening_tcp_ports(os.getpid())) is reachable
