"""The `lab` console script: parses, calls the library (lab/api.py), prints. tasks.py calls the
same functions: one implementation, two doors."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from lab.errors import Interrupted, LabError, ScenarioError
from lab.signals import SignalGuard


def cmd_run(scenario: str, backend: str = "netns", out: str | None = None, cluster: str | None = None) -> int:
    """The guard goes in first: a signal ends the run in order (130/143), whatever is being imported,
    loaded or created (the run says `STARTED` once it begins creating). Once the run has returned,
    its outcome is decided: a late Ctrl-C must not turn it into a traceback or another exit code."""
    with SignalGuard(then=signal.SIG_IGN) as guard:
        from lab import api
        from lab.reports.terminal import table

        result = api.run(scenario, backend, out, cluster=cluster, guard=guard, own_process=True)
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
    from lab import api

    outcomes = api.clean(everything)
    for c in outcomes:
        if c.error:
            print(f"lab: error: lab {c.id} ({c.name}): {c.error}", file=sys.stderr)
        elif c.kept:
            print(f"kept lab {c.id} ({c.name}): still running (use --all)")
        elif c.stopped:
            print(f"stopped lab {c.id} ({c.name})")
        else:
            print(f"cleaned lab {c.id} ({c.name}): removed {len(c.removed)} resource(s)")
    if not [c for c in outcomes if not c.kept]:
        print("nothing to clean")
    return 1 if any(c.error for c in outcomes) else 0


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


def cmd_up(scenario: str, backend: str = "netns", out: str | None = None) -> int:
    from lab import api

    kept = api.up(scenario, backend, out)
    print(f"{'NODE':<16} {'ADDRESSES':<34} {'RUNS':<28} STATE")
    for n in kept.status["nodes"]:
        addresses = ", ".join(f"{a} ({i})" for i, a in n["addresses"].items())
        print(f"{n['name']:<16} {addresses:<34} {n['runs'][:28]:<28} {n['state']}")
    if kept.ok:
        print(f"lab {kept.id} is up ({kept.backend}): lab shell {kept.id} NODE | lab exec {kept.id} NODE -- CMD "
              f"| lab logs {kept.id} | lab check {kept.id} | lab down {kept.id}")
        return 0
    print(f"lab {kept.id} did not come up: {'; '.join(kept.status['failures'])} "
          f"(torn down; logs in {kept.rundir.root})")
    return 1


def cmd_ps() -> int:
    from lab import api

    labs = api.labs()
    if not labs:
        print("no labs")
        return 0
    print(f"{'ID':<10} {'SCENARIO':<16} {'OWNER':<10} {'BACKEND':<8} {'NODES':>5} {'AGE':>8}  {'STATE':<8} RUN FOLDER")
    for info in labs:
        print(f"{info.id:<10} {info.name:<16} {info.owner:<10} {info.backend:<8} {info.nodes:>5} "
              f"{_age(info.age):>8}  {info.state:<8} {info.run_dir}")
    return 0


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def cmd_exec(lab: str, node: str, cmd: list[str], interactive: bool = False) -> int:
    from lab import api

    return api.exec(lab, node, cmd, capture=False, interactive=interactive).returncode


def cmd_logs(lab: str, node: str | None = None, follow: bool = False) -> int:
    from lab import api

    single = node is not None or len(api.nodes(lab)) == 1  # one node's lines need no name
    for name, line in api.logs(lab, node, follow):
        print(line if single else f"{name} | {line}", flush=True)
    return 0


def cmd_check(lab: str) -> int:
    """The table `lab run` prints, against the running lab now."""
    from lab import api
    from lab.reports.terminal import expectation_table

    results = api.check(lab)
    print("\n".join(expectation_table(results)))
    return 0 if all(e.result.passed for e in results) else 1


def cmd_down(lab: str) -> int:
    from lab import lifecycle
    from lab.errors import UnknownLab

    try:
        lab_id, run_dir, report = lifecycle.take_down(lab)
    except UnknownLab as e:  # idempotent: a second `down` finds nothing to do
        print(f"nothing to do: {e}")
        return 0
    if report is None:
        print(f"lab {lab_id} is down")
        return 0
    bad = [f"{e.result.check} {e.result.node}" for e in report.results if not e.result.passed]
    print(f"lab {lab_id} is down: {'PASSED' if report.passed else 'FAILED'}"
          + (f" ({', '.join(bad[:5])})" if bad else "") + f" -> {run_dir}")
    return 0


def _lifecycle(args: argparse.Namespace) -> int:
    from lab.lifecycle import shell_argv

    if args.command == "up":
        return cmd_up(args.scenario, args.backend, args.out)
    if args.command == "ps":
        return cmd_ps()
    if args.command == "shell":
        return cmd_exec(args.lab, args.node, shell_argv(), interactive=True)
    if args.command == "exec":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not cmd:
            print("lab: error: exec needs a command: lab exec LAB NODE -- CMD ...", file=sys.stderr)
            return 2
        return cmd_exec(args.lab, args.node, cmd)
    if args.command == "logs":
        return cmd_logs(args.lab, args.node, args.follow)
    if args.command == "check":
        return cmd_check(args.lab)
    return cmd_down(args.lab)


LIFECYCLE = ("up", "ps", "shell", "exec", "logs", "check", "down")


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
    b.add_argument("--backends", default="netns,docker",
                   help="netns, docker, rootless (netns run by uid 65534, against the same run by root)")
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
            from lab import api

            api.grade(args.scenario, args.submissions, args.node, jobs=args.jobs, out=args.out, backend=args.backend,
                      progress=lambda line: print(line, flush=True))
            return 0
        if args.command in LIFECYCLE:
            return _lifecycle(args)
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
