"""`limits:`: the lab's and each node's, over the defaults, resolved by the plan; and the reason a
node killed by a limit gets (its own output cannot say it)."""

from __future__ import annotations

import signal
from pathlib import Path

from lab.backends import limit_reached
from lab.plan import make_plan
from lab.scenario import load_scenario_text
from lab.scenario.model import Limits

ROOT = Path(__file__).resolve().parents[2]

SCENARIO = """
name: t
timeout: 40s
limits: {memory: 128MiB, files: 256}
networks: {lan: {subnet: 10.0.1.0/24}}
nodes:
  server: {networks: [lan], run: [serve], limits: {memory: 1GiB, cpu: 5s}}
  client: {networks: [lan], run: [fetch], replicas: 2}
"""


def test_each_node_has_its_own_over_the_lab_s_over_the_defaults() -> None:
    plan = make_plan(load_scenario_text(SCENARIO, ROOT / "t.yaml"))
    server, client = plan.node("server"), plan.node("client-2")
    assert server.limits == Limits(memory=2**30, processes=Limits().processes, cpu=5.0, files=256)
    assert client.limits == Limits(memory=128 * 2**20, processes=Limits().processes, cpu=None, files=256)
    assert plan.to_json()["nodes"][0]["limits"] == {"memory": 2**30, "processes": 512, "cpu": 5.0, "files": 256}


def test_sizes_are_binary_and_bytes_are_plain_numbers() -> None:
    for written, expected in (("64MiB", 64 * 2**20), ("64M", 64 * 2**20), ("2GiB", 2 * 2**30), (33554432, 2**25)):
        text = SCENARIO.replace("memory: 128MiB", f"memory: {written}")
        assert make_plan(load_scenario_text(text, ROOT / "t.yaml")).node("client-1").limits.memory == expected


def test_a_node_killed_by_a_limit_says_which() -> None:
    plan = make_plan(load_scenario_text(SCENARIO, ROOT / "t.yaml"))
    server = plan.node("server")
    assert limit_reached(server, 128 + signal.SIGKILL, oom_killed=True) == "killed: memory limit 1024 MiB reached"
    assert limit_reached(server, 128 + signal.SIGXCPU, oom_killed=False) == "killed: CPU time limit 5s reached"
    assert limit_reached(server, 128 + signal.SIGKILL, oom_killed=False) == ""  # killed by someone else
    assert limit_reached(server, 0, oom_killed=True) == ""  # a child of it was: it carried on
