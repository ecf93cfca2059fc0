"""Backends: where a lab's hosts live. Each implements the `Backend` protocol, and nothing outside
this package asks which backend it holds.

Two wings on this one seam:
- `lab.backends.netns`: every node a network namespace of this machine (`fabric.py` wires them,
  `linux.py` holds the system calls);
- `lab.backends.containers`: every node a container (`base.py` is what docker and swarm share).

A new backend is one class implementing `Backend` and one entry in `BACKENDS`; a backend is
imported only when used, so that the netns backend never needs the Docker SDK.
"""

from __future__ import annotations

import importlib
import locale
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from lab.errors import UsageError, did_you_mean
from lab.journal import Journal
from lab.plan import NodePlan, Plan, StepPlan
from lab.rundir import RunDir

READY, EXITED, LAUNCHED, ANSWERED = "ready", "exited", "launched", "answered"
@dataclass(frozen=True)
class Event:
    """Something a backend observed about a node: it became ready, or its program exited."""

    node: str
    kind: str  # READY | EXITED | LAUNCHED (a deferred start happened) | ANSWERED (a synced client)
    code: int | None = None  # exit code; negative: killed by that signal
    cause: str = ""  # EXITED: what the lab knows of why, when the node cannot say (a limit it reached)


@dataclass(frozen=True)
class Options:
    """What a backend may need beyond the plan: the cluster file (swarm); folders no node may see
    beyond the scenario's and the run's (grading hides its batch: the submissions, the other runs)."""

    cluster: Path | None = None
    hidden: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Placement:
    """Where a node ran: its host, and that host's clock against the lab's (for `concurrent`)."""

    host: str
    endpoint: str
    clock_offset: float = 0.0  # seconds: host clock - lab clock
    uncertainty: float = 0.0  # seconds (half the round trip of the best measurement)


@dataclass(frozen=True)
class NodeRef:
    """A node of a running lab, as its journal and run folder tell it: what `exec` needs."""

    name: str
    cwd: str | None  # the node's files (`files:`) on this machine, when it has some
    exited: bool  # its role or program has finished


@dataclass(frozen=True)
class Command:
    """How this machine runs a program inside a node: an argv that enters the node itself (`docker
    exec ...`, `python -m lab.backends.enter ...`) and its environment (None: this process's).
    Started by `run_in`, the one place that runs it, with nothing run between fork and exec."""

    argv: list[str]
    env: dict[str, str] | None = None


def limit_reached(node: NodePlan, code: int | None, oom_killed: bool) -> str:
    """Why a node was killed, when a limit did it (its own output cannot say): SIGKILL by the
    memory limit (the kernel's word), SIGXCPU at its CPU time."""
    if code == 128 + signal.SIGKILL and oom_killed:
        return f"killed: memory limit {node.limits.memory // 2**20} MiB reached"
    if code == 128 + signal.SIGXCPU:
        return f"killed: CPU time limit {node.limits.cpu:g}s reached"
    return ""


class Backend(Protocol):
    """A run, on an instance made with (journal, options): check, up, start / poll / release, stop,
    exit_code, down, placements. A lab known by its journal alone (running, kept or dead), on the
    class: prepare, check_kept, command (for exec and shell, run by `run_in`), clean."""

    name: str

    def __init__(self, journal: Journal, options: Options | None = None) -> None:
        """Nothing is created yet: the lab's resources are recorded in `journal` as they are."""

    def check(self, plan: Plan) -> None:
        """Raise EnvironmentProblem if this machine cannot run the plan (before creating anything)."""

    def up(self, plan: Plan, rundir: RunDir) -> None:
        """Create every host, network, address and route of the plan."""

    def start(self, node: NodePlan) -> bool:
        """Start the node's role or program; returns at once (readiness comes as an Event).

        False means the node's host is still being created: it starts as soon as it exists, and a
        LAUNCHED event says when (readiness is timed from then)."""

    def poll(self, timeout: float) -> list[Event]:
        """Wait at most `timeout` seconds for events; return those observed."""

    def release(self, nodes: list[str]) -> None:
        """Say the word to synced clients (`NodePlan.synced`): those that reported ANSWERED go on
        (every client of their group was answered or is gone, or the lab's patience ran out); those
        still waiting for their reply count their timeout afresh. A node that already ended is skipped."""

    def stop(self, nodes: list[str], grace: float) -> dict[str, int | None]:
        """Stop the nodes' programs (SIGTERM, SIGKILL after `grace` s); returns their exit codes.
        A stopped node may be started again (`start`: the timeline's `restart`), in the same host."""

    def disturb(self, step: StepPlan) -> None:
        """Apply one step of the fault timeline that is not a stop: a link down or up, a shape, a
        partition or its heal, a pause or resume of a node's processes (lab/backends/faults.py).
        `check` has refused a plan whose timeline this backend cannot apply, located."""

    def exit_code(self, node: str) -> int | None:
        """The node's exit code, once it has exited (None: unknown or still running)."""

    def down(self) -> None:
        """Remove everything the lab created. Idempotent; safe after a partial `up`."""

    def placements(self) -> dict[str, Placement]:
        """Node -> where it ran; empty when every node ran on this machine."""

    def changes_process(self) -> bool:
        """Whether `up` changes the process it runs in (a lab without root makes it root of a user
        namespace), after `check`: the run then happens in a child process (lab/forked.py)."""

    def floor(self, plan: Plan) -> bool:
        """What `lab bench` measures the lab's own work above: the plan's hosts created and started
        doing nothing, with the lab's options, then removed, recorded in the journal as a lab's.
        False: this backend has no engine whose floor is worth measuring (its hosts are the lab's)."""

    def notes(self) -> list[str]:
        """What the run must say about how this machine runs the lab, after `check` (e.g. which
        limits it cannot enforce there); one line each."""

    @classmethod
    def prepare(cls) -> None:
        """Make this machine ready for runs ahead of time (build the node image); may print progress."""

    @classmethod
    def check_kept(cls) -> None:
        """Raise EnvironmentProblem if a lab on this backend cannot be kept running (`lab up`) and
        entered (`lab exec`, `lab shell`); before anything exists."""

    @classmethod
    def command(cls, journal: Journal, node: NodeRef, argv: list[str], interactive: bool) -> Command:
        """How to run `argv` inside a node of the running lab of `journal` (`interactive`: a shell,
        on a terminal when there is one). Raise UnknownLab when the node cannot be entered (saying why)."""

    @classmethod
    def clean(cls, journal: Journal) -> list[str]:
        """Remove what a (dead) lab left behind, from its journal alone; returns what was removed."""


BACKENDS: dict[str, str] = {
    "netns": "lab.backends.netns:NetnsBackend",
    "docker": "lab.backends.containers.docker:DockerBackend",
    "swarm": "lab.backends.containers.swarm:SwarmBackend",
}
DEFAULT = "netns"


def load(name: str) -> type[Backend]:
    """The backend class called `name` (its module imported now)."""
    try:
        module, _, cls = BACKENDS[name].partition(":")
    except KeyError:
        raise UsageError(f"unknown backend {name!r}{did_you_mean(name, list(BACKENDS))}; the backends: "
                         f"{', '.join(BACKENDS)}") from None
    kind: type[Backend] = getattr(importlib.import_module(module), cls)
    return kind


def create(name: str, journal: Journal, options: Options | None = None) -> Backend:
    return load(name)(journal, options or Options())


def of(journal: Journal) -> type[Backend]:
    """The backend class of the lab that `journal` records (labs from before backends: netns)."""
    name = str(journal.meta().get("backend", DEFAULT))
    return load(name if name in BACKENDS else DEFAULT)


def clean(journal: Journal) -> list[str]:
    """Remove what a (dead) lab left behind, from its journal alone; returns what was removed."""
    return of(journal).clean(journal)


class ExecResult(subprocess.CompletedProcess[str]):
    """A command's result inside a node: `stdout`/`stderr` as text, as a text-mode pipe reads them
    (line ends made `\n`), and `stdout_bytes`/`stderr_bytes` exactly as the command wrote them
    (a `\r\n` stays `\r\n`). None when not captured."""

    def __init__(self, args: list[str], returncode: int, out: bytes | None, err: bytes | None):
        super().__init__(args, returncode, _text(out), _text(err))
        self.stdout_bytes, self.stderr_bytes = out, err


def _text(data: bytes | None) -> str | None:
    if data is None:
        return None
    text = data.decode(locale.getpreferredencoding(False), errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def run_in(journal: Journal, node: NodeRef, argv: list[str], *, interactive: bool = False,
           capture: bool = False, input: str | None = None, timeout: float | None = None) -> ExecResult:
    """Run `argv` inside a node; its exit code is 128+N when signal N killed it, on every backend.

    Attached to this terminal unless `capture` (then stdout and stderr come back as text and as the
    exact bytes, and `input` is its stdin). Attached, Ctrl-C belongs to the command, as in a shell: this process
    ignores SIGINT until the command ends (after it has started, so the command does not inherit
    the ignoring). A command that cannot start exits 127 and says why on its stderr."""
    cmd = of(journal).command(journal, node, argv, interactive)
    pipe = subprocess.PIPE if capture else None
    try:
        proc = subprocess.Popen(cmd.argv, env=cmd.env, stdin=subprocess.PIPE if input is not None else None,
                                stdout=pipe, stderr=pipe)
    except (OSError, subprocess.SubprocessError) as e:
        why = f"lab: {node.name}: {argv[0]}: {e}"
        if not capture:
            print(why, file=sys.stderr, flush=True)
        return ExecResult(cmd.argv, 127, b"" if capture else None, (why + "\n").encode() if capture else None)
    attached = not capture and threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGINT, signal.SIG_IGN) if attached else None
    try:
        out, err = proc.communicate(None if input is None else input.encode(), timeout=timeout)
    except BaseException:  # a timeout, or Ctrl-C while captured: the command goes too (not its pipes'
        proc.kill()        # other holders, which a second communicate() would wait for)
        proc.wait()
        raise
    finally:
        if attached:
            signal.signal(signal.SIGINT, old if old is not None else signal.SIG_DFL)
    code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
    return ExecResult(cmd.argv, code, out, err)


# -- the container wing's tools, for `lab images` and `lab cluster` (imported only when used) ---
def build_image(base: str) -> str:
    """Build the container backends' node image on `base` (cached by its content); returns its tag."""
    from lab.backends.containers import images

    return images.build(base)


def cluster_up(hosts: int, name: str, file: Path, tls: bool = False) -> Path:
    """Start (or complete) a simulated cluster of Docker engines on this machine; writes its cluster
    file (`tls`: engines that take only clients with a certificate of the cluster's own CA)."""
    from lab.backends.containers import simcluster

    return simcluster.up(hosts, name, file, tls=tls)


def cluster_down(name: str, file: Path) -> list[str]:
    """Remove the simulated cluster `name` and its cluster file; returns what was removed."""
    from lab.backends.containers import simcluster

    return simcluster.down(name, file)
