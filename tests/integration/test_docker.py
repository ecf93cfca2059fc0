"""Docker-specific promises: least privilege, parallel labs with the same addresses, clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .conftest import HERE, ROOT, lab, until
from .test_lifecycle import _start, _wait_for


@pytest.fixture(autouse=True)
def _image(lab_image: None) -> None:
    """Every test here needs the node image."""


def _running(scenario: str) -> list[str]:
    return subprocess.run(["docker", "ps", "-q", "--filter", f"label=lab.scenario={scenario}"],
                          capture_output=True, text=True, check=True).stdout.split()


def _inspect_lab_containers(scenario: str, count: int) -> list[dict]:
    """Inspect the lab's containers once `count` of them run (they are created in the background)."""
    until(f"{count} containers of the lab running", lambda: len(_running(scenario)) >= count)
    ids = _running(scenario)
    assert len(ids) == count, f"{len(ids)} of the lab's containers run, not {count}"
    out = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True).stdout
    data: list[dict] = json.loads(out)
    return data


def test_containers_are_least_privileged(tmp_path: Path) -> None:
    proc = _start(HERE / "scenarios" / "long.yaml", tmp_path / "run", "docker")
    try:
        _wait_for(proc, "ready   server", deadline=60)
        containers = _inspect_lab_containers("long", 4)
        for c in containers:
            host = c["HostConfig"]
            assert host["Privileged"] is False
            assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
            assert host["ReadonlyRootfs"] is True and "no-new-privileges" in host["SecurityOpt"]
            uid, _, gid = c["Config"]["User"].partition(":")
            assert int(uid) >= 1000 and int(gid) == int(uid)  # a uid of its own, no account's
            assert host["Memory"] > 0 and host["PidsLimit"] > 0
            assert not host["PortBindings"] and not c["NetworkSettings"]["Ports"]
            assert host["NetworkMode"] == "none" and c["Config"].get("NetworkDisabled") is True  # no engine hook
            assert not c["NetworkSettings"]["Networks"]
            assert all("docker.sock" not in m["Source"] for m in c["Mounts"])
            assert c["Config"]["Labels"]["lab.id"] and c["Config"]["Hostname"] == c["Config"]["Labels"]["lab.node"]
        assert len({c["Config"]["User"] for c in containers}) == len(containers)  # one uid per node
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 130


def test_two_labs_with_the_same_addresses_at_once(tmp_path: Path) -> None:
    def one(k: int) -> subprocess.CompletedProcess[str]:
        return lab("run", "scenarios/echo.yaml", "--backend", "docker", "--out", str(tmp_path / f"r{k}"))

    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(one, range(2)))
    for d in done:
        assert d.returncode == 0, d.stdout + d.stderr


def test_engine_unreachable_is_exit_3_with_the_fix(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    done = subprocess.run([sys.executable, "-m", "lab", "run", "scenarios/echo.yaml", "--backend", "docker",
                           "--out", str(tmp_path / "r")], cwd=ROOT, capture_output=True, text=True, env=env)
    assert done.returncode == 3
    [error] = done.stderr.splitlines()  # one line: the problem
    assert "unix:///nonexistent/docker.sock" in error and "dockerd" in error
    assert not (tmp_path / "r").exists()


def test_missing_image_is_exit_3_naming_it_its_node_and_line(tmp_path: Path) -> None:
    scenario = tmp_path / "img.yaml"
    scenario.write_text((ROOT / "scenarios" / "greeting.yaml").read_text().replace(
        "    role: greeting-server", "    image: lab-missing:nope\n    role: greeting-server"))
    done = lab("run", str(scenario), "--backend", "docker", "--out", str(tmp_path / "r"))
    assert done.returncode == 3, done.stderr
    line = (scenario.read_text().splitlines().index("    image: lab-missing:nope")) + 1
    assert f"{scenario}:{line}:12: node server: image 'lab-missing:nope'" in done.stderr, done.stderr


def test_clean_never_removes_an_unlabelled_container() -> None:
    name = "lab-deadbeef-server"
    image = subprocess.run(["docker", "images", "-q", "--filter", "reference=lab-node"],
                           capture_output=True, text=True).stdout.split()[0]
    subprocess.run(["docker", "create", "--name", name, "--network", "none", image, "true"],
                   check=True, capture_output=True)
    try:
        assert lab("clean", "--all").returncode == 0
        assert subprocess.run(["docker", "inspect", name], capture_output=True).returncode == 0
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def test_a_node_image_without_python_is_a_clear_error(tmp_path: Path) -> None:
    """An image the agent cannot run in: exit 3, the lab's line naming the node, then the engine's
    own words (the engine's wording, not asserted here), nothing left behind."""
    root = tmp_path / "rootfs"
    root.mkdir()
    (root / "README").write_text("an image with no python3\n")
    tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True, check=True).stdout
    subprocess.run(["docker", "import", "-", "lab-test-nopython:1"], input=tar, capture_output=True, check=True)
    try:
        scenario = tmp_path / "nopy.yaml"
        scenario.write_text((ROOT / "scenarios" / "greeting.yaml").read_text().replace(
            "    role: greeting-server", "    image: lab-test-nopython:1\n    role: greeting-server"))
        done = lab("run", str(scenario), "--backend", "docker", "--out", str(tmp_path / "r"))
        assert done.returncode == 3, done.stdout + done.stderr
        report = json.loads((tmp_path / "r" / "report.json").read_text())
        assert "container for server" in report["error"], report["error"]  # ours: which node could not start
        assert "Traceback" not in done.stderr
    finally:
        subprocess.run(["docker", "rmi", "-f", "lab-test-nopython:1"], capture_output=True)
