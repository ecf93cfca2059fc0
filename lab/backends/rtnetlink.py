"""A node's own side of its links, set in-process over rtnetlink: links up, addresses, routes and
permanent neighbours (what `ip -n NS -batch` did, without a process per node: 1000 nodes cost
1000 `ip` processes, about 5 ms of CPU each, before this).

The socket is opened inside the node's namespace (the kernel binds it to the namespace it was made
in), every request is sent at once, and the acknowledgements are read back: the first error names
the node and what was asked, like the `ip` line it replaces.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass, field

from lab.backends import linux
from lab.backends.neighbours import Neighbours, mac
from lab.errors import BackendError
from lab.plan import NodePlan

NETLINK_ROUTE = 0
RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE, RTM_NEWNEIGH = 16, 20, 24, 28
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE, NLM_F_REPLACE = 0x1, 0x4, 0x200, 0x400, 0x100
NLMSG_ERROR = 2
IFF_UP = 0x1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_GATEWAY = 1, 5
NDA_DST, NDA_LLADDR = 1, 2
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1
NUD_PERMANENT = 0x80
RECV_SIZE = 1 << 16
TIMEOUT = 30.0  # s


def _attr(kind: int, data: bytes) -> bytes:
    length = 4 + len(data)
    return struct.pack("HH", length, kind) + data + b"\0" * (-length % 4)


@dataclass
class Requests:
    """The messages for one namespace, each with the `ip` line it stands for (for errors)."""

    messages: list[bytes] = field(default_factory=list)
    said: dict[int, str] = field(default_factory=dict)  # sequence number -> what was asked

    def add(self, kind: int, flags: int, body: bytes, what: str) -> None:
        seq = len(self.messages) + 1
        header = struct.pack("IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, seq, 0)
        self.messages.append(header + body)
        self.said[seq] = what


def requests(node: NodePlan, neighbours: Neighbours, index: dict[str, int]) -> Requests:
    """What the node's namespace needs, in order: links up, addresses, routes, neighbours.
    `index`: interface name -> ifindex in that namespace."""
    out = Requests()
    for name in ("lo", *(i.name for i in node.interfaces)):
        body = struct.pack("BxHiII", socket.AF_UNSPEC, 0, index[name], IFF_UP, IFF_UP)
        out.add(RTM_NEWLINK, 0, body, f"link set {name} up")
    for iface in node.interfaces:
        ip = iface.address.ip.packed
        body = struct.pack("BBBBI", socket.AF_INET, iface.address.network.prefixlen, 0, 0, index[iface.name])
        out.add(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body + _attr(IFA_LOCAL, ip) + _attr(IFA_ADDRESS, ip),
                f"addr add {iface.address} dev {iface.name}")
    for r in node.routes:
        body = struct.pack("BBBBBBBBI", socket.AF_INET, r.to.prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT,
                           RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
        attrs = (_attr(RTA_DST, r.to.network_address.packed) if r.to.prefixlen else b"") + _attr(RTA_GATEWAY,
                                                                                              r.via.packed)
        out.add(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body + attrs,
                f"route add {'default' if r.to.prefixlen == 0 else r.to} via {r.via}")
    for iface, other in neighbours.of(node):
        body = struct.pack("BxxxiHBB", socket.AF_INET, index[iface.name], NUD_PERMANENT, 0, 0)
        lladdr = bytes(int(b, 16) for b in mac(other).split(":"))
        out.add(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE,
                body + _attr(NDA_DST, other.address.ip.packed) + _attr(NDA_LLADDR, lladdr),
                f"neigh replace {other.address.ip} lladdr {mac(other)} dev {iface.name} nud permanent")
    return out


def configure(netns: str, node: NodePlan, neighbours: Neighbours) -> None:
    """Set the node's side of its links inside the namespace at `netns` (BackendError naming what
    the kernel refused, and why)."""
    with linux.in_netns(netns):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        try:
            index = {name: socket.if_nametoindex(name) for name in ("lo", *(i.name for i in node.interfaces))}
        except OSError as e:
            sock.close()
            raise BackendError(f"{node.name}: its links are missing: {e}") from None
    with sock:
        sock.settimeout(TIMEOUT)  # a safeguard: the kernel answers each request before `send` returns
        asked = requests(node, neighbours, index)
        for seq, message in enumerate(asked.messages, 1):  # read each answer at once: none pile up
            sock.sendall(message)
            try:
                answer = sock.recv(RECV_SIZE)
            except TimeoutError:
                raise BackendError(f"{node.name}: {asked.said[seq]}: no answer from the kernel within "
                                   f"{TIMEOUT:.0f}s") from None
            _check(answer, asked, node)


def _check(answer: bytes, asked: Requests, node: NodePlan) -> None:
    """Raise the first error the kernel's answer carries, naming what was asked."""
    offset = 0
    while offset + 16 <= len(answer):
        length, kind, _, seq, _ = struct.unpack_from("IHHII", answer, offset)
        if kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("i", answer, offset + 16)
            if code != 0:
                raise BackendError(f"{node.name}: {asked.said.get(seq, '?')}: {os.strerror(-code)}")
        offset += max(length, 16) + (-length % 4)
