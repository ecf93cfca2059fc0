"""The pure parts of a node's confinement: which folders a node cannot see (and what of the lab's
interpreter is shown again inside them), and the per-node uid claims (no root needed)."""

from __future__ import annotations

import errno
import platform
from pathlib import Path

import pytest

from lab.backends import sandbox, seccomp, uids
from lab.backends.files import closed_ancestor, survey
from lab.journal import Journal
from lab.roles.common import copy_files


def _journal(tmp_path: Path, lab_id: str) -> Journal:
    journal = Journal(tmp_path / "state", lab_id)
    journal.open()
    return journal


def test_each_node_gets_its_own_uid_and_release_frees_only_this_labs(tmp_path: Path) -> None:
    a, b = _journal(tmp_path, "aaaa"), _journal(tmp_path, "bbbb")
    first = uids.claim(a, ["server", "client"])
    second = uids.claim(b, ["server"])
    assert len({*first.values(), *second.values()}) == 3 and min(first.values()) >= uids.BASE
    assert uids.release(a) == [f"uid-{min(first.values())}"]  # one claim file for a's block
    assert uids.release(a) == []  # idempotent
    assert (tmp_path / "state" / f"uid-{second['server']}").read_text() == "bbbb"  # b's claim stays
    again = uids.claim(a, ["x"])
    assert again["x"] not in second.values()


def test_a_lab_larger_than_a_block_claims_consecutive_blocks_and_skips_taken_ones(tmp_path: Path) -> None:
    a, b = _journal(tmp_path, "aaaa"), _journal(tmp_path, "bbbb")
    (tmp_path / "state" / f"uid-{uids.BASE + uids.BLOCK}").write_text("cccc")  # another lab's block
    first = uids.claim(a, ["s"])
    big = uids.claim(b, [f"c{k}" for k in range(uids.BLOCK + 1)])
    assert len(set(big.values())) == uids.BLOCK + 1 and not set(big.values()) & set(first.values())
    assert not any(uids.BASE + uids.BLOCK <= u < uids.BASE + 2 * uids.BLOCK for u in big.values())
    assert sorted(uids.release(b)) == sorted(f"uid-{uids.BASE + k * uids.BLOCK}" for k in (2, 3))


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
    above = closed_ancestor(tmp_path / "a")  # pytest's own folders may be closed already
    expected = above or str(tmp_path / "a" / "b")
    assert closed_ancestor(deep) == expected
    (tmp_path / "a" / "b").chmod(0o755)
    assert closed_ancestor(deep) == above


def test_the_interpreter_paths_include_the_lab_package() -> None:
    import lab

    assert Path(lab.__file__).resolve().parent in sandbox.interpreter_paths()
    assert all(p.is_absolute() for p in sandbox.interpreter_paths())


def test_this_kernel_is_asked_for_mount_setattr_without_changing_anything() -> None:
    from lab.backends import linux

    before = Path("/proc/self/mountinfo").read_text()
    assert isinstance(linux.has_mount_setattr(), bool)
    assert Path("/proc/self/mountinfo").read_text() == before


def test_a_claim_cut_short_leaves_nothing_after_release(tmp_path: Path) -> None:
    a = _journal(tmp_path, "aaaa")
    left = tmp_path / "state" / f"uid-{uids.BASE + 7}.aaaa"  # written, not yet linked, when the lab died
    a.record_many(uids.KIND, [str(left)])
    left.write_text("aaaa")
    uids.release(a)
    assert not left.exists()


def _run_filter(data: dict[str, int]) -> int:
    """A small classic-BPF interpreter for the instructions the filter uses (LD W ABS, JEQ, JGE, JSET,
    RET), over a seccomp_data given as {offset: 32-bit word}."""
    ops = seccomp.program()
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = ops[pc]
        if code == seccomp.LD_W_ABS:
            acc, pc = data.get(k, 0), pc + 1
        elif code == seccomp.RET_K:
            return k
        else:
            taken = {seccomp.JEQ_K: acc == k, seccomp.JGE_K: acc >= k, seccomp.JSET_K: bool(acc & k)}[code]
            pc += 1 + (jt if taken else jf)


@pytest.mark.skipif(not seccomp.supported(), reason="no syscall table for this architecture")
def test_the_filter_refuses_user_namespaces_and_keyrings_and_allows_the_rest() -> None:
    arch, nr = seccomp.ARCHES[platform.machine()]

    def verdict(name: str, arg0: int = 0, arch_word: int = arch) -> int:
        return _run_filter({seccomp.ARCH: arch_word, seccomp.NR: nr.get(name, 0), seccomp.ARG0: arg0})

    eperm = seccomp.RET_ERRNO | errno.EPERM
    assert verdict("unshare", seccomp.CLONE_NEWUSER) == eperm
    assert verdict("unshare", seccomp.CLONE_NEWUSER | 0x00020000) == eperm
    assert verdict("unshare", 0x00020000) == seccomp.RET_ALLOW  # a mount namespace alone: the kernel says no
    assert verdict("clone", seccomp.CLONE_NEWUSER | 17) == eperm
    assert verdict("clone", 0x003D0F00 | 17) == seccomp.RET_ALLOW  # what pthread_create / fork pass
    assert verdict("clone3") == seccomp.RET_ERRNO | errno.ENOSYS  # the C library then uses clone
    for name in ("keyctl", "add_key", "request_key"):
        assert verdict(name) == eperm
    assert verdict("read") == seccomp.RET_ALLOW
    assert verdict("read", arch_word=0x40000003) == seccomp.RET_KILL  # another ABI's numbers
    assert _run_filter({seccomp.ARCH: arch, seccomp.NR: 0x40000000 + 1}) == seccomp.RET_KILL  # x32


def test_the_labs_own_run_folders_inside_a_nodes_files_are_not_given_to_it(tmp_path: Path) -> None:
    files = tmp_path / "exercise"
    run = files / "runs" / "echo-1"
    (run / "nodes").mkdir(parents=True)
    (run / "scenario.yaml").write_text("x")
    (run / "plan.json").write_text("{}")
    (files / "server.py").write_text("print('hi')\n")
    (files / "data").mkdir()
    (files / "data" / "nodes").mkdir()  # a student's folder named like ours is still theirs
    (files / "data" / "plan.json").write_text("{}")
    given = survey(files)
    assert given.outputs == ("runs/echo-1",)
    assert given.size == len("print('hi')\n") + 2
    copy_files(str(files), str(tmp_path / "copy"), given.outputs)
    copied = {str(p.relative_to(tmp_path / "copy")) for p in (tmp_path / "copy").rglob("*")}
    assert copied == {"server.py", "data", "data/nodes", "data/plan.json", "runs"}
