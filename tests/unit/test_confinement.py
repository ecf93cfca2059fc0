"""The pure parts of a node's confinement: which folders a node cannot see (and what of the lab's
interpreter is shown again inside them), and the per-node uid claims (no root needed)."""

from __future__ import annotations

from pathlib import Path

from lab.backends import sandbox, uids
from lab.journal import Journal


def _journal(tmp_path: Path, lab_id: str) -> Journal:
    journal = Journal(tmp_path / "state", lab_id)
    journal.open()
    return journal


def test_each_node_gets_its_own_uid_and_release_frees_only_this_labs(tmp_path: Path) -> None:
    a, b = _journal(tmp_path, "aaaa"), _journal(tmp_path, "bbbb")
    first = uids.claim(a, ["server", "client"])
    second = uids.claim(b, ["server"])
    assert len({*first.values(), *second.values()}) == 3 and min(first.values()) >= uids.BASE
    assert sorted(uids.release(a)) == sorted(f"uid-{u}" for u in first.values())
    assert uids.release(a) == []  # idempotent
    assert (tmp_path / "state" / f"uid-{second['server']}").read_text() == "bbbb"  # b's claim stays
    again = uids.claim(a, ["x"])
    assert again["x"] not in second.values()


def test_a_slot_lost_in_a_race_is_never_removed_by_the_loser(tmp_path: Path) -> None:
    a, b = _journal(tmp_path, "aaaa"), _journal(tmp_path, "bbbb")
    taken = uids.BASE
    (tmp_path / "state" / f"uid-{taken}").write_text("bbbb")  # b claimed it after a listed the folder
    a.record_many(uids.KIND, [str(tmp_path / "state" / f"uid-{taken}")])  # what a recorded before its try
    uids.release(a)
    assert (tmp_path / "state" / f"uid-{taken}").read_text() == "bbbb"
    assert uids.release(b) == []  # b never recorded it in this test: nothing of b's journal to remove


def test_hidden_folders_cover_the_labs_and_reveal_the_interpreter_inside_them(tmp_path: Path) -> None:
    scenario, run, closed = tmp_path / "scenario", tmp_path / "run", tmp_path / "closed"
    for folder in (scenario, run, closed / "python" / "lib"):
        folder.mkdir(parents=True)
    closed.chmod(0o700)  # like /root holding pyenv's interpreter
    hide, reveal = sandbox.hidden_folders([scenario, run, Path("/"), Path("/usr"), tmp_path / "absent"],
                                          [closed / "python", scenario / "absent"])
    assert {str(scenario), str(run), "/tmp"} <= set(hide)
    assert any(closed.is_relative_to(h) for h in hide if h != "/tmp")  # closed, or a closed folder above it
    assert "/" not in hide and "/usr" not in hide and str(tmp_path / "absent") not in hide
    assert reveal == (str(closed / "python"),)


def test_closed_ancestor_is_the_outermost_folder_others_cannot_enter(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (tmp_path / "a").chmod(0o711)
    (tmp_path / "a" / "b").chmod(0o700)
    above = sandbox.closed_ancestor(tmp_path / "a")  # pytest's own folders may be closed already
    expected = above or str(tmp_path / "a" / "b")
    assert sandbox.closed_ancestor(deep) == expected
    (tmp_path / "a" / "b").chmod(0o755)
    assert sandbox.closed_ancestor(deep) == above


def test_the_interpreter_paths_include_the_lab_package() -> None:
    import lab

    assert Path(lab.__file__).resolve().parent in sandbox.interpreter_paths()
    assert all(p.is_absolute() for p in sandbox.interpreter_paths())


def test_this_kernel_is_asked_for_mount_setattr_without_changing_anything() -> None:
    from lab.backends import linux

    before = Path("/proc/self/mountinfo").read_text()
    assert isinstance(linux.has_mount_setattr(), bool)
    assert Path("/proc/self/mountinfo").read_text() == before
