"""A lab has no way out: nodes cannot reach the host's own addresses, nor another node's evidence."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """\
name: isolation
timeout: 15s
networks:
  lan: {{subnet: 10.0.11.0/24}}
nodes:
  prober:
    networks: [lan]
    routes: [{{to: default, via: 10.0.11.1}}]
    run: ["python3", "-c", "{code}"]
expect:
  - output: {{nodes: prober, contains: "blocked"}}
"""

CODE = ("import socket\\nfor a in {addrs!r}:\\n    s = socket.socket()\\n    s.settimeout(2)\\n"
        "    try:\\n        s.connect((a, {port}))\\n        print('reached', a)\\n"
        "    except OSError as e:\\n        print('blocked', a, e)")


def host_addresses() -> list[str]:
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines()]


def test_nodes_cannot_reach_the_host(run_lab, tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    addrs = [a for a in host_addresses() if not a.startswith("127.")]
    code = CODE.format(addrs=addrs, port=port).replace('"', '\\"')
    scenario = tmp_path / "isolation.yaml"
    scenario.write_text(PROBE.format(code=code))
    try:
        run = run_lab(scenario)
        log = (run.out / "nodes" / "prober.log").read_text()
        assert "reached" not in log, log
        assert log.count("blocked") == len(addrs), log
    finally:
        listener.close()


FORGER = '''\
import os, socket
print("sees", sorted(os.listdir("/lab/out")), flush=True)
for path in ("/lab/out/client.jsonl", "/lab/out/client.log", "/lab/out/planted.jsonl", "/lab/ctl/spec.json"):
    try:
        with open(path, "a") as f:
            f.write("forged")
        print("wrote", path, flush=True)
    except OSError as e:
        print("refused", path, e.__class__.__name__, flush=True)
s = socket.socket()
s.bind(("0.0.0.0", 7000))
s.listen(1)
while True:
    c, _ = s.accept()
    c.sendall(c.recv(100))
    c.close()
'''

FORGERY = """\
name: forgery
timeout: 20s
networks: {lan: {subnet: 10.0.12.0/24}}
nodes:
  forger: {networks: [lan], files: ., run: [python3, forger.py], ready: {tcp: 7000}}
  client: {networks: [lan], after: forger, role: telnet-client, with: {connect: "forger:7000", send: [hi]}}
expect:
  - echo: client
"""


def test_a_docker_node_writes_only_its_own_log_and_transcript(tmp_path: Path, lab_image: None) -> None:
    """A student's server cannot rewrite a client's transcript or log, plant files in the run folder,
    or tell the lab another node's exit code: each container has its own two files and facts folder."""
    (tmp_path / "forger.py").write_text(FORGER)
    (tmp_path / "forgery.yaml").write_text(FORGERY)
    done = subprocess.run([sys.executable, "-m", "lab", "run", str(tmp_path / "forgery.yaml"), "--backend", "docker",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr  # the client's own transcript judged it
    log = (tmp_path / "run" / "nodes" / "forger.log").read_text()
    assert "sees ['forger.jsonl', 'forger.log']" in log, log  # the others' files are not there to reach
    assert "refused /lab/ctl/spec.json" in log, log  # what the lab tells its agent is read-only
    nodes = tmp_path / "run" / "nodes"  # what it wrote elsewhere stayed in its own container
    assert "forged" not in (nodes / "client.jsonl").read_text() + (nodes / "client.log").read_text()
    assert sorted(p.name for p in nodes.iterdir()) == ["client.jsonl", "client.log", "forger.jsonl", "forger.log"]
