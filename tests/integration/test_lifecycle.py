"""Signals, crash-safe cleanup, invalid input: the lab always ends in bounded time, leaves nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lab.journal import state_dir, state_lock
from tests.hoststate import live_processes, node_uid_processes

from .conftest import HERE, ROOT, USER, door, lab, until


def _start(scenario: Path, out: Path, backend: str = "netns") -> subprocess.Popen[str]:
    return subprocess.Popen(door().argv("run", str(scenario), "--out", str(out), "--backend", backend),
                            cwd=door().cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for(proc: subprocess.Popen[str], needle: str, deadline: float = 15) -> None:
    assert proc.stderr is not None
    end = time.monotonic() + deadline
    seen = []
    while time.monotonic() < end:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return
    proc.kill()
    raise AssertionError(f"never saw {needle!r}: {''.join(seen)}")


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_tears_down_and_keeps_logs(tmp_path: Path, backend: str, sig: int, code: int) -> None:
    proc = _start(HERE / "scenarios" / "long.yaml", tmp_path / "run", backend)
    _wait_for(proc, "ready   server")
    served = tmp_path / "run" / "nodes" / "server.jsonl"
    # The test is about tearing down a busy lab: wait for a served line.
    until("a served line", lambda: served.exists() and "hello" in served.read_text())
    t = time.monotonic()
    proc.send_signal(sig)
    proc.communicate(timeout=20)
    assert time.monotonic() - t < 20
    assert proc.returncode == code
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["interrupted"] == sig and report["passed"] is False
    assert "hello" in (tmp_path / "run" / "nodes" / "server.jsonl").read_text()
    for node in ("server", "client-1", "client-2", "sleeper"):
        assert (tmp_path / "run" / "nodes" / f"{node}.log").exists()


def test_clean_after_kill_9(tmp_path: Path, backend: str) -> None:
    proc = _start(HERE / "scenarios" / "long.yaml", tmp_path / "run", backend)
    _wait_for(proc, "ready   server")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    if door().uid is None:
        assert list(Path("/run/netns").glob("lab-*")), "the killed lab should have left namespaces"
    else:  # a rootless lab's namespaces are its user namespace's, which ends with its last process
        until("every process of the killed rootless lab gone", lambda: not live_processes(range(USER, USER + 1)))
        assert list(door().state.iterdir()), "the killed lab should have left its journal"
    if backend == "netns":  # its nodes die with it (a node's uid change must not lose its parent-death signal)
        until("the nodes of the killed lab gone", lambda: not node_uid_processes())
    done = lab("clean")
    assert done.returncode == 0, done.stderr
    assert "cleaned lab" in done.stdout
    again = lab("clean")
    assert again.returncode == 0 and "nothing to clean" in again.stdout


def _mounts_on(path: Path) -> int:
    """How many mounts sit on `path` (`ip netns add` bind-mounts /run/netns on itself)."""
    return sum(line.split()[4] == str(path) for line in Path("/proc/self/mountinfo").read_text().splitlines())


def _restore(path: Path, existed: bool, mounts: int) -> None:
    """Put a shared host folder back as it was: the mounts a test added undone, the folder removed
    only if the test created it (and nothing else has come to use it since)."""
    while _mounts_on(path) > mounts:
        subprocess.run(["umount", str(path)], check=True)
    if not existed and path.is_dir() and not any(path.iterdir()):
        path.rmdir()


def test_clean_never_touches_an_unmarked_namespace() -> None:
    decoy, netns = "lab-deadbeef-server", Path("/run/netns")
    with state_lock(state_dir()):  # as a lab does: no lab creates or removes /run/netns meanwhile
        before = netns.is_dir(), _mounts_on(netns)
        subprocess.run(["ip", "netns", "add", decoy], check=True)
    try:
        done = lab("clean", "--all")
        assert done.returncode == 0
        assert Path(f"/run/netns/{decoy}").exists()
    finally:
        subprocess.run(["ip", "netns", "del", decoy], check=True)
        with state_lock(state_dir()):
            _restore(netns, *before)


def test_invalid_scenario_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "scenarios" / "echo.yaml").read_text().replace("connect: server:9999",
                                                                         "connect: ghost:9999"))
    done = lab("run", str(bad), "--out", str(tmp_path / "run"))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"{bad}:" in done.stderr and "unknown node 'ghost'" in done.stderr
    assert not (tmp_path / "run").exists()


def test_router_without_forwarding_drops_transit(run_lab) -> None:
    run = run_lab(HERE / "scenarios" / "no-forwarding.yaml")
    assert run.code == 1
    (detail,) = [c["detail"] for c in run.checks("http")]
    assert "timeout" in detail or "unreachable" in detail, detail


def test_names_resolve_and_real_telnet_works(run_lab) -> None:
    run = run_lab(HERE / "scenarios" / "resolve.yaml")
    assert run.code == 0, (run.out / "nodes" / "asker.log").read_text() + run.stdout
    routes = (run.out / "nodes" / "asker.log").read_text()
    assert "default" not in routes  # no way out unless a scenario declares one



def test_second_ctrl_c_leaves_at_once_and_clean_finishes(tmp_path: Path, backend: str) -> None:
    out = tmp_path / "run"
    proc = _start(HERE / "scenarios" / "long.yaml", out, backend)
    _wait_for(proc, "ready   server", deadline=60)
    # long.yaml's sleeper ignores SIGTERM: once it runs, a teardown lasts at least the stop grace.
    until("the sleeper ignoring SIGTERM", lambda: (out / "nodes" / "sleeper.log").exists()
          and "ignoring SIGTERM" in (out / "nodes" / "sleeper.log").read_text())
    os.killpg(proc.pid, signal.SIGINT)
    _wait_for(proc, "tearing down")  # the first Ctrl-C was taken: the teardown has begun
    t = time.monotonic()
    for _ in range(30):  # a user holding Ctrl-C: the whole process group, again and again
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            break
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert time.monotonic() - t < 5
    assert "second Ctrl-C: leaving now" in err and "Traceback" not in err
    assert (tmp_path / "run" / "nodes" / "server.log").exists()  # logs are written by the nodes
    done = lab("clean")
    assert done.returncode == 0, done.stderr


def test_tcp_readiness_is_observed_inside_the_node(run_lab, tmp_path: Path) -> None:
    """A host socket on the same port must not make the node look ready. The node's program never
    listens: a lab that called it ready could only have been fooled by the host's socket, and one
    that was not fails its start at the readiness timeout, every run (no late listener to race)."""
    import socket

    host = socket.socket()
    host.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    host.bind(("0.0.0.0", 0))
    host.listen(1)
    port = host.getsockname()[1]
    scenario = tmp_path / "never.yaml"
    scenario.write_text(f"""
name: never
timeout: 20s
networks: {{lan: {{subnet: 10.0.12.0/24}}}}
nodes:
  server: {{networks: [lan], run: ["sleep", "30"], ready: {{tcp: {port}, timeout: 1s}}}}
  client:
    networks: [lan]
    after: server
    run: ["python3", "-c", "import socket; socket.create_connection(('server', {port}), 2); print('ok')"]
expect:
  - output: {{nodes: client, contains: ok}}
""")
    try:
        run = run_lab(scenario)
    finally:
        host.close()
    assert run.code == 1, run.stdout + run.stderr
    (start,) = run.checks("start")
    assert start["node"] == "server" and f"nothing listens on tcp {port}" in start["detail"], start
    (output,) = run.checks("output")
    assert not output["passed"] and "did not run" in output["detail"], output


def test_a_lab_leaving_never_takes_run_netns_from_one_that_has_just_claimed_it(tmp_path: Path) -> None:
    """The last lab out removes /run/netns once it is empty. A lab that has claimed it (journaled
    its namespaces) but not yet made its nodes' keeps it: its claim makes the lab's own namespace
    there at once. (Two graded submissions, one ending as the other began, hit this.)"""
    from lab.backends import linux
    from lab.backends.fabric import NETNS_DIR, Fabric
    from lab.journal import Journal, new_lab_id
    from lab.plan import make_plan
    from lab.scenario import load_scenario_text

    text = "name: t\nnetworks: {lan: {subnet: 10.7.0.0/24}}\nnodes:\n  a: {networks: [lan]}\n"
    plan = make_plan(load_scenario_text(text, tmp_path / "t.yaml"))
    first, second = (Journal(tmp_path / "state", new_lab_id()) for _ in range(2))
    ours = [Fabric(first), Fabric(second)]
    for journal in (first, second):
        journal.open()
    try:
        ours[0].create(plan)
        ours[1]._claim(plan)  # the second lab, between its claim and its nodes' namespaces
        ours[0].remove()  # the first lab leaves
        assert os.path.exists(f"{NETNS_DIR}/{ours[1].prefix}")
        linux.add_netns(ours[1].path("a"))  # the second goes on making its nodes' (ENOENT, before)
        assert linux.netns_inode(ours[1].path("a")) is not None
    finally:
        for fabric, journal in zip(ours, (first, second), strict=True):
            fabric.remove()
            journal.close()
