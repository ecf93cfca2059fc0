"""The parts of a lab without root that need no namespace: where a user's labs are journaled, and
the one-line refusal when the kernel forbids unprivileged user namespaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.backends import rootless
from lab.errors import EnvironmentProblem
from lab.journal import state_dir, user_state_dir


def test_a_users_labs_live_in_their_runtime_folder_or_a_tmp_folder_of_their_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert user_state_dir() == tmp_path / "lab"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert user_state_dir().name.startswith("lab-") and user_state_dir().parent == Path("/tmp")
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path / "x"))
    assert state_dir() == tmp_path / "x"


@pytest.mark.parametrize("knob,value", [("unprivileged_userns_clone", "0"), ("max_user_namespaces", "0"),
                                        ("apparmor_restrict_unprivileged_userns", "1")])
def test_a_kernel_that_forbids_user_namespaces_is_named_with_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, knob: str, value: str) -> None:
    knobs = []
    for path, forbidding, fix in rootless.KNOBS:
        fake = tmp_path / path.rsplit("/", 1)[1]
        fake.write_text((value if path.endswith(knob) else ("1" if forbidding == "0" else "0")) + "\n")
        knobs.append((str(fake), forbidding, fix))
    monkeypatch.setattr(rootless, "KNOBS", tuple(knobs))
    with pytest.raises(EnvironmentProblem) as e:
        rootless.check()
    assert knob in str(e.value) and "sysctl -w" in str(e.value) and "\n" not in str(e.value)
    assert e.value.exit_code == 3


def test_a_kernel_that_allows_them_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    knobs = []
    for path, forbidding, fix in rootless.KNOBS:
        fake = tmp_path / path.rsplit("/", 1)[1]
        fake.write_text("1\n" if forbidding == "0" else "0\n")
        knobs.append((str(fake), forbidding, fix))
    monkeypatch.setattr(rootless, "KNOBS", tuple(knobs))
    rootless.check()
