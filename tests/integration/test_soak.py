"""Soak: 50 up/run/down cycles per backend in one process; nothing left behind, and the
orchestrator's file descriptors and memory stay flat."""

from __future__ import annotations

import os
from pathlib import Path

from lab import orchestrator
from lab.scenario import load_scenario_text

from .conftest import ROOT

SCENARIO = """
name: soak
timeout: 30s
networks: {lan: {subnet: 10.0.16.0/24}}
nodes:
  server: {networks: {lan: 10.0.16.10}, role: echo-server, with: {port: 7}}
  client:
    replicas: 3
    networks: [lan]
    after: server
    role: telnet-client
    with: {connect: "server:7", send: ["soak {node}"]}
expect:
  - echo: client
"""
CYCLES, WARMUP = 50, 5


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_soak(backend: str, tmp_path: Path) -> None:
    scenario = load_scenario_text(SCENARIO, ROOT / "soak.yaml")
    fds, rss = [], []
    for k in range(CYCLES):
        result = orchestrator.run(scenario, backend, tmp_path / f"r{k}", progress=lambda line: None)
        assert result.exit_code == 0, (k, [v.result for v in result.results if not v.result.passed], result.error)
        assert not any(p.name.startswith("lab-") for p in Path("/run/netns").glob("*")), k
        fds.append(_fds())
        rss.append(_rss_kb())
    assert fds[-1] <= fds[WARMUP], f"file descriptors grew: {fds}"
    assert rss[-1] - rss[WARMUP] < 8 * 1024, f"memory grew by {rss[-1] - rss[WARMUP]} kB: {rss}"
