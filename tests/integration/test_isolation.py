"""A lab has no way out: nodes cannot reach the host's own addresses."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

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
