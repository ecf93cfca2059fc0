"""The backend seam: every real backend, and the tests' double, implements the whole protocol (same
members, same signatures, same types, instance or class alike); callers reach a backend by name
or by a lab's journal, never by asking which one they hold."""

from __future__ import annotations

import inspect
import json
import typing
from pathlib import Path
from typing import Any

import pytest

from lab import backends
from lab.backends import BACKENDS, Backend
from lab.errors import UsageError
from lab.journal import Journal
from tests.backend_double import TOY_SCENARIO, ScriptedBackend, ToyBackend

MEMBERS = sorted(n for n in vars(Backend) if not n.startswith("_")) + ["__init__"]
REAL = {name: backends.load(name) for name in BACKENDS}


def _shape(cls: type, member: str) -> tuple[str, list[tuple[str, Any, Any, Any]], Any]:
    """(instance or class method, parameters with kind, default and type, return type)."""
    raw = inspect.getattr_static(cls, member)
    function = getattr(cls, member)
    hints = typing.get_type_hints(function)
    params = [(p.name, p.kind, p.default, hints.get(p.name)) for p in inspect.signature(function).parameters.values()]
    return type(raw).__name__, params, hints.get("return")


def test_the_protocol_is_what_callers_need() -> None:
    assert MEMBERS == sorted(["check", "up", "start", "poll", "release", "stop", "disturb", "exit_code", "down",
                              "placements",
                              "changes_process", "floor", "notes", "prepare", "check_kept", "command",
                              "clean"]) + ["__init__"]
    assert typing.get_type_hints(Backend)["name"] is str


@pytest.mark.parametrize("name", BACKENDS)
def test_each_backend_implements_the_whole_protocol(name: str) -> None:
    cls = REAL[name]
    assert cls.name == name
    for member in MEMBERS:
        assert _shape(cls, member) == _shape(Backend, member), f"{cls.__name__}.{member}"


def test_the_double_implements_the_whole_protocol() -> None:
    for member in MEMBERS:
        if member != "__init__":  # it is made by tests, from a script
            assert _shape(ScriptedBackend, member) == _shape(Backend, member), f"ScriptedBackend.{member}"
    assert isinstance(ScriptedBackend({}).name, str)


def test_a_lab_s_backend_is_found_from_its_journal(tmp_path: Path) -> None:
    for name, cls in REAL.items():
        journal = Journal(tmp_path / "state", f"j{name}")
        journal.open(backend=name)
        assert backends.of(journal) is cls
    older = Journal(tmp_path / "state", "older")
    older.open()
    assert backends.of(older) is REAL["netns"]  # journals from before backends were named


def test_an_unknown_backend_is_a_usage_error_naming_the_closest_and_the_known_ones() -> None:
    with pytest.raises(UsageError) as got:
        backends.load("dokcer")
    assert got.value.exit_code == 2 and "'docker'?" in str(got.value)
    assert all(name in str(got.value) for name in BACKENDS)


def test_swarm_enters_a_node_on_its_own_host_with_that_host_s_certificates(tmp_path: Path) -> None:
    """`lab exec` on a swarm lab: the journal alone says where the node runs and how to reach it."""
    from lab.backends.containers.cluster import Cluster, Host, Tls
    from lab.backends.containers.swarm import PLACED
    from lab.errors import UnknownLab

    tls = Tls(tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem")
    cluster = Cluster(tmp_path / "c.yaml", (Host("h1", "tcp://10.9.0.11:2376", True, tls),
                                            Host("h2", "unix:///run/lab-h2.sock")))
    journal = Journal(tmp_path / "state", "abc123")
    journal.open(backend="swarm")
    journal.record_many("cluster", [json.dumps(cluster.to_json())])
    journal.record_many(PLACED, [json.dumps(["server", "h1"]), json.dumps(["client", "h2"])])
    swarm = REAL["swarm"]
    server = swarm.command(journal, backends.NodeRef("server", "/x", False), ["hostname"], False).argv
    assert server == ["docker", "-H", "tcp://10.9.0.11:2376", "--tlsverify", "--tlscacert", str(tls.ca),
                      "--tlscert", str(tls.cert), "--tlskey", str(tls.key), "exec", "-i", "-w", "/lab/files",
                      "lab-abc123-server", "hostname"]
    client = swarm.command(journal, backends.NodeRef("client", None, False), ["sh"], False).argv
    assert client[:6] == ["docker", "-H", "unix:///run/lab-h2.sock", "exec", "-i", "-w"] and client[6] == "/"
    for gone in (backends.NodeRef("client", None, True), backends.NodeRef("nobody", None, False)):
        with pytest.raises(UnknownLab):
            swarm.command(journal, gone, ["sh"], False)
    swarm.check_kept()  # (the docker command line is installed here)
    REAL["netns"].check_kept()
    REAL["docker"].check_kept()


def test_a_new_backend_is_one_class_and_one_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Registered by its entry alone, it runs a scenario through the library API end to end (the
    report is written, the verdict is its nodes'), and `clean` reaches it through a lab's journal."""
    from lab import api

    monkeypatch.setitem(BACKENDS, "toy", "tests.backend_double:ToyBackend")
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "toy.yaml").write_text(TOY_SCENARIO)
    result = api.run(tmp_path / "toy.yaml", "toy", tmp_path / "run", progress=lambda line: None)
    assert result.passed and result.exit_code == 0 and result.backend == "toy"
    assert (tmp_path / "run" / "report.json").exists()
    left = Journal(tmp_path / "state", "dead1")
    left.open(backend="toy", pid_start=-1)  # its owner is gone (the start time names no process)
    assert [c.id for c in api.clean()] == ["dead1"] and ToyBackend.cleaned == ["dead1"]


def test_a_captured_command_that_times_out_does_not_wait_for_what_holds_its_pipes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`run_in` (lab exec, the fixture's exec) kills the command at its timeout and returns at once,
    even when a background child of it still holds its output open."""
    import subprocess
    import time

    class Daemonising(ScriptedBackend):
        @classmethod
        def command(cls, journal: Journal, node: backends.NodeRef, argv: list[str], interactive: bool) -> Any:
            return backends.Command(["sh", "-c", "sleep 4 & sleep 4"])

    monkeypatch.setattr(backends, "of", lambda journal: Daemonising)
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        backends.run_in(Journal(tmp_path, "x"), backends.NodeRef("n", None, False), ["x"], capture=True, timeout=0.3)
    assert time.monotonic() - t0 < 3.0  # the background `sleep 4` still holds the pipe


def test_a_command_that_cannot_start_exits_127_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Missing(ScriptedBackend):
        @classmethod
        def command(cls, journal: Journal, node: backends.NodeRef, argv: list[str], interactive: bool) -> Any:
            return backends.Command([str(tmp_path / "no-such-program")])

    monkeypatch.setattr(backends, "of", lambda journal: Missing)
    done = backends.run_in(Journal(tmp_path, "x"), backends.NodeRef("n", None, False), ["prog"], capture=True)
    assert done.returncode == 127 and done.stderr.startswith("lab: n: prog: ")


def test_a_swarm_node_s_spec_goes_in_its_environment_only_when_short(tmp_path: Path) -> None:
    """One environment string is at most 128 KiB (MAX_ARG_STRLEN): a longer spec (large pages or
    scripted input in a role's parameters) goes into the container as a file, as the node's files do."""
    from lab.backends.containers.swarm import SPEC_IN_ENV, SwarmBackend
    from lab.plan import make_plan
    from lab.scenario import load_scenario

    (tmp_path / "cluster.yaml").write_text('hosts:\n  h1: {endpoint: "tcp://10.9.0.11:2375", manager: true}\n')
    swarm = SwarmBackend(Journal(tmp_path / "state", "x"), backends.Options(cluster=tmp_path / "cluster.yaml"))
    server = make_plan(load_scenario(Path(__file__).parents[2] / "scenarios" / "echo.yaml")).node("server")
    assert server.cwd is None and not server.image
    assert swarm._files(server, json.dumps({"role": "echo-server", "params": {"port": 9999}})) is None
    archive = swarm._files(server, json.dumps({"role": "echo-server", "params": {"page": "x" * SPEC_IN_ENV}}))
    assert archive is not None and b"lab/ctl/spec.json" in archive
