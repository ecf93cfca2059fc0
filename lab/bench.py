"""`inv bench` / `lab bench`: lab against its peers, same job, alternating runs, medians.

The job (as in ../shared/peers): one echo server, N clients each on its own host, every client
sends one line and checks the echo, then everything is torn down. Each side is timed end to end as
a fresh process (interpreter start included), A B A B, and the medians are compared.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCENARIO = """\
name: bench-{n}
timeout: 60s
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


def _timed(argv: list[str], cwd: Path | None = None) -> tuple[float, bool, str]:
    t = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=300)
    tail = (done.stdout + done.stderr).strip().splitlines()
    return time.monotonic() - t, done.returncode == 0, tail[-1] if tail else ""


def default_peers() -> Path:
    return Path(__file__).resolve().parent.parent.parent / "shared" / "peers"


def bench(sizes: list[int], rounds: int = 3, peers: str | None = None) -> int:
    peer_dir = Path(peers) if peers else default_peers()
    mininet = peer_dir / "run_mininet.sh"
    have_mininet = mininet.exists() and shutil.which("mn") is not None
    if not have_mininet:
        print(f"mininet peer unavailable ({mininet} and `mn` needed: apt-get install mininet bridge-utils)")
    rows = []
    ok = True
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        for n in sizes:
            scenario = Path(tmp) / f"bench-{n}.yaml"
            scenario.write_text(SCENARIO.format(n=n))
            lab_times, peer_times = [], []
            for k in range(rounds):
                t, good, last = _timed([sys.executable, "-m", "lab", "run", str(scenario),
                                        "--out", f"{tmp}/run-{n}-{k}"])
                ok &= good
                lab_times.append(t)
                print(f"  N={n:<4} round {k + 1}: lab     {t:6.2f}s {'ok' if good else 'FAILED: ' + last}")
                if have_mininet:
                    t, good, last = _timed(["bash", str(mininet), str(n)])
                    peer_times.append(t)
                    print(f"  N={n:<4} round {k + 1}: mininet {t:6.2f}s {last}")
            rows.append((n, statistics.median(lab_times), statistics.median(peer_times) if peer_times else None))
    print()
    print(f"{'N':>5}  {'lab (median)':>12}  {'mininet (median)':>16}  {'speed-up':>8}")
    for n, lab_t, peer_t in rows:
        ratio = f"{peer_t / lab_t:7.1f}x" if peer_t else "      -"
        peer = f"{peer_t:15.2f}s" if peer_t else f"{'-':>16}"
        print(f"{n:>5}  {lab_t:11.2f}s  {peer}  {ratio}")
    return 0 if ok else 1
