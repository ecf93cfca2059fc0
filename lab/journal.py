"""Ownership records: every resource a lab creates is written here *before* it is created.

A lab's journal lives in the state folder (default /run/lab, on tmpfs like the namespaces
themselves, so both vanish together at reboot). `down` and `clean` work from the journal alone:
the scenario file may be gone and the working directory another. Nothing is ever removed because
its name looks like ours; only what a journal lists.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import secrets
import shutil
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import BackendError, EnvironmentProblem, writing

DEFAULT_STATE = "/run/lab"
LOCK_TIMEOUT = 30.0


def state_dir() -> Path:
    """Root's labs in /run/lab; a user's own (rootless) in user_state_dir(); LAB_STATE_DIR overrides."""
    if "LAB_STATE_DIR" in os.environ:
        return Path(os.environ["LAB_STATE_DIR"])
    return Path(DEFAULT_STATE) if os.geteuid() == 0 else user_state_dir()


def user_state_dir() -> Path:
    """Where a user's labs are journaled: $XDG_RUNTIME_DIR/lab, else /tmp/lab-UID (made 0700 by the
    lab, and refused unless it is the user's own)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "lab"
    return Path(f"/tmp/lab-{os.getuid()}")


def make_state(state: Path) -> None:
    """The state folder, made if missing: a user's is 0700 (its labs are the user's alone: no other
    user lists, reads or enters them) and refused unless it is the user's own real folder (in /tmp
    anyone could have made it first, or put a link there)."""
    mine = os.geteuid() != 0
    with writing(state):
        state.mkdir(mode=0o700 if mine else 0o755, parents=not mine, exist_ok=True)
    info = os.lstat(state)
    if mine and (info.st_uid != os.geteuid() or not stat.S_ISDIR(info.st_mode) or stat.S_IMODE(info.st_mode) & 0o077):
        raise EnvironmentProblem(f"{state} is not this user's own folder (0700): remove it, or set XDG_RUNTIME_DIR")


def users_state_dirs() -> list[Path]:
    """Other users' state folders (their rootless labs), as root sees them: $XDG_RUNTIME_DIR/lab
    under /run/user/UID and the fallback /tmp/lab-UID, each counted only when it is a real folder
    owned by that very uid (anyone can make /tmp/lab-123: it is not uid 123's unless 123 owns it)."""
    if os.geteuid() != 0 or "LAB_STATE_DIR" in os.environ:
        return []
    found = []
    for pattern, uid_of in (("/run/user/*/lab", lambda p: p.parent.name), ("/tmp/lab-*", lambda p: p.name[4:])):
        for path in sorted(Path("/").glob(pattern.lstrip("/"))):
            uid = uid_of(path)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if uid.isdigit() and int(uid) != 0 and info.st_uid == int(uid) and stat.S_ISDIR(info.st_mode):
                found.append(path)
    return found


def owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def new_lab_id() -> str:
    return secrets.token_hex(4)


@contextmanager
def state_lock(state: Path) -> Iterator[None]:
    """Serialise changes shared by all labs (the state folder itself, /run/netns).

    The lock is taken on the state folder's parent directory, so that holding it leaves no file
    behind once the last lab is gone.
    """
    with writing(state.parent):
        state.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(state.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BackendError(f"the lab state lock on {state.parent} is held for more than "
                                       f"{LOCK_TIMEOUT:.0f}s (a stuck lab?)") from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)


@dataclass
class Journal:
    state: Path
    lab_id: str

    @property
    def folder(self) -> Path:
        return self.state / self.lab_id

    @property
    def path(self) -> Path:
        return self.folder / "journal.jsonl"

    def open(self, **meta: Any) -> None:
        with state_lock(self.state):
            make_state(self.state)
            with writing(self.folder):
                self.folder.mkdir(exist_ok=False)
        meta = {"id": self.lab_id, "pid": os.getpid(), "pid_start": process_start(os.getpid()),
                "started": time.time(), **meta}
        tmp = self.folder / "meta.json.tmp"
        with writing(tmp):
            tmp.write_text(json.dumps(meta))
            tmp.rename(self.folder / "meta.json")  # atomic: `lab clean` never reads half a file

    def record_many(self, kind: str, names: list[str]) -> None:
        """Before the resources exist: a journal that cannot take them stops their creation.
        One write(2) on an appending descriptor: records made at once by several threads (a backend
        makes resources in parallel) never interleave inside a line."""
        data = "".join(json.dumps({"kind": kind, "name": n}) + "\n" for n in names).encode()
        with writing(self.path):
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                if os.write(fd, data) != len(data):
                    raise OSError(f"{self.path}: short write")
            finally:
                os.close(fd)

    def entries(self) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a crash: the rest is still valid
        return out

    def meta(self) -> dict[str, Any]:
        try:
            data = json.loads((self.folder / "meta.json").read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, json.JSONDecodeError):
            return {}

    @property
    def owner(self) -> int:
        """The uid whose lab this is: the owner of its state folder (a user's rootless lab, seen by root)."""
        try:
            return self.state.stat().st_uid
        except OSError:
            return os.geteuid()

    @property
    def foreign(self) -> bool:
        """Another user's rootless lab, seen by root: everything it made lives in that user's own
        namespaces, so root never removes anything of it from the host by the journal's names."""
        return self.owner != os.geteuid()

    def alive(self) -> bool:
        """Whether the process that owns this lab still runs (pid and start time match)."""
        pid = self.meta().get("pid")
        if not isinstance(pid, int):
            return False
        start = process_start(pid)
        return start is not None and start == self.meta().get("pid_start")

    def close(self) -> None:
        """Forget the lab (its resources are gone) and drop the state folder when it is empty."""
        with state_lock(self.state):
            shutil.rmtree(self.folder, ignore_errors=True)  # the lab's own folder: journal, hosts, fifos
            _rmdir_if_empty(self.state)


def process_start(pid: int) -> int | None:
    """A process's start time in clock ticks: with the pid, it names the process uniquely."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _rmdir_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def journals(state: Path | None = None, *, everyone: bool = False) -> list[Journal]:
    """The labs of one state folder (default: this user's); `everyone`, for root: every user's too."""
    folders = [state or state_dir()] + (users_state_dirs() if everyone else [])
    # Every folder here is a lab's (a lab whose teardown was cut short may have lost its meta.json).
    return [Journal(f, p.name) for f in folders if f.is_dir() for p in sorted(f.iterdir()) if p.is_dir()]


def drop_empty_state(state: Path | None = None) -> None:
    """Remove the state folder when no lab is left in it. A lab killed (SIGKILL) as it opened its
    journal, between creating the state folder and its own folder in it, leaves the state folder
    empty and no journal to find it by: `lab clean` removes it, so the host is left as found."""
    state = state or state_dir()
    if state.is_dir():
        with state_lock(state):
            _rmdir_if_empty(state)
