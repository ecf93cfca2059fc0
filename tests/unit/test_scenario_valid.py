"""Valid scenarios: the contract examples load, and the model carries what the rest of the lab needs
(defaults filled in, names as written, durations in seconds, absolute paths)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from lab.scenario import load_scenario, load_scenario_text
from lab.scenario.model import Attachment, Node, Route, Scenario

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "scenarios").glob("*.yaml"))
GOOD = sorted((Path(__file__).parent / "fixtures" / "good").glob("*.yaml"))


def _node(scenario: Scenario, name: str) -> Node:
    return next(n for n in scenario.nodes if n.name == name)


def test_the_contract_examples_exist() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"echo.yaml", "greeting.yaml", "http-get.yaml", "exercise-echo.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES + GOOD, ids=lambda p: p.name)
def test_valid_files_load(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.path == path.absolute()
    assert scenario.source == path.read_text()
    assert scenario.nodes and scenario.networks


def test_echo_example() -> None:
    s = load_scenario(ROOT / "scenarios" / "echo.yaml")
    assert (s.name, s.timeout) == ("echo", 30.0)
    assert s.networks[0].subnet == IPv4Network("10.0.1.0/24")
    server, client = _node(s, "server"), _node(s, "client")
    assert server.attachments == (Attachment("lan", IPv4Address("10.0.1.10")),)
    assert server.params == {"port": 9999} and server.replicas is None
    assert client.attachments == (Attachment("lan", None),)
    assert client.replicas == 3 and client.after == ("server",)
    assert client.params == {"connect": "server:9999", "send": ["hello from {node}", "second line"],
                             "read_greeting": False, "hold": 0.0, "interval": 0.0, "quiet": 0.25, "timeout": 5.0,
                             "reconnect": 0.0}
    assert [(e.check, e.nodes, e.params) for e in s.expect] == [
        ("echo", ("client",), {}), ("concurrent", ("client",), {"at_least": 3})]
    assert s.expect[0].loc.line == 25


def test_http_get_example() -> None:
    s = load_scenario(ROOT / "scenarios" / "http-get.yaml")
    assert _node(s, "web").routes == (Route(IPv4Network("10.0.4.0/24"), IPv4Address("10.0.3.1")),)
    assert _node(s, "browser").routes == (Route(IPv4Network("0.0.0.0/0"), IPv4Address("10.0.4.1")),)
    assert _node(s, "router").forwarding and not _node(s, "web").forwarding
    assert _node(s, "web").params["pages"]["/hello.txt"] == "hello, lab"
    assert s.expect[0].params == {"status": 200, "body_contains": "hello, lab"}


def test_exercise_example_program_node() -> None:
    s = load_scenario(ROOT / "scenarios" / "exercise-echo.yaml")
    server, prober = _node(s, "server"), _node(s, "prober")
    assert server.run == ("python3", "echo_server.py")
    assert server.files == (ROOT / "scenarios" / "exercises").resolve() and server.files.is_absolute()
    assert (server.ready_tcp, server.ready_timeout) == (9999, 10.0)
    assert server.role is None and server.params == {}
    assert prober.run == ("sh", "-c", "printf 'hi\\r\\n' | nc -N server 9999")
    assert s.expect[2].params == {"contains": "hi", "regex": None}


def _minimal(extra_node: str = "", top: str = "") -> str:
    return ("name: t\n" + top + "networks:\n  lan: {subnet: 10.0.1.0/24}\nnodes:\n"
            "  server:\n    networks: {lan: 10.0.1.10}\n" + extra_node)


def test_defaults(tmp_path: Path) -> None:
    s = load_scenario_text(_minimal("    role: http-server\n"), tmp_path / "s.yaml")
    assert s.timeout == 60.0 and s.description == "" and s.expect == ()
    server = s.nodes[0]
    assert server.params == {"port": 80, "pages": {"/": "<h1>It works</h1>"}}
    assert (server.forwarding, server.env, server.image, server.after) == (False, {}, None, ())


@pytest.mark.parametrize("written, seconds", [
    ("90s", 90.0), ("2m", 120.0), ("500ms", 0.5), ("1.5s", 1.5), ("45", 45.0), ("0.25", 0.25), ("1h", 3600.0),
])
def test_durations(tmp_path: Path, written: str, seconds: float) -> None:
    s = load_scenario_text(_minimal(top=f"timeout: {written}\n"), tmp_path / "s.yaml")
    assert s.timeout == seconds


def test_greeting_default_text_and_single_send_line(tmp_path: Path) -> None:
    text = _minimal("    role: greeting-server\n    with: {port: 23}\n"
                    "  c:\n    networks: [lan]\n    role: telnet-client\n"
                    "    with: {connect: \"10.0.1.10:23\", send: one line}\n")
    s = load_scenario_text(text, tmp_path / "s.yaml")
    assert _node(s, "server").params["text"] == "Thank you for connecting"
    assert _node(s, "c").params["send"] == ["one line"]


def test_replica_of_one_may_be_connected_to(tmp_path: Path) -> None:
    text = _minimal("    role: echo-server\n    with: {port: 7}\n    replicas: 1\n"
                    "  c:\n    networks: [lan]\n    role: telnet-client\n    with: {connect: \"server:7\"}\n")
    text = text.replace("{lan: 10.0.1.10}", "[lan]")
    s = load_scenario_text(text, tmp_path / "s.yaml")
    assert _node(s, "server").replicas == 1


def test_subnet_capacity_is_exact(tmp_path: Path) -> None:
    text = ("name: t\nnetworks:\n  lan: {subnet: 10.0.9.0/29}\nnodes:\n"
            "  a:\n    networks: {lan: 10.0.9.1}\n  b:\n    networks: [lan]\n    replicas: 5\n")
    s = load_scenario_text(text, tmp_path / "s.yaml")  # 6 usable hosts, 6 attached
    assert _node(s, "b").replicas == 5


def test_model_is_hashable_data(tmp_path: Path) -> None:
    s = load_scenario_text(_minimal(), tmp_path / "s.yaml")
    assert s.folder == tmp_path.absolute()
    assert s.nodes[0].loc.line == 5 and s.networks[0].loc.line == 3


FAULTS = """\
name: faults
networks:
  lan: {subnet: 10.0.1.0/24}
nodes:
  server:
    networks: {lan: 10.0.1.10}
    role: echo-server
    with: {port: 9999}
  client:
    networks: [lan]
    role: telnet-client
    with: {connect: "server:9999", send: [line 1, line 2, line 3], interval: 1s, reconnect: 10s}
    after: server
  web:
    networks: {lan: 10.0.1.80}
    role: http-server
    with: {pages: {/: hello, /big: {bytes: 2MiB}, /small: {bytes: 1000}}}
  browser:
    networks: [lan]
    role: http-get
    with: {url: "http://web/big", timeout: 30s}
    after: web
expect:
  - echo: client
  - recovers: client
  - rate: {nodes: browser, rate: 1mbit, window: [1s, 6s]}
  - rate: {nodes: browser, rate: 1.5Mbit, window: [500ms, 2], within: 10%}
"""


def test_fault_roles_and_checks(tmp_path: Path) -> None:
    s = load_scenario_text(FAULTS, tmp_path / "s.yaml")
    assert _node(s, "client").params["reconnect"] == 10.0
    assert _node(s, "web").params["pages"] == {"/": "hello", "/big": {"bytes": 2 * 1024 * 1024},
                                               "/small": {"bytes": 1000}}
    assert [(e.check, e.params) for e in s.expect] == [
        ("echo", {}), ("recovers", {}),
        ("rate", {"rate": 1_000_000, "window": [1.0, 6.0], "within": 20.0}),
        ("rate", {"rate": 1_500_000, "window": [0.5, 2.0], "within": 10.0})]
