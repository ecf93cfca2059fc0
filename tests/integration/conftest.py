"""Integration tests: real namespaces, real processes. Each test checks that the host is left
exactly as it was (namespaces, links, routes, mounts, firewall, sysctls, /etc/hosts, processes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.hoststate import TEST_USER, changes, host_state

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

if os.geteuid() != 0:
    pytest.exit("integration tests need root (network namespaces): run them as root", returncode=3)


@pytest.fixture(autouse=True)
def host_untouched() -> Any:
    if os.environ.get("PYTEST_XDIST_WORKER"):  # labs of other workers come and go: the session
        yield                                  # compares the host once all are done (tests/conftest.py)
        return
    before = host_state()
    yield
    changed = changes(before, host_state())
    assert not changed, f"the lab left the host changed: {changed}"


@dataclass
class LabRun:
    code: int
    stdout: str
    stderr: str
    out: Path

    @property
    def report(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.out / "report.json").read_text())
        return data

    def checks(self, check: str) -> list[dict[str, Any]]:
        return [c for c in self.report["checks"] if c["check"] == check]


def until(what: str, happened: Callable[[], bool], deadline: float = 30.0) -> None:
    """Wait for an observable event (a line in a file, an object of the engine), never for a guessed
    time: look every few ms, fail naming the event once `deadline` s have passed without it."""
    end = time.monotonic() + deadline
    while not happened():
        if time.monotonic() > end:
            raise AssertionError(f"never saw {what} within {deadline:g}s")
        time.sleep(0.005)


USER = TEST_USER
USER_PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"


def as_user(uid: int, tree: Path) -> list[str]:
    """The argv prefix that runs what follows as `uid` (no group, no capability), with Debian's
    python3 and the lab copied to `tree` (root's checkout and interpreter may be closed to others)."""
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "env", "-u", "XDG_RUNTIME_DIR",
            USER_PATH, "HOME=/tmp", f"PYTHONPATH={tree}", "PYTHONDONTWRITEBYTECODE=1"]


@dataclass(frozen=True)
class Door:
    """Who runs `lab` in a test: root from the checkout, or (`uid`) an ordinary user from a copy of
    it, whose labs are rootless. Paths into the checkout are given as their copies."""

    uid: int | None = None
    tree: Path = ROOT

    @property
    def prefix(self) -> list[str]:
        """What runs a command through this door (nothing for root)."""
        return [] if self.uid is None else as_user(self.uid, self.tree)

    def argv(self, *args: str) -> list[str]:
        if self.uid is None:
            return [sys.executable, "-m", "lab", *args]
        return [*self.prefix, "/usr/bin/python3", "-m", "lab", *map(self.path, args)]

    def path(self, arg: str) -> str:
        root = str(ROOT)
        return str(self.tree) + arg[len(root):] if arg == root or arg.startswith(root + "/") else arg

    @property
    def cwd(self) -> Path:
        return self.tree

    @property
    def state(self) -> Path:
        """Where this door's labs are journaled."""
        return Path("/run/lab") if self.uid is None else Path(f"/tmp/lab-{self.uid}")

    def node_status(self, lab_id: str) -> dict[str, Any]:
        """A kept lab's status of its nodes, as its keeper writes it (root reads a user's too)."""
        try:
            data: dict[str, Any] = json.loads((self.state / lab_id / "status.json").read_text())
            return data
        except (OSError, ValueError):
            return {}

    def netns(self, pid: int, lab_id: str) -> Path:
        """A lab's own network namespace as root sees it (a rootless lab's: in its process's view)."""
        return Path(f"/run/netns/lab-{lab_id}" if self.uid is None else f"/proc/{pid}/root/run/netns/lab-{lab_id}")


_doors = [Door()]


def door() -> Door:
    """The door of the running test (root's, unless its backend is USER_BACKEND)."""
    return _doors[-1]


def lab(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    d = door()
    return subprocess.run(d.argv(*args), capture_output=True, text=True, cwd=d.cwd, timeout=timeout)


USER_BACKEND = "netns-user"  # the netns backend once more, run by an ordinary user (rootless labs)
BACKENDS = ["netns", "docker", USER_BACKEND]


@pytest.fixture(scope="session")
def user_tree() -> Iterator[Path]:
    """The lab, its scenarios and the tests' programs where an ordinary user can read them; `work`
    holds the test folders of USER_BACKEND tests."""
    tree = Path(tempfile.mkdtemp(prefix="lab-user-", dir="/var/tmp"))
    try:
        for part in ("lab", "scenarios", "tests"):
            shutil.copytree(ROOT / part, tree / part, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
        (tree / "work").mkdir()
        subprocess.run(["chmod", "-R", "a+rX", str(tree)], check=True)
        yield tree
    finally:
        shutil.rmtree(tree)


def _backend_param(request: pytest.FixtureRequest) -> object:
    return getattr(getattr(request.node, "callspec", None), "params", {}).get("backend")


@pytest.fixture
def tmp_path(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A USER_BACKEND test's folder is the user's, where it can read and write (pytest's own is root's)."""
    if _backend_param(request) != USER_BACKEND:
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(dir=request.getfixturevalue("user_tree") / "work"))
    os.chmod(folder, 0o755)
    os.chown(folder, USER, USER)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


@pytest.fixture(scope="session")
def lab_image() -> None:
    """The node image for the docker backend, built once (cached by its content tag)."""
    done = lab("images", timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "docker":
        request.getfixturevalue("lab_image")
    if name == USER_BACKEND:
        _doors.append(Door(USER, request.getfixturevalue("user_tree")))
        request.addfinalizer(_doors.pop)
        return "netns"
    return name


@pytest.fixture
def run_lab(tmp_path: Path, backend: str) -> Any:
    def run(scenario: str | Path, *extra: str) -> LabRun:
        out = tmp_path / "run"
        done = lab("run", str(scenario), "--out", str(out), "--backend", backend, *extra)
        return LabRun(done.returncode, done.stdout, done.stderr, out)

    return run
