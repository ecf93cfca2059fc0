"""`limits:`: what one node may use (memory, processes, CPU time, open files), for the whole lab
(top level) and per node (each key over the lab's, over the defaults). Enforced by the kernel on
every backend: the backends read `Limits` from the plan."""

from __future__ import annotations

import re
from typing import Any

from lab.scenario.checker import Checker
from lab.scenario.model import Limits
from lab.scenario.source import KeyPath
from lab.scenario.values import Invalid, duration, integer, kind, show

KEYS = ("memory", "processes", "cpu", "files")
MiB = 1024 * 1024
MEMORY_MIN, MEMORY_MAX = 16 * MiB, 64 * 1024 * MiB
_SIZE_RE = re.compile(r"(\d+(?:\.\d*)?)\s*(B|KiB|MiB|GiB|K|M|G|KB|MB|GB)?", re.IGNORECASE)
_SIZE_UNIT = {"b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": MiB, "mb": MiB, "mib": MiB,
              "g": 1024 * MiB, "gb": 1024 * MiB, "gib": 1024 * MiB}


def size(value: Any) -> int:
    """Memory: bytes, written 256MiB, 1GiB, 512M (binary units) or a number of bytes."""
    return bounded_size(value, "memory", MEMORY_MIN, MEMORY_MAX, "256MiB or 1GiB")


def bounded_size(value: Any, what: str, low: int, high: int, example: str) -> int:
    """Bytes in binary units (64MiB, 1GiB, 512M) or a number, within low..high (said in the error)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise Invalid(f"expected a size like {example}, got {kind(value)}")
    if isinstance(value, int):
        count = value
    else:
        match = _SIZE_RE.fullmatch(value.strip())
        if not match:
            raise Invalid(f"invalid size {show(value)}: use e.g. {example} or a number of bytes")
        count = int(float(match.group(1)) * _SIZE_UNIT[(match.group(2) or "b").lower()])
    if not low <= count <= high:
        raise Invalid(f"{what} {show(value)} is out of range: expected {_shown(low)}..{_shown(high)}")
    return count


def _shown(count: int) -> str:
    for unit, factor in (("GiB", 1024 * MiB), ("MiB", MiB), ("KiB", 1024)):
        if count >= factor and count % factor == 0:
            return f"{count // factor}{unit}"
    return f"{count}B"


def check_limits(c: Checker, path: KeyPath, value: Any, base: Limits) -> Limits:
    """`base` with the keys given here; every problem reported at its key."""
    body = c.mapping(path, value, KEYS)
    if body is None:
        return base
    memory = c.check(path + ("memory",), body["memory"], size) if "memory" in body else base.memory
    processes = (c.check(path + ("processes",), body["processes"], integer, 1, 65536, "a number of processes")
                 if "processes" in body else base.processes)
    cpu = c.check(path + ("cpu",), body["cpu"], duration, True) if "cpu" in body else base.cpu
    files = (c.check(path + ("files",), body["files"], integer, 16, 1048576, "a number of open files")
             if "files" in body else base.files)
    return Limits(memory=memory or base.memory, processes=processes or base.processes,
                  cpu=cpu if cpu is not None else base.cpu, files=files or base.files)
