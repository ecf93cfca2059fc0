"""The run folder: everything a run leaves for its user (scenario as run, logs, reports)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from lab.errors import writing

# Bytes a node's program may write to any one file, its log in the run folder included: a program
# that floods its output is stopped (EFBIG/SIGXFSZ) instead of filling the disk. Every backend
# applies it (RLIMIT_FSIZE).
MAX_OUTPUT = 16 * 1024 * 1024


@dataclass(frozen=True)
class RunDir:
    root: Path

    @classmethod
    def create(cls, out: Path | None, scenario_name: str) -> RunDir:
        if out is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            out = Path("runs") / f"{scenario_name}-{stamp}"
            k = 1
            while out.exists():
                k += 1
                out = Path("runs") / f"{scenario_name}-{stamp}-{k}"
        root = out.absolute()
        with writing(root / "nodes"):
            (root / "nodes").mkdir(parents=True, exist_ok=True)
        return cls(root)

    def write(self, name: str, text: str) -> None:
        """A file of the run folder (StorageProblem, naming it, when the folder refuses it)."""
        with writing(self.file(name)):
            self.file(name).write_text(text)

    def log(self, node: str) -> Path:
        return self.root / "nodes" / f"{node}.log"

    def transcript(self, node: str) -> Path:
        return self.root / "nodes" / f"{node}.jsonl"

    def file(self, name: str) -> Path:
        return self.root / name
