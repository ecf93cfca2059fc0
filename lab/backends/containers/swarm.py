"""The swarm backend: nodes are containers spread over the hosts of a Docker Swarm cluster.

Swarm is used for what it already does well, joining hosts and carrying overlay networks; the lab
does not use swarm services (their VIPs need IPVS, and a node is one container with one address).
Each scenario network becomes an attachable, internal overlay network (no way out), created on the
manager; each node is a plain container on the host `place()` chose, attached with its scenario
address (static addresses work on attachable overlays from every host). Docker's own endpoints
on a network (a gateway and one per host) get a block of the subnet that no node uses.

Nothing is shared with a host but its engine's API: the node's spec (and files) are put into the
container before it starts; the agent reports readiness and its exit code on the attach stream
(remote.Channel); its log and transcript are copied back when it ends, and again at teardown.

Every container and network carries the label lab.id; teardown and `lab clean` remove by that
label on every host of the cluster recorded in the journal. A host that stops answering
mid-run is a failure naming it; the rest of the lab is still removed everywhere else.
"""

from __future__ import annotations

import ipaddress
import json
import selectors
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.tls
import docker.types

from lab.backends import ANSWERED, EXITED, LAUNCHED, READY, Event, Options, Placement
from lab.backends.containers import images
from lab.backends.containers.cluster import Cluster, Host, load_cluster, place
from lab.backends.containers.docker import LABEL_ID, agent_container, agent_spec, container_name
from lab.backends.containers.engine import api_error, connect, remote
from lab.backends.containers.remote import Channel, clock_offset, extract, open_channel, ship_image, tar_files
from lab.errors import BackendError, EnvironmentProblem, LabError
from lab.journal import Journal
from lab.plan import ANNOUNCE, TCP, NodePlan, Plan, address_for, start_order
from lab.rundir import MAX_OUTPUT, RunDir

WORKERS = 16
PROBE_EVERY = 1.0  # seconds between liveness probes of each host during a run
PROBE_TIMEOUT = 3.0  # a host that does not answer a ping within this is gone
TEARDOWN_TIMEOUT = 20.0  # per API call while tearing down
OUT = "/lab/out"


def network_name(lab_id: str, network: str) -> str:
    return f"lab-{lab_id}-{network}"


def docker_block(subnet: ipaddress.IPv4Network, used: set[ipaddress.IPv4Address],
                 hosts: int) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Address] | None:
    """(ip_range, gateway) for docker's own addresses on an overlay: a block of the subnet, from
    the top, holding no node's address, big enough for a gateway and one endpoint per host."""
    size = 4
    while size < hosts + 3:
        size *= 2
    prefix = 32 - (size.bit_length() - 1)
    if prefix < subnet.prefixlen:
        return None
    usable = set(subnet.hosts())
    for block in reversed(list(subnet.subnets(new_prefix=prefix))):
        mine = [a for a in block if a in usable]
        if len(mine) >= hosts + 2 and not any(a in used for a in block):
            return block, mine[-1]
    return None


@dataclass
class _Engine:
    host: Host
    client: Any = None
    probe: Any = None  # a client with a short timeout, for liveness
    offset: float = 0.0
    uncertainty: float = 0.0
    lost: str = ""  # why the host is taken as gone ("" while it answers)
    probing: Future[None] | None = None
    last_probe: float = 0.0


@dataclass
class _Box:
    node: NodePlan
    host: str
    name: str
    id: str = ""
    channel: Channel | None = None
    wired: bool = False  # created, started, channel watched
    go_asked: bool = False
    launched: bool = False
    ready: bool = False
    exited: bool = False
    code: int | None = None
    collected: bool = False
    future: Future[None] | None = None
    fetch: Future[None] | None = None
    told: int | None = None  # the exit code the agent reported


class SwarmBackend:
    name = "swarm"

    def __init__(self, journal: Journal, options: Options | None = None):
        if options is None or options.cluster is None:
            raise EnvironmentProblem("--backend swarm needs --cluster FILE (the cluster's hosts: "
                                     "`lab cluster up` writes one for a simulated cluster; README: real hosts)")
        self.journal = journal
        self.cluster: Cluster = load_cluster(options.cluster)
        self.engines: dict[str, _Engine] = {h.name: _Engine(h) for h in self.cluster.hosts}
        self.image = images.node_tag()
        self.placement: dict[str, str] = {}
        self.boxes: dict[str, _Box] = {}
        self.rundir: RunDir | None = None
        self.selector = selectors.DefaultSelector()
        self.pool: ThreadPoolExecutor | None = None
        self.probes = ThreadPoolExecutor(len(self.engines), thread_name_prefix="lab-probe")
        self.closing = False
        self.missing: dict[str, list[str]] = {}  # image -> hosts to send it to (found by check)
        self.pending: list[Event] = []  # observed while stopping other nodes, handed out by the next poll
        self.blocks: dict[str, tuple[ipaddress.IPv4Network, ipaddress.IPv4Address]] = {}

    # -- environment -------------------------------------------------------------------------
    def check(self, plan: Plan) -> None:
        self.placement = place(plan, self.cluster)  # an unknown `host:` is the scenario's error (exit 2)
        try:
            self._check(plan)
        except Exception as e:
            for engine in self.engines.values():
                for client in (engine.client, engine.probe):
                    if client is not None:
                        client.close()
            if isinstance(e, LabError):
                raise
            raise EnvironmentProblem(f"swarm: cannot use the cluster {self.cluster.path}: {e}") from None

    def _check(self, plan: Plan) -> None:
        used = {self.cluster.manager.name, *self.placement.values()}
        with ThreadPoolExecutor(len(used)) as pool:
            list(pool.map(self._connect, [self.engines[h] for h in sorted(used)]))
        manager = self.engines[self.cluster.manager.name]
        swarm = manager.client.info().get("Swarm") or {}
        if not swarm.get("ControlAvailable"):
            raise EnvironmentProblem(f"host {manager.host.name} ({manager.host.endpoint}) is not a swarm "
                                     "manager: `docker swarm init` there, or mark the manager in the cluster file")
        for name in sorted(used):
            state = (self.engines[name].client.info().get("Swarm") or {}).get("LocalNodeState")
            if state != "active":
                raise EnvironmentProblem(f"host {name} ({self.engines[name].host.endpoint}) is not in the swarm "
                                         f"(state {state!r}): `docker swarm join` it to {manager.host.name}")
        for net in plan.networks:
            used_addresses = {i.address.ip for n in plan.nodes for i in n.interfaces if i.network == net.name}
            block = docker_block(net.subnet, used_addresses, len(self.cluster.hosts))
            if block is None:
                raise EnvironmentProblem(f"network {net.name} ({net.subnet}): the swarm backend needs a block of "
                                         f"{len(self.cluster.hosts) + 3} free addresses for docker's own endpoints "
                                         "(a gateway and one per host); use a larger subnet")
            self.blocks[net.name] = block
        self._check_images(plan)

    def _connect(self, engine: _Engine) -> None:
        h = engine.host
        tls = tls_config(h)
        try:
            engine.client = remote(h.endpoint, tls=tls, pool=WORKERS * 2)
            engine.probe = remote(h.endpoint, timeout=PROBE_TIMEOUT, tls=tls, pool=2)
        except BackendError as e:
            raise EnvironmentProblem(f"host {h.name}: {e}") from None
        engine.offset, engine.uncertainty = clock_offset(engine.client)

    def _check_images(self, plan: Plan) -> None:
        """Every image a host needs is there, or is sent from the local engine in `up`."""
        for node in plan.nodes:
            tag = node.image or self.image
            host = self.placement[node.name]
            if host not in self.missing.get(tag, []) and not images.exists(self.engines[host].client, tag):
                self.missing.setdefault(tag, []).append(host)
        if not self.missing:
            return
        try:
            local = connect()
        except EnvironmentProblem:
            local = None
        try:
            for tag, hosts in self.missing.items():
                if local is None or not images.exists(local, tag):
                    fix = "`lab images`" if tag == self.image else "docker build or docker load"
                    raise EnvironmentProblem(f"image {tag} is missing on host(s) {', '.join(hosts)} and on this "
                                             f"machine's engine, which would send it: {fix} here first")
        finally:
            if local is not None:
                local.close()

    def placements(self) -> dict[str, Placement]:
        out: dict[str, Placement] = {}
        for node, host in self.placement.items():
            e = self.engines[host]
            out[node] = Placement(host, e.host.endpoint, e.offset, e.uncertainty)
        return out

    # -- topology ----------------------------------------------------------------------------
    def up(self, plan: Plan, rundir: RunDir) -> None:
        self.rundir = rundir
        used = {self.cluster.manager.name, *self.placement.values()}  # what `lab clean` must reach
        in_use = Cluster(self.cluster.path, tuple(h for h in self.cluster.hosts if h.name in used))
        self.journal.record_many("cluster", [json.dumps(in_use.to_json())])
        self.boxes = {n.name: _Box(n, self.placement[n.name], container_name(self.journal.lab_id, n.name))
                      for n in plan.nodes}
        self.journal.record_many("container", [b.name for b in self.boxes.values()])
        self.journal.record_many("network", [network_name(self.journal.lab_id, n.name) for n in plan.networks])
        self._create_networks(plan)
        if self.missing:
            local = connect()
            try:
                for tag, hosts in self.missing.items():
                    ship_image(local, tag, {h: self.engines[h].client for h in hosts})
            finally:
                local.close()
        self.pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="lab-swarm")
        for name in start_order(plan):
            box = self.boxes[name]
            box.future = self.pool.submit(self._bring_up, plan, box)

    def _create_networks(self, plan: Plan) -> None:
        api = self.engines[self.cluster.manager.name].client.api
        for net in plan.networks:
            block, gateway = self.blocks[net.name]
            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
                subnet=str(net.subnet), iprange=str(block), gateway=str(gateway))])
            try:
                api.create_network(network_name(self.journal.lab_id, net.name), driver="overlay",
                                   attachable=True, internal=True, ipam=ipam, check_duplicate=True,
                                   labels={LABEL_ID: self.journal.lab_id, "lab.network": net.name})
            except Exception as e:  # noqa: BLE001
                raise api_error(f"create overlay network for {net.name}", e) from None

    def _bring_up(self, plan: Plan, box: _Box) -> None:
        if self.closing:
            return
        node, api = box.node, self.engines[box.host].client.api
        first, *rest = node.interfaces
        nets = {i.network: network_name(self.journal.lab_id, i.network) for i in node.interfaces}
        caps = ["NET_BIND_SERVICE"] + (["NET_ADMIN", "SETPCAP"] if node.routes else [])
        extra, env, limits = agent_container(self.journal.lab_id, node)  # a user's image: files come in _files
        try:
            host_config = api.create_host_config(
                network_mode=nets[first.network], cap_drop=["ALL"], cap_add=caps,
                security_opt=["no-new-privileges"], ulimits=limits,
                sysctls={"net.ipv4.ip_forward": "1" if node.forwarding else "0"},
                extra_hosts={n.name: str(address_for(node, n)) for n in plan.nodes})
            networking = api.create_networking_config(
                {nets[first.network]: api.create_endpoint_config(ipv4_address=str(first.address.ip))})
            config = api.create_container_config(
                node.image or self.image, None, hostname=node.name, environment=env,
                labels={LABEL_ID: self.journal.lab_id, "lab.node": node.name, "lab.scenario": plan.name},
                working_dir="/lab/files" if node.cwd else "/", host_config=host_config,
                networking_config=networking, stdin_open=True, **extra)
            config["StdinOnce"] = True  # the agent sees EOF if the lab goes away before "go"
            box.id = api.create_container_from_config(config, box.name)["Id"]
            for i in rest:
                api.connect_container_to_network(box.id, nets[i.network], ipv4_address=str(i.address.ip))
            api.put_archive(box.id, "/", self._files(node))
            box.channel = open_channel(api, box.id)
            api.start(box.id)
        except Exception as e:  # noqa: BLE001 - the SDK's errors are reported as the lab's
            raise api_error(f"start container for {node.name} on host {box.host}", e) from None

    def _files(self, node: NodePlan) -> bytes:
        spec = {"channel": "stdio", **agent_spec(node, OUT)}
        if node.argv and node.ready.kind == TCP:
            spec.update(ready_tcp=node.ready.port)
        if node.routes:
            spec.update(routes=[[str(r.to), str(r.via)] for r in node.routes])
        files = [("lab/ctl/spec.json", json.dumps(spec).encode()), (f"lab/out/{node.name}.log", b"")]
        if node.image:
            files += [(f"opt/lab/{name}", data) for name, data in images.payload()]
        return tar_files(files, [("lab/files", node.cwd)] if node.cwd else [])

    # -- processes ---------------------------------------------------------------------------
    def start(self, node: NodePlan) -> bool:
        """Deferred like the docker backend's: nodes asked together go together, once all exist."""
        self.boxes[node.name].go_asked = True
        return False

    def poll(self, timeout: float) -> list[Event]:
        self._watch_new()
        self._raise_failed()
        self._probe_hosts()
        events, self.pending = self.pending + self._release(), []
        unwired = any(not b.wired for b in self.boxes.values())
        wait = 0.0 if events else (min(timeout, 0.02) if unwired else min(timeout, PROBE_EVERY))
        for key, _ in self.selector.select(wait):
            events += self._read(self.boxes[key.data])
        return events

    def _watch_new(self) -> None:
        for b in self.boxes.values():
            if (not b.wired and b.future is not None and b.future.done() and not b.future.cancelled()
                    and b.future.exception() is None
                    and b.channel is not None):  # (no channel: its creation was skipped at teardown)
                self.selector.register(b.channel, selectors.EVENT_READ, b.node.name)
                b.wired = True

    def _raise_failed(self) -> None:
        for b in self.boxes.values():
            done = b.future is not None and b.future.done() and not b.future.cancelled()
            error = b.future.exception() if done and b.future is not None else None
            if error is not None:
                lost = self._lost_now(b.host)
                if lost is not None:
                    raise lost
                raise error if isinstance(error, BackendError) else api_error(f"start {b.name}", Exception(error))

    def _release(self) -> list[Event]:
        asked = [b for b in self.boxes.values() if b.go_asked and not b.launched]
        if not asked or not all(b.wired for b in asked):
            return []
        for b in asked:
            if b.node.runs_something and b.channel is not None and not b.exited and not b.channel.closed:
                try:
                    b.channel.send(b"go\n")
                except OSError as e:
                    raise self._lost_now(b.host) or BackendError(f"start {b.node.name}: {e}") from None
            b.launched = True
        return [Event(b.node.name, LAUNCHED) for b in asked]

    def release(self, nodes: list[str]) -> None:
        for name in nodes:
            b = self.boxes.get(name)
            if b is not None and b.channel is not None and not b.exited and not b.channel.closed:
                try:
                    b.channel.send(b"release\n")  # the agent's stdin, which it handed to the role
                except OSError:  # its host is gone: the probe says so
                    pass

    def _read(self, b: _Box) -> list[Event]:
        assert b.channel is not None
        events: list[Event] = []
        for fact in b.channel.read():
            if fact == "ready" and not b.ready and b.node.ready.kind in (ANNOUNCE, TCP):
                b.ready = True
                events.append(Event(b.node.name, READY))
            elif fact == "answered":
                events.append(Event(b.node.name, ANSWERED))
            elif fact.startswith("exit "):
                b.told = int(fact.split()[1])
        if b.channel.closed:
            self.selector.unregister(b.channel)
            events.append(self._exited(b))
        return events

    def _exited(self, b: _Box) -> Event:
        """The node's agent is done: its code (told, or asked of the engine), its files fetched."""
        b.exited = True
        if b.told is not None:
            b.code = b.told
        elif not self.closing and (lost := self._lost_now(b.host)) is not None:
            raise lost  # the stream ended because the host did
        else:
            try:
                api = self.engines[b.host].client.api
                b.code = int(api.wait(b.id, timeout=10)["StatusCode"])
            except Exception:  # noqa: BLE001 - unknown is reported as such
                b.code = None
        if not b.ready and self.pool is not None:  # a start failure: its log is the evidence, now
            self._collect(b)
        elif self.pool is not None:
            b.fetch = self.pool.submit(self._collect, b)
        return Event(b.node.name, EXITED, b.code)

    def _collect(self, b: _Box) -> None:
        """Copy the node's log and transcript into the run folder (once), then its own output."""
        if b.collected or not b.id or self.rundir is None:
            return
        b.collected = True
        engine = self.engines[b.host]
        wanted = {f"{b.node.name}.log": self.rundir.log(b.node.name),
                  f"{b.node.name}.jsonl": self.rundir.transcript(b.node.name)}
        if engine.lost:
            _append(self.rundir.log(b.node.name), f"lab: host {b.host} went away ({engine.lost}); "
                                                   "this node's log and transcript are lost with it\n")
            return
        try:
            stream, _ = engine.client.api.get_archive(b.id, OUT)
            extract(stream, wanted, MAX_OUTPUT)
        except Exception as e:  # noqa: BLE001 - said in the log, which is what a user reads
            _append(self.rundir.log(b.node.name), f"lab: could not copy this node's files from host {b.host}: {e}\n")
        if b.channel is not None and b.channel.output.strip():
            _append(self.rundir.log(b.node.name),
                    f"--- container output ({b.name} on {b.host}) ---\n{b.channel.output.decode(errors='replace')}")

    # -- hosts -------------------------------------------------------------------------------
    def _probe_hosts(self) -> None:
        """Ask every host in use whether it is still there (in the background, once a second)."""
        now = time.monotonic()
        for name in sorted(set(self.placement.values())):
            e = self.engines[name]
            if e.probing is not None and e.probing.done():
                error = e.probing.exception()
                e.probing = None
                if error is not None:
                    e.lost = f"no answer to a ping within {PROBE_TIMEOUT:.0f}s: {str(error)[:120]}"
                    raise self._lost_error(name)
            elif e.probing is not None and now - e.last_probe > PROBE_TIMEOUT + 2:
                e.lost = f"no answer to a ping within {PROBE_TIMEOUT + 2:.0f}s"
                raise self._lost_error(name)
            if e.probing is None and now - e.last_probe >= PROBE_EVERY and not e.lost:
                e.last_probe = now
                e.probing = self.probes.submit(e.probe.ping)

    def _lost_now(self, host: str) -> BackendError | None:
        """If `host` is gone (a quick ping fails), the error that says so; else None."""
        e = self.engines[host]
        if not e.lost:
            try:
                e.probe.ping()
                return None
            except Exception as error:  # noqa: BLE001
                e.lost = str(error)[:120]
        return self._lost_error(host)

    def _lost_error(self, host: str) -> BackendError:
        e = self.engines[host]
        nodes = [n for n, h in self.placement.items() if h == host]
        shown = ", ".join(nodes[:5]) + (f" and {len(nodes) - 5} more" if len(nodes) > 5 else "")
        return BackendError(f"host {host} ({e.host.endpoint}) went away during the run ({e.lost}); "
                            f"its node(s) {shown} were lost")

    # -- stop and teardown -------------------------------------------------------------------
    def stop(self, nodes: list[str], grace: float) -> dict[str, int | None]:
        running = [self.boxes[n] for n in nodes
                   if n in self.boxes and self.boxes[n].id and not self.boxes[n].exited
                   and not self.engines[self.boxes[n].host].lost]

        def halt(b: _Box) -> None:
            try:
                self.engines[b.host].client.api.stop(b.id, timeout=max(1, round(grace)))
            except Exception:  # noqa: BLE001 - gone already; removal follows anyway
                pass

        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(halt, running))
        deadline = time.monotonic() + 5
        while any(b.wired and not b.exited for b in running) and time.monotonic() < deadline:
            for key, _ in self.selector.select(0.1):
                self.pending += [e for e in self._read(self.boxes[key.data]) if e.node not in nodes]
        for b in running:
            if not b.exited and b.wired and b.channel is not None:
                self.selector.unregister(b.channel)
                self._exited(b)
        return {n: self.boxes[n].code for n in nodes if n in self.boxes}

    def exit_code(self, node: str) -> int | None:
        b = self.boxes.get(node)
        return b.code if b else None

    def down(self) -> None:
        self.closing = True
        in_use = [n for n, e in self.engines.items() if e.client is not None and not e.lost]
        if in_use:  # a host that hangs now is skipped, not waited on call after call
            with ThreadPoolExecutor(len(in_use)) as pool:
                list(pool.map(self._lost_now, in_use))
        try:
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)
                self.pool = None
            self._watch_new()
            self.stop([n for n, b in self.boxes.items() if b.node.runs_something], grace=1.0)
            with ThreadPoolExecutor(WORKERS) as pool:
                list(pool.map(self._collect, [b for b in self.boxes.values() if b.id]))
        finally:
            for b in self.boxes.values():
                if b.channel is not None:
                    b.channel.close()
            self.selector.close()
            self.probes.shutdown(wait=False, cancel_futures=True)
            lost = {n: e.lost for n, e in self.engines.items() if e.lost}
            try:
                _, left = remove_lab(self.cluster, self.journal.lab_id, {n: e.client for n, e in self.engines.items()
                                                                      if e.client is not None and not e.lost},
                                  wait=not lost)
            finally:
                for e in self.engines.values():
                    for client in (e.client, e.probe):
                        if client is not None:
                            client.close()
            if lost:  # kept in the journal: `lab clean` finishes once the host answers again
                held = f" (and network(s) {', '.join(left)}, which its containers still hold)" if left else ""
                raise BackendError(f"host(s) {', '.join(lost)} unreachable: what the lab has there{held} is "
                                   "removed by `lab clean` once they answer again")
            self.journal.close()

    @classmethod
    def clean(cls, journal: Journal) -> list[str]:
        recorded = [e["name"] for e in journal.entries() if e.get("kind") == "cluster"]
        if not recorded:  # nothing was created
            journal.close()
            return []
        cluster = Cluster.from_json(json.loads(recorded[-1]))
        clients: dict[str, Any] = {}
        unreachable: list[str] = []
        for h in cluster.hosts:
            try:
                clients[h.name] = remote(h.endpoint, timeout=TEARDOWN_TIMEOUT, tls=tls_config(h))
            except BackendError:
                unreachable.append(h.name)
        try:
            run_dir = journal.meta().get("run_dir")
            if run_dir:
                _rescue_logs(clients, journal.lab_id, Path(str(run_dir)))
            removed, _ = remove_lab(cluster, journal.lab_id, clients, wait=not unreachable)
        finally:
            for c in clients.values():
                c.close()
        if unreachable:
            raise BackendError(f"host(s) {', '.join(unreachable)} of lab {journal.lab_id} do not answer; "
                               "its journal is kept: run `lab clean` again once they do")
        journal.close()
        return removed


def tls_config(host: Host) -> Any:
    if host.tls is None:
        return None
    return docker.tls.TLSConfig(client_cert=(str(host.tls.cert), str(host.tls.key)), ca_cert=str(host.tls.ca),
                                verify=True)


def remove_lab(cluster: Cluster, lab_id: str, clients: dict[str, Any],
               wait: bool = True) -> tuple[list[str], list[str]]:
    """Remove the lab's containers from every reachable host, then its networks (by label).

    Returns (removed, networks left in place): without `wait`, a network is tried once (an
    unreachable host's container may hold it until that host answers again)."""
    label = {"label": f"{LABEL_ID}={lab_id}"}

    def containers(item: tuple[str, Any]) -> list[str]:
        host, client = item
        found = client.api.containers(all=True, filters=label)
        for c in found:
            try:
                client.api.remove_container(c["Id"], force=True, v=True)
            except Exception:  # noqa: BLE001 - already being removed
                pass
        return [f"{c['Names'][0].lstrip('/')}@{host}" for c in found]

    try:
        with ThreadPoolExecutor(max(1, len(clients))) as pool:
            removed = [name for names in pool.map(containers, clients.items()) for name in names]
    except Exception as e:  # noqa: BLE001
        raise api_error("remove the lab's containers", e) from None
    manager = clients.get(cluster.manager.name)
    if manager is None:
        return removed, []
    networks = [n["Name"] for n in manager.api.networks(filters=label)]
    left = _remove_networks(manager, label, TEARDOWN_TIMEOUT if wait else 0.0)
    if not left:
        _wait_networks_gone(clients, label)
    return removed + [n for n in networks if n not in left], left


def _wait_networks_gone(clients: dict[str, Any], label: dict[str, str]) -> None:
    """Each host drops its copy of a removed overlay network a moment later: the lab is only gone
    once no host lists it (observed, bounded)."""
    deadline = time.monotonic() + TEARDOWN_TIMEOUT
    pending = dict(clients)
    while pending and time.monotonic() < deadline:
        for host, client in list(pending.items()):
            try:
                if not client.api.networks(filters=label):
                    del pending[host]
            except Exception:  # noqa: BLE001 - asked again until the deadline
                pass
        if pending:
            time.sleep(0.1)


def _remove_networks(manager: Any, label: dict[str, str], patience: float) -> list[str]:
    """Overlay networks, once the hosts have let go of them (an endpoint lingers briefly).
    Returns the names of those still in use after `patience` seconds."""
    deadline = time.monotonic() + patience
    pending = manager.api.networks(filters=label)
    while pending:
        left = []
        for n in pending:
            try:
                manager.api.remove_network(n["Id"])
            except Exception as e:  # noqa: BLE001
                if "No such network" in str(e) or "not found" in str(e):
                    continue
                if patience and time.monotonic() > deadline:
                    raise api_error(f"remove network {n['Name']}", e) from None
                left.append(n)
        if not patience:
            return [n["Name"] for n in left]
        pending = left
        if pending:
            time.sleep(0.2)  # the engines detach endpoints asynchronously; nothing to watch
    return []


def _rescue_logs(clients: dict[str, Any], lab_id: str, run_dir: Path) -> None:
    """Before `lab clean` removes a dead lab's containers: copy their logs into its run folder."""
    nodes = run_dir / "nodes"
    if not nodes.is_dir():
        return
    for client in clients.values():
        try:
            found = client.api.containers(all=True, filters={"label": f"{LABEL_ID}={lab_id}"})
        except Exception:  # noqa: BLE001 - best effort: removal (which reports) matters more
            continue
        for c in found:
            node = (c.get("Labels") or {}).get("lab.node", "")
            if not node or (nodes / f"{node}.jsonl").exists():
                continue
            try:
                stream, _ = client.api.get_archive(c["Id"], OUT)
                extract(stream, {f"{node}.log": nodes / f"{node}.log", f"{node}.jsonl": nodes / f"{node}.jsonl"},
                        MAX_OUTPUT)
            except Exception:  # noqa: BLE001 - best effort: removal matters more
                continue


def _append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)
