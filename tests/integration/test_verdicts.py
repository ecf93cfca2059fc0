"""Verdicts on programs written the way students write them: prompts and odd bytes pass, a server
that serves one client at a time fails `concurrent` every time, and 100 clients of a threaded server
pass `concurrent` every time, even while every core is kept busy (no `hold:` guessed anywhere)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.roles.common import DATA_LIMIT
from tests import stress
from tests.integration.conftest import HERE, LabRun, lab

VERDICTS = HERE / "scenarios" / "verdicts"


@pytest.fixture
def busy_machine(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every core kept busy by a process of its own for the whole test (the session's burners when
    it runs under `--burn-cpu`: a second set would make the machine twice as busy, not busy)."""
    if stress.burning(request.config):
        yield
        return
    with stress.busy():
        yield


def run(scenario: Path, out: Path, backend: str = "netns") -> LabRun:
    done = lab("run", str(scenario), "--out", str(out), "--backend", backend, timeout=240)
    return LabRun(done.returncode, done.stdout, done.stderr, out)


def verdicts(result: LabRun, check: str) -> list[dict[str, Any]]:
    found = result.checks(check)
    assert found, result.stderr
    return found


def test_prompts_greetings_and_odd_bytes_pass(run_lab: Any) -> None:
    # prompt_echo.py writes a welcome line and a `> ` prompt before each input, each by its own send;
    # lines hold \v \f \x1c-\x1e \x85 \u2028 \u2029 and a lone \r (what str.splitlines breaks on).
    result = run_lab(VERDICTS / "prompt-echo.yaml")
    assert result.code == 0, result.stderr
    echoes = verdicts(result, "echo")
    assert len(echoes) == 6 and all(c["passed"] for c in echoes), echoes


@pytest.mark.parametrize("attempt", range(5))
def test_a_sequential_server_passes_echo_and_fails_concurrent_every_time(run_lab: Any, attempt: int) -> None:
    # Waits half a client timeout (1 s of 2 s): the first answered client is held open until then,
    # and the others, still within their own timeout, are served after it.
    result = run_lab(VERDICTS / "sequential.yaml")
    assert result.code == 1, result.stderr
    concurrent = verdicts(result, "concurrent")
    assert not any(c["passed"] for c in concurrent), concurrent
    echoes = verdicts(result, "echo")
    assert all(c["passed"] for c in echoes), echoes


@pytest.mark.parametrize("attempt", range(5))
def test_100_clients_of_a_threaded_server_pass_on_a_busy_machine(tmp_path: Path, busy_machine: None,
                                                                  attempt: int) -> None:
    # Bounded by the scenario's timeout (60 s) and the clients' own (30 s); about 3 s when all is well.
    result = run(VERDICTS / "threaded-100.yaml", tmp_path / "run")
    assert result.code == 0, result.stdout + result.stderr
    assert all(c["passed"] for c in verdicts(result, "concurrent"))


def test_threaded_server_on_docker_on_a_busy_machine(tmp_path: Path, busy_machine: None, lab_image: None) -> None:
    result = run(VERDICTS / "threaded-100.yaml", tmp_path / "run", "docker")
    assert result.code == 0, result.stdout + result.stderr
    assert all(c["passed"] for c in verdicts(result, "concurrent"))


def test_a_server_that_crashes_as_its_last_client_leaves_fails(run_lab: Any) -> None:
    # It dies ~10 ms after serving: often after the lab began stopping it. The crash still counts.
    result = run_lab(VERDICTS / "crash-on-eof.yaml")
    assert result.code == 1, result.stdout + result.stderr
    [service] = verdicts(result, "service")
    assert not service["passed"] and "IndexError" in service["detail"], service
    assert all(c["passed"] for c in verdicts(result, "echo"))


def test_a_server_bound_to_its_hostname_is_reached(run_lab: Any) -> None:
    result = run_lab(VERDICTS / "hostname.yaml")
    assert result.code == 0, result.stdout + result.stderr


def test_a_server_bound_to_localhost_is_never_ready_and_is_told_why(run_lab: Any) -> None:
    # Waits for the server's readiness timeout (2 s).
    result = run_lab(VERDICTS / "localhost.yaml")
    assert result.code == 1, result.stdout + result.stderr
    [start] = verdicts(result, "start")
    assert "127.0.0.1 and 'localhost' are not" in start["detail"], start
    [echo] = verdicts(result, "echo")
    assert not echo["passed"] and not echo["ran"], echo


def test_a_flooding_server_fails_and_the_client_s_records_stay_bounded(run_lab: Any) -> None:
    # The client waits its timeout (2 s) for the flood to pause before it sends its line.
    result = run_lab(VERDICTS / "flood.yaml")
    assert result.code == 1, result.stdout + result.stderr
    [echo] = verdicts(result, "echo")
    assert not echo["passed"] and "flood" in echo["detail"] and "(first difference at byte 0)" in echo["detail"], echo
    nodes = result.out / "nodes"
    assert (nodes / "client.jsonl").stat().st_size < 3 * DATA_LIMIT  # (base64 or JSON-escaped text)
    assert (nodes / "client.log").stat().st_size < 1024 * 1024
