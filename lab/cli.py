"""The `lab` console script: parses (lab/cliargs.py), calls the library (lab/api.py), prints.
tasks.py calls the same functions: one implementation, two doors."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from lab.cliargs import parser
from lab.errors import Interrupted, LabError, ScenarioError
from lab.signals import SignalGuard


def _quiet_progress(line: str) -> None:
    """-q: no progress lines."""


def cmd_run(scenario: str, backend: str = "netns", out: str | None = None, cluster: str | None = None,
            quiet: int = 0, verbose: int = 0, seed: int | None = None, capture: bool = False) -> int:
    """The guard goes in first: a signal ends the run in order (130/143), whatever is being imported,
    loaded or created (the run says `STARTED` once it begins creating). Once the run has returned,
    its outcome is decided: a late Ctrl-C must not turn it into a traceback or another exit code."""
    with SignalGuard(then=signal.SIG_IGN) as guard:
        from lab import api
        from lab.orchestrator import TerminalProgress
        from lab.reports.terminal import phase_lines, table, verdict_line

        result = api.run(scenario, backend, out, cluster=cluster, guard=guard, own_process=True, seed=seed,
                         capture=capture,
                         progress=_quiet_progress if quiet else TerminalProgress())
    if quiet == 0:
        print(table(result))
    elif quiet == 1 or not result.passed:
        print(verdict_line(result))
    if verbose:
        print("\n".join(["phases:", *phase_lines(result.phases)]))
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
        extra = (f", {len(s.timeline)} fault step(s)" if s.timeline else "") + \
            (f", capturing {', '.join(s.capture.networks)}" if s.capture.networks else "")
        print(f"ok: {path}: {s.name}: {len(s.networks)} network(s), {hosts} host(s), "
              f"{len(s.expect)} expectation(s){extra}")
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


def cmd_clean(everything: bool = False, lab: str | None = None) -> int:
    from lab import api

    outcomes = api.clean(everything, lab)
    for c in outcomes:
        if c.error:
            print(f"lab: error: lab {c.id} ({c.name}): {c.error}", file=sys.stderr)
        elif c.kept:
            print(f"kept lab {c.id} ({c.name}): still running (lab down {c.id}, or clean --all)")
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


def cmd_cluster(action: str, hosts: int = 3, name: str = "sim", file: str = "cluster.yaml", tls: bool = False) -> int:
    """`lab cluster up|down`: a simulated cluster of Docker engines on this machine."""
    from lab import backends

    if action == "up":
        backends.cluster_up(hosts, name, Path(file), tls)
    else:
        backends.cluster_down(name, Path(file))
    return 0


def cmd_up(scenario: str, backend: str = "netns", out: str | None = None, quiet: int = 0,
           cluster: str | None = None) -> int:
    from lab import api
    from lab.reports.terminal import row

    kept = api.up(scenario, backend, out, cluster=cluster)
    if not quiet:
        print(row(("NODE", "ADDRESSES", "RUNS"), (16, 34, 28), "STATE"))
        for n in kept.status["nodes"]:
            addresses = ", ".join(f"{a} ({i})" for i, a in n["addresses"].items())
            on = f" on {n['host']}" if n.get("host") else ""
            print(row((n["name"], addresses, n["runs"]), (16, 34, 28), n["state"] + on))
    if kept.ok:
        if quiet < 2:
            print(f"lab {kept.id} is up ({kept.backend}): lab shell {kept.id} NODE | lab exec {kept.id} NODE -- CMD "
                  f"| lab logs {kept.id} | lab check {kept.id} | lab down {kept.id}")
        return 0
    print(f"lab {kept.id} did not come up: {'; '.join(kept.status['failures'])} "
          f"(torn down; logs in {kept.rundir.root})")
    return 1


def cmd_ps(lab: str | None = None, as_json: bool = False) -> int:
    from lab import api
    from lab.reports.terminal import row

    if lab is not None:
        return _ps_lab(lab, as_json)
    labs = api.labs()
    if as_json:
        print(json.dumps([asdict(info) for info in labs], indent=2))
        return 0
    if not labs:
        print("no labs")
        return 0
    widths = [10, 16, 10, 8, 5, 8, 16]
    print(row(("ID", "SCENARIO", "OWNER", "BACKEND", "NODES", "AGE", "STATE"), widths, "RUN FOLDER"))
    for info in labs:
        cells = (info.id, info.name, info.owner, info.backend, str(info.nodes), _age(info.age), info.state)
        print(row(cells, widths, info.run_dir))
    return 0


def _ps_lab(lab: str, as_json: bool) -> int:
    from lab import api
    from lab.reports.terminal import row

    nodes = api.lab_nodes(lab)
    if as_json:
        print(json.dumps([asdict(n) for n in nodes], indent=2))
        return 0
    widths = [16, 22, 5, 12, 8]
    print(row(("NODE", "STATE", "EXIT", "HOST", "UPTIME"), widths, "ADDRESSES"))
    for n in nodes:
        cells = (n.name, n.state, "-" if n.exit_code is None else str(n.exit_code), n.host or "this machine",
                 "-" if n.uptime is None else _age(n.uptime))
        print(row(cells, widths, ", ".join(f"{a} ({i})" for i, a in n.addresses.items())))
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


def cmd_logs(lab: str, node: str | None = None, follow: bool = False, tail: int | None = None) -> int:
    from lab import api

    single = node is not None or len(api.nodes(lab)) == 1  # one node's lines need no name
    for name, line in api.logs(lab, node, follow, tail=tail):
        print(line if single else f"{name} | {line}", flush=True)
    return 0


def cmd_check(lab: str) -> int:
    """The table `lab run` prints, against the running lab now."""
    from lab import api
    from lab.reports.terminal import expectation_table

    results = api.check(lab)
    print("\n".join(expectation_table(results)))
    return 0 if all(e.result.passed for e in results) else 1


def cmd_down(lab: str, quiet: int = 0, verbose: int = 0) -> int:
    """Exit 0 when the lab's expectations held, 1 when one failed (as `lab run` and `lab check`)."""
    from lab import lifecycle
    from lab.errors import UnknownLab
    from lab.reports.terminal import phase_lines

    try:
        lab_id, run_dir, report = lifecycle.take_down(lab)
    except UnknownLab as e:  # idempotent: a second `down` finds nothing to do
        if quiet < 2:
            print(f"nothing to do: {e}")
        return 0
    if report is None:
        if quiet < 2:
            print(f"lab {lab_id} is down")
        return 0
    bad = [f"{e.result.check} {e.result.node}" for e in report.results if not e.result.passed]
    if quiet < 2 or not report.passed:
        print(f"lab {lab_id} is down: {'PASSED' if report.passed else 'FAILED'}"
              + (f" ({', '.join(bad[:5])})" if bad else "") + f" -> {run_dir} (report.html)")
    if verbose and report.phases:
        print("\n".join(["phases:", *phase_lines(report.phases)]))
    return 0 if report.passed else 1


def _lifecycle(args: argparse.Namespace) -> int:
    from lab.lifecycle import shell_argv

    if args.command == "up":
        return cmd_up(args.scenario, args.backend, args.out, args.quiet, args.cluster)
    if args.command == "ps":
        return cmd_ps(args.lab, args.json)
    if args.command == "shell":
        return cmd_exec(args.lab, args.node, shell_argv(), interactive=True)
    if args.command == "exec":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not cmd:
            print("lab: error: exec needs a command: lab exec LAB NODE -- CMD ...", file=sys.stderr)
            return 2
        return cmd_exec(args.lab, args.node, cmd)
    if args.command == "logs":
        return cmd_logs(args.lab, args.node, args.follow, args.tail)
    if args.command == "check":
        return cmd_check(args.lab)
    return cmd_down(args.lab, args.quiet, args.verbose)


LIFECYCLE = ("up", "ps", "shell", "exec", "logs", "check", "down")


def cmd_grade(scenario: str, submissions: str, node: str, jobs: int = 4, out: str | None = None,
              backend: str = "netns", quiet: int = 0, resume: bool = False, only: str = "",
              seed: int | None = None) -> int:
    from lab import api

    def progress(line: str) -> None:
        print(line, flush=True)

    def stop(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    old = signal.signal(signal.SIGTERM, stop)  # SIGTERM as Ctrl-C: the running labs stop in order
    try:
        root, grades = api.grade(scenario, submissions, node, jobs=jobs, out=out, backend=backend,
                                 progress=_quiet_progress if quiet else progress, resume=resume,
                                 only=[n for n in only.split(",") if n], seed=seed)
    except (KeyboardInterrupt, Interrupted) as e:
        print("lab grade: stopped; every grade recorded so far is kept (grades.jsonl): the same command "
              "with --resume grades the rest", file=sys.stderr)
        return 130 if isinstance(e, KeyboardInterrupt) else e.exit_code
    finally:
        signal.signal(signal.SIGTERM, old)
    if quiet < 2:
        full = sum(g.score >= g.max for g in grades)
        print(f"graded {len(grades)} submission(s), {full} with full marks -> {root / 'grades.csv'}, "
              f"{root / 'grades.json'}, {root / 'index.html'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return _dispatch(args)
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


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return cmd_run(args.scenario, args.backend, args.out, args.cluster, args.quiet, args.verbose, args.seed,
                       args.capture)
    if args.command == "cluster":
        return cmd_cluster(args.action, args.hosts, args.name, args.file, args.tls)
    if args.command == "validate":
        return cmd_validate(args.scenarios)
    if args.command == "graph":
        return cmd_graph(args.scenario, args.out)
    if args.command == "clean":
        return cmd_clean(args.all, args.lab)
    if args.command == "grade":
        return cmd_grade(args.scenario, args.submissions, args.node, args.jobs, args.out, args.backend, args.quiet,
                         args.resume, args.only, args.seed)
    if args.command in LIFECYCLE:
        return _lifecycle(args)
    if args.command == "images":
        return cmd_images(args.base)
    from lab.bench import bench

    sizes = [int(n) for n in args.sizes.split(",")] if args.sizes else None
    return bench(sizes, args.rounds, args.peers, args.backends.split(","), args.out)


if __name__ == "__main__":
    sys.exit(main())
