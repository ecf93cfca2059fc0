"""Labs without root: an ordinary user (uid 65534 here, with Debian's /usr/bin/python3) runs netns
labs inside a user namespace the lab makes. Same scenarios, same verdicts; a hostile node is as
boxed in; a lab killed with SIGKILL leaves nothing in the kernel, and `lab clean` (as that user)
removes its journal. The host guard (conftest) checks the host after each test."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hoststate import live_processes, node_uid_processes

from .conftest import ROOT, until

USER = 65534
STATE = Path(f"/tmp/lab-{USER}")  # no XDG_RUNTIME_DIR for this user: the documented fallback


@pytest.fixture
def copy() -> Iterator[Path]:
    """The lab and its scenarios where the user can read them (the checkout may be root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="lab-rootless-", dir="/var/tmp"))
    try:
        for part in ("lab", "scenarios"):
            shutil.copytree(ROOT / part, folder / part, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(ROOT / "tests" / "integration" / "scenarios", folder / "more")
        (folder / "runs").mkdir()
        subprocess.run(["chmod", "-R", "a+rX", str(folder)], check=True)
        os.chown(folder / "runs", USER, USER)
        yield folder
    finally:
        shutil.rmtree(folder)
        assert not STATE.exists(), "a rootless lab left its state folder"


def _as_user(copy: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["setpriv", f"--reuid={USER}", f"--regid={USER}", "--clear-groups", "env", "-i",
                           "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/tmp", "/usr/bin/python3", "-m", "lab", *args],
                          cwd=copy, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("scenario", ["echo", "real-tools", "tutorial-3-threaded-echo"])
def test_a_user_runs_a_lab_without_root_with_the_same_verdicts(copy: Path, scenario: str) -> None:
    done = _as_user(copy, "run", f"scenarios/{scenario}.yaml", "--out", f"runs/{scenario}")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((copy / "runs" / scenario / "report.json").read_text())
    assert report["passed"] and report["backend"] == "netns"


def test_a_hostile_node_of_a_rootless_lab_is_boxed_in_too(copy: Path) -> None:
    from tests.integration.test_hostile import SCENARIO

    prog = copy / "hostile" / "prog"
    prog.mkdir(parents=True)
    for name in ("escape.py", "fill.py"):
        shutil.copy(copy / "more" / "hostile" / name, prog / name)
    shutil.copy(copy / "more" / "limits" / "opener.py", prog / "opener.py")
    (copy / "hostile" / "solution.py").write_text("ANSWER = 42\n")
    run = copy / "runs" / "hostile"
    (copy / "hostile" / "hostile.yaml").write_text(SCENARIO.format(
        scenario=copy / "hostile", run=run, pid=os.getpid(), secret=copy / "hostile" / "solution.py"))
    subprocess.run(["chmod", "-R", "a+rX", str(copy / "hostile")], check=True)
    done = _as_user(copy, "run", "hostile/hostile.yaml", "--out", "runs/hostile")
    escaper = (run / "nodes" / "escaper.log").read_text()
    assert done.returncode == 0, done.stdout + done.stderr + escaper
    assert "ESCAPED" not in escaper and escaper.count("blocked") == 18, escaper
    assert not (copy / "hostile" / "planted").exists()


def test_a_killed_rootless_lab_leaves_nothing_and_clean_removes_its_journal(copy: Path) -> None:
    proc = subprocess.Popen(["setpriv", f"--reuid={USER}", f"--regid={USER}", "--clear-groups", "env", "-i",
                             "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/tmp", "/usr/bin/python3", "-m", "lab", "run",
                             "more/long.yaml", "--out", "runs/long"],
                            cwd=copy, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stderr is not None
    for line in proc.stderr:  # observed, not slept for: the lab says when its server is ready
        if "ready   server" in line:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    until("every process of the killed lab gone", lambda: not live_processes(range(USER, USER + 1)))
    assert not node_uid_processes()
    assert STATE.is_dir()  # its journal: the one thing a killed rootless lab leaves
    done = _as_user(copy, "clean")
    assert done.returncode == 0 and "cleaned lab" in done.stdout, done.stdout + done.stderr
    assert not STATE.exists()


def test_a_user_keeps_a_lab_enters_its_nodes_and_takes_it_down(copy: Path) -> None:
    up = _as_user(copy, "up", "scenarios/greeting.yaml", "--out", "runs/kept")
    assert up.returncode == 0, up.stdout + up.stderr
    lab_id = next(ln for ln in up.stdout.splitlines() if ln.startswith("lab ") and " is up " in ln).split()[1]
    try:
        ps = _as_user(copy, "ps")
        assert lab_id in ps.stdout, ps.stdout + ps.stderr
        inside = _as_user(copy, "exec", lab_id, "server", "--", "sh", "-c",
                          "hostname; ls /proc | grep -c '^[0-9]'; ip link add x type dummy || echo refused")
        assert inside.returncode == 0, inside.stdout + inside.stderr
        name, count, *rest = inside.stdout.splitlines()  # its name, its processes alone, no capability
        assert name == "server" and int(count) < 10 and rest[-1] == "refused", inside.stdout
        assert root_sees_nothing_of(lab_id)
    finally:
        down = _as_user(copy, "down", lab_id)
    assert down.returncode == 0, down.stdout + down.stderr
    assert json.loads((copy / "runs" / "kept" / "report.json").read_text())["passed"]


def root_sees_nothing_of(lab_id: str) -> bool:
    """A rootless lab's namespaces are not in the host's /run/netns, and root's `lab ps` state is apart."""
    return not Path(f"/run/netns/lab-{lab_id}").exists() and not Path(f"/run/lab/{lab_id}").exists()
