"""invoke tasks: a thin door onto the library (the `lab` console script is the other one).

`inv --list` documents every task.
"""

from __future__ import annotations

import os
import subprocess
import sys

from invoke import Collection, Context, task
from invoke.exceptions import Exit

from lab import cli


def _exit(code: int) -> None:
    if code != 0:
        raise Exit(code=code)


LOUDNESS = {"quiet": "less output: only the final line (twice: nothing when all went well)",
            "verbose": "more output: each phase's time (plan, up, run, down, check)"}


def _loud(quiet: int, verbose: int = 0) -> list[str]:
    return ["-q"] * quiet + ["-v"] * verbose


@task(help={"scenario": "scenario file", "backend": "netns (default), docker or swarm", "out": "run folder",
            "cluster": "cluster file for --backend swarm", "capture": "record every network (captures/NET.pcap)",
            **LOUDNESS}, incrementable=["quiet", "verbose"])
def run(c: Context, scenario: str, backend: str = "netns", out: str | None = None,
        cluster: str | None = None, capture: bool = False, quiet: int = 0, verbose: int = 0) -> None:
    """Run a scenario: up, run, check, report, down (exit 0 all expectations hold, 1 some failed)."""
    _exit(cli.main(["run", scenario, "--backend", backend, *(["--out", out] if out else []),
                    *(["--cluster", cluster] if cluster else []), *(["--capture"] if capture else []),
                    *_loud(quiet, verbose)]))


@task(iterable=["scenario"], help={"scenario": "scenario file (repeatable)"})
def validate(c: Context, scenario: list[str]) -> None:
    """Validate scenario files without running anything (exit 2 when one is invalid)."""
    _exit(cli.main(["validate", *(scenario or ["scenarios/echo.yaml"])]))


@task(help={"scenario": "scenario file", "out": "SVG file to write (default: stdout)"})
def graph(c: Context, scenario: str, out: str | None = None) -> None:
    """Draw a scenario's topology as SVG: networks, nodes and their addresses (nothing is created)."""
    _exit(cli.main(["graph", scenario] + (["-o", out] if out else [])))


@task(name="clean", help={"all": "also labs whose process still runs", "lab": "one dead lab (default: all)"})
def clean_(c: Context, all: bool = False, lab: str | None = None) -> None:  # noqa: A002 - the flag is --all
    """Remove what dead labs left behind, found by their journals (never by name patterns)."""
    _exit(cli.main(["clean", *([lab] if lab else []), *(["--all"] if all else [])]))


@task(help={"base": "'debootstrap' (default, no registry needed) or a registry image"})
def images(c: Context, base: str = "debootstrap") -> None:
    """Build the node image for container backends (tagged by content: never stale, never rebuilt)."""
    _exit(cli.main(["images", "--base", base]))


@task(help={"sizes": "comma-separated client counts (default 10,100,300,1000 netns; 10,50,100 docker)",
            "rounds": "runs per side and size (default 5)",
            "backends": "netns,docker (rootless: netns as uid 65534 against root)",
            "out": "folder for bench.json and bench.svg (default runs/bench-STAMP)"})
def bench(c: Context, sizes: str = "", rounds: int = 5, peers: str | None = None,
          backends: str = "netns,docker", out: str | None = None) -> None:
    """Time lab against Mininet (netns) and docker compose (docker): alternating runs, medians, spread, plot."""
    argv = ["bench", "--rounds", str(rounds), "--backends", backends] + (["--sizes", sizes] if sizes else [])
    _exit(cli.main(argv + (["--peers", peers] if peers else []) + (["--out", out] if out else [])))


@task
def docs(c: Context) -> None:
    """Rewrite the README's tables of roles, checks and parameter types from their catalogues."""
    from pathlib import Path

    from lab.docs import update_readme

    readme = Path(__file__).resolve().parent / "README.md"
    print(f"{readme}: {'updated' if update_readme(readme) else 'up to date'}")


NO_TESTS = 5  # pytest's exit code when a selection is empty


def _python(*args: str, empty_ok: bool = False) -> None:
    """Run a tool of this interpreter's environment (argv, never a shell string)."""
    code = subprocess.run([sys.executable, "-m", *args]).returncode
    _exit(0 if empty_ok and code == NO_TESTS else code)


def _uv(*args: str) -> None:
    """uv from this environment (uv.lock pins it like any other tool)."""
    _exit(subprocess.run([sys.executable, "-m", "uv", *args], env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"})
          .returncode)


@task
def lint(c: Context) -> None:
    """ruff (style, and the ban on shell=True), mypy (types), and uv.lock still matching pyproject.toml."""
    _python("ruff", "check", "lab", "tests", "tasks.py")
    _python("mypy", "lab")
    _uv("lock", "--check", "--quiet")


PYTEST = ("pytest", "-q", "-p", "no:cacheprovider", "--durations=15")
RACES = "race"  # the flake-prone groups (tests/stress.py)
RACE_ROUNDS = 2  # each run of `inv test` runs them this many times, side by side, on a busy machine


def _stress(marks: str, rounds: int, k: str = "") -> None:
    """Run integration tests `rounds` times, two at a time, with every core kept busy; the tests that
    act on every lab of the host run alone after the others, under the same load. The session
    compares the host before its first test and after its last (tests/conftest.py)."""
    load = ("--burn-cpu", str(os.cpu_count() or 2), "--repeat", str(rounds), *(["-k", k] if k else []))
    both = f"({marks}) and " if marks else ""
    _python(*PYTEST, "tests/integration", "-n", "2", "--dist", "loadgroup", "-m", f"{both}not host_wide", *load,
            empty_ok=True)
    _python(*PYTEST, "tests/integration", "-m", f"{both}host_wide", *load, empty_ok=True)


@task(help={"unit": "unit tests only (no root needed)", "k": "pytest -k expression",
            "repeat": "stress: run the integration tests N times under -n 2 with every core busy",
            "m": "with --repeat: a pytest -m marker expression (e.g. race)"})
def test(c: Context, unit: bool = False, k: str = "", repeat: int = 0, m: str = "") -> None:
    """The whole suite (needs root): lint; unit tests; the integration tests one at a time, each checking
    that the host is left as it was; then the flake-prone groups twice, side by side on a busy machine."""
    lint(c)
    if unit:
        _python(*PYTEST, "tests/unit", *(["-k", k] if k else []))
    elif repeat:
        _stress(m, repeat, k)
    elif k:
        _python(*PYTEST, "tests", "-k", k, empty_ok=True)
    else:
        _python(*PYTEST, "tests/unit", "-n", "2")  # the fast layer first: it fails within a minute
        _python(*PYTEST, "tests/integration", "-m", f"not {RACES}")
        _stress(RACES, RACE_ROUNDS)


@task
def lock(c: Context) -> None:
    """Update the pinned dependencies: re-resolve uv.lock to the newest releases pyproject.toml allows,
    install exactly that into .venv, and run the whole suite on it (commit uv.lock when it passes)."""
    _uv("lock", "--upgrade")
    _uv("sync", "--frozen", "--extra", "dev")
    test(c)


@task(help={"scenario": "scenario file", "backend": "netns (default), docker or swarm", "out": "run folder",
            "cluster": "cluster file (swarm)", "quiet": LOUDNESS["quiet"]}, incrementable=["quiet"])
def up(c: Context, scenario: str, backend: str = "netns", out: str | None = None, cluster: str | None = None,
       quiet: int = 0) -> None:
    """Start a lab and keep it running; prints its nodes, addresses and roles, and its id."""
    _exit(cli.main(["up", scenario, "--backend", backend] + (["--out", out] if out else [])
                   + (["--cluster", cluster] if cluster else []) + _loud(quiet)))


@task(help={"lab": "one lab: its nodes (state, exit code, addresses, host, uptime)", "json": "as JSON"})
def ps(c: Context, lab: str | None = None, json: bool = False) -> None:
    """List labs: id, scenario, owner, backend, nodes, age, state (or one lab's nodes)."""
    _exit(cli.main(["ps", *([lab] if lab else []), *(["--json"] if json else [])]))


@task(help={"lab": "lab id, id prefix or scenario name", "node": "node name"})
def shell(c: Context, lab: str, node: str) -> None:
    """An interactive shell inside a node of a running lab (telnet server 9999 works there)."""
    _exit(cli.main(["shell", lab, node]))


@task(name="exec", help={"lab": "lab id", "node": "node name", "cmd": "the command (quoted)"})
def exec_(c: Context, lab: str, node: str, cmd: str) -> None:
    """Run a command inside a node of a running lab (split like a shell would, no shell used)."""
    import shlex

    _exit(cli.main(["exec", lab, node, "--", *shlex.split(cmd)]))


@task(help={"lab": "lab id", "node": "one node (default: all)", "follow": "keep printing",
            "tail": "only each node's last N lines first"})
def logs(c: Context, lab: str, node: str | None = None, follow: bool = False, tail: int | None = None) -> None:
    """The logs of a lab's nodes."""
    _exit(cli.main(["logs", lab] + ([node] if node else []) + (["-f"] if follow else [])
                   + (["--tail", str(tail)] if tail is not None else [])))


@task(help={"lab": "lab id"})
def check(c: Context, lab: str) -> None:
    """Evaluate the scenario's expectations against the running lab, now (exit 1 if one fails)."""
    _exit(cli.main(["check", lab]))


@task(help={"lab": "lab id", **LOUDNESS}, incrementable=["quiet", "verbose"])
def down(c: Context, lab: str, quiet: int = 0, verbose: int = 0) -> None:
    """Stop a lab: check its expectations, write its report, tear it down (exit 1 if one failed)."""
    _exit(cli.main(["down", lab, *_loud(quiet, verbose)]))


@task(help={"scenario": "the exercise's scenario", "submissions": "folder with one entry per student",
            "node": "the node each submission replaces", "jobs": "labs at once", "out": "grades folder",
            "backend": "netns (default) or docker", "quiet": LOUDNESS["quiet"],
            "resume": "grade only the submissions the grades folder has no grade for yet",
            "only": "grade these submissions again (comma-separated)"}, incrementable=["quiet"])
def grade(c: Context, scenario: str, submissions: str, node: str, jobs: int = 4, out: str | None = None,
          backend: str = "netns", quiet: int = 0, resume: bool = False, only: str = "") -> None:
    """Grade submissions: each runs as its own lab; grades.json, grades.csv and an index page."""
    _exit(cli.main(["grade", scenario, submissions, "--node", node, "--jobs", str(jobs), "--backend", backend]
                   + (["--out", out] if out else []) + _loud(quiet) + (["--resume"] if resume else [])
                   + (["--only", only] if only else [])))


@task(help={"hosts": "number of hosts (Docker engines)", "name": "cluster name", "file": "cluster file to write",
            "tls": "engines that take only clients with a certificate of the cluster's CA"})
def cluster_up(c: Context, hosts: int = 3, name: str = "sim", file: str = "cluster.yaml", tls: bool = False) -> None:
    """Start a simulated cluster (Docker engines in containers, in a swarm) and write its cluster file."""
    _exit(cli.cmd_cluster("up", hosts, name, file, tls))


@task(help={"name": "cluster name", "file": "cluster file to remove"})
def cluster_down(c: Context, name: str = "sim", file: str = "cluster.yaml") -> None:
    """Remove a simulated cluster (its hosts, network and cluster file)."""
    _exit(cli.cmd_cluster("down", name=name, file=file))


_cluster = Collection("cluster")
_cluster.add_task(cluster_up, "up")
_cluster.add_task(cluster_down, "down")
del cluster_up, cluster_down  # reached as cluster.up / cluster.down only
ns = Collection.from_module(sys.modules[__name__])
ns.add_collection(_cluster)
