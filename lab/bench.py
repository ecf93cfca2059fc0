"""`inv bench` / `lab bench`: lab against its peers, same job, alternating runs, medians and spread.

The job (as in ../shared/peers): one echo server, N clients each on its own host, every client
sends one line and checks the echo, then everything is torn down. Each side is timed end to end as
a fresh process, A B A B, and the medians are compared:
- the netns backend against Mininet 2.3 (`run_mininet.sh N`: bash, then Mininet's python from its
  start to its exit, teardown included),
- the docker backend against docker compose (`compose_echo.sh N`: `up --scale client=N`, wait,
  `down`);
- `rootless`: the netns backend run by an ordinary user (uid ROOTLESS_USER, its labs in a user
  namespace) against the same run by root; both sides run Debian's python3 and one copy of the lab
  that the user can read, so only who runs it differs;
- `swarm`: the swarm backend on a simulated cluster of CLUSTER_HOSTS engines with TLS (made for the
  bench on this machine, removed after it) against the docker backend on this machine's engine;
- and on docker and swarm, the engines' own floor (`Backend.floor`): the same containers, created,
  started and removed, sleeping; lab's time above it is lab's own work.
lab's side is `python -m lab run` from the interpreter's start to its exit (plan, up, run, checks,
reports, down), and its phases come from each run's report.json. Each side's peak memory is that of
the process timed and of those it waited for (wait4). The figures go to bench.json and bench.svg.
"""

from __future__ import annotations

import compileall
import contextlib
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lab import backends
from lab.benchfigures import FLOOR, Point, Sample, markdown, svg, table, write
from lab.journal import Journal, new_lab_id, state_dir
from lab.plan import make_plan
from lab.scenario import load_scenario

SCENARIO = """\
name: bench-{n}
timeout: 300s
networks:
  lan: {{subnet: 10.10.0.0/16}}
nodes:
  server:
    networks: {{lan: 10.10.0.1}}
    role: echo-server
    with: {{port: 9999}}
  client:
    replicas: {n}
    networks: [lan]
    after: server
    role: telnet-client
    with: {{connect: "server:9999", send: ["hello from {{node}}"]}}
expect:
  - echo: client
"""


@dataclass(frozen=True)
class Pairing:
    backend: str
    peer: str
    script: str
    needs: tuple[str, ...]  # commands the peer needs
    install: str
    floor: bool = False  # the engine's own floor is timed too (`Backend.floor`)


PAIRINGS = {
    "netns": Pairing("netns", "mininet", "run_mininet.sh", ("mn",), "apt-get install mininet bridge-utils"),
    "docker": Pairing("docker", "compose", "compose_echo.sh", ("docker-compose",),
                      "apt-get install docker-compose; bash build_peer_image.sh", floor=True),
}
DEFAULT_SIZES = {"netns": [10, 100, 300, 1000], "docker": [10, 50, 100], "rootless": [10, 100], "swarm": [10, 50]}
CLUSTER_HOSTS = 3
DEFAULT_ROUNDS = 5
RUN_LIMIT = 900.0  # s any one timed run may take: lab's own deadlines end a run far sooner
PEER_LIMIT = 150.0  # s a peer's round may take: past it, it is stopped, cleaned, and not timed at larger sizes
ROOTLESS_USER = 65534  # nobody
SYSTEM_PYTHON = "/usr/bin/python3"
BRIDGE_NF = ("/proc/sys/net/bridge/bridge-nf-call-iptables", "/proc/sys/net/bridge/bridge-nf-call-ip6tables")


def timed(argv: list[str], limit: float = RUN_LIMIT) -> Sample:
    """Run `argv` as a fresh process in a session of its own: its wall time, whether it exited 0,
    its last line, and its peak memory (it and the processes it waited for). Past `limit` s, its
    whole session is killed and the sample fails."""
    with tempfile.TemporaryFile() as output:
        t = time.monotonic()
        proc = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        killer = threading.Timer(limit, _kill_session, (proc.pid,))
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # the bench itself stopped (Ctrl-C): so does what it was timing
            _kill_session(proc.pid)
            os.waitpid(proc.pid, 0)
            raise
        finally:
            killer.cancel()
        seconds = time.monotonic() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        lines = output.read().decode(errors="replace").strip().splitlines()
    last = lines[-1] if lines else ""
    if seconds >= limit:
        last = f"stopped after {limit:g}s"
    return Sample(seconds, proc.returncode == 0, usage.ru_maxrss / 1024, last)


def _kill_session(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def default_peers() -> Path:
    return Path(__file__).resolve().parent.parent.parent / "shared" / "peers"


def bench(sizes: list[int] | None = None, rounds: int = DEFAULT_ROUNDS, peers: str | None = None,
          backends: list[str] | None = None, out: str | None = None) -> int:
    """Time every backend at every size against the peers found; print the table, write
    bench.json and bench.svg to `out` (default runs/bench-STAMP). 1 if any lab run failed."""
    folder = Path(out) if out else Path("runs") / f"bench-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    compile_bytecode()
    peer_dir = Path(peers) if peers else default_peers()
    points: list[Point] = []
    with contextlib.ExitStack() as stack:
        for backend in backends or ["netns", "docker"]:
            if backend == "swarm":
                cluster = stack.enter_context(_simulated_cluster())
            for n in sizes or DEFAULT_SIZES[backend]:
                if backend == "rootless":
                    points += _rootless(n, rounds)
                else:
                    points += _swarm(cluster, n, rounds) if backend == "swarm" else \
                        _compare(backend, peer_dir, n, rounds, points)
    print()
    print(table(points))
    write(folder, points, rounds, machine())
    (folder / "bench.svg").write_text(svg(points, f"lab bench on {machine()['summary']}"))
    (folder / "bench.md").write_text(markdown(points, machine()))
    print(f"\n-> {folder}/bench.json, bench.svg, bench.md (the README's table)")
    return 0 if all(p.ok for p in points if p.side == "lab") else 1


def compile_bytecode() -> None:
    """Byte-compile lab and the packages its interpreter imports, as a package manager does when it
    installs them (Debian's Mininet and compose come compiled). Otherwise, under PYTHONDONTWRITEBYTECODE
    or in a venv installed without compiling, every timed lab run compiles some 250 modules from
    source (0.4 s of CPU here) and the bench times the compiler rather than lab."""
    for folder in (Path(__file__).resolve().parent, Path(sysconfig.get_paths()["purelib"])):
        compileall.compile_dir(folder, quiet=2, workers=0)


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpus = os.cpu_count() or 0
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    summary = f"{cpus} cores, {mem:.0f} GiB, Linux {platform.release()}, Python {platform.python_version()}"
    return {"summary": summary, "cpus": str(cpus), "kernel": platform.release(), "date": time.strftime("%Y-%m-%d")}


def _compare(backend: str, peer_dir: Path, n: int, rounds: int, before: list[Point]) -> list[Point]:
    """lab on `backend` and its peer (while the peer stays within PEER_LIMIT), alternating."""
    pairing = PAIRINGS[backend]
    script = peer_dir / pairing.script
    lab, peer, floor = Point(backend, "lab", n), Point(backend, pairing.peer, n), Point(backend, FLOOR, n)
    if not (script.exists() and all(shutil.which(c) for c in pairing.needs)):
        peer.note = f"unavailable ({script}; {pairing.install})"
    elif any(p.side == pairing.peer and p.backend == backend and p.note for p in before):
        peer.note = "over its limit at a smaller size"
    backends.load(backend).prepare()  # the node image, for a container backend
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        scenario = Path(tmp) / f"bench-{n}.yaml"
        scenario.write_text(SCENARIO.format(n=n))
        for k in range(rounds):
            s = timed([sys.executable, "-m", "lab", "run", str(scenario), "--backend", backend, "--out",
                       f"{tmp}/run-{k}", "-q"])
            lab.samples.append(s)
            _say(lab, k, s)
            if not peer.note:
                s = _peer(pairing, script, n)
                peer.samples.append(s)
                _say(peer, k, s)
                if s.last.startswith("stopped after"):
                    peer.note = f"over its limit ({PEER_LIMIT:.0f}s a round)"
            if pairing.floor:
                s = timed([sys.executable, "-m", "lab.bench", FLOOR, backend, str(scenario)])
                floor.samples.append(s)
                _say(floor, k, s)
        lab.phases = phase_split([Path(f"{tmp}/run-{k}") for k in range(rounds)])
    split = ", ".join(f"{name} {v:.2f}s" for name, v in lab.phases.items())
    print(f"  {backend:<6} N={n:<4} lab's phases (median): {split}")
    return [lab, peer, floor] if pairing.floor else [lab, peer]


def floor(backend: str, scenario: str, cluster: str = "") -> int:
    """`python -m lab.bench floor BACKEND SCENARIO [CLUSTER]`: the engine's floor for the scenario's
    plan (`Backend.floor`), as a fresh process timed like lab's run: its interpreter, its imports and
    its client included, so that what lab takes above it is lab's own work. 1: no floor here."""
    plan = make_plan(load_scenario(scenario), 0)
    journal = Journal(state_dir(), new_lab_id())
    backend_of = backends.create(backend, journal, backends.Options(cluster=Path(cluster) if cluster else None))
    backend_of.check(plan)
    journal.open(backend=backend, scenario=scenario, run_dir=str(journal.folder / "out"), name=f"{plan.name}-floor",
                 kept=False)
    return 0 if backend_of.floor(plan) else 1


def _say(point: Point, k: int, s: Sample) -> None:
    rss = f" {s.rss_mib:.0f} MiB" if s.rss_mib is not None else ""
    print(f"  {point.backend:<6} N={point.n:<4} round {k + 1}: {point.side} {s.seconds:6.2f}s{rss} "
          f"{'ok' if s.ok else 'FAILED: ' + s.last}", flush=True)


def _peer(pairing: Pairing, script: Path, n: int) -> Sample:
    """One bounded round of the peer; whatever it left behind (a stopped Mininet's interfaces and the
    sysctls its script switched, a compose project) is put back or removed."""
    saved = {path: _read(path) for path in BRIDGE_NF}
    links, pids = _host_links(), _pids()
    projects = _compose_projects() if pairing.peer == "compose" else set()
    ok = False
    try:
        s = timed(["bash", str(script), str(n)], PEER_LIMIT)
        ok = s.ok
        return s
    finally:
        if pairing.peer == "compose":
            _remove_compose_leftovers(projects)
        elif not ok:  # a stopped Mininet leaves its hosts' shells (detached: `mnexec -d`, marked
            _kill_new_mininet_hosts(pids)  # `mininet:NAME`) and its switch and veths in the host: those
            for name in sorted(_host_links() - links):  # that appeared in its round, those alone (not
                subprocess.run(["ip", "link", "del", name], capture_output=True)  # `mn -c`: it deletes /tmp/*.log)
        for path, value in saved.items():
            if value is not None and _read(path) != value:
                Path(path).write_text(value)


def _host_links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def _pids() -> set[int]:
    return {int(p) for p in os.listdir("/proc") if p.isdigit()}


def _kill_new_mininet_hosts(before: set[int]) -> None:
    for pid in sorted(_pids() - before):
        try:
            if b"mininet:" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


COMPOSE_PROJECT = "com.docker.compose.project"


def _compose_projects() -> set[str]:
    """The compose projects that have a container or a network (a network can outlive its containers)."""
    return {p for kind in ("container", "network")
            for p in _docker_ls(kind, f"label={COMPOSE_PROJECT}", "--format", f'{{{{.Label "{COMPOSE_PROJECT}"}}}}')}


def _remove_compose_leftovers(before: set[str]) -> None:
    """What a compose peer round left (its `down` can fail under load): the projects that appeared
    in its round, found by the compose project label, never by a name pattern. What the engine still
    refuses to remove (a network it says has endpoints, with no container left) is named on stderr."""
    for project in sorted(_compose_projects() - before):
        for kind in ("container", "network"):
            ids = _docker_ls(kind, f"label={COMPOSE_PROJECT}={project}", "-q")
            if ids:
                rm = ["docker", "rm", "-f"] if kind == "container" else ["docker", "network", "rm"]
                done = subprocess.run(rm + ids, capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"bench: compose left {kind} {' '.join(ids)} ({project}) that the engine refuses to "
                          f"remove: {done.stderr.strip()}", file=sys.stderr)


def _docker_ls(kind: str, label: str, *shown: str) -> list[str]:
    """`docker container|network ls` (stopped containers too) of what carries `label`."""
    argv = ["docker", kind, "ls", *(["-a"] if kind == "container" else []), "--filter", label, *shown]
    return subprocess.run(argv, capture_output=True, text=True).stdout.split()


def phase_split(run_dirs: list[Path]) -> dict[str, float]:
    """Where lab's time went over several runs: each phase's median seconds (report.json timings)."""
    import json

    seen: dict[str, list[float]] = {}
    for run_dir in run_dirs:
        try:
            phases = json.loads((run_dir / "report.json").read_text())["timings"]["phases"]
        except (OSError, ValueError, KeyError):
            continue
        for name, p in phases.items():
            seen.setdefault(name, []).append(float(p["seconds"]))
    return {name: statistics.median(times) for name, times in seen.items()}


def _rootless(n: int, rounds: int) -> list[Point]:
    """As the user and as root, A B A B from one copy of the lab. Run by a user, only the user's
    side is timed."""
    user, as_root = Point("rootless", "lab", n), Point("rootless", "root", n)
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        folder = Path(tmp)
        shutil.copytree(Path(__file__).resolve().parent, folder / "lab", ignore=shutil.ignore_patterns("__pycache__"))
        (folder / f"bench-{n}.yaml").write_text(SCENARIO.format(n=n))
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        root = os.geteuid() == 0
        prefix = ["setpriv", f"--reuid={ROOTLESS_USER}", f"--regid={ROOTLESS_USER}", "--clear-groups"] if root else []
        env = ["env", "-u", "XDG_RUNTIME_DIR", f"PYTHONPATH={folder}", "PYTHONDONTWRITEBYTECODE=1"]
        for k in range(rounds):
            for who, point in [(prefix, user)] + ([([], as_root)] if root else []):
                run = folder / f"run-{point.side}-{k}"
                run.mkdir()
                if who:
                    os.chown(run, ROOTLESS_USER, ROOTLESS_USER)
                s = timed([*who, *env, SYSTEM_PYTHON, "-m", "lab", "run", str(folder / f"bench-{n}.yaml"),
                           "--out", str(run), "-q"])
                point.samples.append(s)
                _say(point, k, s)
    return [user] + ([as_root] if root else [])


@contextlib.contextmanager
def _simulated_cluster() -> Iterator[Path]:
    """A simulated cluster with TLS for the swarm rounds (`lab cluster up --tls`), removed after."""
    with tempfile.TemporaryDirectory(prefix="lab-bench-cluster-") as tmp:
        file = Path(tmp) / "cluster.yaml"
        name = f"bench{os.getpid()}"
        try:
            backends.cluster_up(CLUSTER_HOSTS, name, file, tls=True)
            yield file
        finally:
            backends.cluster_down(name, file)


def _swarm(cluster: Path, n: int, rounds: int) -> list[Point]:
    """The swarm backend on the cluster, the docker backend here, and the engines' floor, alternating."""
    swarm, docker, floor_point = Point("swarm", "lab", n), Point("swarm", "docker", n), Point("swarm", FLOOR, n)
    backends.load("docker").prepare()
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        scenario = Path(tmp) / f"bench-{n}.yaml"
        scenario.write_text(SCENARIO.format(n=n))
        floor_argv = [sys.executable, "-m", "lab.bench", FLOOR, "swarm", str(scenario), str(cluster)]
        timed(floor_argv)  # (untimed: the hosts get the node image now, as `lab images` is run before a bench)
        for k in range(rounds):
            for point, argv in ((swarm, ["--backend", "swarm", "--cluster", str(cluster), "--out", f"{tmp}/run-{k}"]),
                                (docker, ["--backend", "docker", "--out", f"{tmp}/docker-{k}"])):
                s = timed([sys.executable, "-m", "lab", "run", str(scenario), *argv, "-q"])
                point.samples.append(s)
                _say(point, k, s)
            s = timed(floor_argv)
            floor_point.samples.append(s)
            _say(floor_point, k, s)
        swarm.phases = phase_split([Path(f"{tmp}/run-{k}") for k in range(rounds)])
        docker.phases = phase_split([Path(f"{tmp}/docker-{k}") for k in range(rounds)])
    for point in (swarm, docker):
        split = ", ".join(f"{name} {v:.2f}s" for name, v in point.phases.items())
        print(f"  swarm  N={n:<4} {point.side}'s phases (median): {split}")
    return [swarm, docker, floor_point]


if __name__ == "__main__" and sys.argv[1:2] == [FLOOR]:
    sys.exit(floor(*sys.argv[2:5]))
