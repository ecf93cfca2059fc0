"""The swarm backend: nodes are containers spread over the hosts of a Docker Swarm cluster.

Swarm is used for what it already does well, joining hosts and carrying overlay networks; the lab
does not use swarm services (their VIPs need IPVS, and a node is one container with one address).
Each scenario network becomes an attachable, internal overlay network (no way out), created on the
manager; each node is a plain container on the host `place()` chose, attached with its scenario
address (static addresses work on attachable overlays from every host). Docker's own endpoints
on a network (a gateway and one per host) get a block of the subnet that no node uses.

Nothing is shared with a host but its engine's API: the node's spec (and files) are put into the
container before it starts; the agent reports readiness and its exit code on the attach stream
(remote.Channel); its log and transcript stream back on the same stream as they grow, all of
both before its exit code. A node that ends without saying it (killed) has both copied whole from
its container, onto the same bytes (as `lab clean` does for a lab that died). A node with no files
gets its spec in its environment: one engine call (and one untar in the engine) the fewer.

Every container and network carries the label lab.id; teardown and `lab clean` remove by that
label on every host of the cluster recorded in the journal (overlay.py). A host that stops
answering mid-run is a failure naming it; the rest of the lab is still removed everywhere else.
"""

from __future__ import annotations

import json
import shutil
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.backends import ANSWERED, READY, Command, Event, NodeRef, Options, Placement, uids
from lab.backends.containers import images
from lab.backends.containers.base import OUT, SOURCE, WORKERS, Box, ContainerBackend, container_name, exec_command
from lab.backends.containers.cluster import Cluster, load_cluster, place
from lab.backends.containers.engine import api_error, connect, remote
from lab.backends.containers.hosts import PROBE_EVERY, Engine, Engines
from lab.backends.containers.overlay import (
    TEARDOWN_TIMEOUT,
    Block,
    create_networks,
    docker_block,
    network_name,
    remove_lab,
    rescue_logs,
)
from lab.backends.containers.remote import (
    Channel,
    extract,
    open_channel,
    ship_image,
    store,
    tar_files,
)
from lab.errors import BackendError, EnvironmentProblem, LabError, Problem, ScenarioError, UnknownLab, UsageError
from lab.journal import Journal
from lab.plan import ANNOUNCE, TCP, NodePlan, Plan, StepPlan, start_order
from lab.roles.agent import SPEC_ENV
from lab.rundir import MAX_OUTPUT, RunDir

# Starting a container on an overlay network asks the manager for an attachment; the manager
# allocates them one after another and each engine gives up on its request after 20 s. Asked all at
# once, on a busy machine the last in the manager's queue ran out of time ("attaching to network
# failed ... context deadline exceeded"); a few at a time, each waits only for its own.
ATTACHING = 4
SPEC_IN_ENV = 64 * 1024  # bytes of spec given in the environment (one string may be 128 KiB: MAX_ARG_STRLEN)
CLUSTER = "cluster"  # journal entry: the hosts in use (what `lab clean` and `lab exec` reach)
PLACED = "placed"  # journal entries: [node, host] (what `lab exec` needs to reach a node)


@dataclass
class _Box(Box):
    host: str = ""
    channel: Channel | None = None  # the agent's attach stream
    fetch: Future[None] | None = None  # its files, being copied back


def refuse_wire_work(plan: Plan) -> None:
    """Captures and the fault timeline act on the lab's own links; a swarm lab's links are Docker's
    overlay across hosts, which the lab does not own: refused where the scenario asks (exit 2)."""
    why = "the swarm backend's links are Docker's overlay, not the lab's own: run it on netns or docker"
    if plan.timeline:
        raise ScenarioError([Problem(plan.timeline[0].loc, "timeline", f"a fault timeline cannot run here ({why})")])
    if plan.capture.networks:
        if plan.capture.loc is None:
            raise UsageError(f"--capture: packet captures cannot run here ({why})")
        raise ScenarioError([Problem(plan.capture.loc, "capture", f"packet captures cannot run here ({why})")])


class SwarmBackend(ContainerBackend[_Box]):
    name = "swarm"

    def __init__(self, journal: Journal, options: Options | None = None) -> None:
        if options is None or options.cluster is None:
            raise EnvironmentProblem("--backend swarm needs --cluster FILE (the cluster's hosts: "
                                     "`lab cluster up` writes one for a simulated cluster; README: real hosts)")
        super().__init__(journal, options)
        self.cluster: Cluster = load_cluster(options.cluster)
        self.engines = Engines(self.cluster)
        self.placement: dict[str, str] = {}
        self.missing: dict[str, list[str]] = {}  # image -> hosts to send it to (found by check)
        self.blocks: dict[str, Block] = {}
        self.attaching = threading.BoundedSemaphore(ATTACHING)

    # -- environment -------------------------------------------------------------------------
    def disturb(self, step: StepPlan) -> None:
        raise BackendError(f"{step.loc}: the swarm backend runs no fault timeline")  # `check` refused it

    def check(self, plan: Plan) -> None:
        refuse_wire_work(plan)
        self.placement = place(plan, self.cluster)  # an unknown `host:` is the scenario's error (exit 2)
        self.engines.placement = self.placement
        try:
            self._check(plan)
        except Exception as e:
            self.engines.close()
            if isinstance(e, LabError):
                raise
            raise EnvironmentProblem(f"swarm: cannot use the cluster {self.cluster.path}: {e}") from None

    def _check(self, plan: Plan) -> None:
        used = {self.cluster.manager.name, *self.placement.values()}
        self.engines.connect(used, pool=WORKERS * 2)
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

    @classmethod
    def check_kept(cls) -> None:
        """A kept lab's nodes are entered with the docker command line, on their own host."""
        if shutil.which("docker") is None:
            raise EnvironmentProblem("lab up --backend swarm enters nodes with the docker command line, which is "
                                     "not installed here (Debian: apt-get install docker.io)")

    def placements(self) -> dict[str, Placement]:
        out: dict[str, Placement] = {}
        for node, host in self.placement.items():
            e = self.engines[host]
            out[node] = Placement(host, e.host.endpoint, e.offset, e.uncertainty)
        return out

    # -- topology ----------------------------------------------------------------------------
    def up(self, plan: Plan, rundir: RunDir) -> None:
        self.rundir = rundir
        self._topology(plan)
        self._launch(plan)

    def floor(self, plan: Plan) -> bool:
        """The engines' own floor (for `lab bench`): the plan's networks, and every node's container
        created on its host and started, in start order, as many at once as the lab does, with the
        lab's options but sleeping; then all removed by label, as `down` does. The journal marks
        them: a floor killed midway is cleaned like a lab (`lab clean`)."""
        self._topology(plan)
        try:
            with ThreadPoolExecutor(WORKERS) as pool:
                list(pool.map(lambda name: self._bring_up(plan, self.boxes[name], sleeping=True), start_order(plan)))
        finally:
            self._remove()
        return True

    def _topology(self, plan: Plan) -> None:
        """The lab's marks in the journal, its uids, its networks, and the image on every host."""
        used = {self.cluster.manager.name, *self.placement.values()}  # what `lab clean` must reach
        in_use = Cluster(self.cluster.path, tuple(h for h in self.cluster.hosts if h.name in used))
        self.journal.record_many(CLUSTER, [json.dumps(in_use.to_json())])
        self.journal.record_many(PLACED, [json.dumps([n, h]) for n, h in self.placement.items()])  # for exec
        self.boxes = {n.name: _Box(n, container_name(self.journal.lab_id, n.name), host=self.placement[n.name])
                      for n in plan.nodes}
        self.uids = uids.claim(self.journal, list(self.boxes))
        self.journal.record_many("network", [network_name(self.journal.lab_id, n.name) for n in plan.networks])
        create_networks(self.engines[self.cluster.manager.name].client, plan, self.journal.lab_id, self.blocks)
        if self.missing:
            local = connect()
            try:
                for tag, hosts in self.missing.items():
                    ship_image(local, tag, {h: self.engines[h].client for h in hosts})
            finally:
                local.close()

    def _bring_up(self, plan: Plan, box: _Box, sleeping: bool = False) -> None:
        node, api = box.node, self.engines[box.host].client.api
        first, *rest = node.interfaces
        nets = {i.network: network_name(self.journal.lab_id, i.network) for i in node.interfaces}
        container, host = self._container(plan, node, ("NET_ADMIN", "SETPCAP") if node.routes else (), as_root=True)
        spec = json.dumps(self._spec(node))
        files = None if sleeping else self._files(node, spec)
        if files is None and not sleeping:  # only the spec to send: in the environment, one engine call the fewer
            container["environment"][SPEC_ENV] = spec
        if sleeping:  # (the floor: the same container, its program `sleep`)
            container["entrypoint"] = ["sleep", "infinity"]
        try:  # (a user's image: the role programs come in _files)
            host_config = api.create_host_config(network_mode=nets[first.network],
                                                 sysctls={"net.ipv4.ip_forward": "1" if node.forwarding else "0"},
                                                 **host)
            networking = api.create_networking_config(
                {nets[first.network]: api.create_endpoint_config(ipv4_address=str(first.address.ip))})
            config = api.create_container_config(command=None, host_config=host_config, networking_config=networking,
                                                 stdin_open=True, **container)
            config["StdinOnce"] = True  # the agent sees EOF if the lab goes away before "go"
            box.id = api.create_container_from_config(config, box.name)["Id"]
            for i in rest:
                api.connect_container_to_network(box.id, nets[i.network], ipv4_address=str(i.address.ip))
            if files is not None:
                api.put_archive(box.id, "/", files)
            box.channel = None if sleeping else open_channel(api, box.id)
            with self.attaching:
                api.start(box.id)
        except Exception as e:  # noqa: BLE001 - the SDK's errors are reported as the lab's
            raise api_error(f"start container for {node.name} on host {box.host}", e) from None

    def _spec(self, node: NodePlan) -> dict[str, Any]:
        spec = {"channel": "stdio", "uid": self.uids[node.name], "ship": MAX_OUTPUT, **self._agent_spec(node)}
        if node.argv and node.ready.kind == TCP:
            spec.update(ready_tcp=node.ready.port)
        if node.routes:
            spec.update(routes=[[str(r.to), str(r.via)] for r in node.routes])
        return spec

    def _files(self, node: NodePlan, spec: str) -> bytes | None:
        """What goes into the container before it starts (None: nothing beyond the spec, which then
        goes in its environment): the node's files, the role programs for a user's image, and a
        spec too long for one environment string (the kernel takes 128 KiB at most: large pages
        or scripted input in a role's parameters)."""
        if node.cwd is None and not node.image and len(spec) <= SPEC_IN_ENV:
            return None
        files = [("lab/ctl/spec.json", spec.encode())]
        if node.image:
            files += [(f"opt/lab/{name}", data) for name, data in images.payload()]
        if node.cwd is None:
            return tar_files(files)
        return tar_files(files, [(SOURCE.lstrip("/"), node.cwd)], skip=self._survey(node.cwd).outputs)

    def _engine(self, box: _Box) -> Any:
        e = self.engines[box.host]
        return None if e.lost else e.client

    # -- processes ---------------------------------------------------------------------------
    def _watched(self, box: _Box) -> Channel | None:
        return box.channel

    def _raise_failed(self) -> None:
        super()._raise_failed()
        self.engines.probe()

    def _send(self, box: _Box, data: bytes) -> None:
        if box.channel is not None and not box.channel.closed:
            box.channel.send(data)  # the agent's stdin (once "go" is read, it hands it to the role)

    def _wait(self, timeout: float) -> list[Event]:
        unwired = any(not b.wired for b in self.boxes.values())
        events: list[Event] = []
        for key, _ in self.selector.select(min(timeout, 0.02) if unwired else min(timeout, PROBE_EVERY)):
            events += self._read(self.boxes[key.data])
        return events

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
            elif fact.startswith("data ") and self.rundir is not None:
                store(self.rundir, b.node.name, fact)
        if b.channel.closed:
            events += self._reap([b])
        return events

    def _terminate(self, b: _Box) -> bool:
        """SIGTERM to the node's agent by the engine's `kill`, which returns at once (its `stop`
        waits for the end): the agent says its exit code on its stream, where the lab watches it end."""
        try:
            self.engines[b.host].client.api.kill(b.id, signal="SIGTERM")
        except Exception:  # noqa: BLE001 - ended already, or the host is gone: the engine's word follows
            return False
        return True

    def _unwatch(self, b: _Box) -> None:
        if b.channel is not None:
            self.selector.unregister(b.channel)

    def _evidence(self, ended: list[_Box], unspoken: list[_Box]) -> None:
        for b in ended:
            if not b.ready:  # a start failure: its log is the evidence, now
                self._collect(b)
            elif self.pool is not None:  # its files are copied back in the background
                b.fetch = self.pool.submit(self._collect, b)

    def _exit_status(self, b: _Box) -> int:
        return int(self.engines[b.host].client.api.wait(b.id, timeout=10)["StatusCode"])

    def _collect(self, b: _Box) -> None:
        """Copy the node's log and transcript into the run folder (once), then its own output. A node
        whose agent told its exit code sent all of both before it (lab/roles/shipper.py): nothing to copy."""
        if b.collected or not b.id or self.rundir is None:
            return
        b.collected = True
        engine = self.engines[b.host]
        if engine.lost:
            _append(self.rundir.log(b.node.name), f"lab: host {b.host} went away ({engine.lost}); this node's "
                                                   "output since the last piece streamed is lost with it\n")
            return
        if b.told is None:
            self._copy_files(b, engine)
        if b.channel is not None and b.channel.output.strip():
            _append(self.rundir.log(b.node.name),
                    f"--- container output ({b.name} on {b.host}) ---\n{b.channel.output.decode(errors='replace')}")

    def _copy_files(self, b: _Box, engine: Engine) -> None:
        assert self.rundir is not None
        wanted = {f"{b.node.name}.log": self.rundir.log(b.node.name),
                  f"{b.node.name}.jsonl": self.rundir.transcript(b.node.name)}
        try:
            stream, _ = engine.client.api.get_archive(b.id, OUT)
            extract(stream, wanted, MAX_OUTPUT)
        except Exception as e:  # noqa: BLE001 - said in the log, which is what a user reads
            _append(self.rundir.log(b.node.name), f"lab: could not copy this node's files from host {b.host}: {e}\n")

    def _lost(self, box: _Box) -> BackendError | None:
        return self.engines.lost_now(box.host)


    # -- teardown ----------------------------------------------------------------------------
    def down(self) -> None:
        self.closing = True
        self.engines.check_all()  # a host that hangs now is skipped, not waited on call after call
        super().down()

    def _remove(self) -> None:
        for b in self.boxes.values():
            if b.channel is not None:
                b.channel.close()
        self.engines.stop_probing()
        lost = self.engines.lost()
        try:
            _, left = remove_lab(self.cluster, self.journal.lab_id, self.engines.clients(), wait=not lost)
        finally:
            self.engines.close()
        if lost:  # kept in the journal: `lab clean` finishes once the host answers again
            held = f" (and network(s) {', '.join(left)}, which its containers still hold)" if left else ""
            raise BackendError(f"host(s) {', '.join(lost)} unreachable: what the lab has there{held} is "
                               "removed by `lab clean` once they answer again")
        uids.release(self.journal)
        self.journal.close()

    @classmethod
    def clean(cls, journal: Journal) -> list[str]:
        cluster = _recorded_cluster(journal.entries())
        if cluster is None:  # nothing was created
            uids.release(journal)
            journal.close()
            return []
        clients: dict[str, Any] = {}
        unreachable: list[str] = []
        for h in cluster.hosts:
            try:
                clients[h.name] = remote(h.endpoint, timeout=TEARDOWN_TIMEOUT, tls=h.client_tls())
            except BackendError:
                unreachable.append(h.name)
        try:
            run_dir = journal.meta().get("run_dir")
            if run_dir:
                rescue_logs(clients, journal.lab_id, Path(str(run_dir)))
            removed, _ = remove_lab(cluster, journal.lab_id, clients, wait=not unreachable)
        finally:
            for c in clients.values():
                c.close()
        if unreachable:
            raise BackendError(f"host(s) {', '.join(unreachable)} of lab {journal.lab_id} do not answer; "
                               "its journal is kept: run `lab clean` again once they do")
        removed += uids.release(journal)
        journal.close()
        return removed

    # -- a running lab -----------------------------------------------------------------------
    @classmethod
    def command(cls, journal: Journal, node: NodeRef, argv: list[str], interactive: bool) -> Command:
        """`docker -H HOST [--tlsverify ...] exec` on the host the node runs on (from the journal)."""
        entries = journal.entries()
        cluster = _recorded_cluster(entries)
        placed = dict(json.loads(e["name"]) for e in entries if e.get("kind") == PLACED)
        if cluster is None or node.name not in placed:
            raise UnknownLab(f"node {node.name!r} of lab {journal.lab_id} has no container yet")
        host = next(h for h in cluster.hosts if h.name == placed[node.name])
        return exec_command(host.cli(), journal.lab_id, node, argv, interactive)


def _recorded_cluster(entries: list[dict[str, Any]]) -> Cluster | None:
    """The hosts a lab used, as its journal recorded them in `up` (None: it made nothing)."""
    recorded = [e["name"] for e in entries if e.get("kind") == CLUSTER]
    return Cluster.from_json(json.loads(recorded[-1])) if recorded else None


def _append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)
