"""`inv bench` / `lab bench`: lab against its peers, same job, alternating runs, medians.

The job (as in ../shared/peers): one echo server, N clients each on its own host, every client
sends one line and checks the echo, then everything is torn down. Each side is timed end to end as
a fresh process (interpreter start included), A B A B, and the medians are compared:
- the netns backend against Mininet 2.3 (`run_mininet.sh N`),
- the docker backend against docker compose (`compose_echo.sh N`, `--scale client=N`);
- `rootless`: the netns backend run by an ordinary user (uid ROOTLESS_USER, its labs in a user
  namespace) against the same run by root; both sides run Debian's python3 and one copy of the lab
  that the user can read, so only who runs it differs.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lab.backends import load as load_backend

SCENARIO = """\
name: bench-{n}
timeout: 120s
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


PAIRINGS = {
    "netns": Pairing("netns", "mininet", "run_mininet.sh", ("mn",), "apt-get install mininet bridge-utils"),
    "docker": Pairing("docker", "compose", "compose_echo.sh", ("docker-compose",),
                      "apt-get install docker-compose; bash build_peer_image.sh"),
}
DEFAULT_SIZES = {"netns": [10, 100], "docker": [10, 50], "rootless": [10, 100]}
ROOTLESS_USER = 65534  # nobody
SYSTEM_PYTHON = "/usr/bin/python3"


def _timed(argv: list[str]) -> tuple[float, bool, str, int]:
    """(seconds, succeeded, last line printed, pid): the pid names what a peer script created."""
    t = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=600)
    tail = (out + err).strip().splitlines()
    return time.monotonic() - t, proc.returncode == 0, tail[-1] if tail else "", proc.pid


def _remove_compose_leftovers(project: str) -> None:
    """What a compose peer run left (its `down` can fail under load): found by the project label of
    the run this benchmark started, never by a name pattern."""
    label = f"label=com.docker.compose.project={project}"
    for kind in ("container", "network"):
        ids = subprocess.run(["docker", kind, "ls", "-q", *(["-a"] if kind == "container" else []),
                              "--filter", label], capture_output=True, text=True).stdout.split()
        if ids:
            rm = ["docker", "rm", "-f"] if kind == "container" else ["docker", "network", "rm"]
            subprocess.run(rm + ids, capture_output=True)


def default_peers() -> Path:
    return Path(__file__).resolve().parent.parent.parent / "shared" / "peers"


def bench(sizes: list[int] | None = None, rounds: int = 3, peers: str | None = None,
          backends: list[str] | None = None) -> int:
    peer_dir = Path(peers) if peers else default_peers()
    rows = []
    ok = True
    for backend in backends or ["netns", "docker"]:
        if backend == "rootless":
            for n in sizes or DEFAULT_SIZES[backend]:
                user_t, root_t, good = _rootless(n, rounds)
                ok &= good
                rows.append((backend, "root", n, user_t, root_t))
            continue
        pairing = PAIRINGS[backend]
        script = peer_dir / pairing.script
        have_peer = script.exists() and all(shutil.which(c) for c in pairing.needs)
        if not have_peer:
            print(f"{pairing.peer} peer unavailable ({script}; {pairing.install})")
        load_backend(backend).prepare()  # the node image, for a container backend
        for n in sizes or DEFAULT_SIZES[backend]:
            lab_t, peer_t, good = _compare(backend, pairing, script if have_peer else None, n, rounds)
            ok &= good
            rows.append((backend, pairing.peer, n, lab_t, peer_t))
    print()
    print(f"{'backend':<8} {'peer':<8} {'N':>4}  {'lab (median)':>12}  {'peer (median)':>13}  {'speed-up':>8}")
    for backend, peer, n, lab_t, peer_t in rows:
        ratio = f"{peer_t / lab_t:7.1f}x" if peer_t else "      -"
        peer_s = f"{peer_t:12.2f}s" if peer_t else f"{'-':>13}"
        print(f"{backend:<8} {peer:<8} {n:>4}  {lab_t:11.2f}s  {peer_s}  {ratio}")
    return 0 if ok else 1


def phase_split(run_dirs: list[Path]) -> dict[str, float]:
    """Where lab's time went over several runs: each phase's median seconds (report.json timings)."""
    seen: dict[str, list[float]] = {}
    for run_dir in run_dirs:
        try:
            phases = json.loads((run_dir / "report.json").read_text())["timings"]["phases"]
        except (OSError, ValueError, KeyError):
            continue
        for name, p in phases.items():
            seen.setdefault(name, []).append(float(p["seconds"]))
    return {name: statistics.median(times) for name, times in seen.items()}


def _split_line(backend: str, n: int, split: dict[str, float]) -> str:
    return f"  {backend:<6} N={n:<4} phases (median): " + ", ".join(f"{k} {v:.2f}s" for k, v in split.items())


def _compare(backend: str, pairing: Pairing, script: Path | None, n: int,
             rounds: int) -> tuple[float, float | None, bool]:
    lab_times: list[float] = []
    peer_times: list[float] = []
    ok = True
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        scenario = Path(tmp) / f"bench-{n}.yaml"
        scenario.write_text(SCENARIO.format(n=n))
        for k in range(rounds):
            t, good, last, _ = _timed([sys.executable, "-m", "lab", "run", str(scenario), "--backend", backend,
                                       "--out", f"{tmp}/run-{k}"])
            ok &= good
            lab_times.append(t)
            print(f"  {backend:<6} N={n:<4} round {k + 1}: lab {t:6.2f}s {'ok' if good else 'FAILED: ' + last}")
            if script is not None:
                t, good, last, pid = _timed(["bash", str(script), str(n)])
                if pairing.peer == "compose":  # compose_echo.sh names its project peerecho$$
                    _remove_compose_leftovers(f"peerecho{pid}")
                peer_times.append(t)
                print(f"  {backend:<6} N={n:<4} round {k + 1}: {pairing.peer} {t:6.2f}s {last}")
        print(_split_line(backend, n, phase_split([Path(f"{tmp}/run-{k}") for k in range(rounds)])))
    return statistics.median(lab_times), statistics.median(peer_times) if peer_times else None, ok


def _rootless(n: int, rounds: int) -> tuple[float, float | None, bool]:
    """(median as the user, median as root, all passed): A B A B from one copy of the lab. Run by a
    user, only the user's side is timed."""
    user_times: list[float] = []
    root_times: list[float] = []
    ok = True
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        folder = Path(tmp)
        shutil.copytree(Path(__file__).resolve().parent, folder / "lab", ignore=shutil.ignore_patterns("__pycache__"))
        (folder / f"bench-{n}.yaml").write_text(SCENARIO.format(n=n))
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        root = os.geteuid() == 0
        user = ["setpriv", f"--reuid={ROOTLESS_USER}", f"--regid={ROOTLESS_USER}", "--clear-groups"] if root else []
        env = ["env", "-u", "XDG_RUNTIME_DIR", f"PYTHONPATH={folder}", "PYTHONDONTWRITEBYTECODE=1"]
        for k in range(rounds):
            sides = [("user", user, user_times)] + ([("root", [], root_times)] if root else [])
            for who, prefix, times in sides:
                out = folder / f"run-{who}-{k}"
                out.mkdir()
                if prefix:
                    os.chown(out, ROOTLESS_USER, ROOTLESS_USER)
                t, good, last, _ = _timed([*prefix, *env, SYSTEM_PYTHON, "-m", "lab", "run",
                                           str(folder / f"bench-{n}.yaml"), "--out", str(out)])
                ok &= good
                times.append(t)
                print(f"  rootless N={n:<4} round {k + 1}: as {who} {t:6.2f}s {'ok' if good else 'FAILED: ' + last}")
    return statistics.median(user_times), statistics.median(root_times) if root_times else None, ok
