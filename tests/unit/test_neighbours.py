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
    by = {n.name: nb.lines(n) for n in plan.nodes}
    assert by["client-1"] == ["neigh replace 10.1.0.1 lladdr 02:6c:0a:01:00:01 dev eth0 nud permanent"]
    assert by["peer"] == by["client-1"]  # an ordinary node: the hubs on its network only (the others by ARP)
    assert len(by["gw"]) == 4 + 1  # on a: the three clients and peer; on b: the server
    assert {line.split()[2] for line in by["gw"] if line.endswith("dev eth1 nud permanent")} == {"10.2.0.10"}
    assert by["server"] == ["neigh replace 10.2.0.1 lladdr 02:6c:0a:02:00:01 dev eth0 nud permanent"]


def test_a_thousand_clients_of_one_server_cost_two_thousand_entries_not_a_million() -> None:
    text = ("name: big\nnetworks: {lan: {subnet: 10.10.0.0/16}}\nnodes:\n"
            "  server: {networks: {lan: 10.10.0.1}, role: echo-server, with: {port: 7}}\n"
            "  client: {replicas: 1000, networks: [lan], after: server, role: telnet-client, "
            "with: {connect: 'server:7'}}\n")
    plan = make_plan(load_scenario_text(text, Path("/x/t.yaml")))
    nb = Neighbours(plan)
    assert sum(len(nb.lines(n)) for n in plan.nodes) == 2000
