"""invoke tasks: a thin door onto the library (the `lab` console script is the other one).

`inv --list` documents every task.
"""

from __future__ import annotations

import subprocess
import sys

from invoke import Context, task
from invoke.exceptions import Exit

from lab import cli


def _exit(code: int) -> None:
    if code != 0:
        raise Exit(code=code)


@task(help={"scenario": "scenario file", "backend": "netns (default) or docker", "out": "run folder"})
def run(c: Context, scenario: str, backend: str = "netns", out: str | None = None) -> None:
    """Run a scenario: up, run, check, report, down (exit 0 all expectations hold, 1 some failed)."""
    _exit(cli.cmd_run(scenario, backend, out))


@task(iterable=["scenario"], help={"scenario": "scenario file (repeatable)"})
def validate(c: Context, scenario: list[str]) -> None:
    """Validate scenario files without running anything (exit 2 when one is invalid)."""
    _exit(cli.cmd_validate(scenario or ["scenarios/echo.yaml"]))


@task(name="clean", help={"all": "also labs whose process still runs"})
def clean_(c: Context, all: bool = False) -> None:  # noqa: A002 - the flag is --all
    """Remove what dead labs left behind, found by their journals (never by name patterns)."""
    _exit(cli.cmd_clean(all))


@task(help={"base": "'debootstrap' (default, no registry needed) or a registry image"})
def images(c: Context, base: str = "debootstrap") -> None:
    """Build the node image for container backends (tagged by content: never stale, never rebuilt)."""
    _exit(cli.cmd_images(base))


@task(help={"sizes": "comma-separated client counts (default 10,100 netns; 10,50 docker)",
            "rounds": "runs per side and size", "backends": "netns,docker"})
def bench(c: Context, sizes: str = "", rounds: int = 3, peers: str | None = None,
          backends: str = "netns,docker") -> None:
    """Time lab against Mininet (netns) and docker compose (docker): alternating runs, medians, ratio."""
    from lab.bench import bench as run_bench

    _exit(run_bench([int(n) for n in sizes.split(",")] if sizes else None, rounds, peers, backends.split(",")))


def _python(*args: str) -> None:
    """Run a tool of this interpreter's environment (argv, never a shell string)."""
    _exit(subprocess.run([sys.executable, "-m", *args]).returncode)


@task
def lint(c: Context) -> None:
    """ruff (style, and the ban on shell=True) and mypy (types)."""
    _python("ruff", "check", "lab", "tests", "tasks.py")
    _python("mypy", "lab")


@task(help={"unit": "unit tests only (no root needed)", "k": "pytest -k expression"})
def test(c: Context, unit: bool = False, k: str = "") -> None:
    """The whole suite: lint, unit tests, integration tests on real namespaces (needs root)."""
    lint(c)
    _python("pytest", "-q", "tests/unit" if unit else "tests", *(["-k", k] if k else []))
