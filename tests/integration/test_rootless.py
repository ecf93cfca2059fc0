"""Labs without root, beyond the rest of the suite (which runs every netns test a second time as an
ordinary user: the `netns-user` backend of conftest.py): a user's lab seen from inside, two users'
labs side by side (each sees, enters and removes its own alone), root's view of every user's labs,
and the other doors (the pytest plugin with xdist, the invoke tasks) run by a user. The users are
uids that exist everywhere and run nothing here (nobody, backup); the host guard (conftest) checks
the host after each test, their processes and state folders included."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from tests.hoststate import OTHER_USER as OTHER

from .conftest import ROOT, USER, Door, lab

SITE = ("pytest", "pluggy", "iniconfig", "packaging", "pygments", "pytest-xdist", "execnet", "invoke")  # distributions


def _run(door: Door, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(door.argv(*args), cwd=door.cwd, capture_output=True, text=True, timeout=timeout)


def _folder(parent: Path, uid: int, name: str) -> Path:
    folder = parent / name
    folder.mkdir()
    os.chown(folder, uid, uid)
    return folder


@pytest.fixture
def work(user_tree: Path) -> Iterator[Path]:
    """A folder of this test's in the users' tree (its runs are the users')."""
    folder = user_tree / "work" / f"rootless-{os.getpid()}"
    folder.mkdir(mode=0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def _up(door: Door, out: Path) -> str:
    up = _run(door, "up", "scenarios/greeting.yaml", "--out", str(out))
    assert up.returncode == 0, up.stdout + up.stderr
    return next(ln for ln in up.stdout.splitlines() if ln.startswith("lab ") and " is up " in ln).split()[1]


def _listed(ps: str) -> dict[str, str]:
    """lab id -> owner, from `lab ps`."""
    rows = [line.split() for line in ps.splitlines()[1:] if line.strip()]
    return {row[0]: row[2] for row in rows}


def test_a_user_keeps_a_lab_enters_its_nodes_and_takes_it_down(user_tree: Path, work: Path) -> None:
    door = Door(USER, user_tree)
    out = _folder(work, USER, "kept")
    lab_id = _up(door, out / "run")
    try:
        inside = _run(door, "exec", lab_id, "server", "--", "sh", "-c",
                      "hostname; ls /proc | grep -c '^[0-9]'; ip link add x type dummy || echo refused")
        assert inside.returncode == 0, inside.stdout + inside.stderr
        name, count, *rest = inside.stdout.splitlines()  # its name, its processes alone, no capability
        assert name == "server" and int(count) < 10 and rest[-1] == "refused", inside.stdout
        # nothing of it in the host's names: its namespaces are its user namespace's
        assert not Path(f"/run/netns/lab-{lab_id}").exists() and not Path(f"/run/lab/{lab_id}").exists()
    finally:
        down = _run(door, "down", lab_id)
    assert down.returncode == 0, down.stdout + down.stderr
    assert json.loads((out / "run" / "report.json").read_text())["passed"]


def test_four_labs_of_two_users_at_once_each_sees_enters_and_removes_its_own_alone(
        user_tree: Path, work: Path) -> None:
    doors = {USER: Door(USER, user_tree), OTHER: Door(OTHER, user_tree)}
    ids: dict[int, list[str]] = {USER: [], OTHER: []}
    try:
        for uid, door in doors.items():
            for k in range(2):
                ids[uid].append(_up(door, _folder(work, uid, f"u{uid}-{k}") / "run"))
        mine, theirs = ids[USER], ids[OTHER]
        for uid, door in doors.items():
            assert sorted(_listed(_run(door, "ps").stdout)) == sorted(ids[uid])
            for lab_id in ids[uid]:  # each lab is its own world: the same address answers in all four
                done = _run(door, "exec", lab_id, "server", "--", "sh", "-c", "nc -w 1 10.0.2.10 12345 </dev/null")
                assert "Thank you for connecting" in done.stdout, done.stdout + done.stderr
        everyone = _listed(lab("ps").stdout)  # root sees every user's labs, with their owner
        assert {i: everyone.get(i) for i in mine + theirs} == {**dict.fromkeys(mine, "nobody"),
                                                               **dict.fromkeys(theirs, "backup")}
        other = doors[OTHER]
        for attempt in (["exec", mine[0], "server", "--", "true"], ["logs", mine[0]], ["check", mine[0]]):
            refused = _run(other, *attempt)
            assert refused.returncode == 2 and "unknown lab" in refused.stderr, refused.stdout + refused.stderr
        gone = _run(other, "down", mine[0])  # `down` of a lab it has not: nothing to do (and nothing done)
        assert "unknown lab" in gone.stdout, gone.stdout + gone.stderr
        keeper = json.loads(subprocess.run(["cat", f"/tmp/lab-{USER}/{mine[0]}/meta.json"], capture_output=True,
                                           text=True, check=True).stdout)["pid"]
        for peek in (["ls", f"/tmp/lab-{USER}"], ["nsenter", "-t", str(keeper), "-U", "-n", "true"]):
            done = subprocess.run(doors[OTHER].prefix + peek, capture_output=True, text=True)
            assert done.returncode != 0, f"{peek}: {done.stdout}"  # neither its journal nor its namespaces
        assert sorted(_listed(_run(doors[USER], "ps").stdout)) == sorted(mine)  # all still up
    finally:
        downs = [_run(door, "down", lab_id) for uid, door in doors.items() for lab_id in ids[uid]]
    assert all(d.returncode == 0 and "is down: PASSED" in d.stdout for d in downs), [d.stdout + d.stderr for d in downs]
    assert not Path(f"/tmp/lab-{USER}").exists() and not Path(f"/tmp/lab-{OTHER}").exists()


def test_root_cleans_every_users_labs_with_all(user_tree: Path, work: Path) -> None:
    door = Door(USER, user_tree)
    out = _folder(work, USER, "cleaned") / "run"
    lab_id = _up(door, out)
    try:
        kept = lab("clean")  # a running lab is left alone without --all, whoever's it is
        assert kept.returncode == 0 and f"kept lab {lab_id}" in kept.stdout, kept.stdout + kept.stderr
        done = lab("clean", "--all")
        assert done.returncode == 0 and f"stopped lab {lab_id}" in done.stdout, done.stdout + done.stderr
    finally:
        _run(door, "down", lab_id)
    assert (out / "report.json").exists()  # stopped in order: it reported
    assert not Path(f"/tmp/lab-{USER}").exists()


@pytest.fixture
def site(user_tree: Path) -> Path:
    """The test tools (pytest, xdist, invoke) for Debian's python3, where the user can read them."""
    site = user_tree / "site"
    if not site.exists():
        for name in SITE:  # each distribution's files, its metadata too (xdist is found by its entry point)
            dist = metadata.distribution(name)
            for file in dist.files or []:
                source = Path(str(dist.locate_file(file)))
                if source.is_file() and not file.parts[0].startswith(".."):
                    (site / file).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(source, site / file)
        shutil.copy(ROOT / "tasks.py", user_tree / "tasks.py")
        subprocess.run(["chmod", "-R", "a+rX", str(site), str(user_tree / "tasks.py")], check=True)
    return site


def test_the_pytest_plugin_and_the_invoke_tasks_work_for_a_user(user_tree: Path, work: Path, site: Path) -> None:
    """Scenario files as tests and the `lab` fixture, side by side in xdist workers (processes with
    threads: each rootless lab runs in a process of its own), and `inv run`."""
    folder = _folder(work, USER, "plugin")
    (folder / "test_fixture.py").write_text(textwrap.dedent(f"""
        def test_a_kept_lab_answers(lab):
            kept = lab.up({str(user_tree / "scenarios" / "greeting.yaml")!r})
            assert "Thank you" in kept.exec("server", "sh", "-c", "nc -w 1 10.0.2.10 12345 </dev/null").stdout
        """))
    door = Door(USER, user_tree)
    env = [*door.prefix, f"PYTHONPATH={user_tree}:{site}", "/usr/bin/python3"]
    tests = subprocess.run([*env, "-m", "pytest", "-p", "lab.pytest_plugin", "-p", "no:cacheprovider", "-n", "2",
                            "--rootdir", str(folder), "--lab-out", str(folder / "runs"), "scenarios/echo.yaml",
                            "scenarios/greeting.yaml", str(folder / "test_fixture.py")],
                           cwd=user_tree, capture_output=True, text=True, timeout=300)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "4 passed" in tests.stdout, tests.stdout  # echo, concurrent, greeting, the fixture's test
    assert {p.parent.name for p in (folder / "runs").rglob("report.json")} >= {"echo", "greeting"}  # (per worker)
    inv = subprocess.run([*env, "-m", "invoke", "run", "--scenario", "scenarios/echo.yaml", "--out",
                          str(folder / "inv")], cwd=user_tree, capture_output=True, text=True, timeout=120)
    assert inv.returncode == 0, inv.stdout + inv.stderr
    assert json.loads((folder / "inv" / "report.json").read_text())["passed"]
