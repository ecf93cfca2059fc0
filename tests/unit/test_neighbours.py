"""The lab's fixed MACs and permanent neighbour entries (lab/backends/neighbours.py): pure, from the plan."""

from __future__ import annotations

from pathlib import Path

from lab.backends.neighbours import Neighbours, hubs, mac
from lab.plan import make_plan
from lab.scenario import load_scenario_text

ROUTED = """
name: routed
networks:
  a: {subnet: 10.1.0.0/24}
  b: {subnet: 10.2.0.0/24}
nodes:
  gw: {networks: {a: 10.1.0.1, b: 10.2.0.1}, forwarding: true}
  server: {networks: {b: 10.2.0.10}, role: echo-server, with: {port: 7}, routes: [{to: default, via: 10.2.0.1}]}
  client:
    {replicas: 3, networks: [a], after: server, role: telnet-client, with: {connect: "server:7"},
     routes: [{to: default, via: 10.1.0.1}]}
  peer: {networks: [a], run: "sleep 1"}
"""


def test_every_interface_has_a_mac_of_its_own_from_its_address() -> None:
    plan = make_plan(load_scenario_text(ROUTED, Path("/x/t.yaml")))
    macs = [mac(i) for n in plan.nodes for i in n.interfaces]
    assert len(set(macs)) == len(macs)
    gw = next(n for n in plan.nodes if n.name == "gw")
    assert [mac(i) for i in gw.interfaces] == ["02:6c:0a:01:00:01", "02:6c:0a:02:00:01"]
    assert all(int(m.split(":")[0], 16) & 0b10 and not int(m.split(":")[0], 16) & 1 for m in macs)  # local, unicast


def test_nodes_know_their_hubs_and_hubs_know_everyone_on_their_networks() -> None:
    plan = make_plan(load_scenario_text(ROUTED, Path("/x/t.yaml")))
    assert hubs(plan) == {"gw", "server"}  # a router, a service (also waited for)
    nb = Neighbours(plan)
    by = {n.name: [(mine.name, str(theirs.address.ip), mac(theirs)) for mine, theirs in nb.of(n)] for n in plan.nodes}
    assert by["client-1"] == [("eth0", "10.1.0.1", "02:6c:0a:01:00:01")]
    assert by["peer"] == by["client-1"]  # an ordinary node: the hubs on its network only (the others by ARP)
    assert len(by["gw"]) == 4 + 1  # on a: the three clients and peer; on b: the server
    assert [ip for dev, ip, _ in by["gw"] if dev == "eth1"] == ["10.2.0.10"]
    assert by["server"] == [("eth0", "10.2.0.1", "02:6c:0a:02:00:01")]


def test_a_thousand_clients_of_one_server_cost_two_thousand_entries_not_a_million() -> None:
    text = ("name: big\nnetworks: {lan: {subnet: 10.10.0.0/16}}\nnodes:\n"
            "  server: {networks: {lan: 10.10.0.1}, role: echo-server, with: {port: 7}}\n"
            "  client: {replicas: 1000, networks: [lan], after: server, role: telnet-client, "
            "with: {connect: 'server:7'}}\n")
    plan = make_plan(load_scenario_text(text, Path("/x/t.yaml")))
    nb = Neighbours(plan)
    assert sum(len(nb.of(n)) for n in plan.nodes) == 2000


def test_the_requests_for_a_node_namespace_say_what_ip_would_have_done() -> None:
    """rtnetlink.py's messages, one per line `ip -n NS -batch` used to get (named so in errors)."""
    import struct

    from lab.backends.rtnetlink import RTM_NEWADDR, RTM_NEWLINK, RTM_NEWNEIGH, RTM_NEWROUTE, requests

    plan = make_plan(load_scenario_text(ROUTED, Path("/x/t.yaml")))
    node = plan.node("client-1")
    asked = requests(node, Neighbours(plan), {"lo": 1, "eth0": 7})
    assert list(asked.said.values()) == [
        "link set lo up", "link set eth0 up", "addr add 10.1.0.2/24 dev eth0", "route add default via 10.1.0.1",
        "neigh replace 10.1.0.1 lladdr 02:6c:0a:01:00:01 dev eth0 nud permanent"]
    kinds = [struct.unpack_from("IHHII", m)[1] for m in asked.messages]
    assert kinds == [RTM_NEWLINK, RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE, RTM_NEWNEIGH]
    assert all(struct.unpack_from("I", m)[0] == len(m) for m in asked.messages)  # each header's length is its own
    neigh = asked.messages[-1]
    assert neigh[-8:-2] == bytes.fromhex("026c0a010001")  # the hub's MAC, as NDA_LLADDR (padded to 4)
