"""Labs that keep running: up, ps, exec, shell, logs, check, down, on both backends."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import ROOT, door, lab, until


def _id_of(stdout: str) -> str:
    line = next(ln for ln in stdout.splitlines() if ln.startswith("lab ") and " is up " in ln)
    return line.split()[1]


def test_up_exec_check_down(backend: str, lab_image: None, tmp_path: Path) -> None:
    up = lab("up", "scenarios/exercise-echo.yaml", "--backend", backend, "--out", str(tmp_path / "r"))
    assert up.returncode == 0, up.stdout + up.stderr
    lab_id = _id_of(up.stdout)
    assert "10.0.5.10/24 (eth0)" in up.stdout and "python3 echo_server.py" in up.stdout
    try:
        ps = lab("ps")
        assert lab_id in ps.stdout and "exercise-echo" in ps.stdout and backend in ps.stdout
        # a real client program inside a node, by name, while the lab runs
        ex = lab("exec", lab_id, "server", "--", "sh", "-c", "hostname; printf 'hi there\\r\\n' | nc -N server 9999")
        assert ex.returncode == 0, ex.stderr
        assert ex.stdout.splitlines() == ["server", "hi there"]
        # inside, the node's own view: its processes alone, none of them root (its pid 1 included;
        # in a rootless lab, "root" of the lab's user namespace is the user)
        view = lab("exec", lab_id, "server", "--", "sh", "-c", "stat -c %u /proc/1; ls /proc | grep -c '^[0-9]'")
        owner, count = view.stdout.split()
        assert (int(owner) != 0 or door().uid is not None) and int(count) < 10, view.stdout + view.stderr
        # the fabric's own links: the lab's MACs, the hub's neighbours written in advance, no IPv6 chatter
        seen = lab("exec", lab_id, "server", "--", "cat", "/proc/1/net/arp",  # (pid 1: the node's own, in its /proc)
                   "/proc/sys/net/ipv6/conf/eth0/disable_ipv6")
        rows = [line.split() for line in seen.stdout.splitlines() if line.startswith("10.0.5.")]
        assert len(rows) == 4 and seen.stdout.split()[-1] == "1", seen.stdout + seen.stderr  # 3 clients, prober
        macs = {r[0]: "02:6c:" + ":".join(f"{int(b):02x}" for b in r[0].split(".")) for r in rows}
        assert all(r[2] == "0x6" and r[3] == macs[r[0]] for r in rows), seen.stdout  # complete, permanent
        code = lab("exec", lab_id[:4], "server", "--", "sh", "-c", "exit 7")
        assert code.returncode == 7
        shell = lab_stdin(["shell", "exercise-echo", "server"], "echo inside-$(hostname)\nexit 0\n")
        assert "inside-server" in shell
        logs = lab("logs", lab_id, "server")
        assert "Socket listening" in logs.stdout
        # `lab check` judges the lab as it is now: once its clients and prober have finished, it passes.
        until("the lab's tasks finished", lambda: all(
            door().node_status(lab_id).get(n, {}).get("exited")
            for n in ("client-1", "client-2", "client-3", "prober")))
        check = lab("check", lab_id)
        assert check.returncode == 0, check.stdout
        assert "echo client" in check.stdout and "FAIL" not in check.stdout
    finally:
        down = lab("down", lab_id)
    assert down.returncode == 0 and "is down: PASSED" in down.stdout, down.stdout + down.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["passed"] and report["backend"] == backend
    assert lab("ps").stdout.strip() == "no labs"


def test_up_of_a_broken_lab_says_why_and_leaves_nothing(backend: str, lab_image: None, tmp_path: Path) -> None:
    up = lab("up", "tests/integration/scenarios/broken-crash.yaml", "--backend", backend,
             "--out", str(tmp_path / "r"))
    assert up.returncode == 1
    assert "did not come up" in up.stdout and "listne" in up.stdout
    assert lab("ps").stdout.strip() == "no labs"


def test_unknown_lab_is_a_clear_error_and_down_is_idempotent() -> None:
    done = lab("check", "nosuchlab")
    assert done.returncode == 2 and "unknown lab 'nosuchlab'" in done.stderr
    again = lab("down", "nosuchlab")
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_clean_all_stops_a_kept_lab(tmp_path: Path) -> None:
    up = lab("up", "scenarios/greeting.yaml", "--out", str(tmp_path / "r"))
    assert up.returncode == 0, up.stderr
    done = lab("clean", "--all")
    assert done.returncode == 0 and "stopped lab" in done.stdout, done.stdout + done.stderr
    assert lab("ps").stdout.strip() == "no labs"
    assert (tmp_path / "r" / "report.json").exists()


def lab_stdin(args: list[str], text: str) -> str:
    import subprocess

    done = subprocess.run(door().argv(*args), input=text, capture_output=True, text=True, cwd=door().cwd,
                          timeout=60)
    return done.stdout + done.stderr


def test_up_twice_gives_two_independent_labs(tmp_path: Path) -> None:
    ids = []
    for k in range(2):
        up = lab("up", "scenarios/greeting.yaml", "--out", str(tmp_path / f"r{k}"))
        assert up.returncode == 0, up.stderr
        ids.append(_id_of(up.stdout))
    try:
        assert ids[0] != ids[1]
        ps = lab("ps").stdout
        assert ids[0] in ps and ids[1] in ps
        ambiguous = lab("check", "greeting")
        assert ambiguous.returncode == 2 and "ambiguous" in ambiguous.stderr
        # each lab is its own world: the same static address answers in both
        for lab_id in ids:
            done = lab("exec", lab_id, "server", "--", "sh", "-c", "nc -w 1 10.0.2.10 12345 </dev/null")
            assert "Thank you for connecting" in done.stdout, done.stderr
    finally:
        for lab_id in ids:
            lab("down", lab_id)
    assert lab("ps").stdout.strip() == "no labs"


def test_logs_follow_ends_with_the_lab(tmp_path: Path) -> None:
    import subprocess
    import sys

    up = lab("up", "scenarios/exercise-echo.yaml", "--out", str(tmp_path / "r"))
    assert up.returncode == 0, up.stderr
    lab_id = _id_of(up.stdout)
    import select

    follow = subprocess.Popen([sys.executable, "-m", "lab", "logs", lab_id, "-f"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert follow.stdout is not None
        assert select.select([follow.stdout], [], [], 15)[0], "logs -f printed nothing within 15 s"
        first = follow.stdout.readline()  # it follows now: the lab goes down under it
        prober = tmp_path / "r" / "nodes" / "prober.log"
        until("the prober's reply in its log", lambda: prober.exists() and "hi" in prober.read_text())
        down = lab("down", lab_id)  # (its verdict is not this test's: the prober may still be running)
        assert down.returncode in (0, 1) and f"lab {lab_id} is down" in down.stdout, down.stdout + down.stderr
        follow.wait(timeout=10)  # it follows until the lab is gone, then ends by itself
        # Read through the same buffered reader as `first`: it may already hold more than that line
        # (communicate() would read the pipe underneath it and lose what the buffer took).
        rest, err = follow.stdout.read(), follow.stderr.read()  # type: ignore[union-attr]
    finally:
        follow.kill()
    out = first + rest
    assert "server | Socket listening" in out and "prober | hi" in out, (out, err)


def _mounts(path: Path) -> list[tuple[str, str]]:
    """(type, source) of each mount on `path`, bottom to top, as this process sees them."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        if fields.split()[4] == str(path):
            kind, source = tail.split()[:2]
            found.append((kind, source))
    return found


def test_run_netns_gets_a_tmpfs_of_the_labs_only_when_a_lab_creates_it(tmp_path: Path) -> None:
    """A lab that creates /run/netns (iproute2's folder) mounts a small tmpfs of its own there, so
    its namespaces' mount points are no inodes of the host's filesystem, and the last lab out takes
    both away; a /run/netns that was there before only gets what iproute2 gives it. A rootless lab
    keeps its names in a /run of its own and leaves the host's alone."""
    netns = Path("/run/netns")
    existed, before = netns.is_dir(), _mounts(netns)
    up = lab("up", "scenarios/exercise-echo.yaml", "--out", str(tmp_path / "r"))
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        during = _mounts(netns)
    finally:
        down = lab("down", _id_of(up.stdout))
    assert down.returncode in (0, 1), down.stdout + down.stderr  # (the verdict is not this test's)
    ours = ("tmpfs", "lab-netns")
    if door().uid is not None:
        assert during == before and _mounts(netns) == before
    elif existed:
        assert ours not in during + _mounts(netns)
    else:
        assert during and during[-1] == ours, during
        assert not netns.exists() and _mounts(netns) == []  # the folder, and its mounts, went with the lab


def test_a_kept_lab_runs_its_timeline_and_check_judges_the_faults(backend: str, lab_image: None,
                                                                   tmp_path: Path) -> None:
    """`lab up` fires the steps as a run does; `lab check` judges `recovers` against them."""
    scenario = ROOT / "tests" / "integration" / "scenarios" / "faults" / "recovers.yaml"
    up = lab("up", str(scenario), "--backend", backend, "--out", str(tmp_path / "r"))
    assert up.returncode == 0, up.stdout + up.stderr
    lab_id = _id_of(up.stdout)
    try:
        until("the clients finished", lambda: all(door().node_status(lab_id).get(n, {}).get("exited")
                                                  for n in ("client", "cut")), deadline=60)
        check = lab("check", lab_id)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "recovers client, cut" in check.stdout and "FAIL" not in check.stdout
        steps = json.loads((door().state / lab_id / "timeline.json").read_text())["steps"]  # what check judged by
        assert [s["step"] for s in steps if s["fired"]] == ["restart server", "down other", "up other"]
    finally:
        down = lab("down", lab_id)
    assert down.returncode == 0 and "is down: PASSED" in down.stdout, down.stdout + down.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [s["step"] for s in report["timeline"] if s["fired"]] == ["restart server", "down other", "up other"]
