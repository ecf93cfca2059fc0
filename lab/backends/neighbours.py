"""Who knows whose MAC in advance: the lab's fixed link addresses and permanent neighbour entries.

The kernel's neighbour (ARP) table is one table for the whole machine: every namespace's entries
count against the same `gc_thresh3` (1024 by default, a host sysctl the lab must not change), and
an entry learnt by ARP cannot be made while the table is full, so at ~500 clients of one server
(one entry on each side) connections begin to fail with `No route to host`. Each ARP request is
also a broadcast the bridge copies to every port: N clients asking cost N x N copies.

The lab assigns every address, so it can assign every MAC too (`mac`: 02:6c and the IPv4 address,
unique on its network) and write the entries down before anything runs. Permanent entries are
outside the table's limit and never expire. Writing all of them is N x N per network, so only the
pairs that matter are written: every node knows the hubs on its networks (services, routers, and
nodes others wait for), and every hub knows every node on its networks. Clients never ask for a
server, a server never asks for its clients; two ordinary nodes talking to each other still use
ARP, as on any LAN.
"""

from __future__ import annotations

from lab.plan import Interface, NodePlan, Plan


def mac(iface: Interface) -> str:
    """The link address of a node's interface: locally administered, then its IPv4 address."""
    return "02:6c:" + ":".join(f"{b:02x}" for b in iface.address.ip.packed)


def hubs(plan: Plan) -> set[str]:
    """Nodes that many others talk to: services, routers, and nodes another waits for."""
    waited = {name for n in plan.nodes for name in n.after}
    return {n.name for n in plan.nodes if n.service or n.forwarding or n.name in waited}


class Neighbours:
    """The permanent entries each node's namespace gets (`of`)."""

    def __init__(self, plan: Plan):
        self.hubs = hubs(plan)
        self.members: dict[str, list[tuple[str, Interface]]] = {}  # network -> (node, interface)
        for node in plan.nodes:
            for iface in node.interfaces:
                self.members.setdefault(iface.network, []).append((node.name, iface))
        self.hub_members = {net: [(n, i) for n, i in m if n in self.hubs] for net, m in self.members.items()}

    def of(self, node: NodePlan) -> list[tuple[Interface, Interface]]:
        """(the node's interface, another node's interface on that network) for every entry."""
        out = []
        for iface in node.interfaces:
            known = self.members if node.name in self.hubs else self.hub_members
            out += [(iface, theirs) for other, theirs in known.get(iface.network, []) if other != node.name]
        return out
