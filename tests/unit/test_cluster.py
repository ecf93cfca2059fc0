"""The swarm backend's pure parts: cluster files, placement, docker's address block, the agent's
attach-stream protocol, host clocks, and the clock correction applied before checks."""

from __future__ import annotations

import ipaddress
import json
import textwrap
from pathlib import Path

import pytest

from lab.backends import Placement
from lab.backends.containers.cluster import Cluster, Host, Tls, load_cluster, place
from lab.backends.containers.overlay import docker_block
from lab.backends.containers.remote import Channel, parse_time, tar_files
from lab.backends.containers.simcluster import cluster_file
from lab.checks import evaluate
from lab.errors import ScenarioError
from lab.outcome import NodeOutcome, on_lab_clock
from lab.plan import make_plan
from lab.scenario import load_scenario, load_scenario_text

EXAMPLES = Path(__file__).resolve().parents[2] / "scenarios"
THREE = """\
hosts:
  h1: {endpoint: "tcp://10.9.0.11:2375", manager: true}
  h2: {endpoint: "tcp://10.9.0.12:2375"}
  h3: {endpoint: "unix:///run/lab-h3.sock"}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def cluster(tmp_path: Path, text: str = THREE) -> Cluster:
    return load_cluster(write(tmp_path, text))


# ----------------------------------------------------------------------------- cluster files


def test_cluster_file_loads(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    assert [h.name for h in c.hosts] == ["h1", "h2", "h3"]
    assert c.manager.name == "h1"
    assert Cluster.from_json(json.loads(json.dumps(c.to_json()))) == c


def test_simulated_cluster_file_is_valid(tmp_path: Path) -> None:
    c = cluster(tmp_path, cluster_file("sim", ["172.31.0.11", "172.31.0.12"]))
    assert c.manager.endpoint == "tcp://172.31.0.11:2375" and len(c.hosts) == 2


def test_a_tls_cluster_s_file_names_the_certificates_made_for_it(tmp_path: Path) -> None:
    """`lab cluster up --tls`: a CA of its own; each host's certificate names its address (and
    serves only as a server's), the lab's only as a client's; every key is its owner's alone."""
    import subprocess

    from lab.backends.containers import certs

    folder = tmp_path / "cluster-tls"
    certs.ensure_ca(folder, "sim")
    certs.client(folder)
    host = certs.server(folder, "h1", "172.31.0.11")
    c = cluster(tmp_path, cluster_file("sim", ["172.31.0.11"], tls="cluster-tls"))
    h1 = c.hosts[0]
    assert h1.endpoint == "tcp://172.31.0.11:2376" and h1.tls == Tls(folder / "ca.pem", folder / "cert.pem",
                                                                       folder / "key.pem")

    def openssl(*args: str) -> str:
        return subprocess.run(["openssl", *args], capture_output=True, text=True, check=True).stdout

    for cert, purpose in ((host.cert, "sslserver"), (folder / "cert.pem", "sslclient")):
        verified = openssl("verify", "-CAfile", str(folder / "ca.pem"), "-purpose", purpose, str(cert))
        assert verified.strip().endswith(": OK")
    with pytest.raises(subprocess.CalledProcessError):  # a host's certificate is no client's
        openssl("verify", "-CAfile", str(folder / "ca.pem"), "-purpose", "sslclient", str(host.cert))
    assert "IP Address:172.31.0.11" in openssl("x509", "-in", str(host.cert), "-noout", "-ext", "subjectAltName")
    assert {(folder / k).stat().st_mode & 0o777 for k in ("ca-key.pem", "key.pem", "h1-key.pem")} == {0o600}
    before = (folder / "ca.pem").read_bytes()
    certs.ensure_ca(folder, "sim")
    assert (folder / "ca.pem").read_bytes() == before  # kept: hosts made later are signed by the same CA
    assert certs.server(folder, "h1", "172.31.0.12").cert == host.cert
    assert "IP Address:172.31.0.12" in openssl("x509", "-in", str(host.cert), "-noout", "-ext", "subjectAltName")


@pytest.mark.parametrize("text, line, message", [
    ("hosts: {}\n", 1, "expected a non-empty mapping"),
    ("hosts:\n  h1: {endpoint: 'http://x:1', manager: true}\n", 2, "expected tcp://ADDRESS:PORT"),
    ("hosts:\n  h1: {endpoint: 'tcp://x', manager: true}\n", 2, "needs an address and a port"),
    ("hosts:\n  h1: {endpoint: 'unix://', manager: true}\n", 2, "needs a socket path"),
    ("hosts:\n  h1: {endpoint: 'tcp://x:1'}\n", 2, "no host is a swarm manager"),
    ("hosts:\n  h1: {endpoint: 'tcp://x:1', manager: true}\n  h2: {endpoint: 'tcp://x:1'}\n", 3,
     "same endpoint as host h1"),
    ("hosts:\n  h1: {endpoint: 'tcp://x:1', manger: true}\n", 2, "manger"),
    ("hosts:\n  H1: {endpoint: 'tcp://x:1', manager: true}\n", 2, "invalid name 'H1'"),
    ("hosts:\n  h1: {endpoint: 'tcp://b:1', manager: true, tls: {ca: a, cert: b, key: c}}\n", 2, "no such file"),
    ("hosts:\n  h1: {endpoint: 'ssh://a@b', manager: true}\n", 2, "forward the engine's socket"),
    ("hosts:\n  h1: {manager: true}\n", 2, "endpoint"),
    ("nodes: {}\n", 1, "nodes"),
])
def test_bad_cluster_files_are_located(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as error:
        load_cluster(path)
    first = str(error.value).splitlines()[0]
    assert first.startswith(f"{path}:{line}:"), first
    assert message in str(error.value)


def test_tls_files_are_resolved_next_to_the_cluster_file(tmp_path: Path) -> None:
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    c = cluster(tmp_path, """\
        hosts:
          h1: {endpoint: "tcp://10.0.0.1:2376", manager: true, tls: {ca: ca.pem, cert: cert.pem, key: key.pem}}
        """)
    tls = c.hosts[0].tls
    assert tls is not None and tls.ca == tmp_path / "ca.pem"


# ----------------------------------------------------------------------------- placement


def test_clients_go_to_other_hosts_than_their_server(tmp_path: Path) -> None:
    plan = make_plan(load_scenario(EXAMPLES / "echo.yaml"))
    placed = place(plan, cluster(tmp_path))
    server = placed["server"]
    clients = [placed[n.name] for n in plan.nodes if n.name != "server"]
    assert clients and server not in clients
    assert len(set(clients)) == 2  # spread over the two other hosts


def test_placement_spreads_evenly_and_is_deterministic(tmp_path: Path) -> None:
    plan = make_plan(load_scenario(EXAMPLES / "scale.yaml"))
    c = cluster(tmp_path)
    placed = place(plan, c)
    assert placed == place(plan, c)
    loads = sorted(list(placed.values()).count(h) for h in ("h2", "h3"))
    assert loads[1] - loads[0] <= 1


SCENARIO = """\
name: pinned
networks:
  lan: {subnet: 10.0.1.0/24}
nodes:
  server: {networks: {lan: 10.0.1.10}, role: echo-server, with: {port: 7}, host: %s}
  client:
    networks: [lan]
    replicas: 4
    host: [h1, h3]
    role: telnet-client
    with: {connect: "server:7", send: [hi]}
    after: server
"""


def test_host_pins_nodes_and_replicas_take_their_hosts_in_turn(tmp_path: Path) -> None:
    plan = make_plan(load_scenario_text(SCENARIO % "h1", "pinned.yaml"))
    placed = place(plan, cluster(tmp_path))
    assert placed["server"] == "h1"
    assert [placed[f"client-{i}"] for i in range(1, 5)] == ["h1", "h3", "h1", "h3"]


def test_unknown_host_is_a_located_scenario_error(tmp_path: Path) -> None:
    plan = make_plan(load_scenario_text(SCENARIO % "h9", "pinned.yaml"))
    with pytest.raises(ScenarioError) as error:
        place(plan, cluster(tmp_path))
    text = str(error.value)
    assert text.startswith("pinned.yaml:5:") and "nodes.server.host: unknown host 'h9'" in text
    assert "h1, h2, h3" in text


def test_scenarios_run_unchanged_elsewhere_host_is_in_the_plan_only() -> None:
    plan = make_plan(load_scenario_text(SCENARIO % "h1", "pinned.yaml"))
    assert plan.node("server").hosts == ("h1",)
    assert plan.to_json()["nodes"][0]["host"] == ["h1"]


# ----------------------------------------------------------------------------- docker's addresses


def net(text: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(text)


def test_docker_block_avoids_every_node_address() -> None:
    used = {ipaddress.IPv4Address("10.0.1.10"), ipaddress.IPv4Address("10.0.1.254")}
    found = docker_block(net("10.0.1.0/24"), used, hosts=3)
    assert found is not None
    block, gateway = found
    assert block.num_addresses >= 6 and not any(a in used for a in block)
    assert gateway in block and gateway in net("10.0.1.0/24") and gateway != net("10.0.1.0/24").broadcast_address


def test_docker_block_none_when_the_subnet_is_full() -> None:
    subnet = net("10.0.1.0/29")
    assert docker_block(subnet, set(subnet.hosts()), hosts=3) is None
    assert docker_block(net("10.0.1.0/30"), set(), hosts=3) is None


# ----------------------------------------------------------------------------- attach stream


def frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


def test_channel_parses_frames_split_anywhere() -> None:
    data = (frame(1, b"LAB-AGENT rea") + frame(1, b"dy\ntraceback line\n") + frame(2, b"ready\n")
            + frame(1, b"LAB-AGENT exit 3\n"))
    for cut in range(1, len(data)):
        ch = Channel(sock=None)
        facts = ch.feed(data[:cut]) + ch.feed(data[cut:])
        assert facts == ["ready", "ready", "exit 3"], cut
        assert ch.output == b"traceback line\n"


def test_channel_keeps_a_bounded_amount_of_other_output() -> None:
    ch = Channel(sock=None)
    for _ in range(2000):
        ch.feed(frame(1, b"x" * 100 + b"\n"))
    assert len(ch.output) <= 64 * 1024 + 101


def test_tar_files_round_trip(tmp_path: Path) -> None:
    import io
    import tarfile

    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("hi")
    data = tar_files([("lab/ctl/spec.json", b"{}")], [("lab/files", tmp_path / "www")])
    names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
    assert "lab/ctl/spec.json" in names and "lab/files/index.html" in names


# ----------------------------------------------------------------------------- clocks


def test_parse_time_keeps_sub_second_precision() -> None:
    assert parse_time("1970-01-01T00:00:01.5Z") == 1.5
    assert parse_time("1970-01-01T00:00:01.123456789Z") == pytest.approx(1.123456, abs=1e-6)
    assert parse_time("1970-01-01T01:00:02+01:00") == 2.0


def client(name: str, connect: float, answered: float, closed: float) -> NodeOutcome:
    transcript = [
        {"t": connect, "event": "connected"},
        {"t": answered, "event": "received", "data": "aGk="},
        {"t": closed, "event": "closed"},
    ]
    return NodeOutcome(name, True, 0, False, "", transcript, "")


def test_concurrent_is_judged_on_the_lab_clock() -> None:
    """Two clients served at the same moment, on hosts whose clocks differ by 5 s: the raw
    stamps do not overlap; put on the lab's clock, they do."""
    a = client("a", 100.0, 100.1, 101.0)
    b_raw = client("b", 105.0, 105.1, 106.0)  # host clock 5 s ahead
    raw = evaluate("concurrent", {"at_least": 2}, [a, b_raw])
    assert not any(r.passed for r in raw)
    b = NodeOutcome("b", True, 0, False, "", on_lab_clock(b_raw.transcript, 5.0), "")
    fixed = evaluate("concurrent", {"at_least": 2}, [a, b])
    assert all(r.passed for r in fixed), fixed


def test_placement_record_defaults() -> None:
    p = Placement("h2", "tcp://x:1")
    assert (p.clock_offset, p.uncertainty) == (0.0, 0.0)
    assert Host("h1", "tcp://x:1").manager is False
