"""A node's program finds every node by name, its own included, at the address the plan gives it
(the lab's hosts file: on docker too, where the engine writes none for a container it does not network)."""

from __future__ import annotations

import json
from pathlib import Path

NAMES = """\
name: names
timeout: 20s
networks:
  lan: {{subnet: 10.0.12.0/24}}
  dmz: {{subnet: 10.0.13.0/24}}
nodes:
  server:
    networks: {{lan: 10.0.12.1, dmz: 10.0.13.1}}
    role: echo-server
    with: {{port: 7}}
  asker:
    networks: {{dmz: 10.0.13.7}}
    after: server
    run: ["python3", "-c", "{code}"]
expect:
  - exit: {{nodes: asker, code: 0}}
"""

CODE = ("import json, socket\\nnames = ['server', 'asker', 'localhost']\\n"
        "print('NAMES', json.dumps({n: socket.gethostbyname(n) for n in names}), socket.gethostname())")


def test_a_program_finds_every_node_by_name(run_lab, tmp_path: Path) -> None:
    scenario = tmp_path / "names.yaml"
    scenario.write_text(NAMES.format(code=CODE))
    run = run_lab(scenario)
    log = (run.out / "nodes" / "asker.log").read_text()
    assert run.code == 0, run.stdout + run.stderr + log
    line = next(line for line in log.splitlines() if line.startswith("NAMES "))
    found, hostname = line[len("NAMES "):].rsplit(" ", 1)
    # the server is found on the asker's own network; the asker at its own address, not 127.0.1.1
    assert json.loads(found) == {"server": "10.0.13.1", "asker": "10.0.13.7", "localhost": "127.0.0.1"}
    assert hostname == "asker"
