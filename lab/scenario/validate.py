"""Strict validation of a parsed scenario into the model, reporting every problem at once.

Order matters only for references: networks and node names are indexed first, so nodes and
expectations can be checked against them; then rules that span nodes (addresses, capacity,
`after` cycles). Nothing is built unless there is no problem at all.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from lab.errors import Problem
from lab.scenario.checker import Checker, NodeInfo, Refs, find_cycles
from lab.scenario.expect import check_expect
from lab.scenario.limits import check_limits
from lab.scenario.model import Expectation, Limits, Network, Node, Scenario
from lab.scenario.nodes import Scope, check_node, misplaced_with
from lab.scenario.source import KeyPath, Source, problems_error
from lab.scenario.timeline import check_capture, check_timeline
from lab.scenario.values import Invalid, boolean, cidr, duration, integer, kind, name, string

TOP_KEYS = ("name", "description", "timeout", "networks", "nodes", "expect", "limits", "capture", "timeline")
MAX_REPLICAS = 1000
_UNSAFE = {
    IPv4Network("0.0.0.0/8"): "'this network'",
    IPv4Network("127.0.0.0/8"): "loopback",
    IPv4Network("224.0.0.0/4"): "multicast",
    IPv4Network("240.0.0.0/4"): "reserved",
}


def validate(source: Source, path: Path) -> Scenario:
    """The Scenario, or ScenarioError listing every problem found."""
    c = Checker(source)
    top = c.mapping((), source.data, TOP_KEYS, required=("name", "networks", "nodes")) or {}
    scenario_name = c.check(("name",), top["name"], name) if "name" in top else None
    description = c.check(("description",), top.get("description", ""), string)
    timeout = c.check(("timeout",), top.get("timeout", 60.0), duration, True)
    declared, hidden_nets, networks, captured = _networks(c, top.get("networks")) if "networks" in top \
        else (None, [], [], [])
    raw_nodes, hidden = _section(c, ("nodes",), top.get("nodes"), "node") if "nodes" in top else ({}, None)
    refs = Refs(_index(c, raw_nodes), hidden)
    limits = check_limits(c, ("limits",), top["limits"], Limits()) if "limits" in top else Limits()
    scope = Scope(c, {n.name: n for n in networks}, declared, hidden_nets, refs, path.parent, limits,
                  _step_names(top.get("timeline")))
    misplaced_with(c, raw_nodes)
    nodes = [check_node(scope, n, raw_nodes[n], refs.nodes[n].replicas) for n in refs.nodes]
    valid_nodes = [n for n in nodes if n is not None]
    _addresses(c, valid_nodes)
    _capacity(c, networks, valid_nodes)
    _cycles(c, valid_nodes, refs)
    expect = check_expect(c, top.get("expect"), refs)
    _reconnecting(c, expect, valid_nodes)
    capture = check_capture(c, top.get("capture"), networks, captured)
    timeline = check_timeline(c, top["timeline"], refs, valid_nodes, timeout) if "timeline" in top else ()
    if c.problems or scenario_name is None or timeout is None:
        raise problems_error(c.problems)
    return Scenario(name=scenario_name, path=path, source=source.text, networks=tuple(networks),
                    nodes=tuple(valid_nodes), expect=expect, timeout=timeout,
                    description=description or "", limits=limits, capture=capture, timeline=timeline)


def _section(c: Checker, path: KeyPath, value: Any, what: str) -> tuple[dict[str, Any], list[str] | None]:
    """`networks:` / `nodes:`: a non-empty mapping whose keys are plain names.

    Returns the entries with valid names, and the invalid names (None if the section itself is
    unusable), so references to them are not reported a second time.
    """
    if not isinstance(value, dict) or not value:
        got = "an empty mapping" if value == {} else kind(value)
        c.error(path, f"expected a mapping of {what} names with at least one {what}, got {got}")
        return {}, None
    result: dict[str, Any] = {}
    invalid: list[str] = []
    for key, body in value.items():
        try:
            result[name(key)] = body
        except Invalid as e:
            c.error(path + (key,), f"{e.message} (a {what} name)", at_key=True)
            invalid.append(key)
    return result, invalid


def _networks(c: Checker, value: Any) -> tuple[list[str] | None, list[str], list[Network], list[str]]:
    """Declared names (None if `networks:` is unusable), the invalid ones among them, the
    networks whose name and subnet are valid, and those with `capture: true`."""
    raw, invalid = _section(c, ("networks",), value, "network")
    valid: list[Network] = []
    captured: list[str] = []
    for net, body in raw.items():
        path: KeyPath = ("networks", net)
        spec = c.mapping(path, body, ("subnet", "capture"), required=("subnet",))
        if spec and "capture" in spec and c.check(path + ("capture",), spec["capture"], boolean):
            captured.append(net)
        subnet = c.check(path + ("subnet",), spec["subnet"], _subnet) if spec and "subnet" in spec else None
        if subnet is None:
            continue
        clash = next((n for n in valid if n.subnet.overlaps(subnet)), None)
        if clash is not None:
            c.error(path + ("subnet",), f"subnet {subnet} of {net} overlaps {clash.subnet} of {clash.name}")
            continue
        valid.append(Network(net, subnet, c.source.key_loc(path)))
    if invalid is None:
        return None, [], valid, captured
    return list(raw) + invalid, invalid, valid, captured


def _subnet(value: Any) -> IPv4Network:
    """A lab network: /8../30, never loopback, 'this network', multicast or reserved space."""
    subnet = cidr(value)
    if not 8 <= subnet.prefixlen <= 30:
        raise Invalid(f"prefix /{subnet.prefixlen} is not allowed for a lab network (use /8../30)")
    for unsafe, what in _UNSAFE.items():
        if subnet.overlaps(unsafe):
            raise Invalid(f"{subnet} overlaps {unsafe} ({what}); lab networks must not use it")
    return subnet


def _index(c: Checker, raw_nodes: dict[str, Any]) -> dict[str, NodeInfo]:
    """Node names, replica counts and kinds, for references; replica names must be free."""
    index: dict[str, NodeInfo] = {}
    for node, body in raw_nodes.items():
        body = body if isinstance(body, dict) else {}
        replicas, replicas_ok = None, True
        if "replicas" in body:
            replicas = c.check(("nodes", node, "replicas"), body["replicas"], integer, 1, MAX_REPLICAS)
            replicas_ok = replicas is not None
            if replicas is not None and len(f"{node}-{replicas}") > 31:
                c.error(("nodes", node, "replicas"), f"replica names {node}-1..{node}-{replicas} would be "
                        "longer than 31 characters; shorten the node name")
        role = body.get("role") if isinstance(body.get("role"), str) else None
        index[node] = NodeInfo(node, replicas, role, "run" in body, replicas_ok)
    for node in index:
        base, _, number = node.rpartition("-")
        group = index.get(base)
        if group and group.replicas and number.isdigit() and 1 <= int(number) <= group.replicas \
                and number == str(int(number)):
            c.error(("nodes", node), f"node name {node!r} is also a replica of {base!r} "
                    f"({base}-1..{base}-{group.replicas})", at_key=True)
    return index


def _addresses(c: Checker, nodes: list[Node]) -> None:
    """No static address may be used twice (subnets never overlap, so per address is enough)."""
    owner: dict[IPv4Address, str] = {}
    for node in nodes:
        for att in node.attachments:
            if att.address is None:
                continue
            if att.address in owner:
                c.error(("nodes", node.name, "networks", att.network),
                        f"address {att.address} is already used by node {owner[att.address]!r}")
            else:
                owner[att.address] = node.name


def _capacity(c: Checker, networks: list[Network], nodes: list[Node]) -> None:
    """Every attached host needs an address: static, auto and replicas all count."""
    for net in networks:
        attached = sum(node.replicas or 1 for node in nodes
                       for att in node.attachments if att.network == net.name)
        usable = net.subnet.num_addresses - 2
        if attached > usable:
            c.error(("networks", net.name, "subnet"),
                    f"network {net.name} ({net.subnet}) holds {usable} hosts, {attached} are attached")


def _step_names(value: Any) -> tuple[str, ...]:
    """The timeline's step names as written (a node's `after` may name one; the steps are checked later)."""
    items = value if isinstance(value, list) else []
    return tuple(i["name"] for i in items if isinstance(i, dict) and isinstance(i.get("name"), str))


def _reconnecting(c: Checker, expect: tuple[Expectation, ...], nodes: list[Node]) -> None:
    """`recovers` judges a client that reconnects: one without `reconnect:` could only ever fail."""
    by_name = {n.name: n for n in nodes}
    for k, e in enumerate(expect):
        if e.check != "recovers":
            continue
        for ref in e.nodes:
            node = by_name.get(ref) or by_name.get(ref.rpartition("-")[0])
            if node is not None and node.role == "telnet-client" and node.params.get("reconnect", 1) == 0:
                c.problems.append(Problem(e.loc, f"expect[{k}].recovers", f"{ref} does not reconnect: give it "
                                          "`reconnect: 10s` (under `with:`), or it can only fail this check"))


def _cycles(c: Checker, nodes: list[Node], refs: Refs) -> None:
    """`after` must be a DAG; each cycle is reported once, at its first node's `after`."""
    graph: dict[str, list[str]] = {}
    for node in nodes:
        graph[node.name] = [refs.resolve(ref)[0].name for ref in node.after]
    reported: set[frozenset[str]] = set()
    for cycle in find_cycles(graph):
        if frozenset(cycle) not in reported:
            reported.add(frozenset(cycle))
            shown = cycle if len(cycle) <= 12 else cycle[:6] + ["..."] + cycle[-3:]
            c.error(("nodes", cycle[0], "after"), "after cycle: " + " -> ".join(shown))
