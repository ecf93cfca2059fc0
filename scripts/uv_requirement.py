"""Print the requirement line that installs the uv release uv.lock pins, with its hashes.

scripts/setup.sh bootstraps uv with pip from this line (`--require-hashes`), so the tool that
installs the lock is itself verified against the lock: one source of truth, no unpinned step.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def uv_requirement(lock: Path) -> str:
    data = tomllib.loads(lock.read_text())
    uv = next(p for p in data["package"] if p["name"] == "uv")
    hashes = [w["hash"] for w in uv.get("wheels", [])] + ([uv["sdist"]["hash"]] if "sdist" in uv else [])
    return " ".join([f"uv=={uv['version']}", *(f"--hash={h}" for h in hashes)])


if __name__ == "__main__":
    print(uv_requirement(Path(sys.argv[1] if len(sys.argv) > 1 else "uv.lock")))
