"""The validated scenario: plain, immutable data (no I/O, no backend knowledge).

Everything here has already passed validation: names are plain names, addresses lie in their
subnets, referenced nodes and networks exist, role parameters are complete (defaults filled in),
and the `after` graph has no cycle. Cross-references are still *as written* (a group name such as
`client` stands for client-1..client-N); the plan resolves them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from lab.errors import Location


@dataclass(frozen=True)
class Network:
    name: str
    subnet: IPv4Network
    loc: Location


@dataclass(frozen=True)
class Attachment:
    """A node's interface on a network; address None means "auto" (picked by the plan)."""

    network: str
    address: IPv4Address | None


@dataclass(frozen=True)
class Route:
    """A static route; `to` is 0.0.0.0/0 for `default`."""

    to: IPv4Network
    via: IPv4Address


@dataclass(frozen=True)
class Limits:
    """What one node may use, enforced by the kernel (README: "Limits"). `cpu` None: no CPU-time
    limit (a one-shot run's timeout bounds it; a kept lab's server may serve for days)."""

    memory: int = 512 * 1024 * 1024  # bytes: the node's processes together (page cache included)
    processes: int = 512  # processes and threads, together
    cpu: float | None = None  # seconds of CPU time, per process
    files: int = 4096  # open files, per process


@dataclass(frozen=True)
class Node:
    """One node as written; `replicas` N makes N hosts named NAME-1..NAME-N."""

    name: str
    attachments: tuple[Attachment, ...]
    loc: Location
    routes: tuple[Route, ...] = ()
    forwarding: bool = False
    role: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # `with:`, validated, defaults filled
    run: tuple[str, ...] | None = None  # argv (a string in YAML is split like a shell, no shell used)
    files: Path | None = None  # absolute path of the working folder (inside the scenario's folder)
    ready_tcp: int | None = None  # `ready: {tcp: PORT}`
    ready_timeout: float = 10.0  # `ready: {timeout: 10s}` (an extension; bounded readiness)
    after: tuple[str, ...] = ()  # node or group names, as written
    after_steps: tuple[str, ...] = ()  # timeline steps (by `name`) that must have happened first
    replicas: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    image: str | None = None
    stdin: tuple[tuple[str, str | float], ...] | None = None  # ("send", text) / ("wait", seconds)
    hosts: tuple[str, ...] = ()  # `host:`: cluster hosts this node may run on (swarm backend)
    host_loc: Location | None = None
    image_loc: Location | None = None
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class Expectation:
    """One item of `expect:`; `nodes` are node or group names as written."""

    check: str
    nodes: tuple[str, ...]
    params: dict[str, Any]
    loc: Location
    points: float = 1.0  # for grading
    hint: str = ""  # shown when the check fails (grading)


@dataclass(frozen=True)
class Capture:
    """Which networks the lab records to `captures/NET.pcap`, and how much of each at most."""

    networks: tuple[str, ...] = ()  # none: no capture
    limit: int = 64 * 1024 * 1024  # bytes per network's file
    loc: Location | None = None  # where it was asked for (a backend that cannot capture says so there)


@dataclass(frozen=True)
class Shape:
    """What a `shape` step puts on a link; all None: the link as it was (the step clears it)."""

    rate: int | None = None  # bits per second (tbf)
    loss: float | None = None  # percent of frames dropped each way (nftables)
    delay: float | None = None  # seconds each way (netem, where the kernel has it)


@dataclass(frozen=True)
class Step:
    """One step of the fault timeline, as written (node and group names as written)."""

    action: str  # one of lab.scenario.timeline.ACTIONS
    loc: Location
    nodes: tuple[str, ...] = ()  # what it acts on (link and node actions)
    network: str | None = None  # link actions: one of the node's networks (None: all of them)
    groups: tuple[tuple[str, ...], ...] = ()  # partition: no frame passes between two groups
    shape: Shape = field(default_factory=Shape)
    at: float | None = None  # s after the lab is up (every node started, every service ready)
    after: str | None = None  # or when this happened: a node became ready, or an earlier step (its name)
    wait: float = 0.0  # s after `after`
    name: str = ""


@dataclass(frozen=True)
class Scenario:
    name: str
    path: Path  # absolute path of the scenario file
    source: str  # the file's text, as run
    networks: tuple[Network, ...]
    nodes: tuple[Node, ...]
    expect: tuple[Expectation, ...]
    timeout: float = 60.0
    description: str = ""
    limits: Limits = field(default_factory=Limits)  # the lab's, under each node's own
    capture: Capture = field(default_factory=Capture)
    timeline: tuple[Step, ...] = ()

    @property
    def folder(self) -> Path:
        return self.path.parent
