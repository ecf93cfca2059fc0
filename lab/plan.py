"""The resolved plan: concrete hosts, interfaces, addresses, role parameters and start order.

Pure data computed from a validated scenario, with no I/O, so that every backend runs exactly the
same lab and tests can assert on addressing without touching the kernel. Replica groups are
expanded (client -> client-1..client-N), "auto" addresses are picked, node names inside role
parameters become addresses, and every cross-reference names concrete hosts.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lab.errors import Location
from lab.roles.catalogue import ROLES
from lab.scenario.checks import CHECKS
from lab.scenario.model import Capture, Limits, Node, Route, Scenario, Shape, Step

# How a node's readiness is observed: a role announces it, a program is ready when something
# listens on a TCP port, anything else is ready as soon as it is started (or created).
ANNOUNCE, TCP, STARTED = "announce", "tcp", "started"


@dataclass(frozen=True)
class Interface:
    name: str  # eth0, eth1, ... in the order the node lists its networks
    network: str
    address: IPv4Interface  # address with the subnet's prefix


@dataclass(frozen=True)
class Readiness:
    kind: str  # ANNOUNCE | TCP | STARTED
    port: int | None = None
    timeout: float = 10.0


@dataclass(frozen=True)
class NodePlan:
    name: str
    group: str  # the node's name as written (replicas share it)
    interfaces: tuple[Interface, ...]
    routes: tuple[Route, ...]
    forwarding: bool
    role: str | None
    params: dict[str, Any]  # role parameters, resolved (addresses instead of names)
    argv: tuple[str, ...] | None
    cwd: Path | None
    env: dict[str, str]
    ready: Readiness
    after: tuple[str, ...]  # concrete node names that must be ready first
    service: bool  # keeps running until teardown (servers); otherwise a task the run waits for
    image: str | None = None
    stdin: tuple[tuple[str, str | float], ...] | None = None  # scripted input for a program
    hosts: tuple[str, ...] = ()  # `host:` (swarm backend): the cluster hosts it may run on
    host_loc: Location | None = None  # where `host:` is written, for errors about unknown hosts
    image_loc: Location | None = None  # where `image:` is written, for errors about a missing image
    limits: Limits = field(default_factory=Limits)  # what it may use
    after_steps: tuple[str, ...] = ()  # timeline steps (names) that must have happened first

    @property
    def synced(self) -> bool:
        """It keeps its connection open until the lab releases it (a `concurrent` expectation)."""
        return bool(self.role and self.params.get("sync"))

    @property
    def runs_something(self) -> bool:
        return self.role is not None or self.argv is not None

    @property
    def address(self) -> IPv4Address:
        return self.interfaces[0].address.ip


@dataclass(frozen=True)
class NetworkPlan:
    name: str
    subnet: IPv4Network


@dataclass(frozen=True)
class ExpectationPlan:
    index: int
    check: str
    nodes: tuple[str, ...]  # concrete node names
    params: dict[str, Any]
    label: str  # e.g. "echo client" (the expectation as written, for reports)
    points: float = 1.0
    hint: str = ""


@dataclass(frozen=True)
class StepPlan:
    """One step of the fault timeline with concrete names: `links` are (node, network) pairs."""

    index: int
    action: str
    label: str  # as written, e.g. "down server" (progress lines, reports)
    loc: Location
    nodes: tuple[str, ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    groups: tuple[tuple[str, ...], ...] = ()
    shape: Shape = field(default_factory=Shape)
    at: float | None = None  # s after the lab is up
    after: str | None = None  # a concrete node (ready), or a step's name
    wait: float = 0.0
    name: str = ""


@dataclass(frozen=True)
class Plan:
    name: str
    timeout: float
    networks: tuple[NetworkPlan, ...]
    nodes: tuple[NodePlan, ...]
    expect: tuple[ExpectationPlan, ...]
    folder: Path  # the scenario's folder
    seed: int = 0  # what `{word}` in the clients' lines was drawn from (recorded: a run can be replayed)
    capture: Capture = field(default_factory=Capture)
    timeline: tuple[StepPlan, ...] = ()
    _index: dict[str, NodePlan] = field(default_factory=dict, compare=False, repr=False)
    _hosts: dict[tuple[str, ...], str] = field(default_factory=dict, compare=False, repr=False)

    def node(self, name: str) -> NodePlan:
        if not self._index:
            self._index.update((n.name, n) for n in self.nodes)
        return self._index[name]

    def hosts_file(self, viewer: str) -> str:
        """/etc/hosts as seen from `viewer`: each node's name maps to its best address, its own name
        included (not 127.0.1.1, as Debian does: a server bound to `gethostname()`, as the socket
        HOWTO writes it, must listen where the other nodes connect, as in a container). It depends
        on the viewer's networks alone (`view`), so it is made once per view: N nodes, not N x N."""
        key = self.view(viewer)
        if key not in self._hosts:
            me = self.node(viewer)
            lines = ["127.0.0.1\tlocalhost"] + [f"{address_for(me, n)}\t{n.name}" for n in self.nodes]
            self._hosts[key] = "\n".join(lines) + "\n"
        return self._hosts[key]

    def view(self, viewer: str) -> tuple[str, ...]:
        """What decides how `viewer` sees the others' names: the networks it is on."""
        return tuple(sorted(i.network for i in self.node(viewer).interfaces))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "timeout": self.timeout,
            "seed": self.seed,
            "networks": [{"name": n.name, "subnet": str(n.subnet)} for n in self.networks],
            "nodes": [_node_json(n) for n in self.nodes],
            "expect": [
                {"check": e.check, "nodes": list(e.nodes), "params": e.params, "label": e.label,
                 "points": e.points, "hint": e.hint}
                for e in self.expect
            ],
            "capture": {"networks": list(self.capture.networks), "limit": self.capture.limit},
            "timeline": [
                {"label": s.label, "action": s.action, "nodes": list(s.nodes), "links": [list(x) for x in s.links],
                 "groups": [list(g) for g in s.groups], "rate": s.shape.rate, "loss": s.shape.loss,
                 "delay": s.shape.delay, "at": s.at, "after": s.after, "wait": s.wait, "name": s.name}
                for s in self.timeline
            ],
        }


def _node_json(n: NodePlan) -> dict[str, Any]:
    return {
        "name": n.name,
        "group": n.group,
        "interfaces": [
            {"name": i.name, "network": i.network, "address": str(i.address)} for i in n.interfaces
        ],
        "routes": [{"to": str(r.to), "via": str(r.via)} for r in n.routes],
        "forwarding": n.forwarding,
        "role": n.role,
        "params": n.params,
        "run": list(n.argv) if n.argv else None,
        "cwd": str(n.cwd) if n.cwd else None,
        "ready": {"kind": n.ready.kind, "port": n.ready.port, "timeout": n.ready.timeout},
        "after": list(n.after),
        "after_steps": list(n.after_steps),
        "service": n.service,
        "stdin": [list(step) for step in n.stdin] if n.stdin is not None else None,
        "host": list(n.hosts),
        "limits": {"memory": n.limits.memory, "processes": n.limits.processes, "cpu": n.limits.cpu,
                   "files": n.limits.files},
    }


def address_for(viewer: NodePlan, target: NodePlan) -> IPv4Address:
    """The address of `target` that `viewer` should use: one on a shared network if any."""
    mine = {i.network for i in viewer.interfaces}
    for i in target.interfaces:
        if i.network in mine:
            return i.address.ip
    return target.address


def host_names(node: Node) -> list[str]:
    """The concrete host names a scenario node stands for."""
    if node.replicas is None:
        return [node.name]
    return [f"{node.name}-{k}" for k in range(1, node.replicas + 1)]


def expand(names: Iterable[str], groups: dict[str, list[str]]) -> tuple[str, ...]:
    """Names as written (groups or hosts) -> concrete host names, order kept, no repeats."""
    out: list[str] = []
    for name in names:
        for host in groups.get(name, [name]):
            if host not in out:
                out.append(host)
    return tuple(out)


def make_plan(scenario: Scenario, seed: int = 0) -> Plan:
    """The scenario as concrete hosts, addresses and parameters; `seed` draws the `{word}`s of the
    clients' lines (the same seed, the same words: a run can be replayed)."""
    groups = {n.name: host_names(n) for n in scenario.nodes}
    addresses = _assign_addresses(scenario)
    subnets = {n.name: n.subnet for n in scenario.networks}
    bare: list[NodePlan] = []
    for node in scenario.nodes:
        for host in groups[node.name]:
            interfaces = tuple(
                Interface(f"eth{k}", a.network, IPv4Interface(f"{addresses[host, a.network]}/"
                                                              f"{subnets[a.network].prefixlen}"))
                for k, a in enumerate(node.attachments)
            )
            bare.append(_node_plan(node, host, interfaces, expand(node.after, groups)))
    labels = [f"{e.check} {', '.join(e.nodes)}" for e in scenario.expect]
    labels = [f"{label} #{k + 1}" if labels.count(label) > 1 else label for k, label in enumerate(labels)]
    plan = Plan(
        name=scenario.name,
        timeout=scenario.timeout,
        networks=tuple(NetworkPlan(n.name, n.subnet) for n in scenario.networks),
        nodes=tuple(bare),
        expect=tuple(
            ExpectationPlan(k, e.check, expand(e.nodes, groups), dict(e.params), labels[k], e.points, e.hint)
            for k, e in enumerate(scenario.expect)
        ),
        folder=scenario.folder,
        seed=seed,
    )
    synced = {name for group in sync_groups(plan) for name in group}
    resolved = tuple(_resolve_params(plan, n, n.name in synced) for n in plan.nodes)
    steps = tuple(_step_plan(k, step, groups, resolved) for k, step in enumerate(scenario.timeline))
    return Plan(plan.name, plan.timeout, plan.networks, resolved, plan.expect, plan.folder, seed,
                scenario.capture, steps)


def _step_plan(index: int, step: Step, groups: dict[str, list[str]], nodes: tuple[NodePlan, ...]) -> StepPlan:
    """A timeline step with concrete hosts; a link action names each link (node, network)."""
    hosts = expand(step.nodes, groups)
    on = {n.name: [i.network for i in n.interfaces] for n in nodes}
    links = tuple((h, net) for h in hosts for net in on[h] if step.network in (None, net)) \
        if step.action in ("down", "up", "shape") else ()
    what = " ".join(step.nodes) if step.nodes else " | ".join(", ".join(g) for g in step.groups)
    label = f"{step.action} {what}".strip() + (f" ({step.network})" if step.network else "")
    return StepPlan(index, step.action, label, step.loc, hosts, links,
                    tuple(expand(g, groups) for g in step.groups), step.shape, step.at,
                    step.after if step.after is None or step.after not in groups else groups[step.after][0],
                    step.wait, step.name)


def _assign_addresses(scenario: Scenario) -> dict[tuple[str, str], IPv4Address]:
    """Static addresses as written; "auto" ones are the lowest free hosts of the subnet."""
    fixed: dict[tuple[str, str], IPv4Address] = {}
    used: dict[str, set[IPv4Address]] = {n.name: set() for n in scenario.networks}
    for node in scenario.nodes:
        for a in node.attachments:
            if a.address is not None:
                for host in host_names(node):
                    fixed[host, a.network] = a.address
                used[a.network].add(a.address)
    free = {n.name: _free(n.subnet.hosts(), used[n.name]) for n in scenario.networks}
    for node in scenario.nodes:
        for host in host_names(node):
            for a in node.attachments:
                if a.address is None:
                    fixed[host, a.network] = next(free[a.network])
    return fixed


def _free(hosts: Iterator[IPv4Address], used: set[IPv4Address]) -> Iterator[IPv4Address]:
    """The hosts of a subnet no static address took, lowest first (a function of its own: a
    generator written inline over several networks would test every one against the last's)."""
    return (h for h in hosts if h not in used)


def _node_plan(node: Node, host: str, interfaces: tuple[Interface, ...],
               after: tuple[str, ...]) -> NodePlan:
    if node.role is not None:
        ready = Readiness(ANNOUNCE, timeout=node.ready_timeout)
        service = ROLES[node.role].service
    elif node.run is not None and node.ready_tcp is not None:
        ready, service = Readiness(TCP, node.ready_tcp, node.ready_timeout), True
    else:
        # A program without `ready` is a task the run waits for; a plain host runs nothing.
        ready, service = Readiness(STARTED, timeout=node.ready_timeout), node.run is None
    return NodePlan(
        name=host, group=node.name, interfaces=interfaces, routes=node.routes,
        forwarding=node.forwarding, role=node.role, params=dict(node.params), argv=node.run,
        cwd=node.files, env=dict(node.env), ready=ready, after=after, service=service,
        image=node.image, stdin=node.stdin, hosts=node.hosts,
        host_loc=node.host_loc, image_loc=node.image_loc,
        limits=node.limits, after_steps=node.after_steps,
    )


def sync_groups(plan: Plan) -> list[tuple[str, ...]]:
    """Clients the lab keeps connected until all of them were answered: those of expectations whose
    check syncs (`concurrent`) that run a role able to wait (telnet-client), joined where expectations
    share a node (each group is released at once)."""
    groups: list[set[str]] = []
    for e in plan.expect:
        if not CHECKS[e.check].syncs:
            continue
        members = {n for n in e.nodes if _role_syncs(plan.node(n).role)}
        touching = [g for g in groups if g & members]
        for g in touching:
            members |= g
            groups.remove(g)
        groups.append(members)
    order = {n.name: k for k, n in enumerate(plan.nodes)}
    return [tuple(sorted(g, key=order.__getitem__)) for g in groups if g]


def _role_syncs(role: str | None) -> bool:
    return role is not None and ROLES[role].sync


def _resolve_params(plan: Plan, node: NodePlan, synced: bool = False) -> NodePlan:
    """Role parameters as the role takes them, by their types (catalogue.TYPES): node names replaced
    by the addresses this node should use, `{node}` in lines by its name; `sync` for a synced client."""
    if node.role is None:
        return node
    p = dict(node.params)
    if synced:
        p["sync"] = True
    for key, param in ROLES[node.role].params.items():
        if param.type == "connect":
            name, _, port_text = str(p.pop(key)).rpartition(":")
            p.update(host=_address(plan, node, name), port=int(port_text), target=f"{name}:{port_text}")
        elif param.type == "url":
            url = urlsplit(str(p[key]))
            p.update(host=_address(plan, node, url.hostname or ""), port=url.port or 80,
                     path=_path(url.path, url.query), host_header=url.netloc)
        elif param.type == "lines":
            p[key] = _lines(p.get(key, []), node.name, _words(plan.seed, node.name, key))
    return replace(node, params=p)


WORD = re.compile(r"\{word\}")
SEED = "LAB_SEED"  # a run in a process of its own (`python -m lab.entry run`) takes its seed from it


def _lines(lines: list[str], node: str, words: Iterator[str]) -> list[str]:
    return [WORD.sub(lambda _: next(words), line.replace("{node}", node)) for line in lines]
CONSONANTS, VOWELS = "bdfgklmnprstvz", "aeiou"


def _words(seed: int, node: str, key: str) -> Iterator[str]:
    """Pronounceable words (`dakemo`), drawn in order for one node's lines: a server cannot know them
    in advance, yet the same seed gives the same words (a hash, not Python's salted `hash`)."""
    rng = random.Random(hashlib.sha256(f"{seed}:{node}:{key}".encode()).digest())
    while True:
        yield "".join(rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(3))


def _address(plan: Plan, viewer: NodePlan, host: str) -> str:
    try:
        return str(IPv4Address(host))
    except ValueError:
        pass
    by_name = [n for n in plan.nodes if n.name == host]
    target = by_name[0] if by_name else next(n for n in plan.nodes if n.group == host)
    return str(address_for(viewer, target))


def _path(path: str, query: str) -> str:
    path = path or "/"
    return f"{path}?{query}" if query else path


def start_order(plan: Plan) -> list[str]:
    """Nodes by the depth of their `after` chain: servers first, then what waits for them."""
    depth: dict[str, int] = {}

    def d(name: str) -> int:
        if name not in depth:
            depth[name] = 0
            depth[name] = 1 + max((d(a) for a in plan.node(name).after), default=-1)
        return depth[name]

    return sorted((n.name for n in plan.nodes), key=d)
