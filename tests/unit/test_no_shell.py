"""The lint rule that bans shell strings is really in force (and the code base passes it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_rejects_shell_true(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import subprocess\n\nsubprocess.run('ls', shell=True)\n")
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--config", str(ROOT / "pyproject.toml"),
                           "--select", "S602,S604,S605", str(bad)], capture_output=True, text=True)
    assert done.returncode == 1 and "S602" in done.stdout


def test_no_shell_true_anywhere() -> None:
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--config", str(ROOT / "pyproject.toml"),
                           "--select", "S602,S604,S605,S609", "lab", "tests", "tasks.py"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
