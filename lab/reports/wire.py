"""What TCP did on the wire, read from a packet capture: for each connection, its handshake and its
close as the segments show them, who sent each, the data each way and the retransmissions.

A student whose client "hangs" learns more from `SYN x4, never answered` (a partition) or
`refused` (nothing listening) than from a timeout; a fault-timeline lab (a link going down) shows
as retransmissions. The rest of a capture (payloads, ACK clocks, ARP, UDP) is for Wireshark:
the file is linked from the report.

The file is a classic libpcap file (either byte order, micro- or nanosecond stamps, Ethernet with
802.1Q tags skipped, IPv4, TCP). It is read as a stream, one record at a time, keeping state per
connection only and at most `MAX_CONNECTIONS` of those: a 64 MiB capture costs little memory. A
capture killed mid-write, or cut at a size limit, ends in a partial record: what precedes it counts.
Standard library only, and pure: a file in, data out. Times are the capture's own (the wall clock,
time.time()); the caller puts them on the lab's clock (`summary(at=...)`).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

MAX_CONNECTIONS = 500  # connections reported per capture; the others are only counted
MAX_EVENTS = 40  # wire events kept per connection (a SYN retried for long, an RST storm)
MAX_RANGES = 32  # sequence ranges remembered per side (holes left by losses); the oldest go first
MAX_UNTRACKED = 100_000  # 4-tuples beyond MAX_CONNECTIONS remembered to be counted once
MAX_RECORD = 1 << 20  # a record claiming more is not a record: the file is corrupt there

# magic as it reads in the file -> (byte order, seconds per unit of the fraction)
MAGIC = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
         b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9)}
LINKTYPE_ETHERNET = 1
ETH_IPV4, VLAN_TAGS = 0x0800, (0x8100, 0x88A8, 0x9100)
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
IP_HEADER = struct.Struct("!BxH2xHxB2x4s4s")  # version+IHL, total length, flags+fragment, protocol, addresses
TCP_HEADER = struct.Struct("!HHIIBB")  # ports, seq, ack, data offset, flags
EVENT_KINDS = ("SYN", "SYN-ACK", "ACK", "FIN", "RST")

Address = tuple[bytes, int]  # IPv4 address (4 bytes), port


@dataclass(frozen=True)
class Endpoint:
    """One end of a connection: its address and port, and the plan's node that has that address."""

    address: str
    port: int
    node: str = ""  # "" when no node of the plan has the address

    @property
    def who(self) -> str:
        return self.node or self.address

    def __str__(self) -> str:
        return f"{self.who}:{self.port}"


@dataclass(frozen=True)
class WireEvent:
    """A segment that opens or closes: SYN, SYN-ACK, ACK (the handshake's third), FIN, RST."""

    t: float  # when captured: the wall clock (time.time())
    kind: str  # one of EVENT_KINDS
    sender: Endpoint
    receiver: Endpoint


@dataclass(frozen=True)
class Connection:
    """One TCP connection as the capture saw it. `client` sent the SYN; for a connection seen
    without its SYN the sides are a guess (the lower port is taken for the server's)."""

    client: Endpoint
    server: Endpoint
    events: tuple[WireEvent, ...]  # in time order, at most MAX_EVENTS
    mid_connection: bool = False  # its SYN was not captured (the capture began after it)
    syns: int = 0  # SYNs the client sent (retries included)
    handshake: bool = False  # the third segment of the handshake was seen
    bytes_out: int = 0  # data bytes client -> server, each byte once (retransmitted ones not again)
    bytes_in: int = 0  # data bytes server -> client
    retransmissions: int = 0  # segments (either way) whose sequence range had been seen already
    events_dropped: int = 0  # wire events beyond MAX_EVENTS
    first_t: float = 0.0  # when its first segment was captured (wall clock)
    last_t: float = 0.0  # ... and its last
    one_way: str = ""  # the only side whose segments were captured (the other's went another way), else ""

    def first(self, kind: str, sender: Endpoint | None = None) -> WireEvent | None:
        """The first event of that kind (sent by `sender`, when given)."""
        return next((e for e in self.events if e.kind == kind and (sender is None or e.sender == sender)), None)

    @property
    def outcome(self) -> str:
        """unanswered | refused | incomplete (SYN-ACK never acknowledged) | open | closed (FIN both
        ways) | half-closed (FIN one way) | reset (RST after it was open)."""
        answered = (self.mid_connection or self.bytes_out or self.bytes_in  # data: a one-way capture (a route)
                    or any(e.sender == self.server and e.kind != "RST" for e in self.events))
        if not answered:
            return "refused" if self.first("RST", self.server) else "unanswered"
        fins = {e.sender for e in self.events if e.kind == "FIN"}
        if len(fins) == 2:
            return "closed"
        if self.first("RST"):
            return "reset"
        if fins:
            return "half-closed"
        if not self.mid_connection and not self.handshake and not (self.bytes_out or self.bytes_in):
            return "incomplete"
        return "open"

    @property
    def close(self) -> WireEvent | None:
        """The segment that ended it: the first FIN, else the first RST (None: not closed)."""
        return self.first("FIN") or self.first("RST")

    def summary(self, at: Callable[[float], float] = float) -> str:
        """The connection in one line; `at` puts a captured time on the lab's clock. E.g.
        `client-1:40112 -> server:7 opened 1.204s (SYN 1.204, SYN-ACK 1.205, ACK 1.205), closed by
        client-1 2.100s (FIN), 12 B ->, 12 B <-, 3 retransmitted`."""
        head, outcome = f"{self.client} -> {self.server}", self.outcome
        syn, synack, ack = self.first("SYN"), self.first("SYN-ACK"), self.first("ACK")
        syns = f"SYN x{self.syns}" if self.syns > 1 else "SYN"
        if outcome == "unanswered":
            last = [e.t for e in self.events if e.kind == "SYN"][-1:]
            span = f"{at(self.first_t):.3f}s" + (f" to {at(last[0]):.3f}s" if last and self.syns > 1 else "")
            return f"{head} SYN x{self.syns}, never answered ({span})"
        if outcome == "refused":
            rst = self.first("RST", self.server)
            assert rst is not None  # refused: the server reset it
            tried = f"{syns} {at(syn.t):.3f}, " if syn else ""
            return f"{head} refused {at(rst.t):.3f}s ({tried}RST {at(rst.t):.3f})"
        if synack:
            steps = [f"{syns} {at(syn.t):.3f}" if syn else "SYN not captured", f"SYN-ACK {at(synack.t):.3f}"]
            steps += [f"ACK {at(ack.t):.3f}"] if ack else []
            word = "handshake incomplete (no ACK)" if outcome == "incomplete" else "opened"
            head += f" {word} {at(syn.t if syn else synack.t):.3f}s ({', '.join(steps)})"
        elif syn:  # answered, though its SYN-ACK was not captured (it went another way)
            head += f" opened {at(syn.t):.3f}s ({syns} {at(syn.t):.3f}, SYN-ACK not captured)"
        elif self.mid_connection:
            head += f" seen mid-connection from {at(self.first_t):.3f}s (its SYN was not captured)"
        parts = [head, self._close_text(at), f"{self.bytes_out} B ->", f"{self.bytes_in} B <-"]
        parts += [f"only {self.one_way}'s segments captured"] if self.one_way else []
        if self.retransmissions:
            parts.append(f"{self.retransmissions} retransmitted")
        return ", ".join(parts)

    def _close_text(self, at: Callable[[float], float]) -> str:
        fin, outcome = self.first("FIN"), self.outcome
        rst = self.first("RST")
        if outcome == "closed" and fin:
            return f"closed by {fin.sender.who} {at(fin.t):.3f}s (FIN)"
        if outcome == "reset" and rst:
            before = f"FIN by {fin.sender.who} {at(fin.t):.3f}s, then " if fin else ""
            return f"{before}reset by {rst.sender.who} {at(rst.t):.3f}s (RST)"
        if outcome == "half-closed" and fin:
            return f"half-closed by {fin.sender.who} {at(fin.t):.3f}s (FIN, none back)"
        return "still open at the capture's end"


@dataclass(frozen=True)
class Capture:
    """A capture file read: how many packets, and its TCP connections in the order they began."""

    packets: int = 0  # records read (any protocol)
    connections: tuple[Connection, ...] = ()
    more: int = 0  # connections beyond MAX_CONNECTIONS: counted, not reported
    truncated: bool = False  # the last record was cut short (killed mid-write, or cut at a limit)
    problem: str = ""  # why reading stopped early or found nothing to read ("" when it did not)


# ------------------------------------------------------------------------------------------ reading

def read_pcap(path: Path, names: Mapping[str, str] | None = None, *,
              max_connections: int = MAX_CONNECTIONS) -> Capture:
    """The TCP connections of a pcap file; `names` (an address -> the plan's node with it) names
    their ends. OSError when the file cannot be read; a file that is not a pcap says so (`problem`)."""
    names = names or {}
    with open(path, "rb") as f:
        header = f.read(24)
        if len(header) < 24 or header[:4] not in MAGIC:
            return Capture(problem="not a pcap file (no libpcap header)")
        order, unit = MAGIC[header[:4]]
        linktype = struct.unpack(order + "I", header[20:24])[0] & 0x0FFFFFFF
        record = struct.Struct(order + "IIII")
        reader = _Reader(names, max_connections)
        packets, truncated, problem = 0, False, ""
        if linktype != LINKTYPE_ETHERNET:
            problem = f"link type {linktype}: only Ethernet (1) is read"
        while True:
            head = f.read(16)
            if len(head) < 16:
                truncated = bool(head)
                break
            sec, frac, incl, _ = record.unpack(head)
            if incl > MAX_RECORD:
                problem = f"corrupt record after packet {packets} (claims {incl} bytes)"
                break
            frame = f.read(incl)
            if len(frame) < incl:
                truncated = True
                break
            packets += 1
            if not problem:
                reader.frame(sec + frac * unit, frame)
    return Capture(packets, tuple(reader.connections()), reader.more(), truncated, problem)


@dataclass
class _Side:
    """What one side sent: the sequence ranges seen (unwrapped), its data and retransmissions."""

    last: int | None = None  # the last sequence number seen, as written (mod 2^32)
    rel: int = 0  # ... and unwrapped
    ranges: list[list[int]] = field(default_factory=list)  # merged [start, end), sorted
    data: int = 0
    retransmissions: int = 0

    def segment(self, seq: int, length: int, data: int) -> None:
        """A segment covering `length` sequence numbers from `seq`, of which `data` are data."""
        self.rel = seq if self.last is None else self.rel + ((seq - self.last + 2**31) % 2**32 - 2**31)
        self.last = seq
        if length == 0:
            return
        a, b = self.rel, self.rel + length
        ranges = self.ranges
        if not ranges or a > ranges[-1][1]:  # in order after a hole (or the first)
            ranges.append([a, b])
            if len(ranges) > MAX_RANGES:
                del ranges[0]
            self.data += data
            return
        if a == ranges[-1][1]:  # in order: the common case
            ranges[-1][1] = b
            self.data += data
            return
        covered, merged, lo, hi = 0, [], a, b
        for s, e in ranges:
            if e < a or s > b:
                merged.append([s, e])
            else:
                covered += max(0, min(e, b) - max(s, a))
                lo, hi = min(lo, s), max(hi, e)
        merged.append([lo, hi])
        merged.sort()
        self.ranges[:] = merged
        if covered:
            self.retransmissions += 1
        self.data += max(0, data - covered)


@dataclass
class _Track:
    """A connection while it is read."""

    client: Address
    ends: dict[Address, Endpoint]
    mid: bool
    isn: int | None = None  # the client's SYN sequence number
    server_isn: int | None = None
    syns: int = 0
    handshake: bool = False
    first_t: float = 0.0
    last_t: float = 0.0
    events: list[WireEvent] = field(default_factory=list)
    dropped: int = 0
    fins: set[Address] = field(default_factory=set)
    sides: dict[Address, _Side] = field(default_factory=dict)

    def event(self, t: float, kind: str, src: Address, dst: Address) -> None:
        if len(self.events) >= MAX_EVENTS:
            self.dropped += 1
        else:
            self.events.append(WireEvent(t, kind, self.ends[src], self.ends[dst]))

    def connection(self) -> Connection:
        # a segment from an address and port to themselves (a socket connected to itself, or a
        # corrupt capture) has one end: it is both client and server, and both its sides are one
        server = next((a for a in self.ends if a != self.client), self.client)
        side = self.sides.get
        out = side(self.client) or _Side()
        back = (side(server) or _Side()) if server != self.client else _Side()
        one_way = self.ends[next(iter(self.sides))].who if len(self.sides) == 1 and server != self.client else ""
        return Connection(self.ends[self.client], self.ends[server], tuple(sorted(self.events, key=lambda e: e.t)),
                          self.mid, self.syns, self.handshake, out.data, back.data,
                          out.retransmissions + back.retransmissions, self.dropped, self.first_t, self.last_t,
                          one_way)


class _Reader:
    """Frames in, connections out: the per-connection state, bounded."""

    def __init__(self, names: Mapping[str, str], limit: int):
        self.names, self.limit = names, limit
        self.done: list[_Track] = []  # every connection reported, in the order they began
        self.live: dict[tuple[Address, Address], _Track] = {}  # 4-tuple -> its latest connection
        self.untracked: set[tuple[Address, Address]] = set()
        self.untracked_over = 0

    def connections(self) -> list[Connection]:
        return [t.connection() for t in self.done]

    def more(self) -> int:
        return len(self.untracked) + self.untracked_over

    def _endpoint(self, a: Address) -> Endpoint:
        address = socket.inet_ntoa(a[0])
        return Endpoint(address, a[1], self.names.get(address, ""))

    def frame(self, t: float, frame: bytes) -> None:
        """One Ethernet frame: a TCP segment over IPv4 is followed, anything else ignored."""
        n = len(frame)
        if n < 34:
            return
        kind, off = (frame[12] << 8) | frame[13], 14
        while kind in VLAN_TAGS and off + 4 <= n:
            kind, off = (frame[off + 2] << 8) | frame[off + 3], off + 4
        if kind != ETH_IPV4 or n < off + 20:
            return
        version_ihl, total, fragment, protocol, source, destination = IP_HEADER.unpack_from(frame, off)
        ihl, tcp = (version_ihl & 0x0F) * 4, off + (version_ihl & 0x0F) * 4
        if version_ihl >> 4 != 4 or protocol != 6 or fragment & 0x3FFF or ihl < 20 or n < tcp + 14:
            return  # not TCP over IPv4, a fragment (TCP never needs one), or headers cut short
        sport, dport, seq, ack, doff, flags = TCP_HEADER.unpack_from(frame, tcp)
        doff = (doff >> 4) * 4
        data = max(0, total - ihl - doff) if total else max(0, n - tcp - doff)  # total 0: segmentation offload
        self.segment(t, (source, sport), (destination, dport), seq, ack, flags, data)

    def segment(self, t: float, src: Address, dst: Address, seq: int, ack: int, flags: int, data: int) -> None:
        key = (src, dst) if src <= dst else (dst, src)
        track = self.live.get(key)
        pure_syn = flags & (SYN | ACK) == SYN
        if pure_syn and track is not None and not (track.client == src and track.isn == seq):
            track = None  # a new connection on the 4-tuple (the last one closed), not its SYN again
        if track is None:
            if len(self.done) >= self.limit:
                self.live.pop(key, None)  # its last connection, reported, is over: not this one's
                self._untracked(key, pure_syn)
                return
            if pure_syn:
                client = src
            elif flags & (SYN | ACK) == SYN | ACK:
                client = dst
            else:  # mid-connection: the lower port is taken for the server's
                client = src if src[1] > dst[1] else dst
            track = _Track(client, {src: self._endpoint(src), dst: self._endpoint(dst)}, mid=not pure_syn,
                           first_t=t)
            self.live[key] = track
            self.done.append(track)
        self._follow(track, t, src, dst, seq, ack, flags, data)

    def _untracked(self, key: tuple[Address, Address], pure_syn: bool) -> None:
        if key in self.untracked:
            return
        if len(self.untracked) < MAX_UNTRACKED:
            self.untracked.add(key)
        elif pure_syn:
            self.untracked_over += 1  # too many to remember: a SYN stands for a connection

    @staticmethod
    def _follow(track: _Track, t: float, src: Address, dst: Address, seq: int, ack: int, flags: int,
                data: int) -> None:
        track.last_t = t
        side = track.sides.get(src)
        if side is None:
            side = track.sides[src] = _Side()
        side.segment(seq, data + (flags & SYN and 1) + (flags & FIN), data)
        if flags & SYN and not flags & ACK:
            if src == track.client:
                track.syns += 1
                track.isn = seq if track.isn is None else track.isn
                track.event(t, "SYN", src, dst)
        elif flags & SYN:
            track.server_isn = seq
            track.event(t, "SYN-ACK", src, dst)
        elif (flags & ACK and src == track.client and not track.handshake and track.server_isn is not None
              and ack == (track.server_isn + 1) % 2**32):
            track.handshake = True
            track.event(t, "ACK", src, dst)
        if flags & FIN and src not in track.fins:
            track.fins.add(src)
            track.event(t, "FIN", src, dst)
        if flags & RST:
            track.event(t, "RST", src, dst)
