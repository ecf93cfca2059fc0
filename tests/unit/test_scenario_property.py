"""Property: any mutation of a valid scenario is either valid or a clean, located exit-2 error.

Never a traceback, never another exception type, and (tested through the CLI) never a created
resource: an invalid scenario stops before anything exists.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.errors import ScenarioError
from lab.scenario import load_scenario_text
from lab.scenario.model import Scenario

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "scenarios").glob("*.yaml"))
LOCATED = re.compile(r"^.+:\d+:\d+: error: ", re.M)

scalars = st.one_of(st.none(), st.booleans(), st.integers(-70000, 70000), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["auto", "default", "10.0.1.300", "10.0.0.0/33",
                                                           "server:99999", "../..", "a b;c", "2m", "-1s"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, prefix + (i,))
    return out


def _mutate(data: Any, path: tuple[Any, ...], action: str, value: Any, key: str) -> Any:
    if not path:
        return value if action == "replace" else data
    parent = data
    for p in path[:-1]:
        parent = parent[p]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "replace":
        parent[last] = value
    elif action == "rename" and isinstance(parent, dict):
        parent[key or "x"] = parent.pop(last)
    elif action == "insert" and isinstance(parent[last], dict):
        parent[last][key or "extra"] = value
    return data


def _check(text: str) -> None:
    try:
        result = load_scenario_text(text, ROOT / "scenarios" / "mutated.yaml")
    except ScenarioError as e:
        assert e.problems, "an error with no problem in it"
        assert all(LOCATED.match(line) for line in str(e).splitlines()), str(e)
        return
    assert isinstance(result, Scenario)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_data_is_valid_or_a_clean_error(example: Path, data: st.DataObject) -> None:
    doc = yaml.safe_load(example.read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = data.draw(st.sampled_from(paths))
        action = data.draw(st.sampled_from(["delete", "replace", "rename", "insert"]))
        doc = _mutate(doc, path, action, data.draw(values), data.draw(st.text(max_size=10)))
    _check(yaml.safe_dump(doc, allow_unicode=True) if doc is not None else "")


@pytest.mark.parametrize("example", EXAMPLES[:3], ids=lambda p: p.stem)
@settings(max_examples=200, deadline=None)
@given(cut=st.integers(0, 2000), junk=st.text(max_size=6))
def test_mutated_text_is_valid_or_a_clean_error(example: Path, cut: int, junk: str) -> None:
    text = example.read_text()
    cut %= len(text) + 1
    _check(text[:cut] + junk + text[cut + 1:])


def test_an_invalid_scenario_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lab.cli import main

    state = tmp_path / "state"
    monkeypatch.setenv("LAB_STATE_DIR", str(state))
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "scenarios" / "echo.yaml").read_text().replace("10.0.1.10", "10.0.1.300"))
    assert main(["run", str(bad), "--out", str(tmp_path / "run")]) == 2
    assert not state.exists() and not (tmp_path / "run").exists()
