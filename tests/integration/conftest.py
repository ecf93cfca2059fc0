"""Integration tests: real namespaces, real processes. Each test checks that the host is left
exactly as it was (namespaces, links, routes, mounts, firewall, sysctls, /etc/hosts, processes)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

if os.geteuid() != 0:
    pytest.exit("integration tests need root (network namespaces): run them as root", returncode=3)


def _out(*argv: str) -> str:
    if shutil.which(argv[0]) is None:
        raise RuntimeError(f"{argv[0]} is not installed (scripts/setup.sh installs it)")
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def _lab_netns_inodes() -> set[int]:
    host = os.stat("/proc/self/ns/net").st_ino
    found = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                ino = os.stat(f"/proc/{entry.name}/ns/net").st_ino
            except OSError:
                continue
            if ino != host:
                found.add(ino)
    return found


def host_state() -> dict[str, Any]:
    sysctls = ["net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding", "net/ipv6/conf/all/forwarding"]
    sysctls += [f"net/bridge/{k}" for k in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables")
                if os.path.exists(f"/proc/sys/net/bridge/{k}")]
    return {
        "netns": sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else None,
        "state": sorted(os.listdir("/run/lab")) if os.path.isdir("/run/lab") else None,
        "links": sorted(line.split(":")[1].strip() for line in _out("ip", "-o", "link").splitlines()),
        "routes": _out("ip", "route", "show", "table", "all"),
        "rules": _out("ip", "rule"),
        "iptables": "\n".join(line for line in _out("iptables-save").splitlines() if not line.startswith("#")),
        "nft": re.sub(r"counter packets \d+ bytes \d+", "counter", _out("nft", "list", "ruleset")),
        "sysctl": {k: Path(f"/proc/sys/{k}").read_text() for k in sysctls},
        "hosts": Path("/etc/hosts").read_bytes(),
        "mounts": sorted(line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()),
        "foreign_netns_processes": _lab_netns_inodes(),
        "containers": _out("docker", "ps", "-a", "--format", "{{.Names}} {{.Labels}}"),
        "docker_networks": _out("docker", "network", "ls", "--format", "{{.Name}}"),
        "docker_volumes": _out("docker", "volume", "ls", "--format", "{{.Name}}"),
    }


@pytest.fixture(autouse=True)
def host_untouched() -> Any:
    if os.environ.get("PYTEST_XDIST_WORKER"):  # labs of other workers come and go: the session's
        yield                                  # leak guard (tests/conftest.py) checks at the end
        return
    before = host_state()
    yield
    after = host_state()
    # A process in a namespace of its own that ended during the test was not left by it (e.g. one of
    # the simulated cluster's engines finishing work it started before): only new ones count.
    after["foreign_netns_processes"] |= before["foreign_netns_processes"]
    diff = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not diff, f"the lab left the host changed: {diff}{_who(diff)}"


def _who(diff: dict[str, Any]) -> str:
    """The processes behind namespaces that came or went (evidence, not just inode numbers)."""
    if "foreign_netns_processes" not in diff:
        return ""
    before, after = diff["foreign_netns_processes"]
    changed = before ^ after
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.stat(f"/proc/{entry.name}/ns/net").st_ino in changed:
                    cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
                    found.append(f"{entry.name}: {cmd}")
            except OSError:
                continue
    return f"; processes now in those namespaces: {found or 'none'}"


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


def lab(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


BACKENDS = ["netns", "docker"]


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
    return name


@pytest.fixture
def run_lab(tmp_path: Path, backend: str) -> Any:
    def run(scenario: str | Path, *extra: str) -> LabRun:
        out = tmp_path / "run"
        done = lab("run", str(scenario), "--out", str(out), "--backend", backend, *extra)
        return LabRun(done.returncode, done.stdout, done.stderr, out)

    return run
