"""lab/reports/wire.py: TCP connections read from pcap files built here, frame by frame, with struct."""

from __future__ import annotations

import random
import socket
import struct
from pathlib import Path
from typing import Any

import pytest

from lab.outcome import RunResult
from lab.plan import make_plan
from lab.reports import captures as captures_module
from lab.reports.captures import CAPTURES, captures
from lab.reports.wire import MAX_EVENTS, Connection, read_pcap
from lab.rundir import RunDir
from lab.scenario import load_scenario_text

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
C, S = ("10.0.1.11", 40112), ("10.0.1.10", 7)
NAMES = {"10.0.1.11": "client-1", "10.0.1.10": "server"}
T0 = 1_700_000_000.0


def ethernet(payload: bytes, ethertype: int = 0x0800, vlan: int | None = None) -> bytes:
    tag = struct.pack("!HH", 0x8100, vlan) if vlan is not None else b""
    return b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + tag + struct.pack("!H", ethertype) + payload


def ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000, 64, proto, 0,
                       socket.inet_aton(src), socket.inet_aton(dst)) + payload


def tcp(src: tuple[str, int], dst: tuple[str, int], flags: int, seq: int = 0, ack: int = 0, data: bytes = b"",
        vlan: int | None = None) -> bytes:
    segment = struct.pack("!HHIIBBHHH", src[1], dst[1], seq % 2**32, ack % 2**32, 5 << 4, flags, 65535, 0, 0) + data
    return ethernet(ipv4(src[0], dst[0], 6, segment), vlan=vlan)


def udp(src: tuple[str, int], dst: tuple[str, int], data: bytes) -> bytes:
    return ethernet(ipv4(src[0], dst[0], 17, struct.pack("!HHHH", src[1], dst[1], 8 + len(data), 0) + data))


def arp() -> bytes:
    return ethernet(struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, b"\x02" * 6, socket.inet_aton(C[0]),
                                b"\x00" * 6, socket.inet_aton(S[0])), ethertype=0x0806)


def pcap(path: Path, frames: list[tuple[float, bytes]], order: str = "<", nano: bool = False) -> Path:
    """A classic libpcap file: its header (in `order`), then a record per frame."""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, 1)]
    for t, frame in frames:
        sec = int(t)
        frac = round((t - sec) * (1e9 if nano else 1e6))
        out.append(struct.pack(order + "IIII", sec, frac, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))
    return path


def normal(t: float = T0, c: tuple[str, int] = C, s: tuple[str, int] = S) -> list[tuple[float, bytes]]:
    """A handshake, 12 bytes each way, the client closing first."""
    return [
        (t + 0.000, tcp(c, s, SYN, 100)),
        (t + 0.001, tcp(s, c, SYN | ACK, 900, 101)),
        (t + 0.002, tcp(c, s, ACK, 101, 901)),
        (t + 0.010, tcp(c, s, PSH | ACK, 101, 901, b"hello there\n")),
        (t + 0.011, tcp(s, c, PSH | ACK, 901, 113, b"hello there\n")),
        (t + 0.020, tcp(c, s, FIN | ACK, 113, 913)),
        (t + 0.021, tcp(s, c, FIN | ACK, 913, 114)),
        (t + 0.022, tcp(c, s, ACK, 114, 914)),
    ]


def lab(t: float) -> float:
    return t - T0  # the lab's clock, as the reports would give it: 0 at T0


def one(path: Path) -> Connection:
    (conn,) = read_pcap(path, NAMES).connections
    return conn


def test_a_normal_connection_has_its_handshake_data_and_close(tmp_path: Path) -> None:
    capture = read_pcap(pcap(tmp_path / "n.pcap", normal()), NAMES)
    assert (capture.packets, capture.truncated, capture.problem, capture.more) == (8, False, "", 0)
    (c,) = capture.connections
    assert (str(c.client), str(c.server)) == ("client-1:40112", "server:7")
    assert [(e.kind, e.sender.who, e.receiver.who) for e in c.events] == [
        ("SYN", "client-1", "server"), ("SYN-ACK", "server", "client-1"), ("ACK", "client-1", "server"),
        ("FIN", "client-1", "server"), ("FIN", "server", "client-1")]
    assert (c.outcome, c.handshake, c.mid_connection, c.syns) == ("closed", True, False, 1)
    assert (c.bytes_out, c.bytes_in, c.retransmissions) == (12, 12, 0)
    assert c.summary(lab) == ("client-1:40112 -> server:7 opened 0.000s (SYN 0.000, SYN-ACK 0.001, ACK 0.002), "
                              "closed by client-1 0.020s (FIN), 12 B ->, 12 B <-")


def test_a_refused_connection(tmp_path: Path) -> None:
    c = one(pcap(tmp_path / "r.pcap", [(T0 + 1, tcp(C, S, SYN, 5)), (T0 + 1.001, tcp(S, C, RST | ACK, 0, 6))]))
    assert c.outcome == "refused"
    assert [(e.kind, e.sender.who) for e in c.events] == [("SYN", "client-1"), ("RST", "server")]
    assert c.summary(lab) == "client-1:40112 -> server:7 refused 1.001s (SYN 1.000, RST 1.001)"


def test_an_unanswered_syn_retransmitted_three_times(tmp_path: Path) -> None:
    frames = [(T0 + at, tcp(C, S, SYN, 77)) for at in (1.0, 2.0, 4.0, 8.0)]
    c = one(pcap(tmp_path / "u.pcap", frames))
    assert (c.outcome, c.syns, c.retransmissions, c.handshake) == ("unanswered", 4, 3, False)
    assert [e.kind for e in c.events] == ["SYN"] * 4
    assert c.summary(lab) == "client-1:40112 -> server:7 SYN x4, never answered (1.000s to 8.000s)"


def test_a_connection_seen_without_its_syn(tmp_path: Path) -> None:
    frames = [(T0 + 3.0, tcp(S, C, PSH | ACK, 5000, 7000, b"late")), (T0 + 3.1, tcp(C, S, ACK, 7000, 5004)),
              (T0 + 3.2, tcp(C, S, RST, 7000))]
    c = one(pcap(tmp_path / "m.pcap", frames))
    assert c.mid_connection and (str(c.client), str(c.server)) == ("client-1:40112", "server:7")  # lower port: server
    assert (c.outcome, c.bytes_in, c.bytes_out) == ("reset", 4, 0)
    assert c.summary(lab) == ("client-1:40112 -> server:7 seen mid-connection from 3.000s (its SYN was not "
                              "captured), reset by client-1 3.200s (RST), 0 B ->, 4 B <-")


def test_a_retransmitted_data_segment_counts_once(tmp_path: Path) -> None:
    frames = normal()
    frames.insert(4, (T0 + 0.210, tcp(C, S, PSH | ACK, 101, 901, b"hello there\n")))  # the same 12 bytes again
    frames.insert(5, (T0 + 0.215, tcp(C, S, PSH | ACK, 107, 901, b"here\n")))  # partly seen
    c = one(pcap(tmp_path / "d.pcap", frames))
    assert (c.bytes_out, c.bytes_in, c.retransmissions, c.outcome) == (12, 12, 2, "closed")
    assert c.summary(lab).endswith(", 12 B ->, 12 B <-, 2 retransmitted")


def test_sequence_numbers_wrap(tmp_path: Path) -> None:
    isn = 2**32 - 5
    frames = [(T0, tcp(C, S, SYN, isn)), (T0 + 0.001, tcp(S, C, SYN | ACK, 1, isn + 1)),
              (T0 + 0.002, tcp(C, S, ACK, isn + 1, 2)), (T0 + 0.003, tcp(C, S, ACK, isn + 1, 2, b"0123456789")),
              (T0 + 0.004, tcp(C, S, ACK, isn + 11, 2, b"abc"))]
    c = one(pcap(tmp_path / "w.pcap", frames))
    assert (c.bytes_out, c.retransmissions, c.outcome) == (13, 0, "open")
    assert c.summary(lab).endswith("still open at the capture's end, 13 B ->, 0 B <-")


def test_a_new_syn_after_the_close_is_a_new_connection(tmp_path: Path) -> None:
    frames = normal() + [(T0 + 1.0, tcp(C, S, SYN, 5000)), (T0 + 1.001, tcp(S, C, RST | ACK, 0, 5001))]
    first, second = read_pcap(pcap(tmp_path / "2.pcap", frames), NAMES).connections
    assert (first.outcome, second.outcome) == ("closed", "refused")


def test_a_truncated_last_record_keeps_what_came_before(tmp_path: Path) -> None:
    path = pcap(tmp_path / "t.pcap", normal())
    data = path.read_bytes()
    for cut in (5, 30):  # inside the last frame, inside the last record header
        path.write_bytes(data[:-cut] if cut == 5 else data[:-(len(normal()[-1][1]) + 16) + 10])
        capture = read_pcap(path, NAMES)
        assert (capture.packets, capture.truncated) == (7, True)
        assert capture.connections[0].outcome == "closed"


@pytest.mark.parametrize(("order", "nano"), [("<", False), (">", False), ("<", True), (">", True)])
def test_both_byte_orders_and_nanosecond_stamps(tmp_path: Path, order: str, nano: bool) -> None:
    c = one(pcap(tmp_path / "o.pcap", normal(T0 + 0.5), order, nano))
    assert c.outcome == "closed" and c.events[1].t == pytest.approx(T0 + 0.501, abs=1e-6)


def test_other_frames_are_ignored_and_vlan_tags_skipped(tmp_path: Path) -> None:
    frames = [(T0, arp()), (T0 + 0.001, udp(C, ("10.0.1.10", 53), b"query"))]
    frames += [(t, frame) for t, frame in normal()[:3]]
    frames.append((T0 + 0.01, tcp(C, S, PSH | ACK, 101, 901, b"tagged", vlan=5)))
    capture = read_pcap(pcap(tmp_path / "x.pcap", frames), NAMES)
    (c,) = capture.connections
    assert capture.packets == 6 and c.bytes_out == 6 and c.outcome == "open"


def test_unknown_addresses_and_not_a_pcap(tmp_path: Path) -> None:
    c = one(pcap(tmp_path / "a.pcap", [(T0, tcp(("192.0.2.1", 5555), S, SYN, 1))]))
    assert c.client.who == "192.0.2.1" and str(c.client) == "192.0.2.1:5555"
    (tmp_path / "bad.pcap").write_bytes(b"not a capture at all")
    assert read_pcap(tmp_path / "bad.pcap").problem and not read_pcap(tmp_path / "bad.pcap").connections


def test_connections_and_events_are_capped(tmp_path: Path) -> None:
    frames = [(T0 + k / 1000, tcp(("10.0.1.11", 30000 + k), S, SYN, k)) for k in range(12)]
    capture = read_pcap(pcap(tmp_path / "many.pcap", frames), NAMES, max_connections=5)
    assert (len(capture.connections), capture.more) == (5, 7)
    storm = [(T0 + k / 1000, tcp(C, S, SYN, 9)) for k in range(MAX_EVENTS + 10)]
    c = one(pcap(tmp_path / "storm.pcap", storm))
    assert (len(c.events), c.events_dropped, c.syns) == (MAX_EVENTS, 10, MAX_EVENTS + 10)


def test_a_capture_that_sees_one_way_only_does_not_say_never_answered(tmp_path: Path) -> None:
    """Routes may send the replies another way (another network's capture has them)."""
    frames = [(t, f) for t, f in normal() if f[26:30] == socket.inet_aton(C[0])]  # the client's segments only
    c = one(pcap(tmp_path / "oneway.pcap", frames))
    assert (c.outcome, c.bytes_out, c.handshake) == ("half-closed", 12, False)
    assert c.one_way == "client-1"
    assert c.summary(lab) == ("client-1:40112 -> server:7 opened 0.000s (SYN 0.000, SYN-ACK not captured), "
                              "half-closed by client-1 0.020s (FIN, none back), 12 B ->, 0 B <-, "
                              "only client-1's segments captured")


def test_past_the_cap_a_reused_four_tuple_leaves_the_reported_connection_alone(tmp_path: Path) -> None:
    frames = normal() + [(T0 + 1.0, tcp(C, S, SYN, 5000)), (T0 + 1.001, tcp(S, C, RST | ACK, 0, 5001))]
    capture = read_pcap(pcap(tmp_path / "cap.pcap", frames), NAMES, max_connections=1)
    (c,) = capture.connections
    assert (c.outcome, capture.more, [e.kind for e in c.events].count("RST")) == ("closed", 1, 0)


def test_a_segment_to_itself_is_one_connection_with_one_end(tmp_path: Path) -> None:
    """Source and destination alike (address and port): a socket connected to itself, or a corrupt
    capture. It once stopped the reader (StopIteration) and with it the run's report."""
    frames = [(T0, tcp(C, C, SYN, 1)), (T0 + 0.1, tcp(C, C, SYN | ACK, 1, 2)), (T0 + 0.2, tcp(C, C, ACK, 2, 2, b"ab"))]
    capture = read_pcap(pcap(tmp_path / "self.pcap", frames), NAMES)
    (c,) = capture.connections
    assert (capture.packets, capture.problem, c.client, c.server) == (3, "", c.server, c.client)
    assert str(c.client) == "client-1:40112" and c.bytes_out == 2 and c.one_way == ""
    assert [e.kind for e in c.events] == ["SYN", "SYN-ACK", "ACK"] and c.summary(lab).startswith(
        "client-1:40112 -> client-1:40112 opened 0.000s")


FUZZ_SCENARIO = """
name: fuzz
networks: {lan: {subnet: 10.0.1.0/24}, wan: {subnet: 10.0.2.0/24}}
nodes:
  server: {networks: {lan: 10.0.1.10, wan: 10.0.2.10}}
  client-1: {networks: {lan: 10.0.1.11}}
"""


def _fuzzed(rng: random.Random) -> bytes:
    """A pcap of valid frames between a few ends (so that 4-tuples meet, a segment to itself too),
    then with bytes flipped, and sometimes cut short."""
    ends = [C, S, (C[0], S[1]), ("10.0.2.10", 7)]
    frames = [(T0 + rng.uniform(-1e9, 1e6), tcp(rng.choice(ends), rng.choice(ends), rng.randrange(64),
                                                 rng.choice([0, 1, 2**32 - 1, rng.randrange(2**32)]), rng.randrange(3),
                                                 b"x" * rng.randrange(3), vlan=rng.choice([None, 5])))
              for _ in range(rng.randrange(1, 25))]
    frames += normal() if rng.random() < 0.3 else []
    data = bytearray(pcap_bytes(frames, order=rng.choice("<>"), nano=rng.random() < 0.5))
    for _ in range(rng.randrange(0, 12)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data[:rng.randrange(len(data) + 1)] if rng.random() < 0.2 else data)


def pcap_bytes(frames: list[tuple[float, bytes]], order: str = "<", nano: bool = False) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, 1)]
    for t, frame in frames:
        sec = int(t) % 2**32
        out.append(struct.pack(order + "IIII", sec, int((t - int(t)) * (1e9 if nano else 1e6)), len(frame),
                               len(frame)) + frame)
    return b"".join(out)


def test_no_capture_however_corrupt_stops_a_report(tmp_path: Path) -> None:
    """A few hundred fuzzed files: reading them (and saying their connections) raises nothing, and a
    valid capture beside each is read whole."""
    plan = make_plan(load_scenario_text(FUZZ_SCENARIO, tmp_path / "fuzz.yaml"))
    rng = random.Random(20240531)  # (fixed: a failure is repeatable)
    good = pcap_bytes(normal())
    for k in range(300):
        run = RunDir(tmp_path / f"run{k}")  # (a folder each: captures are cached by path, size and time)
        folder = run.file(CAPTURES)
        folder.mkdir(parents=True)
        (folder / "lan.pcap").write_bytes(_fuzzed(rng))
        (folder / "wan.pcap").write_bytes(good)
        read_pcap(folder / "lan.pcap", NAMES)  # (what captures() reads it with, and without names)
        for c in read_pcap(folder / "lan.pcap").connections:
            assert c.summary(lab) and c.outcome and (c.close is None or c.close.kind in ("FIN", "RST"))
        lan, wan = captures(RunResult(plan, run, "netns", "fuzz", T0))
        assert (lan.network, wan.network, wan.wire.problem, len(wan.wire.connections)) == ("lan", "wan", "", 1)
        for c in lan.wire.connections:
            assert c.summary(lab)


def test_a_capture_the_reader_trips_on_is_that_capture_s_problem(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    plan = make_plan(load_scenario_text(FUZZ_SCENARIO, tmp_path / "fuzz.yaml"))
    run = RunDir(tmp_path / "run")
    run.file(CAPTURES).mkdir(parents=True)
    for net in ("lan", "wan"):
        (run.file(CAPTURES) / f"{net}.pcap").write_bytes(pcap_bytes(normal()))
    (run.file(CAPTURES) / "wan.json").write_text("[" * 100_000)  # (json's own RecursionError)
    real = captures_module.read_pcap

    def reader(path: Path, names: Any = None) -> Any:
        if path.name == "lan.pcap":
            raise IndexError("a bug of the reader's")
        return real(path, names)

    monkeypatch.setattr(captures_module, "read_pcap", reader)
    lan, wan = captures(RunResult(plan, run, "netns", "trip", T0))
    assert lan.wire.problem == "could not be read (IndexError: a bug of the reader's)" and not lan.wire.connections
    assert wan.wire.problem == "" and len(wan.wire.connections) == 1 and wan.stats == {}
