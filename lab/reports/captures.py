"""A run's packet captures as the reports see them: for each network of the plan that was captured,
its pcap (`captures/NET.pcap`), what the capturer said of it (`captures/NET.json`: packets, bytes,
over_limit, kernel_drops; absent if it wrote none) and its TCP connections (`wire.read_pcap`), the
connections' ends named by the plan's addresses.

report.json and report.html both show them, written one after the other: a capture is read once
(kept by its path, size and modification time), not once per report. Whatever reading one capture
raises is that capture's `problem`: a report is always written, with the other captures in it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from lab.outcome import RunResult
from lab.plan import Plan
from lab.reports.wire import Capture, Connection, read_pcap

CAPTURES = "captures"  # the run folder's folder of captures
STATS = ("packets", "bytes", "over_limit", "kernel_drops")  # what NET.json may say, each a count


@dataclass(frozen=True)
class NetworkCapture:
    """One network's capture: the file, the capturer's counts, and what was read of it."""

    network: str
    file: str  # relative to the run folder: captures/NET.pcap
    size: int  # bytes of the pcap file
    wire: Capture
    stats: dict[str, int] = field(default_factory=dict)  # NET.json's counts ({} when it is absent)

    @property
    def packets(self) -> int:
        """Packets in the file: as the capturer counted them, else as read."""
        return self.stats.get("packets", self.wire.packets)

    @property
    def over_limit(self) -> int:
        """Packets left out when the file reached its size limit."""
        return self.stats.get("over_limit", 0)

    @property
    def kernel_drops(self) -> int:
        return self.stats.get("kernel_drops", 0)

    def involving(self, node: str) -> list[Connection]:
        """The connections `node` initiated or served."""
        return [c for c in self.wire.connections if node in (c.client.node, c.server.node)]


def node_addresses(plan: Plan) -> dict[str, str]:
    """Every address of the plan -> the node that has it."""
    return {str(i.address.ip): n.name for n in plan.nodes for i in n.interfaces}


def captures(result: RunResult) -> list[NetworkCapture]:
    """The captured networks of the run, in the plan's order ([] when the run captured nothing)."""
    folder = result.rundir.file(CAPTURES)
    if not folder.is_dir():
        return []
    names = tuple(sorted(node_addresses(result.plan).items()))
    found = []
    for net in result.plan.networks:
        path = folder / f"{net.name}.pcap"
        try:
            st = path.stat()
        except OSError:
            continue
        try:
            wire = _read(str(path), st.st_size, st.st_mtime_ns, names)
        except OSError as e:
            wire = Capture(problem=f"could not be read: {e.strerror or e}")
        except Exception as e:  # noqa: BLE001 - a file the reader trips on: the report is written all the same
            wire = Capture(problem=f"could not be read ({type(e).__name__}: {e})")
        found.append(NetworkCapture(net.name, f"{CAPTURES}/{net.name}.pcap", st.st_size, wire,
                                    _stats(folder / f"{net.name}.json")))
    return found


@lru_cache(maxsize=16)
def _read(path: str, size: int, mtime_ns: int, names: tuple[tuple[str, str], ...]) -> Capture:
    """`read_pcap`, once per file as it is (size and modification time are part of the key)."""
    return read_pcap(Path(path), dict(names))


def _stats(path: Path) -> dict[str, int]:
    """NET.json's counts; a missing, unreadable or malformed file (or field) is left out."""
    try:
        data: Any = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):  # (RecursionError: nested too deep for json)
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: int(data[k]) for k in STATS if isinstance(data.get(k), int) and not isinstance(data.get(k), bool)}
