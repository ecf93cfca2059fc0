"""What every container backend shares: a node is a container whose agent (lab/roles/agent.py)
waits for "go", then becomes the node's role or program.

`ContainerBackend` runs one state machine per node, whatever carries the agent's words (a FIFO
and files in a folder shared with this machine, or the container's attach stream):

    created in the background, in start order -> wired (watched) -> asked to start
    -> launched ("go", with the others asked at the same moment) -> ready -> [answered -> released]
    -> ended (exit code: the agent's word, else the engine's) -> evidence collected -> removed

A subclass (the abstract methods below) says how a node's container is brought up (`_bring_up`),
watched (`_watched`, `_wait`, `_unwatch`) and spoken to (`_send`); which engine holds it
(`_engine`, `_exit_status`, `_lost`); what a node leaves (`_evidence`, `_collect`) and what the
teardown removes (`_remove`). Every container carries the lab's labels; teardown and `lab clean`
remove by the `lab.id` label only, never by name.
"""

from __future__ import annotations

import math
import selectors
import sys
import time
from abc import ABC, abstractmethod
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from lab.backends import EXITED, LAUNCHED, Command, Event, NodeRef, Options, limit_reached
from lab.backends.containers import images
from lab.backends.containers.engine import api_error
from lab.backends.files import TMP_SIZE, Survey, survey
from lab.errors import BackendError, UnknownLab
from lab.journal import Journal
from lab.plan import NodePlan, Plan, address_for, start_order
from lab.roles.catalogue import ROLES
from lab.rundir import MAX_OUTPUT, RunDir

WORKERS = 16  # concurrent API calls (the engine serialises some work; more does not help)
STOP_WAIT = 5.0  # seconds a stopped container's end is waited for before it is taken as ended
CONTAINER = "container"  # journal kind
LABEL_ID, LABEL_NODE, LABEL_SCENARIO, LABEL_NETWORK = "lab.id", "lab.node", "lab.scenario", "lab.network"
ENGINE_WORD = 5.0  # s an engine may take to see a container end that the lab already saw
OUT = "/lab/out"  # the node's log and transcript, inside its container
FILES = "/lab/files"  # the node's own copy of its `files:` (a tmpfs the agent fills)
SOURCE = "/lab/source"  # the original `files:`, read-only, where the engine can bind it (docker)


def container_name(lab_id: str, node: str) -> str:
    """The container of a lab's node (its `lab.id` label, not this name, marks it as the lab's)."""
    return f"lab-{lab_id}-{node}"


def lab_filter(lab_id: str) -> dict[str, str]:
    """The engine's filter for everything of a lab."""
    return {"label": f"{LABEL_ID}={lab_id}"}


def agent_spec(node: NodePlan) -> dict[str, Any]:
    """The agent's spec keys every container backend shares: where the node's log and transcript
    go, its folder, and what it runs (a role, a program with its scripted input, or nothing)."""
    spec: dict[str, Any] = {"log": f"{OUT}/{node.name}.log", "transcript": f"{OUT}/{node.name}.jsonl",
                            "cwd": FILES if node.cwd else "/", "source": SOURCE}
    if node.role:  # (its module too: the agent then imports no catalogue)
        spec.update(role=node.role, module=ROLES[node.role].module, params=node.params)
    elif node.argv:
        spec.update(argv=list(node.argv))
        if node.stdin is not None:
            spec.update(stdin=[list(step) for step in node.stdin])
    else:
        spec.update(idle=True)
    return spec


def remove_containers(client: Any, lab_id: str) -> list[str]:
    """Remove every container labelled with this lab's id from one engine; their names. Listing
    them raises the SDK's error (the caller says what it was doing)."""
    found = client.api.containers(all=True, filters=lab_filter(lab_id))

    def remove(c: dict[str, Any]) -> str:
        try:
            client.api.remove_container(c["Id"], force=True, v=True)
        except Exception:  # noqa: BLE001 - already being removed
            pass
        names: list[str] = c.get("Names") or [c["Id"][:12]]
        return names[0].lstrip("/")

    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(remove, found))


@dataclass
class Box:
    """One node's container, and where it is in the state machine."""

    node: NodePlan
    name: str
    id: str = ""
    future: Future[None] | None = None  # its creation, in the background
    wired: bool = False  # created, started, watched
    go_asked: bool = False  # the lab asked to start it
    launched: bool = False  # told to go
    ready: bool = False
    told: int | None = None  # the exit code the agent reported
    exited: bool = False
    code: int | None = None
    collected: bool = False  # its evidence is in the run folder


B = TypeVar("B", bound=Box)


class ContainerBackend(ABC, Generic[B]):
    name: str

    def __init__(self, journal: Journal, options: Options | None = None) -> None:
        self.journal = journal
        self.image = images.node_tag()
        self.boxes: dict[str, B] = {}
        self.rundir: RunDir | None = None
        self.selector = selectors.DefaultSelector()
        self.pool: ThreadPoolExecutor | None = None
        self.pending: list[Event] = []  # observed while stopping other nodes, handed out by the next poll
        self.closing = False
        self.uids: dict[str, int] = {}  # node -> the uid its processes run as (uids.py)
        self.surveys: dict[Path, Survey] = {}  # a node folder's size and the run folders inside it
        self.creating: list[B] = []  # boxes whose creation is in flight or not yet looked at
        self.failed: list[B] = []  # boxes whose creation failed

    # -- what a subclass says ----------------------------------------------------------------
    @abstractmethod
    def _bring_up(self, plan: Plan, box: B) -> None:
        """Create and start the node's container (in a worker thread)."""

    @abstractmethod
    def _watched(self, box: B) -> Any:
        """What the selector watches for the node (its end, and on some engines its words); None:
        its creation was skipped at teardown."""

    @abstractmethod
    def _wait(self, timeout: float) -> list[Event]:
        """The nodes' readiness, answers and ends, waiting at most `timeout` seconds."""

    @abstractmethod
    def _send(self, box: B, data: bytes) -> None:
        """A line to the node's agent ("go", then "release" for the role); OSError if it cannot."""

    @abstractmethod
    def _unwatch(self, box: B) -> None:
        """The node's container ended (or is taken as ended): stop watching it; keep its agent's last word."""

    @abstractmethod
    def _evidence(self, ended: list[B], unspoken: list[B]) -> None:
        """Collect what nodes that ended during the run left, now or in the background (`unspoken`:
        their agent never said its exit code, so what their container printed is the evidence)."""

    @abstractmethod
    def _exit_status(self, box: B) -> int:
        """The exit code of the node's ended container, as its engine says."""

    @abstractmethod
    def _collect(self, box: B) -> None:
        """Put what the node left (its log, and what its container printed) into the run folder, once."""

    @abstractmethod
    def _remove(self) -> None:
        """Remove the lab (by label) and close everything; the journal is closed once it is gone."""

    @abstractmethod
    def _engine(self, box: B) -> Any:
        """The client of the engine holding the node's container (None: its host is gone)."""

    def _lost(self, box: B) -> BackendError | None:
        """The error naming the node's host, when the host is gone (then nothing else is the cause)."""
        return None

    # -- environment and topology ------------------------------------------------------------
    @classmethod
    def prepare(cls) -> None:
        images.build()

    def _container(self, plan: Plan, node: NodePlan, caps: tuple[str, ...] = (), as_root: bool = False
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(container settings, host settings) of a node's container, on any engine: its image,
        name, environment, labels and folder (the agent is the entry point of a user's image too);
        least privilege, the output limit for programs, and the other nodes' names.

        The node runs as its own uid (`--user`), with no capability, a read-only root file system
        and a private /tmp. `as_root` (swarm: its files arrive in the container's own layer, and a
        node with routes sets them from inside): the agent starts as root with `caps` and only what
        it needs to become the node's uid itself (SETUID, SETGID, CHOWN), which it does before
        anything of the node runs; the engine then cannot take the archive into a read-only root."""
        import docker.types

        node_image = {"entrypoint": ["python3", "-S", "-m", "lab.roles.agent"]} if node.image else {}
        env = {"LAB_NODE": node.name, "LAB_ID": self.journal.lab_id, "LAB_SPEC": "/lab/ctl/spec.json",
               "PYTHONPATH": "/opt/lab", "PYTHONUNBUFFERED": "1", "HOME": FILES if node.cwd else "/tmp",
               "USER": node.name, "LOGNAME": node.name, **node.env}  # (a uid with no account: as on netns)
        labels = {LABEL_ID: self.journal.lab_id, LABEL_NODE: node.name, LABEL_SCENARIO: plan.name}
        container: dict[str, Any] = {"image": node.image or self.image, "hostname": node.name, "environment": env,
                                     "labels": labels, "working_dir": FILES if node.cwd else "/", **node_image}
        limits = [docker.types.Ulimit(name="nofile", soft=node.limits.files, hard=node.limits.files)]
        if node.limits.cpu is not None:
            cpu = math.ceil(node.limits.cpu)
            limits.append(docker.types.Ulimit(name="cpu", soft=cpu, hard=cpu + 1))  # SIGXCPU, not SIGKILL
        if node.argv:
            limits.append(docker.types.Ulimit(name="fsize", soft=MAX_OUTPUT, hard=MAX_OUTPUT))
        uid = self.uids[node.name]
        if not as_root:
            container["user"] = f"{uid}:{uid}"
        tmpfs = {"/tmp": f"size={TMP_SIZE},mode=1777"}
        if node.cwd is not None:
            owner = "" if as_root else f",uid={uid},gid={uid}"  # (as root: the agent fills it, then hands it over)
            tmpfs[FILES] = f"size={self._survey(node.cwd).size + TMP_SIZE},mode=0755{owner}"
        host: dict[str, Any] = {"cap_drop": ["ALL"], "cap_add": ["SETUID", "SETGID", "CHOWN", *caps] if as_root else [],
                                "read_only": not as_root, "tmpfs": tmpfs,
                                "security_opt": ["no-new-privileges"], "ulimits": limits,
                                "mem_limit": node.limits.memory, "memswap_limit": node.limits.memory,
                                "pids_limit": node.limits.processes,
                                "extra_hosts": {n.name: str(address_for(node, n)) for n in plan.nodes}}
        return container, host

    def _survey(self, folder: Path) -> Survey:
        """Once per folder, however many nodes share it (called from the creating threads: a race
        only surveys a folder twice)."""
        if folder not in self.surveys:
            self.surveys[folder] = survey(folder)
        return self.surveys[folder]

    def _agent_spec(self, node: NodePlan) -> dict[str, Any]:
        """`agent_spec`, and the lab's run folders inside the node's files, which its copy leaves out."""
        spec = agent_spec(node)
        if node.cwd is not None:
            spec["skip"] = list(self._survey(node.cwd).outputs)
        return spec

    def _launch(self, plan: Plan) -> None:
        """Bring the containers up in the background, in start order.

        Containers are the slow part (an engine starts about ten per second), so the lab does not
        wait for all of them: a node the lab has asked to start goes once its container is wired.
        A server is up and answering while the last clients' containers are still being created."""
        self.journal.record_many(CONTAINER, [b.name for b in self.boxes.values()])
        self.pool = ThreadPoolExecutor(WORKERS, thread_name_prefix=f"lab-{self.name}")
        for name in start_order(plan):
            box = self.boxes[name]
            box.future = self.pool.submit(self._create, plan, box)
            self.creating.append(box)

    def _create(self, plan: Plan, box: B) -> None:
        if not self.closing:
            self._bring_up(plan, box)

    # -- processes ---------------------------------------------------------------------------
    def start(self, node: NodePlan) -> bool:
        """Nodes asked to start together go together, once all their containers are wired.

        So clients released by the same server's readiness run at the same moment, as on the netns
        backend, however long the engine takes to create their containers.
        """
        box = self.boxes[node.name]
        if box.exited:  # the timeline restarts it
            box = self._renew(box)
        box.go_asked = True
        return False

    def _renew(self, box: B) -> B:
        """A new container for a node whose first one ended (the timeline's `restart`), being created."""
        raise BackendError(f"the {self.name} backend cannot restart {box.node.name}")

    def poll(self, timeout: float) -> list[Event]:
        pending, self.pending = self.pending, []
        return pending + self._observe(0 if pending else timeout)

    def _observe(self, timeout: float) -> list[Event]:
        self._watch_new()
        self._raise_failed()
        launched = self._release()
        return launched + self._wait(0 if launched else timeout)

    def _watch_new(self) -> None:
        """Watch the containers wired since the last look (registered here, in the main thread); a
        container that could not be brought up fails the run (its host's loss, if that is why).
        Only the creations still in flight are looked at (this runs at every poll)."""
        for b, future in [(b, b.future) for b in self.creating if b.future is not None and b.future.done()]:
            self.creating.remove(b)
            error = None if future.cancelled() else future.exception()
            if error is not None:
                self.failed.append(b)
            elif (watched := self._watched(b)) is not None:
                self.selector.register(watched, selectors.EVENT_READ, b.node.name)
                b.wired = True

    def _raise_failed(self) -> None:
        for b in self.failed:
            error = b.future.exception() if b.future is not None else None
            lost = self._lost(b)
            if lost is not None:
                raise lost
            raise error if isinstance(error, BackendError) else api_error(f"start {b.name}", Exception(error))

    def _release(self) -> list[Event]:
        asked = [b for b in self.boxes.values() if b.go_asked and not b.launched]
        if not asked or not all(b.wired for b in asked):
            return []
        for b in asked:
            if b.node.runs_something and not b.exited:
                try:
                    self._send(b, b"go\n")
                except OSError as e:
                    raise self._lost(b) or BackendError(f"start {b.node.name}: {e}") from None
            b.launched = True
        return [Event(b.node.name, LAUNCHED) for b in asked]

    def release(self, nodes: list[str]) -> None:
        for name in nodes:
            b = self.boxes.get(name)
            if b is not None and not b.exited:
                try:
                    self._send(b, b"release\n")  # the agent handed its control line to the role
                except OSError:  # its host is gone: the host probe says so
                    pass

    def stop(self, nodes: list[str], grace: float) -> dict[str, int | None]:
        """SIGTERM, `grace` s, SIGKILL. Where the lab can signal a node itself (`_terminate`), it does
        and watches the node end; only a node still running after the grace costs an engine call."""
        self._watch_new()
        running = [b for b in map(self.boxes.get, nodes)
                   if b is not None and b.id and not b.exited and self._engine(b) is not None]
        signalled = [b for b in running if grace > 0 and self._terminate(b)]  # no grace: SIGKILL at once
        self._await_ends(signalled, grace, nodes)
        rest = [b for b in running if not b.exited]
        asked = {b.node.name for b in signalled}

        def halt(b: B) -> None:
            try:
                if b.node.name in asked or grace <= 0:  # SIGTERM did not do it, or no grace: SIGKILL
                    self._engine(b).api.kill(b.id)
                else:
                    self._engine(b).api.stop(b.id, timeout=max(1, round(grace)))
            except Exception:  # noqa: BLE001 - gone already; removal follows anyway
                pass

        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(halt, rest))
        self._await_ends(rest, STOP_WAIT, nodes)
        self._reap([b for b in rest if b.wired and not b.exited])
        return {n: self.boxes[n].code for n in nodes if n in self.boxes}

    def _terminate(self, box: B) -> bool:
        """Send SIGTERM to the node's agent without waiting for its end (watched on its channel);
        False: only the engine's `stop` can."""
        return False

    def _await_ends(self, boxes: list[B], seconds: float, stopping: list[str]) -> None:
        """Watch these nodes end, for at most `seconds`; what other nodes did meanwhile is kept for
        the next poll (the stopped nodes' own ends are the caller's)."""
        deadline = time.monotonic() + seconds
        while any(b.wired and not b.exited for b in boxes) and time.monotonic() < deadline:
            self.pending += [e for e in self._wait(min(0.1, max(0.0, deadline - time.monotonic())))
                             if e.node not in stopping]

    def _reap(self, boxes: list[B]) -> list[Event]:
        """These nodes' containers ended (or are taken as ended): each one's exit code is its agent's
        word, else its engine's (asked in parallel; unknown: None); their evidence is collected."""
        for b in boxes:
            self._unwatch(b)
            b.exited = True
        unspoken = [b for b in boxes if b.told is None]  # killed before it could say, or never ran
        for b in unspoken if not self.closing else []:
            lost = self._lost(b)
            if lost is not None:
                raise lost  # its words ended because its host did
        if unspoken:
            with ThreadPoolExecutor(WORKERS) as pool:
                list(pool.map(self._ask_code, unspoken))
        for b in boxes:
            if b.told is not None:
                b.code = b.told
        if self.pool is not None:  # (at teardown, `down` collects every node)
            self._evidence(boxes, unspoken)
        return [Event(b.node.name, EXITED, b.code, limit_reached(b.node, b.code, self._oom_killed(b)))
                for b in boxes]

    def _oom_killed(self, box: B) -> bool:
        """Whether the kernel killed a process of the node's container for its memory limit (asked
        only of a node killed by SIGKILL: the engine's flag is set by any of its processes).

        The engine learns of the kill and of the container's end by separate events; the kill comes
        first, so once the engine has seen the container end, its flag is final (bounded wait)."""
        if box.code != 137 or not box.id:
            return False
        deadline = time.monotonic() + ENGINE_WORD
        try:
            while True:
                state = self._engine(box).api.inspect_container(box.id)["State"]
                if state.get("OOMKilled") or not state.get("Running") or time.monotonic() > deadline:
                    return bool(state.get("OOMKilled"))
                time.sleep(0.02)
        except Exception:  # noqa: BLE001 - no word from the engine: no cause claimed
            return False

    def _ask_code(self, box: B) -> None:
        try:
            box.code = self._exit_status(box)
        except Exception:  # noqa: BLE001 - an unknown code is reported as such
            box.code = None

    def changes_process(self) -> bool:
        return False  # the engine's processes are apart already

    def floor(self, plan: Plan) -> bool:
        return False

    def notes(self) -> list[str]:
        return []  # the engine enforces every limit

    def exit_code(self, node: str) -> int | None:
        b = self.boxes.get(node)
        return b.code if b else None

    # -- teardown ----------------------------------------------------------------------------
    def down(self) -> None:
        self.closing = True
        try:
            if self.pool is not None:  # let in-flight creations finish (each API call is bounded)
                self.pool.shutdown(wait=True, cancel_futures=True)
                self.pool = None
            self._watch_new()
            self.stop([n for n, b in self.boxes.items() if b.node.runs_something], grace=1.0)
            with ThreadPoolExecutor(WORKERS) as pool:
                list(pool.map(self._collect, [b for b in self.boxes.values() if b.id]))
        finally:
            self.selector.close()
            self._remove()


def exec_command(engine: list[str], lab_id: str, node: NodeRef, argv: list[str], interactive: bool) -> Command:
    """`docker [ENGINE] exec` into a running node's container (`engine`: options reaching its host),
    in its files' folder; a terminal only for an interactive shell on a terminal."""
    if node.exited:
        raise UnknownLab(f"node {node.name!r} of lab {lab_id} has finished: exec and shell work in running nodes")
    tty = ["-it"] if interactive and sys.stdin.isatty() else ["-i"]
    return Command(["docker", *engine, "exec", *tty, "-w", FILES if node.cwd else "/",
                    container_name(lab_id, node.name), *argv])
