"""The catalogues: each role and each check is declared once, and everything reads that declaration.

Adding a role is one module and one catalogue entry: a toy role, whose module is this file and whose
entry is `TOY`, is registered for a test and is then accepted by validation (and named in its
messages), planned (its `connect` resolved to an address, `{node}` filled in its lines), run by the
runtime on loopback as the netns backend runs roles (`run_role` in a forked child), judged by the
`echo` check, and listed by `lab --help`. The README's tables are the catalogue's.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import cli, docs
from lab.checks import JUDGES, evaluate
from lab.errors import ScenarioError
from lab.outcome import NodeOutcome
from lab.plan import make_plan
from lab.roles import run_role
from lab.roles.catalogue import ROLES, TYPES, Param, Role
from lab.roles.common import Transcript, announce_ready
from lab.scenario import load_scenario_text
from lab.scenario.checks import CHECKS
from lab.scenario.params import CONVERTERS

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 10.0  # s for a role on loopback to be ready or done: it takes milliseconds

TOY = Role("toy-client", __name__, service=False,
           params={"connect": Param("connect", required=True), "send": Param("lines", default=["hi from {node}"])},
           doc="connects, then sends each line and reads its reply", evidence="conversation")


def main(params: dict[str, Any], transcript: Transcript) -> int:
    """The toy role's runner: one connection; each line goes out with CRLF and its reply is read up to LF."""
    peer = f"{params['host']}:{params['port']}"
    announce_ready(transcript.role, f"connecting to {params['target']}")
    transcript.event("connecting", conn=1, peer=peer, target=params["target"])
    with socket.create_connection((params["host"], params["port"]), timeout=DEADLINE) as sock:
        transcript.event("connected", conn=1, peer=peer)
        for line in params["send"]:
            data = f"{line}\r\n".encode()
            sock.sendall(data)
            transcript.data("sent", data, conn=1)
            reply = b""
            while not reply.endswith(b"\n") and (chunk := sock.recv(4096)):
                reply += chunk
            transcript.data("received", reply, conn=1)
    transcript.event("closed", conn=1, by="client")
    return 0


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Role]:
    """The toy role, registered: one catalogue entry."""
    monkeypatch.setitem(ROLES, TOY.name, TOY)
    yield TOY


def scenario_text(port: int = 9999, expect: str = "- echo: client", client: str = "{connect: 'server:PORT'}") -> str:
    return f"""
name: toy
networks: {{lan: {{subnet: 10.0.1.0/24}}}}
nodes:
  server: {{networks: {{lan: 10.0.1.10}}, role: echo-server, with: {{port: {port}}}}}
  client: {{networks: [lan], role: toy-client, with: {client.replace('PORT', str(port))}, replicas: 2, after: server}}
expect:
  {expect}
"""


def problem(text: str) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(text, ROOT / "toy.yaml")
    [found] = info.value.problems
    return found.message


def test_validation_accepts_the_toy_role_and_fills_its_defaults(toy: Role) -> None:
    scenario = load_scenario_text(scenario_text(), ROOT / "toy.yaml")
    client = next(n for n in scenario.nodes if n.name == "client")
    assert client.role == "toy-client"
    assert client.params == {"connect": "server:9999", "send": ["hi from {node}"]}
    assert [e.check for e in scenario.expect] == ["echo"]  # echo judges the toy: it gives a conversation


def test_validation_knows_the_toy_role_only_once_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    assert problem(scenario_text()).startswith("unknown role 'toy-client'")
    monkeypatch.setitem(ROLES, TOY.name, TOY)
    assert problem(scenario_text().replace("role: toy-client", "role: toy-clint")) == \
        "unknown role 'toy-clint' (did you mean 'toy-client'?)"
    assert problem(scenario_text(client="{send: [hi]}")) == "missing required parameter 'connect' for toy-client"
    assert problem(scenario_text(client="{connect: 'nowhere:PORT'}")).startswith("unknown node 'nowhere'")
    assert problem(scenario_text(expect="- echo: server")) == \
        "echo needs telnet-client or toy-client nodes; 'server' is an echo-server"
    assert problem(scenario_text(expect="- http: client")) == "http needs http-get nodes; 'client' is a toy-client"


def test_the_plan_resolves_the_toy_role_by_its_parameter_types(toy: Role) -> None:
    plan = make_plan(load_scenario_text(scenario_text(), ROOT / "toy.yaml"))
    client = plan.node("client-2")
    assert client.params == {"send": ["hi from client-2"], "host": "10.0.1.10", "port": 9999, "target": "server:9999"}
    assert not client.service and plan.node("server").service
    assert client.ready.kind == "announce"


def fork_role(name: str, params: dict[str, Any], folder: Path) -> tuple[int, int]:
    """`run_role` in a forked child, as the netns backend runs a role: (pid, read end of its status fd).
    Its stdout goes to NAME.log in `folder`, its transcript to NAME.jsonl."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 99
        try:
            os.close(read_end)
            log = os.open(folder / f"{name}.log", os.O_WRONLY | os.O_CREAT, 0o644)
            os.dup2(log, 1)
            sys.stdout = open(1, "w", closefd=False)  # print() writes here, not to pytest
            os.environ["LAB_STATUS_FD"] = str(write_end)
            code = run_role(name, params, str(folder / f"{name}.jsonl"))
        finally:
            os._exit(code)
    os.close(write_end)
    return pid, read_end


def wait_exit(pid: int) -> int:
    """The child's exit code, once it exits (within DEADLINE)."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"role process {pid} did not exit within {DEADLINE}s")


def test_the_runtime_runs_the_toy_role_on_loopback_and_echo_judges_it(toy: Role, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    plan = make_plan(load_scenario_text(scenario_text(port), ROOT / "toy.yaml"))
    server, ready = fork_role("echo-server", plan.node("server").params, tmp_path)
    try:
        assert select.select([ready], [], [], DEADLINE)[0] and os.read(ready, 100) == b"ready\n"
        client, client_ready = fork_role("toy-client", {**plan.node("client-1").params, "host": "127.0.0.1"},
                                         tmp_path)
        try:
            assert wait_exit(client) == 0
            assert os.read(client_ready, 100) == b"ready\n"  # told the lab on the runtime's channel
        finally:
            os.close(client_ready)
    finally:
        os.close(ready)
        os.kill(server, signal.SIGTERM)
        wait_exit(server)
    events = [json.loads(line) for line in (tmp_path / "toy-client.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "start" and events[0]["role"] == "toy-client"
    assert f"LAB-READY toy-client connecting to server:{port}" in (tmp_path / "toy-client.log").read_text()
    outcome = NodeOutcome("client-1", True, 0, False, "", events, "")
    [result] = evaluate("echo", {}, [outcome])
    assert result.passed, result.detail
    assert result.detail == f"client-1 -> 127.0.0.1:{port} (server:{port}): 1/1 lines echoed"


def test_lab_help_lists_every_role_and_check_from_the_catalogues(toy: Role, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.endswith(docs.help_text())
    for name in [*ROLES, *CHECKS]:
        assert f"\n  {name} " in out
    assert "toy-client" in docs.help_text() and "`toy-client`" in docs.readme_tables()


def test_the_readme_tables_are_the_catalogue() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert docs.BEGIN in readme and docs.END in readme
    assert docs.readme_section(readme) == docs.readme_tables(), \
        "README.md's tables of roles and checks differ from their catalogues: run `.venv/bin/inv docs`"


def test_inv_docs_rewrites_only_the_generated_tables(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n\nbefore\n{docs.BEGIN}\n| stale |\n{docs.END}", encoding="utf-8")
    assert docs.update_readme(readme) and not docs.update_readme(readme)
    assert readme.read_text(encoding="utf-8") == f"# t\n\nbefore\n{docs.BEGIN}\n{docs.readme_tables()}\n{docs.END}"
    readme.write_text("# no markers\n", encoding="utf-8")
    with pytest.raises(ValueError, match="markers"):
        docs.update_readme(readme)


def test_every_parameter_type_is_described_and_validated() -> None:
    assert set(CONVERTERS) == set(TYPES)
    for entry in [*ROLES.values(), *CHECKS.values()]:
        for key, param in entry.params.items():
            assert param.type in TYPES, f"{entry.name}.{key}: unknown type {param.type!r}"
            assert not (param.required and param.default is not None), f"{entry.name}.{key}"


def test_every_built_in_role_runs_from_the_node_image() -> None:
    for role in ROLES.values():
        assert role.module.startswith("lab.roles."), role  # the roles folder is what the image copies
        assert callable(importlib.import_module(role.module).main), role


def test_every_declared_check_has_a_judge_and_every_judge_a_declaration() -> None:
    assert list(JUDGES) == list(CHECKS)


def test_every_check_judges_something_a_role_gives() -> None:
    for check in CHECKS.values():
        roles = check.roles()
        assert roles is None or roles, f"no role gives the evidence {check.name} reads ({check.evidence})"
        if check.syncs:  # the lab holds its clients connected: they must be able to wait
            assert roles and all(ROLES[name].sync for name in roles), check.name
        one_of = set(check.one_of)
        assert one_of <= set(check.params) and not any(check.params[k].required for k in one_of), check.name
