"""The lab's error taxonomy.

Library and system errors are translated at the boundary into these types; each carries what a
user needs to act (a location, the evidence) and the process exit code it maps to.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Location:
    """A place in a scenario file (1-based line and column)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario: where, which key path, and what."""

    loc: Location
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return one_line(f"{self.loc}: error: {where}{self.message}")


def one_line(text: str) -> str:
    """Control characters (from hostile input) shown escaped: a problem is always one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class LabError(Exception):
    """Base of every error the lab reports to its user (never shown as a traceback)."""

    exit_code = 1

    def __reduce__(self) -> tuple[Any, ...]:
        """Whole across processes (a run in a child process, lab/forked.py), whatever its __init__ takes."""
        return _restore, (type(self), self.args, self.__dict__)


def _restore(cls: type[LabError], args: tuple[Any, ...], state: dict[str, Any]) -> LabError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class ScenarioError(LabError):
    """The scenario is invalid: one or more located problems. Nothing was created."""

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.loc.file, p.loc.line, p.loc.col))
        super().__init__("\n".join(str(p) for p in self.problems))


class EnvironmentProblem(LabError):
    """The machine cannot run the lab (not root, a tool missing, an engine unreachable)."""

    exit_code = 3


class StorageProblem(EnvironmentProblem):
    """A folder the lab writes (the run folder, the journal, the state folder) refused a write: a
    full disk (ENOSPC), no permission (EACCES), a read-only file system. One line: the path, why."""

    def __init__(self, path: Path | str, error: OSError):
        self.path, self.errno = Path(path), error.errno
        super().__init__(f"cannot write {path}: {error.strerror or error}")


@contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """Where the lab writes `path`: an OSError becomes a StorageProblem that names it."""
    try:
        yield
    except OSError as e:
        raise StorageProblem(getattr(e, "filename", None) or path, e) from None


class UsageError(LabError):
    """The command line (or a library call) asked for something that does not exist, e.g. a
    mistyped backend: exit 2, as argparse's own usage errors; the message names the closest."""

    exit_code = 2


def did_you_mean(value: str, names: Sequence[str]) -> str:
    """` (did you mean 'docker'?)`, or nothing when no name is close."""
    close = difflib.get_close_matches(value, names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class UnknownLab(LabError):
    """No such lab, or no such node in it, or the node cannot be entered (saying why)."""

    exit_code = 2


class BackendError(LabError):
    """A backend operation failed; carries the command and what it printed."""

    exit_code = 3


class Interrupted(LabError):
    """The run was interrupted by a signal; exit code 128 + signal number."""

    def __init__(self, signum: int):
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by signal {signum}")
