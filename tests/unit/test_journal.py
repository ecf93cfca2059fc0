"""The journal: what a lab records before it creates anything."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lab.journal import Journal


def test_records_made_at_once_by_several_threads_never_interleave_inside_a_line(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "state", "aaaa")
    journal.open()
    batches = [[f"{kind}-{k:05d}" * 4 for k in range(2000)] for kind in "abcdefgh"]  # ~100 KB each
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda names: journal.record_many("thing", names), batches))
    lines = journal.path.read_text().splitlines()
    assert len(lines) == sum(map(len, batches))
    assert sorted(json.loads(line)["name"] for line in lines) == sorted(n for b in batches for n in b)
    assert len(journal.entries()) == len(lines)
