"""The `lab` console script. tasks.py calls the same functions: one implementation, two doors."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lab.errors import Interrupted, LabError, ScenarioError
from lab.signals import SignalGuard


def cmd_run(scenario: str, backend: str = "netns", out: str | None = None, cluster: str | None = None) -> int:
    """The guard goes in first: a signal ends the run in order (130/143), whatever is being imported,
    loaded or created (the run says `STARTED` once it begins creating). Once the run has returned,
    its outcome is decided: a late Ctrl-C must not turn it into a traceback or another exit code."""
    with SignalGuard(then=signal.SIG_IGN) as guard:
        from lab import orchestrator
        from lab.backends import Options
        from lab.reports.terminal import table
        from lab.scenario import load_scenario

        loaded = load_scenario(scenario)
        guard.check()  # signalled while loading: nothing exists yet
        options = Options(cluster=Path(cluster) if cluster else None)
        result = orchestrator.run(loaded, backend, Path(out) if out else None, options=options, guard=guard)
    print(table(result))
    return result.exit_code


def cmd_validate(scenarios: Sequence[str]) -> int:
    from lab.scenario import load_scenario

    code = 0
    for path in scenarios:
        try:
            s = load_scenario(path)
        except ScenarioError as e:
            print(e, file=sys.stderr)
            code = 2
            continue
        hosts = sum(n.replicas or 1 for n in s.nodes)
        print(f"ok: {path}: {s.name}: {len(s.networks)} network(s), {hosts} host(s), "
              f"{len(s.expect)} expectation(s)")
    return code


def cmd_graph(scenario: str, out: str | None = None) -> int:
    """The scenario's topology as SVG (networks, nodes, addresses), to a file or stdout."""
    from lab.plan import make_plan
    from lab.reports.html_report import topology_svg
    from lab.scenario import load_scenario

    svg = topology_svg(make_plan(load_scenario(scenario))) + "\n"
    if out:
        Path(out).write_text(svg, encoding="utf-8")
    else:
        sys.stdout.write(svg)
    return 0


def cmd_clean(everything: bool = False) -> int:
    from lab import backends
    from lab.journal import drop_empty_state, journals

    found, failed = 0, False
    for j in journals():
        if j.alive() and not everything:
            print(f"kept lab {j.lab_id} ({j.meta().get('name', '?')}): still running (use --all)")
            continue
        name = j.meta().get("name", "?")
        if j.alive():  # --all: ask its owner to tear down first, as `lab down` does
            from lab.lifecycle import stop_owner

            if stop_owner(j):
                found += 1
                print(f"stopped lab {j.lab_id} ({name})")
                continue
        found += 1
        try:
            removed = backends.clean(j)
        except LabError as e:  # one lab's unreachable host does not stop the others' cleaning
            print(f"lab: error: lab {j.lab_id} ({name}): {e}", file=sys.stderr)
            failed = True
            continue
        print(f"cleaned lab {j.lab_id} ({name}): removed {len(removed)} resource(s)")
    drop_empty_state()
    if not found:
        print("nothing to clean")
    return 1 if failed else 0


def cmd_images(base: str = "debootstrap") -> int:
    from lab import backends

    backends.build_image(base)
    return 0


def cmd_cluster(action: str, hosts: int = 3, name: str = "sim", file: str = "cluster.yaml") -> int:
    """`lab cluster up|down`: a simulated cluster of Docker engines on this machine."""
    from lab import backends

    if action == "up":
        backends.cluster_up(hosts, name, Path(file))
    else:
        backends.cluster_down(name, Path(file))
    return 0


def _lifecycle(name: str) -> Any:
    def call(args: argparse.Namespace) -> int:
        from lab import lifecycle

        if name == "up":
            return lifecycle.up(args.scenario, args.backend, args.out)
        if name == "keep":
            for sig in (signal.SIGINT, signal.SIGTERM):  # recorded by the run's own guard
                signal.signal(sig, signal.SIG_IGN)
            return lifecycle.keep(args.scenario, args.backend, args.out, args.status_fd)
        if name == "ps":
            return lifecycle.ps()
        if name == "shell":
            return lifecycle.shell(args.lab, args.node)
        if name == "exec":
            cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            if not cmd:
                print("lab: error: exec needs a command: lab exec LAB NODE -- CMD ...", file=sys.stderr)
                return 2
            return lifecycle.exec_in(args.lab, args.node, cmd)
        if name == "logs":
            return lifecycle.logs(args.lab, args.node, args.follow)
        if name == "check":
            return lifecycle.check(args.lab)
        return lifecycle.down(args.lab)

    return call


LIFECYCLE = {name: _lifecycle(name) for name in ("up", "keep", "ps", "shell", "exec", "logs", "check", "down")}


class _Parser(argparse.ArgumentParser):
    """`lab --help` ends with the built-in roles and checks, read from their catalogues only when help is
    shown (`lab run` puts its signal guard in before it imports anything of the lab)."""

    def format_help(self) -> str:
        from lab.docs import help_text

        return f"{super().format_help()}\n{help_text()}"


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lab", description="Reproducible network-programming labs.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=argparse.ArgumentParser)
    r = sub.add_parser("run", help="bring a scenario up, run it, check it, tear it down")
    r.add_argument("scenario")
    r.add_argument("--backend", default="netns", help="where hosts live: netns (default), docker or swarm")
    r.add_argument("--out", help="run folder (default: runs/<scenario>-<time>/)")
    r.add_argument("--cluster", help="cluster file (hosts' Docker endpoints) for --backend swarm")
    cl = sub.add_parser("cluster", help="a simulated cluster on this machine: Docker engines in containers, "
                                        "joined into a swarm (for --backend swarm)")
    cl.add_argument("action", choices=("up", "down"))
    cl.add_argument("--hosts", type=int, default=3)
    cl.add_argument("--name", default="sim")
    cl.add_argument("--file", default="cluster.yaml", help="the cluster file to write (up) or remove (down)")
    v = sub.add_parser("validate", help="check scenario files without running anything")
    v.add_argument("scenarios", nargs="+")
    g = sub.add_parser("graph", help="draw a scenario's topology as SVG (nothing is created)")
    g.add_argument("scenario")
    g.add_argument("-o", "--out", help="SVG file to write (default: stdout)")
    c = sub.add_parser("clean", help="remove what dead labs left behind (by their journals only)")
    c.add_argument("--all", action="store_true", help="also labs whose process still runs")
    i = sub.add_parser("images", help="build the node image for container backends (cached by content)")
    i.add_argument("--base", default="debootstrap",
                   help="'debootstrap' (default: a Debian base built locally, no registry) or an image, "
                        "e.g. python:3.12-slim")
    g = sub.add_parser("grade", help="grade submissions: each replaces a node's files, runs as its own lab")
    g.add_argument("scenario")
    g.add_argument("submissions", help="a folder: one entry (folder or single file) per student")
    g.add_argument("--node", required=True, help="the node whose files: each submission replaces")
    g.add_argument("--jobs", type=int, default=4)
    g.add_argument("--out", help="grades folder (default grades/<scenario>-<time>/)")
    g.add_argument("--backend", default="netns")
    u = sub.add_parser("up", help="start a lab and keep it running (see ps, shell, exec, logs, check, down)")
    u.add_argument("scenario")
    u.add_argument("--backend", default="netns")
    u.add_argument("--out", help="run folder (default: runs/<scenario>-<time>/)")
    k = sub.add_parser("keep")  # internal: the detached process that holds a lab for `lab up`
    k.add_argument("scenario")
    k.add_argument("--backend", default="netns")
    k.add_argument("--out", required=True)
    k.add_argument("--status-fd", type=int, required=True)
    sub.add_parser("ps", help="list labs: id, scenario, backend, nodes, age, state")
    sh = sub.add_parser("shell", help="an interactive shell inside a node of a running lab")
    sh.add_argument("lab", help="lab id (or a prefix, or the scenario's name)")
    sh.add_argument("node")
    ex = sub.add_parser("exec", help="run a command inside a node: lab exec LAB NODE -- CMD ...")
    ex.add_argument("lab")
    ex.add_argument("node")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)
    lg = sub.add_parser("logs", help="the logs of a lab's nodes (-f: follow)")
    lg.add_argument("lab")
    lg.add_argument("node", nargs="?")
    lg.add_argument("-f", "--follow", action="store_true")
    ck = sub.add_parser("check", help="evaluate the scenario's expectations against the running lab now")
    ck.add_argument("lab")
    dn = sub.add_parser("down", help="stop a lab: check, report, tear down")
    dn.add_argument("lab")
    b = sub.add_parser("bench", help="time lab against Mininet and docker compose (alternating runs)")
    b.add_argument("--sizes", default="", help="client counts (default: 10,100 for netns, 10,50 for docker)")
    b.add_argument("--backends", default="netns,docker")
    b.add_argument("--rounds", type=int, default=3)
    b.add_argument("--peers", default=None, help="folder of the peer scripts (default ../shared/peers)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args.scenario, args.backend, args.out, args.cluster)
        if args.command == "cluster":
            return cmd_cluster(args.action, args.hosts, args.name, args.file)
        if args.command == "validate":
            return cmd_validate(args.scenarios)
        if args.command == "graph":
            return cmd_graph(args.scenario, args.out)
        if args.command == "clean":
            return cmd_clean(args.all)
        if args.command == "grade":
            from lab.grading import grade

            return grade(args.scenario, args.submissions, args.node, args.jobs, args.out, args.backend)
        if args.command in LIFECYCLE:
            return LIFECYCLE[args.command](args)
        if args.command == "images":
            return cmd_images(args.base)
        if args.command == "bench":
            from lab.bench import bench

            sizes = [int(n) for n in args.sizes.split(",")] if args.sizes else None
            return bench(sizes, args.rounds, args.peers, args.backends.split(","))
    except ScenarioError as e:
        print(e, file=sys.stderr)
        return e.exit_code
    except Interrupted as e:  # `lab run` signalled before its lab existed: nothing was created
        print(f"lab: interrupted (signal {e.signum}) before the lab was created", file=sys.stderr)
        return e.exit_code
    except LabError as e:
        print(f"lab: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
