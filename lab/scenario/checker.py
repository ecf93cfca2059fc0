"""The validation context: collects every problem (not just the first) with its location, and
knows which node names exist so that references (`after`, `connect`, `expect`) can be checked.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from lab.errors import Problem
from lab.scenario.source import KeyPath, Source, format_path
from lab.scenario.values import Invalid, Reported, article, kind, show, suggest

T = TypeVar("T")
_INDEX_RE = re.compile(r"[1-9][0-9]{0,3}")


class Checker:
    """Collects located problems; `check` runs a converter and turns `Invalid` into a problem."""

    def __init__(self, source: Source):
        self.source = source
        self.problems: list[Problem] = []
        self.misspelled: set[KeyPath] = set()  # known keys that appear under a close misspelling

    def unknown_keys(self, path: KeyPath, given: Iterable[str], known: list[str], message: str,
                     hints: Mapping[str, tuple[str, KeyPath]] | None = None) -> None:
        """Report keys not in `known` (at the key); remember which known key each probably meant.

        `message` says what is unknown, with `{key}` where the key goes; `hints`, for some keys, a
        better hint than the closest names and where the key belongs (a role's parameter indented
        too little: not missing there, then).
        """
        for key in given:
            if key in (hints or {}) and key not in known:
                hint, meant = (hints or {})[key]
                self.error(path + (key,), f"{message.replace('{key}', show(key))} {hint}", at_key=True)
                self.misspelled.add(meant)
                continue
            if key not in known:
                hint = suggest(key, known, "allowed") if known else "(it takes none)"
                self.error(path + (key,), f"{message.replace('{key}', show(key))} {hint}", at_key=True)
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                if close:
                    self.misspelled.add(path + (close[0],))

    def missing(self, path: KeyPath, key: str, message: str, at: KeyPath | None = None) -> None:
        """Report a missing required key, unless it is there under a misspelling (already reported)."""
        if path + (key,) not in self.misspelled:
            self.error(path if at is None else at, message, at_key=True)

    def error(self, path: KeyPath, message: str, at_key: bool = False) -> None:
        loc = self.source.key_loc(path) if at_key else self.source.value_loc(path)
        self.problems.append(Problem(loc, format_path(path), message))

    def check(self, path: KeyPath, value: Any, convert: Callable[..., T], *args: Any) -> T | None:
        """`convert(value, *args)`, or None after reporting why the value is wrong."""
        try:
            return convert(value, *args)
        except Reported:
            return None
        except Invalid as e:
            self.error(path + e.sub, e.message)
            return None

    def mapping(self, path: KeyPath, value: Any, allowed: Iterable[str], required: Iterable[str] = (),
                what: str = "key", hints: Mapping[str, tuple[str, KeyPath]] | None = None) -> dict[str, Any] | None:
        """A mapping with only `allowed` keys (unknown ones reported at the key, with a suggestion)."""
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping, got {kind(value)}")
            return None
        known = list(allowed)
        self.unknown_keys(path, value, known, f"unknown {what} {{key}}", hints)
        for key in required:
            if key not in value:
                self.missing(path, key, f"missing required {what} {key!r}")
        return {k: v for k, v in value.items() if k in known}

    def raw(self, path: KeyPath) -> str | None:
        return self.source.raw.get(path)


@dataclass(frozen=True)
class NodeInfo:
    """What references need to know about a node: its hosts and what it runs."""

    name: str
    replicas: int | None
    role: str | None
    runs: bool
    replicas_ok: bool = True  # False: `replicas` is invalid (reported), so host counts are unknown

    @property
    def hosts(self) -> int:
        return self.replicas or 1

    def describe(self) -> str:
        """'an echo-server', 'a program (run)', 'a plain host' (for role-mismatch messages)."""
        if self.role:
            return article(self.role)
        return "a program (run)" if self.runs else "a plain host (no role or run)"


class Refs:
    """Node names as references: a node, a replica group, or one replica such as `client-2`."""

    def __init__(self, nodes: dict[str, NodeInfo], hidden: list[str] | None = None):
        self.nodes = nodes
        self.hidden = hidden  # declared names that are invalid; None: the whole `nodes:` is invalid

    def resolve(self, ref: Any) -> tuple[NodeInfo, int]:
        """The node `ref` belongs to and how many hosts it names; `Invalid` if it names none."""
        if not isinstance(ref, str):
            raise Invalid(f"expected a node name, got {kind(ref)}")
        if ref in self.nodes:
            info = self.nodes[ref]
            return info, info.hosts
        base, _, index = ref.rpartition("-")
        group = self.nodes.get(base)
        if group is not None and not group.replicas_ok:
            raise Reported()
        if group is not None and group.replicas and _INDEX_RE.fullmatch(index):
            if int(index) <= group.replicas:
                return group, 1
            raise Invalid(f"unknown node {show(ref)} ({base!r} has replicas {_range(group)})")
        if self.hidden is None or ref in self.hidden:
            raise Reported()
        raise Invalid(f"unknown node {show(ref)} {suggest(ref, self.nodes, 'nodes', listing=True)}")

    def single(self, ref: Any, what: str) -> NodeInfo:
        """A reference that must name exactly one host (a client connects to one server)."""
        info, hosts = self.resolve(ref)
        if hosts > 1:
            raise Invalid(f"{what} needs one node; {ref!r} is {hosts} replicas ({_range(info)})")
        return info


def _range(info: NodeInfo) -> str:
    return f"{info.name}-1..{info.name}-{info.replicas}"


def find_cycles(graph: Mapping[T, Sequence[T]]) -> list[list[T]]:
    """Iterative depth-first search (long `after` chains must not hit the recursion limit)."""
    state: dict[T, int] = {}  # 1: on the current path, 2: finished
    found: list[list[T]] = []
    for start in graph:
        if start in state:
            continue
        state[start] = 1
        trail = [start]
        stack = [iter(graph[start])]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[trail.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                found.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state and nxt in graph:
                state[nxt] = 1
                trail.append(nxt)
                stack.append(iter(graph[nxt]))
    return found
