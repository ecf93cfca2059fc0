"""The `lab` command line: every command, positional and option with its help line, the exit
codes, and the conventions people know from other tools (`--version`, `-q`/`-v`, a usage error
that says what was meant). Parsing only: the commands themselves are lab/cli.py's.

Kept apart from the backends: `lab run` parses before it puts its signal guard in, so parsing
imports nothing of the lab's machinery. A backend's name is checked where it is loaded
(`backends.load`), which answers a mistyped one with a usage error (exit 2) for every door.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import lab
from lab.errors import did_you_mean

EXIT_CODES = """\
exit codes:
  0    every expectation held
  1    an expectation failed (the table says which; report.json has every detail)
  2    invalid input: the scenario (FILE:LINE:COL: what and why) or the command line
  3    this machine cannot run the lab (no root or user namespaces, no engine, ...): the fix is named
  130  interrupted by Ctrl-C (SIGINT); 143: by SIGTERM (the lab was torn down, its logs kept)"""

RUN_EXAMPLES = """\
examples:
  lab run scenarios/echo.yaml                      on network namespaces (root, or any user)
  lab run scenarios/echo.yaml --backend docker     each host a container
  lab run scenarios/echo.yaml --out runs/mine -q   only the verdict line
  lab run scenarios/echo.yaml -v                   with each phase's time (plan, up, run, down, check)
"""

LAB_HELP = "lab id (or a unique prefix of it, or the scenario's name)"
BACKEND_HELP = "where hosts live: netns (default), docker or swarm"


def choice(*names: str) -> Callable[[str], str]:
    """An argument type for one of `names`: a mistyped one is a usage error (exit 2) that names the
    closest (`did you mean 'down'?`)."""
    def pick(value: str) -> str:
        if value in names:
            return value
        raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(names)}{did_you_mean(value, names)}")
    pick.__name__ = "choice"
    return pick


class Parser(argparse.ArgumentParser):
    """`lab --help` ends with the built-in roles and checks, read from their catalogues only when help
    is shown (`lab run` puts its signal guard in before it imports anything of the lab)."""

    def format_help(self) -> str:
        from lab.docs import help_text

        return f"{super().format_help()}\n{help_text()}"


def _loudness(p: argparse.ArgumentParser, verbose: bool = True) -> None:
    """-q/-v, on every command that runs a lab."""
    p.add_argument("-q", "--quiet", action="count", default=0,
                   help="less output: only the final line (-qq: nothing when all went well)")
    if verbose:
        p.add_argument("-v", "--verbose", action="count", default=0,
                       help="more output: each phase's time (plan, up, run, down, check) and its share")


def _command(sub: argparse._SubParsersAction, name: str, help: str, epilog: str = EXIT_CODES,  # noqa: A002
             ) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help[:1].upper() + help[1:] + ".",
                                                epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    return p


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="lab", description="Reproducible network-programming labs.", epilog=EXIT_CODES,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"lab {lab.__version__}", help="print lab's version")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=argparse.ArgumentParser)
    _running(sub)
    _kept(sub)
    _tools(sub)
    return p


def _running(sub: argparse._SubParsersAction) -> None:
    r = _command(sub, "run", "bring a scenario up, run it, check it, tear it down", RUN_EXAMPLES + "\n" + EXIT_CODES)
    r.add_argument("scenario", help="the scenario file (YAML)")
    r.add_argument("--backend", default="netns", help=BACKEND_HELP)
    r.add_argument("--out", help="run folder (default: runs/<scenario>-<time>/)")
    r.add_argument("--cluster", help="cluster file (hosts' Docker endpoints) for --backend swarm")
    r.add_argument("--seed", type=int, help="what the clients' {word}s are drawn from (default: a new one, "
                                            "in report.json: give it to replay a run)")
    r.add_argument("--capture", action="store_true",
                   help="record every network to captures/NET.pcap in the run folder (tcpdump, Wireshark)")
    _loudness(r)
    g = _command(sub, "grade", "grade submissions: each replaces a node's files and runs as its own lab")
    g.add_argument("scenario", help="the exercise's scenario file")
    g.add_argument("submissions", help="a folder: one entry (folder or single file) per student")
    g.add_argument("--node", required=True, help="the node whose files: each submission replaces")
    g.add_argument("--jobs", type=int, default=4, help="labs at once (default 4)")
    g.add_argument("--out", help="grades folder (default grades/<scenario>-<time>/)")
    g.add_argument("--resume", action="store_true",
                   help="grade only the submissions the grades folder (--out, or the latest) has no grade for")
    g.add_argument("--only", metavar="NAMES", default="", help="grade these submissions again (comma-separated)")
    g.add_argument("--seed", type=int, help="the batch's seed: each submission's {word}s are drawn from it and "
                                            "its name (default: a new one, in grades.json)")
    g.add_argument("--backend", default="netns", help=BACKEND_HELP)
    _loudness(g, verbose=False)  # (each submission's report has its timings)


def _kept(sub: argparse._SubParsersAction) -> None:
    u = _command(sub, "up", "start a lab and keep it running (see ps, shell, exec, logs, check, down)")
    u.add_argument("scenario", help="the scenario file (YAML)")
    u.add_argument("--backend", default="netns", help=BACKEND_HELP)
    u.add_argument("--out", help="run folder (default: runs/<scenario>-<time>/)")
    u.add_argument("--cluster", help="cluster file (hosts' Docker endpoints) for --backend swarm")
    _loudness(u, verbose=False)  # (its phases are known when it goes down: `lab down -v`)
    ps = _command(sub, "ps", "list labs (id, scenario, owner, backend, nodes, age, state), or one lab's nodes")
    ps.add_argument("lab", nargs="?", help="one lab: its nodes' state, exit code, addresses, host and uptime")
    ps.add_argument("--json", action="store_true", help="as JSON, for scripts")
    sh = _command(sub, "shell", "an interactive shell inside a node of a running lab")
    sh.add_argument("lab", help=LAB_HELP)
    sh.add_argument("node", help="the node's name")
    ex = _command(sub, "exec", "run a command inside a node: lab exec LAB NODE -- CMD ...")
    ex.add_argument("lab", help=LAB_HELP)
    ex.add_argument("node", help="the node's name")
    ex.add_argument("cmd", nargs=argparse.REMAINDER, help="the command and its arguments, after --")
    lg = _command(sub, "logs", "the logs of a lab's nodes")
    lg.add_argument("lab", help=LAB_HELP)
    lg.add_argument("node", nargs="?", help="one node (default: every node, each line prefixed by its name)")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing until the lab goes down")
    lg.add_argument("-n", "--tail", type=int, metavar="N", help="only the last N lines of each node first")
    ck = _command(sub, "check", "evaluate the scenario's expectations against the running lab now")
    ck.add_argument("lab", help=LAB_HELP)
    dn = _command(sub, "down", "stop a lab: check it, write its report, tear it down (exit 1 if it failed)")
    dn.add_argument("lab", help=LAB_HELP)
    _loudness(dn)
    c = _command(sub, "clean", "remove what dead labs left behind (found by their journals only)")
    c.add_argument("lab", nargs="?", help="one dead lab (default: every dead lab)")
    c.add_argument("--all", action="store_true", help="also labs whose process still runs (each stopped first)")


def _tools(sub: argparse._SubParsersAction) -> None:
    v = _command(sub, "validate", "check scenario files without running anything")
    v.add_argument("scenarios", nargs="+", help="scenario files")
    g = _command(sub, "graph", "draw a scenario's topology as SVG (nothing is created)")
    g.add_argument("scenario", help="the scenario file (YAML)")
    g.add_argument("-o", "--out", help="SVG file to write (default: stdout)")
    i = _command(sub, "images", "build the node image for container backends (cached by content)")
    i.add_argument("--base", default="debootstrap",
                   help="'debootstrap' (default: a Debian base built locally, no registry) or an image, "
                        "e.g. python:3.12-slim")
    cl = _command(sub, "cluster", "a simulated cluster on this machine: Docker engines in containers, "
                                  "joined into a swarm (for --backend swarm)")
    cl.add_argument("action", type=choice("up", "down"), help="up (start it, write its file) or down")
    cl.add_argument("--hosts", type=int, default=3, help="number of hosts (Docker engines; default 3)")
    cl.add_argument("--name", default="sim", help="the cluster's name (default sim)")
    cl.add_argument("--file", default="cluster.yaml", help="the cluster file to write (up) or remove (down)")
    cl.add_argument("--tls", action="store_true", help="engines on 2376 that take only clients with a certificate "
                                                      "of the cluster's CA (made in FILE-tls/; the file's hosts "
                                                      "carry tls:)")
    b = _command(sub, "bench", "time lab against its peers (Mininet, docker compose) and rootless against root")
    b.add_argument("--sizes", default="", help="client counts (default: 10,100,300,1000 for netns, 10,50,100 "
                                                "for docker, 10,100 for rootless, 10,50 for swarm)")
    b.add_argument("--backends", default="netns,docker",
                   help="netns, docker, rootless (netns run by uid 65534, against the same run by root), swarm "
                        "(on a simulated 3-host cluster with TLS, made for the bench, against the docker backend)")
    b.add_argument("--rounds", type=int, default=5, help="runs per side and size (medians are compared; default 5)")
    b.add_argument("--peers", default=None, help="folder of the peer scripts (default ../shared/peers)")
    b.add_argument("--out", default=None, help="folder for bench.json and bench.svg (default runs/bench-STAMP)")
