"""The `lab` console script. tasks.py calls the same functions: one implementation, two doors."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from lab.errors import LabError, ScenarioError


def cmd_run(scenario: str, backend: str = "netns", out: str | None = None) -> int:
    from lab import orchestrator
    from lab.report import table
    from lab.scenario import load_scenario

    loaded = load_scenario(scenario)
    # The run records SIGINT/SIGTERM itself and tears down; once it returns, its outcome (130/143)
    # is decided, and a late Ctrl-C must not turn it into a traceback or a different exit code.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    result = orchestrator.run(loaded, backend, Path(out) if out else None)
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


def cmd_clean(everything: bool = False) -> int:
    from lab import backends
    from lab.journal import journals

    found = 0
    for j in journals():
        if j.alive() and not everything:
            print(f"kept lab {j.lab_id} ({j.meta().get('name', '?')}): still running (use --all)")
            continue
        name = j.meta().get("name", "?")
        removed = backends.clean(j)
        found += 1
        print(f"cleaned lab {j.lab_id} ({name}): removed {len(removed)} resource(s)")
    if not found:
        print("nothing to clean")
    return 0


def cmd_images(base: str = "debootstrap") -> int:
    from lab.images import build

    build(base)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lab", description="Reproducible network-programming labs.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="bring a scenario up, run it, check it, tear it down")
    r.add_argument("scenario")
    r.add_argument("--backend", default="netns", help="where hosts live: netns (default) or docker")
    r.add_argument("--out", help="run folder (default: runs/<scenario>-<time>/)")
    v = sub.add_parser("validate", help="check scenario files without running anything")
    v.add_argument("scenarios", nargs="+")
    c = sub.add_parser("clean", help="remove what dead labs left behind (by their journals only)")
    c.add_argument("--all", action="store_true", help="also labs whose process still runs")
    i = sub.add_parser("images", help="build the node image for container backends (cached by content)")
    i.add_argument("--base", default="debootstrap",
                   help="'debootstrap' (default: a Debian base built locally, no registry) or an image, "
                        "e.g. python:3.12-slim")
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
            return cmd_run(args.scenario, args.backend, args.out)
        if args.command == "validate":
            return cmd_validate(args.scenarios)
        if args.command == "clean":
            return cmd_clean(args.all)
        if args.command == "images":
            return cmd_images(args.base)
        if args.command == "bench":
            from lab.bench import bench

            sizes = [int(n) for n in args.sizes.split(",")] if args.sizes else None
            return bench(sizes, args.rounds, args.peers, args.backends.split(","))
    except ScenarioError as e:
        print(e, file=sys.stderr)
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
