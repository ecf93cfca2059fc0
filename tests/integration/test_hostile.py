"""Hostile submissions, on every backend: a node that tries to get out (write the host, read the
instructor's files, see or signal the lab, change the network, sniff) fails at every attempt; one
that fills its disk stops at its own small space; one that opens 100k files is refused at its limit;
a normal pair beside them passes; and nothing appeared outside the run folder.

The scenario lives outside /tmp (the node's /tmp is its own anyway), in a folder anyone may read,
with an instructor's file in it: only the lab's confinement, not the file's mode, keeps it from the
node. The run folder is a small tmpfs of its own, so a broken limit fills that, never the machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import door

HERE = Path(__file__).parent / "scenarios"

SCENARIO = """\
name: hostile
timeout: 40s
networks: {{lan: {{subnet: 10.0.14.0/24}}}}
nodes:
  escaper:
    networks: [lan]
    files: prog
    run: [python3, escape.py]
    env: {{SCENARIO: "{scenario}", RUN: "{run}", SECRET: "{secret}", LAB_PID: "{pid}"}}
  filler: {{networks: [lan], files: prog, run: [python3, fill.py]}}
  opener: {{networks: [lan], files: prog, run: [python3, opener.py], env: {{OPEN_AT_MOST: "100000"}}}}
  server: {{networks: [lan], role: echo-server, with: {{port: 7000}}}}
  client: {{networks: [lan], after: server, role: telnet-client, with: {{connect: "server:7000", send: [hi]}}}}
expect:
  - output: {{nodes: escaper, contains: "escapes: 0"}}
  - output: {{nodes: filler, regex: "^\\\\.: full after [0-9]+ MiB"}}
  - output: {{nodes: opener, regex: "open refused after 409[0-9] files"}}
  - echo: client
"""


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


@pytest.fixture
def instructor() -> Iterator[Path]:
    """A scenario folder outside /tmp that every user may read, holding a 'solution' file."""
    folder = Path(tempfile.mkdtemp(prefix="lab-hostile-", dir="/var/tmp"))
    try:
        folder.chmod(0o755)
        (folder / "prog").mkdir()
        for name in ("escape.py", "fill.py"):
            shutil.copy(HERE / "hostile" / name, folder / "prog" / name)
        shutil.copy(HERE / "limits" / "opener.py", folder / "prog" / "opener.py")
        (folder / "solution.py").write_text("ANSWER = 42\n")
        (folder / "solution.py").chmod(0o644)
        yield folder
    finally:
        shutil.rmtree(folder)


@pytest.fixture
def small_run_folder(backend: str) -> Iterator[Path]:
    """Outside /tmp too (a node's /tmp is its own: only hiding keeps it from the run folder there);
    the lab's user's (root's, or the ordinary user's whose lab is rootless)."""
    out = Path(tempfile.mkdtemp(prefix="lab-hostile-run-", dir="/var/tmp"))
    owner = door().uid or 0
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=48m,mode=0755,uid={owner},gid={owner}", "tmpfs", str(out)],
                   check=True)
    try:
        yield out
    finally:
        subprocess.run(["umount", "-l", str(out)], check=True)
        out.rmdir()


def test_a_hostile_node_fails_at_every_attempt_and_fills_only_its_own_space(
        instructor: Path, small_run_folder: Path, backend: str) -> None:
    from tests.integration.conftest import lab

    scenario = instructor / "hostile.yaml"
    scenario.write_text(SCENARIO.format(scenario=instructor, run=small_run_folder, pid=os.getpid(),
                                        secret=instructor / "solution.py"))
    watched = {p: _tree(p) for p in (Path("/var/tmp"), Path("/dev/shm"))}
    before = _tree(instructor)
    done = lab("run", str(scenario), "--out", str(small_run_folder), "--backend", backend)
    nodes = small_run_folder / "nodes"
    escaper = (nodes / "escaper.log").read_text()
    assert done.returncode == 0, done.stdout + done.stderr + escaper
    assert "ESCAPED" not in escaper and escaper.count("blocked") == 18, escaper
    filler = (nodes / "filler.log").read_text()
    for place in (".", "/tmp"):  # each a space of its own: its files and 64 MiB, or 64 MiB
        mib = int(filler.split(f"{place}: full after ")[1].split()[0])
        assert 56 <= mib <= 72 and "No space left" in filler, filler
    assert _tree(instructor) == before
    for folder, seen in watched.items():  # what it tried to plant (its run folder and scenario aside)
        assert {p for p in _tree(folder) - seen if p.split("/")[0] not in (small_run_folder.name, instructor.name)
                } == set(), folder
    assert not Path("/etc/lab-hostile").exists()


def test_a_submission_cannot_read_another_or_the_instructors_files(tmp_path: Path, backend: str) -> None:
    """Grading: each submission's node sees its own files only (not the other submissions, the
    batch's folder, or the scenario folder with the reference solution)."""
    from tests.integration.conftest import lab

    folder = Path(tempfile.mkdtemp(prefix="lab-grading-", dir="/var/tmp"))
    try:
        folder.chmod(0o755)
        (folder / "solution").mkdir()
        (folder / "solution" / "peek.py").write_text("print('reference')\n")
        (folder / "grade.yaml").write_text(GRADED.format(folder=folder))
        subs = folder / "submissions"
        for name in ("alice", "bob"):
            (subs / name).mkdir(parents=True)
            (subs / name / "peek.py").write_text(PEEK.format(me=name))
        (subs / "alice" / "secret.txt").write_text("alice's work\n")
        done = lab("grade", str(folder / "grade.yaml"), str(subs), "--node", "peeker", "--backend", backend,
                   "--out", str(tmp_path / "grades"))
        logs = {n: (tmp_path / "grades" / "runs" / n / "nodes" / "peeker.log").read_text() for n in ("alice", "bob")}
        assert done.returncode == 0, done.stdout + done.stderr + str(logs)
        for name, log in logs.items():
            assert "SAW" not in log and log.count("hidden") == 4, (name, log)
    finally:
        shutil.rmtree(folder)


GRADED = """\
name: peek
timeout: 20s
networks: {{lan: {{subnet: 10.0.15.0/24}}}}
nodes:
  peeker:
    networks: [lan]
    files: solution
    run: [python3, peek.py]
    env: {{FOLDER: "{folder}"}}
expect:
  - exit: [peeker]
"""

PEEK = """\
import os
folder = os.environ["FOLDER"]
for path in ("submissions/alice/secret.txt", "submissions/bob/peek.py", "solution/peek.py", "grade.yaml"):
    try:
        text = open(os.path.join(folder, path)).read()
        print("SAW", path, text[:40])
    except OSError as e:
        print("hidden", path, e.strerror)
print("{me} done")
"""
