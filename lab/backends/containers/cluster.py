"""The cluster a swarm lab runs on: a small YAML file naming each host's Docker endpoint.

    hosts:
      h1: {endpoint: "tcp://10.0.0.11:2375", manager: true}
      h2: {endpoint: "unix:///run/lab-h2.sock"}  # an ssh-forwarded engine socket
      h3: {endpoint: "tcp://10.0.0.13:2376", tls: {ca: ca.pem, cert: cert.pem, key: key.pem}}

Validated as strictly as a scenario (same loader, FILE:LINE:COL errors, exit 2). Placement of a
plan's nodes on the hosts is pure and lives here too, so it is tested on literal data.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lab.errors import Location, Problem, ScenarioError
from lab.plan import Plan, start_order
from lab.scenario.checker import Checker
from lab.scenario.source import KeyPath, parse, problems_error, read_file
from lab.scenario.values import Invalid, boolean, kind, name, show, string

SCHEMES = ("tcp", "unix")
HOST_KEYS = ("endpoint", "manager", "tls")
TLS_KEYS = ("ca", "cert", "key")


@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class Host:
    name: str
    endpoint: str  # tcp://ADDR:PORT or unix:///PATH
    manager: bool = False
    tls: Tls | None = None

    def client_tls(self) -> Any:
        """The Docker SDK's TLS settings for this host (None: plain), its certificate presented."""
        if self.tls is None:
            return None
        import docker.tls  # (here only: the cluster file itself is read without the SDK)

        return docker.tls.TLSConfig(client_cert=(str(self.tls.cert), str(self.tls.key)), ca_cert=str(self.tls.ca),
                                    verify=True)

    def cli(self) -> list[str]:
        """The docker command line's options that reach this host's engine, as the lab does."""
        tls = self.tls
        return ["-H", self.endpoint] + ([] if tls is None else [
            "--tlsverify", "--tlscacert", str(tls.ca), "--tlscert", str(tls.cert), "--tlskey", str(tls.key)])


@dataclass(frozen=True)
class Cluster:
    path: Path
    hosts: tuple[Host, ...]

    @property
    def manager(self) -> Host:
        return next(h for h in self.hosts if h.manager)

    def to_json(self) -> dict[str, Any]:
        """What a journal keeps, so that `lab clean` reaches every host without the file."""
        return {"path": str(self.path), "hosts": [
            {"name": h.name, "endpoint": h.endpoint, "manager": h.manager,
             "tls": [str(h.tls.ca), str(h.tls.cert), str(h.tls.key)] if h.tls else None}
            for h in self.hosts]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cluster:
        return cls(Path(data["path"]), tuple(
            Host(h["name"], h["endpoint"], bool(h["manager"]), Tls(*map(Path, h["tls"])) if h.get("tls") else None)
            for h in data["hosts"]))


def load_cluster(path: Path) -> Cluster:
    """The validated cluster file, or ScenarioError listing every problem (FILE:LINE:COL)."""
    source = parse(read_file(path), str(path))
    c = Checker(source)
    top = c.mapping((), source.data, ("hosts",), required=("hosts",)) or {}
    raw = top.get("hosts")
    hosts: list[Host] = []
    if "hosts" in top and (not isinstance(raw, dict) or not raw):
        c.error(("hosts",), f"expected a non-empty mapping of host name -> {{endpoint: ...}}, got {kind(raw)}")
    elif isinstance(raw, dict):
        for key, body in raw.items():
            host = _host(c, ("hosts", key), key, body, path.parent)
            if host is not None:
                hosts.append(host)
    if hosts and len(hosts) == len(raw or {}) and not any(h.manager for h in hosts):
        c.error(("hosts",), "no host is a swarm manager: mark one with `manager: true`")
    seen: dict[str, str] = {}
    for h in hosts:
        if h.endpoint in seen:
            c.error(("hosts", h.name, "endpoint"), f"same endpoint as host {seen[h.endpoint]}")
        seen.setdefault(h.endpoint, h.name)
    if c.problems:
        raise problems_error(c.problems)
    return Cluster(path, tuple(hosts))


def _host(c: Checker, path: KeyPath, key: str, body: Any, folder: Path) -> Host | None:
    host_name = c.check(path, key, name)
    fields = c.mapping(path, body, HOST_KEYS, required=("endpoint",))
    if fields is None or host_name is None:
        return None
    endpoint = c.check(path + ("endpoint",), fields["endpoint"], _endpoint) if "endpoint" in fields else None
    manager = c.check(path + ("manager",), fields.get("manager", False), boolean)
    tls = _tls(c, path + ("tls",), fields["tls"], folder) if "tls" in fields else None
    if endpoint is None or manager is None or ("tls" in fields and tls is None):
        return None
    if tls is not None and not endpoint.startswith("tcp://"):
        c.error(path + ("tls",), "tls: applies to tcp:// endpoints only")
    return Host(host_name, endpoint, manager, tls)


def _endpoint(value: Any) -> str:
    text = string(value)
    parts = urlsplit(text)
    if parts.scheme == "ssh":
        raise Invalid(f"endpoint {show(text)}: ssh:// is not supported (a node's attach stream needs a real "
                      "socket); forward the engine's socket instead: `ssh -fNL /run/lab-h2.sock:/var/run/"
                      "docker.sock user@host`, then endpoint: unix:///run/lab-h2.sock")
    if parts.scheme not in SCHEMES:
        raise Invalid(f"endpoint {show(text)}: expected tcp://ADDRESS:PORT or unix:///PATH")
    if parts.scheme == "unix" and not parts.path:
        raise Invalid(f"endpoint {show(text)}: a unix endpoint needs a socket path (unix:///var/run/docker.sock)")
    if parts.scheme == "tcp" and (not parts.hostname or parts.port is None):
        raise Invalid(f"endpoint {show(text)}: a tcp endpoint needs an address and a port (tcp://10.0.0.11:2375)")
    return text


def _tls(c: Checker, path: KeyPath, value: Any, folder: Path) -> Tls | None:
    fields = c.mapping(path, value, TLS_KEYS, required=TLS_KEYS)
    if fields is None or len(fields) != len(TLS_KEYS):
        return None
    files: list[Path] = []
    for key in TLS_KEYS:
        text = c.check(path + (key,), fields[key], string)
        if text is None:
            return None
        file = (folder / text).resolve()
        if not file.is_file():
            c.error(path + (key,), f"no such file: {file}")
            return None
        files.append(file)
    return Tls(*files)


# ----------------------------------------------------------------------------- placement


def place(plan: Plan, cluster: Cluster) -> dict[str, str]:
    """Node -> host. `host:` pins a node (replicas take their listed hosts in turn); every other
    node goes to the least-loaded host that does not run a node it waits for (`after`), so that
    clients and their servers are on different hosts and lab traffic crosses the network; when
    every host runs one, to the least-loaded host. Deterministic: same plan, same placement.

    Raises ScenarioError (located at the `host:` key) for a host the cluster does not have.
    """
    names = [h.name for h in cluster.hosts]
    problems = [
        Problem(n.host_loc or Location(plan.name, 1, 1), f"nodes.{n.group}.host",
                f"unknown host {show(h)}: the cluster ({cluster.path}) has {', '.join(names)}")
        for n in plan.nodes for h in n.hosts if h not in names
    ]
    if problems:
        raise ScenarioError(list({str(p): p for p in problems}.values()))
    load: Counter[str] = Counter({h: 0 for h in names})
    placed: dict[str, str] = {}
    turns: Counter[str] = Counter()  # replicas of a pinned group take its hosts in turn
    for node in plan.nodes:
        if node.hosts:
            placed[node.name] = node.hosts[turns[node.group] % len(node.hosts)]
            turns[node.group] += 1
            load[placed[node.name]] += 1
    for node in map(plan.node, start_order(plan)):
        if node.name in placed:
            continue
        waits_for = Counter(placed[a] for a in node.after if a in placed)
        host = min(names, key=lambda h: (waits_for[h] > 0, load[h], names.index(h)))
        placed[node.name] = host
        load[host] += 1
    return {n.name: placed[n.name] for n in plan.nodes}

