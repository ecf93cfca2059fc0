"""Backends: where a lab's hosts live. Each implements the small `Backend` protocol.

Chosen from an explicit dict; a backend is imported only when used, so that the netns backend
never needs the Docker SDK.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from lab.errors import EnvironmentProblem
from lab.journal import Journal
from lab.plan import NodePlan, Plan
from lab.rundir import RunDir

READY, EXITED, LAUNCHED, ANSWERED = "ready", "exited", "launched", "answered"


@dataclass(frozen=True)
class Event:
    """Something a backend observed about a node: it became ready, or its program exited."""

    node: str
    kind: str  # READY | EXITED | LAUNCHED (a deferred start happened) | ANSWERED (a synced client)
    code: int | None = None  # exit code; negative: killed by that signal


@dataclass(frozen=True)
class Options:
    """What a backend may need beyond the plan: the cluster file (swarm)."""

    cluster: Path | None = None


@dataclass(frozen=True)
class Placement:
    """Where a node ran: its host, and that host's clock against the lab's (for `concurrent`)."""

    host: str
    endpoint: str
    clock_offset: float = 0.0  # seconds: host clock - lab clock
    uncertainty: float = 0.0  # seconds (half the round trip of the best measurement)


class Backend(Protocol):
    name: str

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
        """Let synced clients (`NodePlan.synced`) that reported ANSWERED go on: every client of their
        group was answered or is gone. A node that already ended is skipped."""

    def stop(self, nodes: list[str], grace: float) -> dict[str, int | None]:
        """Stop the nodes' programs (SIGTERM, SIGKILL after `grace` s); returns their exit codes."""

    def exit_code(self, node: str) -> int | None:
        """The node's exit code, once it has exited (None: unknown or still running)."""

    def down(self) -> None:
        """Remove everything the lab created. Idempotent; safe after a partial `up`."""

    def placements(self) -> dict[str, Placement]:
        """Node -> where it ran; empty when every node ran on this machine."""


BACKENDS: dict[str, str] = {
    "netns": "lab.backends.netns:NetnsBackend",
    "docker": "lab.backends.containers.docker:DockerBackend",
    "swarm": "lab.backends.containers.swarm:SwarmBackend",
}


def create(name: str, journal: Journal, options: Options | None = None) -> Backend:
    try:
        module, _, cls = BACKENDS[name].partition(":")
    except KeyError:
        raise EnvironmentProblem(f"unknown backend {name!r} (backends: {', '.join(BACKENDS)})") from None
    factory = getattr(importlib.import_module(module), cls)
    backend: Backend = factory(journal, options or Options())
    return backend


def clean(journal: Journal) -> list[str]:
    """Remove what a (dead) lab left behind, from its journal alone; returns what was removed."""
    name = str(journal.meta().get("backend", "netns"))
    module, _, cls = BACKENDS.get(name, BACKENDS["netns"]).partition(":")
    removed: list[str] = getattr(importlib.import_module(module), cls).clean(journal)
    return removed
