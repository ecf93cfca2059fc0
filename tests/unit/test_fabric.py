"""The fabric's plan for the kernel: each namespace's settings, each link's line, and the bulk runner."""

from __future__ import annotations

import threading

import pytest

from lab.backends import fabric
from lab.journal import Journal
from lab.plan import make_plan
from lab.scenario import load_scenario_text

TEXT = """
name: t
networks: {a: {subnet: 10.1.0.0/24}, b: {subnet: 10.2.0.0/24}}
nodes:
  gw: {networks: {a: 10.1.0.1, b: 10.2.0.1}, forwarding: true}
  x: {networks: [a]}
"""


def test_each_namespace_is_set_as_it_is_made_forwarding_only_where_the_plan_says(tmp_path) -> None:
    plan = make_plan(load_scenario_text(TEXT, tmp_path / "t.yaml"))
    gw, x = fabric.sysctls(plan.node("gw")), fabric.sysctls(plan.node("x"))
    own = fabric.sysctls(None)
    assert gw["net/ipv4/ip_forward"] == "1" and x["net/ipv4/ip_forward"] == own["net/ipv4/ip_forward"] == "0"
    for node in (gw, x):  # any port, and ping, without privilege; no IPv6 chatter on the links
        assert node["net/ipv4/ip_unprivileged_port_start"] == "0" and node["net/ipv4/ping_group_range"].startswith("0 ")
        assert node["net/ipv6/conf/default/disable_ipv6"] == "1"
    assert "net/ipv4/ip_unprivileged_port_start" not in own and own["net/ipv6/conf/default/disable_ipv6"] == "1"


def test_every_link_end_is_made_with_one_queue(tmp_path) -> None:
    plan = make_plan(load_scenario_text(TEXT, tmp_path / "t.yaml"))
    made = [line for line in fabric.Fabric(Journal(tmp_path, "aaaa"))._ports(plan, 0, plan.node("gw"))
            if line.startswith("link add")]
    assert len(made) == 2 and all(line.count(fabric.ONE_QUEUE) == 2 for line in made), made


def test_bulk_work_stops_starting_calls_after_the_first_error() -> None:
    release, started = threading.Event(), []

    def work(k: int) -> None:
        started.append(k)
        if k == 0:
            raise ValueError("the first one fails")
        release.wait(0.5)  # the others are still under way when the error is seen

    with pytest.raises(ValueError):
        fabric._each(work, range(100))
    release.set()
    assert 0 in started and len(started) <= 2 * fabric.WORKERS, len(started)
