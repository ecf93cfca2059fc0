"""The package's architecture, read from its import graph: every module under lab/ is parsed (never
imported), and each import of a lab module is an edge, wherever it is written (at the top, inside
a function, under `if TYPE_CHECKING:`).

- no import circle among lab modules;
- imports run downhill: a module imports only modules on its own layer of `LAYERS` or lower, and
  every module is on a layer;
- the rules of the design: the model never asks for a backend, the judges never for the run, the
  roles (which run inside nodes) need nothing but the standard library, and nothing outside
  lab/backends asks which backend it holds;
- no module grows past `MAX_LINES`.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "lab"
MAX_LINES = 450

# Lowest first. "lab.x.*" is the whole package lab.x (its face and every module in it); a module
# may import modules of its own layer or of a lower one.
LAYERS: list[tuple[str, list[str]]] = [
    ("base", ["lab", "lab.errors", "lab.lines", "lab.rundir", "lab.signals", "lab.roles.*"]),
    ("scenario", ["lab.scenario.*"]),
    ("plan", ["lab.plan"]),
    ("journal", ["lab.journal"]),
    ("backends", ["lab.backends.*"]),
    ("execution", ["lab.barrier", "lab.schedule", "lab.execution"]),
    ("outcome", ["lab.outcome"]),
    ("judges", ["lab.checks", "lab.recovery", "lab.watch"]),
    ("reports", ["lab.reports.*"]),
    ("library", ["lab.forked", "lab.inventory", "lab.orchestrator", "lab.lifecycle", "lab.grading", "lab.bench",
                 "lab.benchfigures",
                 "lab.docs"]),
    ("api", ["lab.api"]),
    ("doors", ["lab.cli", "lab.cliargs", "lab.pytest_plugin", "lab.__main__", "lab.entry"]),
]

MODEL = ("lab.scenario", "lab.plan")  # the scenario's model and the plan made from it
CONCRETE = "lab.backends."  # any module below the face lab.backends: a backend, or its parts


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    path: str  # its file, from the repository root
    line: int
    target: str  # the module imported (for `from M import x`: M.x when that is a module, else M)


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {_name(p): p for p in sorted(LAB.rglob("*.py"))}


@cache
def imports() -> tuple[Import, ...]:
    """Every import statement of every module under lab/ (standard library and third party too)."""
    found = []
    for name, path in modules().items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(), where)):
            if isinstance(node, ast.Import):
                found += [Import(name, where, node.lineno, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package, up level - 1 packages
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.append(Import(name, where, node.lineno, sub if sub in modules() else base))
    return tuple(found)


@cache
def edges() -> tuple[Import, ...]:
    """The imports of lab modules, each naming the lab module it reaches (the nearest known one)."""
    out = []
    for i in imports():
        if i.target == "lab" or i.target.startswith("lab."):
            target = i.target
            while target not in modules() and "." in target:
                target = target.rpartition(".")[0]
            out.append(Import(i.source, i.path, i.line, target))
    return tuple(out)


def layer_of(module: str) -> int | None:
    for index, (_, members) in enumerate(LAYERS):
        for member in members:
            if module == member or (member.endswith(".*") and (module + ".").startswith(member[:-1])):
                return index
    return None


def test_the_graph_is_read() -> None:
    assert {"lab", "lab.cli", "lab.roles.agent", "lab.backends.containers.base"} <= set(modules())
    reached = {(e.source, e.target) for e in edges()}
    assert ("lab.orchestrator", "lab.backends") in reached  # `from lab import backends`
    assert ("lab.backends.containers.docker", "lab.backends.containers.images") in reached  # from a package
    assert ("lab.cli", "lab.lifecycle") in reached  # inside a function


def test_no_import_circle() -> None:
    graph: dict[str, set[str]] = {m: set() for m in modules()}
    for e in edges():
        if e.target != e.source:
            graph[e.source].add(e.target)
    circles: list[list[str]] = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        for nxt in sorted(graph[module]):
            if nxt in path:
                circles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in done:
                visit(nxt, path + [nxt])
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    shortest = sorted(circles, key=len)[:10]  # one bad import closes many; the shortest name it
    assert not circles, f"{len(circles)} import circle(s); the shortest:\n" + "\n".join(map(" -> ".join, shortest))


def test_every_module_is_on_a_layer() -> None:
    unplaced = [f"{path.relative_to(ROOT)} ({name})" for name, path in modules().items() if layer_of(name) is None]
    assert not unplaced, ("not on any layer: " + ", ".join(unplaced) + ". Place each in LAYERS in "
                          "tests/unit/test_architecture.py: the lowest layer at or above every lab module it imports")
    named = [m for _, members in LAYERS for m in members]
    stale = [m for m in named if m.removesuffix(".*") not in modules()]
    assert not stale, f"LAYERS names modules that do not exist: {', '.join(stale)}"
    assert len(named) == len(set(named)), "a module is on two layers"


def test_imports_run_downhill() -> None:
    upward = []
    for e in edges():
        low, high = layer_of(e.target), layer_of(e.source)
        if low is not None and high is not None and low > high:
            upward.append(f"{e.path}:{e.line} imports {e.target} "
                          f"(layer {LAYERS[high][0]} -> layer {LAYERS[low][0]}, upward)")
    assert not upward, "\n".join(upward)


def _breaking(rule: str, bad: list[Import]) -> str:
    return f"{rule}:\n" + "\n".join(f"{e.path}:{e.line} imports {e.target}" for e in bad)


def _within(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_the_model_never_imports_a_backend() -> None:
    bad = [e for e in edges() if _within(e.source, *MODEL) and _within(e.target, "lab.backends")]
    assert not bad, _breaking("the model (lab/scenario, lab/plan.py) knows no backend", bad)


def test_the_judges_never_import_the_run() -> None:
    bad = [e for e in edges() if e.source == "lab.checks" and _within(e.target, "lab.backends", "lab.execution")]
    assert not bad, _breaking("lab/checks.py judges what nodes recorded, never the backend or the run", bad)


def test_roles_import_only_the_standard_library() -> None:
    bad = [i for i in imports() if _within(i.source, "lab.roles")
           and not _within(i.target, "lab.roles") and i.target.partition(".")[0] not in sys.stdlib_module_names]
    assert not bad, _breaking("lab/roles run inside nodes: standard library and lab.roles only", bad)


def test_nothing_outside_backends_names_a_concrete_backend() -> None:
    bad = [e for e in edges() if not _within(e.source, "lab.backends") and e.target.startswith(CONCRETE)]
    assert not bad, _breaking("outside lab/backends, a backend is reached through lab.backends (load, of, "
                              "create) only", bad)


def test_no_module_is_too_long() -> None:
    lines = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in modules().values()}
    long = [f"{path} ({n})" for path, n in lines.items() if n > MAX_LINES]
    assert not long, f"modules over {MAX_LINES} lines (split them): " + ", ".join(long)
