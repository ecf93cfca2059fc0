"""The plan is pure: replicas expanded, auto addresses picked, names resolved for each viewer."""

from __future__ import annotations

from ipaddress import IPv4Interface
from pathlib import Path

from lab.plan import ANNOUNCE, STARTED, TCP, make_plan
from lab.scenario import load_scenario, load_scenario_text

ROOT = Path(__file__).resolve().parents[2]


def test_echo_plan_expands_replicas_and_picks_free_addresses() -> None:
    plan = make_plan(load_scenario(ROOT / "scenarios" / "echo.yaml"))
    assert [n.name for n in plan.nodes] == ["server", "client-1", "client-2", "client-3"]
    assert plan.node("server").interfaces[0].address == IPv4Interface("10.0.1.10/24")
    assert [str(plan.node(f"client-{k}").address) for k in (1, 2, 3)] == ["10.0.1.1", "10.0.1.2", "10.0.1.3"]
    c2 = plan.node("client-2")
    assert c2.group == "client" and c2.after == ("server",)
    assert c2.params["host"] == "10.0.1.10" and c2.params["port"] == 9999
    assert c2.params["target"] == "server:9999"
    assert c2.params["send"] == ["hello from client-2", "second line"]
    assert plan.expect[0].nodes == ("client-1", "client-2", "client-3")
    assert plan.node("server").service and not c2.service
    assert plan.node("server").ready.kind == ANNOUNCE


def test_auto_addresses_skip_static_ones() -> None:
    text = """
name: t
networks: {lan: {subnet: 10.9.0.0/29}}
nodes:
  a: {networks: {lan: 10.9.0.1}}
  b: {networks: [lan], replicas: 2}
  c: {networks: {lan: 10.9.0.3}}
"""
    plan = make_plan(load_scenario_text(text, ROOT / "t.yaml"))
    assert [str(n.address) for n in plan.nodes] == ["10.9.0.1", "10.9.0.2", "10.9.0.4", "10.9.0.3"]


def test_auto_addresses_skip_the_static_ones_of_their_own_network_whatever_the_others() -> None:
    text = """
name: t
networks: {a: {subnet: 10.1.0.0/29}, b: {subnet: 10.2.0.0/29}}
nodes:
  gw: {networks: {a: 10.1.0.1, b: 10.2.0.1}, forwarding: true}
  x: {networks: [a, b], replicas: 2}
"""
    plan = make_plan(load_scenario_text(text, ROOT / "t.yaml"))
    for net in ("a", "b"):
        taken = [str(i.address.ip) for n in plan.nodes for i in n.interfaces if i.network == net]
        assert len(set(taken)) == len(taken) == 3, taken  # not gw's static address again


def test_http_get_resolves_through_the_router() -> None:
    plan = make_plan(load_scenario(ROOT / "scenarios" / "http-get.yaml"))
    browser = plan.node("browser")
    assert browser.params["host"] == "10.0.3.80" and browser.params["port"] == 8080
    assert browser.params["path"] == "/hello.txt" and browser.params["host_header"] == "web:8080"
    assert plan.node("router").forwarding and not plan.node("router").runs_something
    assert [i.name for i in plan.node("router").interfaces] == ["eth0", "eth1"]


def test_hosts_file_prefers_an_address_on_a_shared_network() -> None:
    text = """
name: t
networks: {a: {subnet: 10.1.0.0/24}, b: {subnet: 10.2.0.0/24}}
nodes:
  server: {networks: {a: 10.1.0.10, b: 10.2.0.10}}
  left: {networks: {a: 10.1.0.20}}
  right: {networks: {b: 10.2.0.20}}
"""
    plan = make_plan(load_scenario_text(text, ROOT / "t.yaml"))
    assert "10.1.0.10\tserver" in plan.hosts_file("left")
    assert "10.2.0.10\tserver" in plan.hosts_file("right")
    assert "10.2.0.20\tright" in plan.hosts_file("right") and "127.0.1.1" not in plan.hosts_file("right")


def test_program_readiness_kinds() -> None:
    plan = make_plan(load_scenario(ROOT / "scenarios" / "exercise-echo.yaml"))
    server, prober = plan.node("server"), plan.node("prober")
    assert server.ready.kind == TCP and server.ready.port == 9999 and server.service
    assert server.cwd == ROOT / "scenarios" / "exercises"
    assert prober.ready.kind == STARTED and not prober.service
    assert prober.argv == ("sh", "-c", "printf 'hi\\r\\n' | nc -N server 9999")


def test_expectation_labels_are_unique() -> None:
    text = """
name: t
networks: {lan: {subnet: 10.9.0.0/24}}
nodes:
  p: {networks: [lan], run: "echo hi"}
expect:
  - output: {nodes: p, contains: "hi"}
  - output: {nodes: p, regex: "h."}
  - exit: p
"""
    plan = make_plan(load_scenario_text(text, ROOT / "t.yaml"))
    assert [e.label for e in plan.expect] == ["output p #1", "output p #2", "exit p"]


VARIED = """
name: varied
networks: {lan: {subnet: 10.0.0.0/24}}
nodes:
  server: {networks: [lan], role: echo-server, with: {port: 9999}}
  client:
    replicas: 3
    networks: [lan]
    role: telnet-client
    with: {connect: "server:9999", send: ["{word} from {node}", "{word}"]}
"""


def test_words_are_drawn_per_client_from_the_seed() -> None:
    """`{word}`: a word a server cannot know in advance, the same for the same seed (a run can be
    replayed), another for each client and each line."""
    scenario = load_scenario_text(VARIED, ROOT / "t.yaml")

    def sent(seed: int) -> dict[str, list[str]]:
        plan = make_plan(scenario, seed)
        return {n.name: n.params["send"] for n in plan.nodes if n.group == "client"}

    first = sent(7)
    assert first == sent(7) and first != sent(8)
    words = [line.split()[0] for lines in first.values() for line in lines]
    assert len(set(words)) == len(words) == 6 and all(w.isalpha() and len(w) == 6 for w in words)
    assert first["client-2"][0].endswith(" from client-2")
    assert make_plan(scenario, 7).to_json()["seed"] == 7
