"""The docker backend: every node is a container, wired into the lab's own fabric.

Containers start without the engine's networking (`network_disabled`: an empty network namespace,
no engine network hook, no engine-written /etc/hosts: the lab binds its own); their network
namespaces are attached under the lab's names and wired exactly like the netns backend's
(fabric.py): one bridge per network inside a namespace of the lab's own. So two runs with the same
static addresses never collide (no docker network, no "Pool overlaps"), lab traffic never crosses
the host's firewall, and no node has a path out (no NAT, no route to the host).

Least privilege: every node runs as a uid of its own (`--user`, uids.py: no account, no group), with
no capability (the lab sets addresses and routes from outside, so no node needs NET_ADMIN; the
engine lets any port be bound in a container), no-new-privileges, a read-only root file system, a
private size-bounded /tmp, and its own copy of its `files:` (a tmpfs the agent fills from the
original, mounted read-only); no --privileged, no Docker socket, no published port. Every container
carries labels tying it to its lab; `down` and `clean` remove containers by those labels only.

Inside, the node's agent (lab/roles/agent.py) waits for the lab's go file, then becomes the role or
program, writing its log and transcript into the run folder (those two files alone are mounted, under
/lab/out) and its readiness and exit code into a facts folder of the lab's own (/lab/facts).
"""

from __future__ import annotations

import json
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lab
from lab.backends import ANSWERED, READY, Command, Event, NodeRef, Options, Placement, faults, uids
from lab.backends.containers import images
from lab.backends.containers.base import (
    CONTAINER,
    ENGINE_WORD,
    OUT,
    SOURCE,
    WORKERS,
    Box,
    ContainerBackend,
    container_name,
    exec_command,
    remove_containers,
)
from lab.backends.containers.engine import api_error, connect
from lab.backends.fabric import (
    Fabric,
    check_machine,
    hosts_path,
    journal_namespaces,
    remove_namespaces,
    write_hosts_files,
)
from lab.errors import BackendError, EnvironmentProblem
from lab.journal import Journal
from lab.plan import ANNOUNCE, TCP, NodePlan, Plan, StepPlan, start_order
from lab.roles.common import chown_tree, copy_files, listening_tcp_ports
from lab.rundir import RunDir

FACTS = "/lab/facts"  # inside a container: where its agent and role tell the lab facts (ready, answered, exit)


@dataclass
class _Box(Box):
    pid: int = 0
    pidfd: int = -1  # the container's init process: readable once it has ended
    go: int = -1  # write end of the node's go FIFO
    answered: bool = False  # a synced client told the lab it was answered
    facts: str = ""  # where its facts are: this, then the fact's name


class DockerBackend(ContainerBackend[_Box]):
    name = "docker"

    def __init__(self, journal: Journal, options: Options | None = None) -> None:
        super().__init__(journal, options)
        self.fabric = Fabric(journal)
        self.client: Any = None
        self.plan: Plan | None = None
        self.paused: set[str] = set()  # nodes the timeline paused (the engine's freezer), until resumed

    # -- environment -------------------------------------------------------------------------
    def check(self, plan: Plan) -> None:
        check_machine("the docker backend needs root (it wires containers into the lab's own namespaces; "
                      "without root, the netns backend runs in a user namespace)")
        faults.check_kernel(plan)
        self.client = connect()
        if not images.exists(self.client, self.image):
            raise EnvironmentProblem(f"the lab image {self.image} is missing: build it with `lab images` "
                                     "(or `inv images`)")
        for node in {n.image: n for n in plan.nodes if n.image}.values():
            if not images.exists(self.client, str(node.image)):
                where = f"{node.image_loc}: " if node.image_loc else ""
                raise EnvironmentProblem(f"{where}node {node.group}: image {node.image!r} is missing on this "
                                         f"machine: docker build or docker load it first")

    @classmethod
    def check_kept(cls) -> None:
        pass

    def placements(self) -> dict[str, Placement]:
        return {}  # every node runs on this machine

    # -- topology ----------------------------------------------------------------------------
    def up(self, plan: Plan, rundir: RunDir) -> None:
        """Create the fabric, then bring the containers up in the background (`_launch`)."""
        self.rundir, self.plan = rundir, plan
        self.boxes = {n.name: _Box(n, container_name(self.journal.lab_id, n.name)) for n in plan.nodes}
        self.uids = uids.claim(self.journal, list(self.boxes))
        write_hosts_files(plan, self.journal)
        self.fabric.create_bridges(plan)
        self.fabric.start_captures(plan, rundir.file("captures"))
        self._launch(plan)

    def disturb(self, step: StepPlan) -> None:
        """Network steps on the fabric; a pause freezes the node's container (the engine's freezer)."""
        assert self.plan is not None
        if step.action in ("pause", "resume"):
            self._freeze(step.nodes, step.action == "pause")
        else:
            self.fabric.disturb(self.plan, step)

    def _freeze(self, names: tuple[str, ...], frozen: bool) -> None:
        """Pause (or unpause) the containers of these nodes that are not so already."""
        for name in names:
            b = self.boxes.get(name)
            if b is not None and b.id and not b.exited and (name in self.paused) != frozen:
                try:
                    (self.client.api.pause if frozen else self.client.api.unpause)(b.id)
                except Exception as e:  # noqa: BLE001 - the SDK's errors are reported as the lab's
                    raise api_error(f"{'pause' if frozen else 'resume'} {name}", e) from None
                self.paused.symmetric_difference_update({name})

    def stop(self, nodes: list[str], grace: float) -> dict[str, int | None]:
        """A paused node is resumed first: a frozen container neither ends nor lets the engine kill it."""
        self._freeze(tuple(n for n in nodes if n in self.paused), False)
        return super().stop(nodes, grace)

    def _renew(self, box: _Box) -> _Box:
        """The timeline restarts a node: its container is replaced by a new one of the same name, in a
        namespace of its own wired as the first (the old one's links go with it); its log and
        transcript go on where the first life's ended."""
        assert self.plan is not None and self.pool is not None
        self._collect(box)
        try:
            self.client.api.remove_container(box.id, force=True)
        except Exception as e:  # noqa: BLE001 - the SDK's errors are reported as the lab's
            raise api_error(f"remove {box.name} to restart it", e) from None
        if box.go >= 0:
            os.close(box.go)
            box.go = -1  # (closed: `_remove` must not close the number again, were a step below to fail)
        for stale in self._facts(box.node.name).iterdir():  # the first life's words
            stale.unlink()
        self.fabric.leave(self.plan, box.node)
        new = _Box(box.node, box.name)
        self.boxes[box.node.name] = new
        new.future = self.pool.submit(self._create, self.plan, new)
        self.creating.append(new)
        return new

    def _bring_up(self, plan: Plan, box: _Box) -> None:
        node = box.node
        ctl = self.journal.folder / "ctl" / node.name
        ctl.mkdir(parents=True, exist_ok=True)
        spec = {"go": "/lab/ctl/go", "facts": f"{FACTS}/{node.name}.{{fact}}", "exit": f"{FACTS}/{node.name}.exit",
                **self._agent_spec(node)}
        (ctl / "spec.json").write_text(json.dumps(spec))
        if node.runs_something:  # held open read-write by the lab: the agent blocks on it until "go"
            (ctl / "go").unlink(missing_ok=True)  # a restarted node's first life had one
            os.mkfifo(ctl / "go", 0o600)
            os.chown(ctl / "go", self.uids[node.name], self.uids[node.name])
            box.go = os.open(ctl / "go", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        api = self.client.api
        try:
            box.id = self._new_container(plan, node, ctl, box.name)
            api.start(box.id)
            box.pid = int(api.inspect_container(box.id)["State"]["Pid"])
        except Exception as e:  # noqa: BLE001 - the SDK's errors are reported as the lab's
            raise api_error(f"start container for {node.name}", e) from None
        if not box.pid:
            raise BackendError(f"container for {node.name} exited at once: {self._logs(box)[-300:]!r}")
        self.fabric.join(plan, node, box.pid)
        box.pidfd = os.pidfd_open(box.pid)

    def _new_container(self, plan: Plan, node: NodePlan, ctl: Path, name: str, **override: Any) -> str:
        """Create the node's container (its id), as every container backend makes it (`_container`),
        without the engine's networking at all: the container gets a network namespace of its own,
        which the fabric wires, and nothing else. `--network none` still has the engine run its
        network hook at every start: the engine's whole binary again, a third of the machine's CPU
        at N=50. So the engine writes no /etc/hosts either: the lab's own is bound (`_volumes`)."""
        container, host = self._container(plan, node)
        del host["extra_hosts"]
        api = self.client.api
        host_config = api.create_host_config(network_mode="none", binds=self._volumes(node, ctl), **host)
        created: str = api.create_container(name=name, host_config=host_config, network_disabled=True,
                                            **{**container, **override})["Id"]
        return created

    def _volumes(self, node: NodePlan, ctl: Path) -> dict[str, dict[str, str]]:
        """What the node's container binds: its own output, its control folder, its hosts file, its
        files, and for a user's image the role programs."""
        volumes = {**self._own_output(node), str(ctl): {"bind": "/lab/ctl", "mode": "ro"},
                   str(hosts_path(self.journal, node.name)): {"bind": "/etc/hosts", "mode": "ro"}}
        if node.cwd:  # read-only: the agent copies it into the node's own /lab/files
            volumes[str(self._source(node, ctl))] = {"bind": SOURCE, "mode": "ro"}
        if node.image:  # a user's image: run the agent from the host's copy of the role programs
            volumes[str(Path(lab.__file__).parent)] = {"bind": "/opt/lab/lab", "mode": "ro"}
        return volumes

    def floor(self, plan: Plan) -> bool:
        """The engine's own floor (for `lab bench`): every node's container created and started in
        start order, as many at once as the lab does, with the options and binds the lab gives it
        but sleeping instead of running the agent; then all removed, by label, as `down` does. No
        fabric, no agent, no waiting: what the lab takes above this is its own work. The journal
        marks the containers, so a floor killed midway is cleaned like a lab (`lab clean`)."""
        self.client = connect()
        self.rundir = RunDir.create(self.journal.folder / "out", plan.name)
        self.uids = {n.name: uids.BASE for n in plan.nodes}  # (no claim: the engine does not care whose)
        names = {n: container_name(self.journal.lab_id, n) for n in start_order(plan)}
        self.journal.record_many(CONTAINER, list(names.values()))
        write_hosts_files(plan, self.journal)

        def sleeper(name: str) -> None:
            node = plan.node(name)
            ctl = self.journal.folder / "ctl" / name
            ctl.mkdir(parents=True)
            self.client.api.start(self._new_container(plan, node, ctl, names[name], entrypoint=["sleep", "infinity"]))

        try:
            with ThreadPoolExecutor(WORKERS) as pool:
                list(pool.map(sleeper, names))
        finally:
            _remove_containers(self.client, self.journal)
            self.journal.close()
            self.client.close()
        return True

    def _source(self, node: NodePlan, ctl: Path) -> Path:
        """The node's files as its uid may read them: the original when anyone may, else a copy
        given to the node's uid (the original may be the instructor's alone, e.g. in a 0700
        folder), in the lab's own folder: removed with the lab."""
        assert node.cwd is not None
        if self._survey(node.cwd).readable:
            return node.cwd
        source = ctl / "source"
        copy_files(str(node.cwd), str(source), self._survey(node.cwd).outputs)
        chown_tree(source, self.uids[node.name])
        return source

    def _own_output(self, node: NodePlan) -> dict[str, dict[str, str]]:
        """A node writes only its own log and transcript (two files of the run folder, each bound
        alone) and its own facts folder: no node can rewrite another's evidence, or its own verdict."""
        assert self.rundir is not None
        facts = self._facts(node.name)
        facts.mkdir(parents=True, exist_ok=True)
        uid = self.uids[node.name]
        os.chown(facts, uid, uid)
        out = {}
        for path in (self.rundir.log(node.name), self.rundir.transcript(node.name)):
            path.touch()
            os.chown(path, uid, uid)  # the node's uid writes them (a root-owned 0644 file it could not)
            out[str(path)] = {"bind": f"{OUT}/{path.name}", "mode": "rw"}
        return {**out, str(facts): {"bind": FACTS, "mode": "rw"}}

    def _facts(self, node: str) -> Path:
        """Where a node's agent and role tell the lab facts (ready, answered, exit): the lab's own folder."""
        return self.journal.folder / "facts" / node

    def _engine(self, box: _Box) -> Any:
        return self.client

    # -- processes ---------------------------------------------------------------------------
    def _watched(self, box: _Box) -> int | None:
        return box.pidfd if box.pidfd >= 0 else None

    def _send(self, box: _Box, data: bytes) -> None:
        if box.go >= 0:
            os.write(box.go, data)  # the go FIFO (once "go" is read, the agent hands it to the role)

    def _wait(self, timeout: float) -> list[Event]:
        assert self.rundir is not None
        waiting = [b for b in self.boxes.values()
                   if b.wired and not b.ready and not b.exited and b.node.runs_something]
        events: list[Event] = []
        for b in waiting:
            if self._is_ready(b):
                b.ready = True
                events.append(Event(b.node.name, READY))
        syncing = [b for b in self.boxes.values() if b.node.synced and b.launched and not b.answered and not b.exited]
        for b in syncing:
            if self._fact(b, "answered"):
                b.answered = True
                events.append(Event(b.node.name, ANSWERED))
        unwired = any(not b.wired for b in self.boxes.values())
        wait = 0.0 if events else (min(timeout, 0.01) if waiting or unwired or syncing else timeout)
        done = [self.boxes[key.data] for key, _ in self.selector.select(wait)]
        for b in done:
            if not b.ready and b.node.ready.kind == ANNOUNCE and self._is_ready(b):
                b.ready = True
                events.append(Event(b.node.name, READY))
        return events + self._reap(done)

    def _is_ready(self, b: _Box) -> bool:
        if b.node.ready.kind == ANNOUNCE:
            return self._fact(b, "ready")
        if b.node.ready.kind == TCP:
            return b.node.ready.port in listening_tcp_ports(b.pid)
        return False

    def _fact(self, b: _Box, fact: str) -> bool:
        """Whether the node's role told this fact (a file it wrote in its facts folder; consumed).
        Asked of every waiting node at each look (a hundred a second): a string path, no Path."""
        if not b.facts:
            b.facts = f"{self._facts(b.node.name)}/{b.node.name}."
        try:
            os.unlink(b.facts + fact)
        except FileNotFoundError:
            return False
        return True

    def _unwatch(self, b: _Box) -> None:
        self.selector.unregister(b.pidfd)
        os.close(b.pidfd)
        b.pidfd = -1
        path = self._facts(b.node.name) / f"{b.node.name}.exit"  # the agent's last word (consumed)
        try:
            b.told = int(path.read_text().strip())
        except (OSError, ValueError):
            return
        path.unlink()

    def _terminate(self, box: _Box) -> bool:
        """SIGTERM straight to the container's init (the agent: a role's handler or the program's
        forwarder), by its pidfd: no engine round trip, which under load takes a second or more."""
        if box.pidfd < 0:
            return False
        try:
            signal.pidfd_send_signal(box.pidfd, signal.SIGTERM)
        except ProcessLookupError:
            pass  # ended already: its pidfd says so
        return True

    def _evidence(self, ended: list[_Box], unspoken: list[_Box]) -> None:
        for b in unspoken:  # what the container printed goes into the log now: it is the evidence
            self._collect(b)

    def _exit_status(self, b: _Box) -> int:
        """The engine's word once it has seen the end too (the lab's pidfd may see it first)."""
        return int(self.client.api.wait(b.id, timeout=ENGINE_WORD)["StatusCode"])

    # -- teardown ----------------------------------------------------------------------------
    def _collect(self, b: _Box) -> None:
        """What the container printed before its agent took over its output (or instead of it).

        A node whose agent told its exit code has nothing there: the agent takes the output before
        anything of the node is imported or run, and what failed before that (the interpreter, the
        routes) kept it from ever telling. Not asking the engine for such nodes saves two calls
        each at teardown, when the engine is busiest."""
        if b.collected or not b.id or self.rundir is None or b.told is not None:
            return
        b.collected = True
        text = self._logs(b)
        if text.strip():
            with open(self.rundir.log(b.node.name), "a") as f:
                f.write(f"--- container output ({b.name}) ---\n{text}")

    def _logs(self, b: _Box) -> str:
        try:
            raw: bytes = self.client.api.logs(b.id or b.name, stdout=True, stderr=True)
            return raw.decode(errors="replace")
        except Exception:  # noqa: BLE001
            return ""

    def _remove(self) -> None:
        for b in self.boxes.values():
            if b.go >= 0:
                os.close(b.go)
                b.go = -1
        _remove_containers(self.client, self.journal)
        self.fabric.remove()
        uids.release(self.journal)
        self.journal.close()
        if self.client is not None:
            self.client.close()

    @classmethod
    def clean(cls, journal: Journal) -> list[str]:
        try:
            client = connect()
        except EnvironmentProblem:
            client = None
        try:
            removed = _remove_containers(client, journal)
            removed += remove_namespaces(journal_namespaces(journal), kill=True, journal=journal)
            removed += uids.release(journal)
            journal.close()
        finally:
            if client is not None:
                client.close()
        return removed

    # -- a running lab -----------------------------------------------------------------------
    @classmethod
    def command(cls, journal: Journal, node: NodeRef, argv: list[str], interactive: bool) -> Command:
        return exec_command([], journal.lab_id, node, argv, interactive)


def _remove_containers(client: Any, journal: Journal) -> list[str]:
    """Remove every container labelled with this lab's id (the label is the mark, not the name)."""
    if client is None:
        return []
    try:
        return remove_containers(client, journal.lab_id)
    except Exception as e:  # noqa: BLE001
        raise api_error("list the lab's containers", e) from None
