"""The docker backend: every node is a container, wired into the lab's own fabric.

Containers start with `--network none`; their network namespaces are attached under the lab's
names and wired exactly like the netns backend's (fabric.py): one bridge per network inside a
namespace of the lab's own. So two runs with the same static addresses never collide (no docker
network, no "Pool overlaps"), lab traffic never crosses the host's firewall, and no node has a
path out (no NAT, no route to the host).

Least privilege: no --privileged, every capability dropped but NET_BIND_SERVICE (the lab sets
addresses and routes from outside, so no node needs NET_ADMIN), no-new-privileges, no Docker
socket, no published port. Every container carries labels tying it to its lab; `down` and `clean`
remove containers by those labels only.

Inside, the node's agent (lab/roles/agent.py) waits for the lab's go file, then becomes the role or
program, writing its log, transcript and readiness file into the run folder (mounted at /lab/out).
"""

from __future__ import annotations

import json
import os
import queue
import selectors
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.types

import lab
from lab.backends import ANSWERED, EXITED, LAUNCHED, READY, Event, Options, Placement
from lab.backends.containers import images
from lab.backends.containers.engine import api_error, connect
from lab.backends.fabric import Fabric, journal_namespaces, remove_namespaces
from lab.errors import BackendError, EnvironmentProblem
from lab.journal import Journal
from lab.plan import ANNOUNCE, TCP, NodePlan, Plan, address_for, start_order
from lab.roles.common import listening_tcp_ports
from lab.rundir import MAX_OUTPUT, RunDir

CONTAINER = "container"  # journal kind
WORKERS = 16  # concurrent API calls (the engine serialises some work; more does not help)
LABEL_ID = "lab.id"


@dataclass
class _Box:
    node: NodePlan
    name: str
    id: str = ""
    pid: int = 0
    pidfd: int = -1
    ready: bool = False
    code: int | None = None
    exited: bool = False
    go: int = -1  # write end of the node's go FIFO
    wired: bool = False  # container running, wired into the fabric, watched
    go_asked: bool = False  # the lab asked to start it
    launched: bool = False  # told to go
    log_collected: bool = False
    answered: bool = False  # a synced client told the lab it was answered
    future: Future[None] | None = None


class DockerBackend:
    name = "docker"

    def __init__(self, journal: Journal, options: Options | None = None):
        self.journal = journal
        self.fabric = Fabric(journal)
        self.client: Any = None
        self.image = images.node_tag()
        self.boxes: dict[str, _Box] = {}
        self.rundir: RunDir | None = None
        self.selector = selectors.DefaultSelector()
        self.pending: list[Event] = []
        self.pool: ThreadPoolExecutor | None = None
        self.joined: queue.SimpleQueue[_Box] = queue.SimpleQueue()  # wired by a worker, to watch
        self.closing = False

    # -- environment -------------------------------------------------------------------------
    def check(self, plan: Plan) -> None:
        if os.geteuid() != 0:
            raise EnvironmentProblem("the docker backend needs root (it wires containers into the lab's "
                                     "own namespaces): run as root")
        if shutil.which("ip") is None:
            raise EnvironmentProblem("'ip' (iproute2) is not installed: apt-get install iproute2")
        self.client = connect()
        if not images.exists(self.client, self.image):
            raise EnvironmentProblem(f"the lab image {self.image} is missing: build it with `lab images` "
                                     "(or `inv images`)")
        for image in sorted({n.image for n in plan.nodes if n.image}):
            if not images.exists(self.client, image):
                raise EnvironmentProblem(f"image {image!r} (from a node's `image:`) is missing: "
                                         f"docker build or docker load it first")

    # -- topology ----------------------------------------------------------------------------
    def up(self, plan: Plan, rundir: RunDir) -> None:
        """Create the fabric, then bring containers up in the background, in start order.

        Containers are the slow part (the engine starts about ten per second here), so the lab
        does not wait for all of them: each is wired as soon as it runs, and a node the lab has
        already asked to start goes at once. A server is up and answering while the last clients'
        containers are still being created.
        """
        self.rundir = rundir
        self.boxes = {n.name: _Box(n, container_name(self.journal.lab_id, n.name)) for n in plan.nodes}
        self.journal.record_many(CONTAINER, [b.name for b in self.boxes.values()])
        self.fabric.create_bridges(plan)
        self.pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="lab-docker")
        for name in start_order(plan):
            box = self.boxes[name]
            box.future = self.pool.submit(self._bring_up, plan, box)

    def _bring_up(self, plan: Plan, box: _Box) -> None:
        if self.closing:
            return
        self._create(plan, box)
        self.fabric.join(plan, box.node, box.pid)
        box.pidfd = os.pidfd_open(box.pid)
        self.joined.put(box)

    def _create(self, plan: Plan, box: _Box) -> None:
        node = box.node
        ctl = self.journal.folder / "ctl" / node.name
        ctl.mkdir(parents=True, exist_ok=True)
        (ctl / "spec.json").write_text(json.dumps(self._spec(node)))
        if node.runs_something:  # held open read-write by the lab: the agent blocks on it until "go"
            os.mkfifo(ctl / "go", 0o600)
            box.go = os.open(ctl / "go", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.rundir is not None
        volumes = {str(self.rundir.root / "nodes"): {"bind": "/lab/out", "mode": "rw"},
                   str(ctl): {"bind": "/lab/ctl", "mode": "ro"}}
        if node.cwd:
            volumes[str(node.cwd)] = {"bind": "/lab/files", "mode": "rw"}
        if node.image:  # a user's image: run the agent from the host's copy of the role programs
            volumes[str(Path(lab.__file__).parent)] = {"bind": "/opt/lab/lab", "mode": "ro"}
        extra, env, limits = agent_container(self.journal.lab_id, node)
        api = self.client.api
        try:
            host = api.create_host_config(
                network_mode="none", cap_drop=["ALL"], cap_add=["NET_BIND_SERVICE"],
                security_opt=["no-new-privileges"], binds=volumes, ulimits=limits,
                extra_hosts={n.name: str(address_for(node, n)) for n in plan.nodes})
            box.id = api.create_container(
                node.image or self.image, name=box.name, hostname=node.name, environment=env,
                labels={LABEL_ID: self.journal.lab_id, "lab.node": node.name, "lab.scenario": plan.name},
                working_dir="/lab/files" if node.cwd else "/", host_config=host, **extra)["Id"]
            api.start(box.id)
            box.pid = int(api.inspect_container(box.id)["State"]["Pid"])
        except Exception as e:  # noqa: BLE001 - the SDK's errors are reported as the lab's
            raise api_error(f"start container for {node.name}", e) from None
        if not box.pid:
            raise BackendError(f"container for {node.name} exited at once: {self._logs(box)[-300:]!r}")

    def _spec(self, node: NodePlan) -> dict[str, Any]:
        out = "/lab/out"
        return {"go": "/lab/ctl/go", "facts": f"{out}/{node.name}.{{fact}}", "exit": f"{out}/{node.name}.exit",
                **agent_spec(node)}

    # -- processes ---------------------------------------------------------------------------
    def start(self, node: NodePlan) -> bool:
        """Nodes asked to start together go together, once all their containers are wired.

        So clients released by the same server's readiness run at the same moment, as on the netns
        backend, however long the engine takes to create their containers.
        """
        self.boxes[node.name].go_asked = True
        return False

    def _release(self) -> list[Event]:
        asked = [b for b in self.boxes.values() if b.go_asked and not b.launched]
        if not asked or not all(b.wired for b in asked):
            return []
        for b in asked:
            if b.go >= 0:
                os.write(b.go, b"go\n")
            b.launched = True
        return [Event(b.node.name, LAUNCHED) for b in asked]

    def poll(self, timeout: float) -> list[Event]:
        pending, self.pending = self.pending, []
        return pending + self._observe(0 if pending else timeout)

    def _observe(self, timeout: float) -> list[Event]:
        assert self.rundir is not None
        self._register_joined()
        self._raise_failed()
        launched = self._release()
        waiting = [b for b in self.boxes.values()
                   if b.wired and not b.ready and not b.exited and b.node.runs_something]
        events: list[Event] = launched
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

    def _register_joined(self) -> None:
        """Watch the containers wired since the last look (registered here, in the main thread)."""
        while True:
            try:
                box = self.joined.get_nowait()
            except queue.Empty:
                return
            self.selector.register(box.pidfd, selectors.EVENT_READ, box.node.name)
            box.wired = True

    def _raise_failed(self) -> None:
        for b in self.boxes.values():
            if b.future is not None and b.future.done() and b.future.exception() is not None:
                error = b.future.exception()
                if isinstance(error, BackendError):
                    raise error
                raise api_error(f"start {b.name}", Exception(str(error)))

    def _is_ready(self, b: _Box) -> bool:
        assert self.rundir is not None
        if b.node.ready.kind == ANNOUNCE:
            return self._fact(b, "ready")
        if b.node.ready.kind == TCP:
            return b.node.ready.port in listening_tcp_ports(b.pid)
        return False

    def _fact(self, b: _Box, fact: str) -> bool:
        """Whether the node's role told this fact (a file it wrote in the shared folder; consumed)."""
        assert self.rundir is not None
        flag = self.rundir.root / "nodes" / f"{b.node.name}.{fact}"
        try:
            flag.unlink()
        except FileNotFoundError:
            return False
        return True

    def release(self, nodes: list[str]) -> None:
        for name in nodes:
            b = self.boxes.get(name)
            if b is not None and b.go >= 0 and not b.exited:
                os.write(b.go, b"release\n")  # the go FIFO: the agent handed it to the role

    def _reap(self, boxes: list[_Box]) -> list[Event]:
        """Exit codes of containers whose init process is gone (asked of the engine in parallel)."""
        for b in boxes:
            self.selector.unregister(b.pidfd)
            os.close(b.pidfd)
            b.pidfd, b.exited = -1, True

        asked = [b for b in boxes if not self._exit_file(b)]
        if asked:  # the agent was killed before it could say, or never ran: ask the engine
            with ThreadPoolExecutor(WORKERS) as pool:
                list(pool.map(self._inspect_code, asked))
            if not self.closing:  # its own output goes into the log now: it is the evidence
                for b in asked:
                    self._collect_log(b)
        return [Event(b.node.name, EXITED, b.code) for b in boxes]

    def _exit_file(self, b: _Box) -> bool:
        assert self.rundir is not None
        path = self.rundir.root / "nodes" / f"{b.node.name}.exit"
        try:
            b.code = int(path.read_text().strip())
        except (OSError, ValueError):
            return False
        path.unlink()
        return True

    def _inspect_code(self, b: _Box) -> None:
        try:
            b.code = int(self.client.api.inspect_container(b.id)["State"]["ExitCode"])
        except Exception:  # noqa: BLE001 - an unknown code is reported as such
            b.code = None

    def stop(self, nodes: list[str], grace: float) -> dict[str, int | None]:
        running = [self.boxes[n] for n in nodes if n in self.boxes and not self.boxes[n].exited and self.boxes[n].id]

        def halt(b: _Box) -> None:
            try:
                self.client.api.stop(b.id, timeout=max(1, round(grace)))
            except Exception:  # noqa: BLE001 - gone already; removal follows anyway
                pass

        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(halt, running))
        self.pending += [e for e in self._observe(0) if e.node not in nodes]
        self._reap([b for b in running if not b.exited and b.pidfd >= 0 and b.wired])
        return {n: self.boxes[n].code for n in nodes if n in self.boxes}

    def placements(self) -> dict[str, Placement]:
        return {}  # every node runs on this machine

    def exit_code(self, node: str) -> int | None:
        b = self.boxes.get(node)
        return b.code if b else None

    # -- teardown ----------------------------------------------------------------------------
    def down(self) -> None:
        self.closing = True
        if self.pool is not None:  # let in-flight creations finish (each API call is bounded)
            self.pool.shutdown(wait=True, cancel_futures=True)
        self._register_joined()
        try:
            if self.client is not None:
                self.stop([n for n, b in self.boxes.items() if b.node.runs_something], grace=1.0)
                self._collect_logs()
        finally:
            self.selector.close()
            for b in self.boxes.values():
                if b.go >= 0:
                    os.close(b.go)
                    b.go = -1
            _remove_containers(self.client, self.journal)
            self.fabric.remove()
            self.journal.close()
            if self.client is not None:
                self.client.close()

    def _collect_logs(self) -> None:
        """What containers printed before their agent took over their output (or instead of it)."""
        for b in self.boxes.values():
            if b.id and not b.log_collected:
                self._collect_log(b)

    def _collect_log(self, b: _Box) -> None:
        if self.rundir is None:
            return
        b.log_collected = True
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

    @classmethod
    def clean(cls, journal: Journal) -> list[str]:
        try:
            client = connect()
        except EnvironmentProblem:
            client = None
        try:
            removed = _remove_containers(client, journal)
            removed += remove_namespaces(journal_namespaces(journal), kill=True, journal=journal)
            journal.close()
        finally:
            if client is not None:
                client.close()
        return removed


def _remove_containers(client: Any, journal: Journal) -> list[str]:
    """Remove every container labelled with this lab's id (the label is the mark, not the name)."""
    if client is None:
        return []
    try:
        found = client.api.containers(all=True, filters={"label": f"{LABEL_ID}={journal.lab_id}"})
    except Exception as e:  # noqa: BLE001
        raise api_error("list the lab's containers", e) from None

    def remove(c: dict[str, Any]) -> str:
        try:
            client.api.remove_container(c["Id"], force=True, v=True)
        except Exception:  # noqa: BLE001 - already being removed
            pass
        names: list[str] = c.get("Names") or [c["Id"][:12]]
        return names[0].lstrip("/")

    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(remove, found))


def agent_spec(node: NodePlan, out: str = "/lab/out") -> dict[str, Any]:
    """The agent's spec keys every container backend shares: where the node's log and transcript
    go, its folder, and what it runs (a role, a program with its scripted input, or nothing)."""
    spec: dict[str, Any] = {"log": f"{out}/{node.name}.log", "transcript": f"{out}/{node.name}.jsonl",
                            "cwd": "/lab/files" if node.cwd else "/"}
    if node.role:
        spec.update(role=node.role, params=node.params)
    elif node.argv:
        spec.update(argv=list(node.argv))
        if node.stdin is not None:
            spec.update(stdin=[list(step) for step in node.stdin])
    else:
        spec.update(idle=True)
    return spec


def agent_container(lab_id: str, node: NodePlan) -> tuple[dict[str, Any], dict[str, str], list[Any]]:
    """(extra create arguments, environment, ulimits) of a node's container, on any engine: the
    agent is the entry point of a user's image too, and programs get the output limit."""
    extra: dict[str, Any] = {"entrypoint": ["python3", "-S", "-m", "lab.roles.agent"]} if node.image else {}
    env = {"LAB_NODE": node.name, "LAB_ID": lab_id, "LAB_SPEC": "/lab/ctl/spec.json",
           "PYTHONPATH": "/opt/lab", "PYTHONUNBUFFERED": "1", **node.env}
    limits = [docker.types.Ulimit(name="fsize", soft=MAX_OUTPUT, hard=MAX_OUTPUT)] if node.argv else []
    return extra, env, limits


def container_name(lab_id: str, node: str) -> str:
    """The container of a lab's node (its `lab.id` label, not this name, marks it as the lab's)."""
    return f"lab-{lab_id}-{node}"
