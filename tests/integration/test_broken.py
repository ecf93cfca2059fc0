"""Broken servers make the right check fail, with a one-line reason, in bounded time."""

from __future__ import annotations

import time

import pytest

from .conftest import HERE

# s a broken run may take: it ends early (seconds, more on a busy machine); the scenarios' timeout
# is 20 s, which a lab that missed the failure would run into. A bound on hanging, not on speed.
ENDS_WITHIN = 15


def _details(run, check: str) -> list[str]:
    return [c["detail"] for c in run.checks(check) if not c["passed"]]


def test_upper_casing_server_fails_echo(run_lab) -> None:
    run = run_lab(HERE / "scenarios" / "broken-upper.yaml")
    assert run.code == 1
    details = _details(run, "echo")
    assert len(details) == 3
    assert "HELLO FROM CLIENT-1" in " ".join(details)
    assert all("\n" not in d for d in details)


def test_one_at_a_time_server_fails_concurrent_only(run_lab) -> None:
    run = run_lab(HERE / "scenarios" / "broken-one_at_a_time.yaml")
    assert run.code == 1
    assert all(c["passed"] for c in run.checks("echo")), run.checks("echo")
    assert _details(run, "concurrent"), run.checks("concurrent")


def test_silent_server_times_out(run_lab) -> None:
    t = time.monotonic()
    run = run_lab(HERE / "scenarios" / "broken-silent.yaml")
    assert time.monotonic() - t < ENDS_WITHIN
    assert run.code == 1
    details = _details(run, "echo")
    assert len(details) == 3
    assert all("timeout" in d for d in details), details


def test_crashing_server_fails_fast_with_its_log(run_lab) -> None:
    t = time.monotonic()
    run = run_lab(HERE / "scenarios" / "broken-crash.yaml")
    assert time.monotonic() - t < ENDS_WITHIN
    assert run.code == 1
    start = run.checks("start")
    assert len(start) == 1 and start[0]["node"] == "server"
    assert "before it was ready" in start[0]["detail"]
    assert "listne" in start[0]["detail"]  # the last line of its traceback
    echo = _details(run, "echo")
    assert len(echo) == 3 and all("server" in d for d in echo)
    assert "Traceback" in (run.out / "nodes" / "server.log").read_text()


@pytest.mark.parametrize("kind", ["upper", "crash"])
def test_junit_lists_the_failure(run_lab, kind: str) -> None:
    run = run_lab(HERE / "scenarios" / f"broken-{kind}.yaml")
    junit = (run.out / "junit.xml").read_text()
    assert "<failure" in junit


def test_a_program_that_cannot_start_says_so(run_lab) -> None:
    t = time.monotonic()
    run = run_lab(HERE / "scenarios" / "missing-program.yaml")
    assert time.monotonic() - t < ENDS_WITHIN
    assert run.code == 1
    (start,) = run.checks("start")
    assert "no-such-server: command not found" in start["detail"], start
    (echo,) = run.checks("echo")
    assert not echo["passed"] and "did not run" in echo["detail"]
