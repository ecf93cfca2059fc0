"""Invalid scenarios: every fixture in fixtures/bad is one error case.

Each fixture starts with `# expect: <substring of the error line>` and, when the place matters,
`# line: N`. A fixture must produce exactly one problem (no cascades), as a ScenarioError whose
lines all read `FILE:LINE:COL: error: ...`; any other exception is a bug.
"""

from __future__ import annotations

import copy
import os
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.errors import ScenarioError
from lab.scenario import load_scenario, load_scenario_text
from lab.scenario.model import Scenario
from lab.scenario.source import SIZE_LIMIT

BAD = Path(__file__).parent / "fixtures" / "bad"
GOOD = Path(__file__).parent / "fixtures" / "good"
EXAMPLES = Path(__file__).resolve().parents[2] / "scenarios"
LINE_RE = re.compile(r"^(?P<file>.+):(?P<line>\d+):(?P<col>\d+): error: \S.*$")


def _header(fixture: Path) -> tuple[str, int | None]:
    first, second = fixture.read_bytes().decode("utf-8", "replace").splitlines()[:2]
    assert first.startswith("# expect: "), f"{fixture.name}: first line must be '# expect: ...'"
    line = int(second.removeprefix("# line: ")) if second.startswith("# line: ") else None
    return first.removeprefix("# expect: "), line


def _assert_format(error: ScenarioError, file: str) -> None:
    lines = str(error).splitlines()
    assert lines and len(lines) == len(error.problems)
    for text in lines:
        match = LINE_RE.match(text)
        assert match, f"not FILE:LINE:COL: error: ...: {text!r}"
        assert match["file"] == file


def test_there_are_enough_fixtures() -> None:
    assert len(list(BAD.glob("*.yaml"))) >= 45


@pytest.mark.parametrize("fixture", sorted(BAD.glob("*.yaml")), ids=lambda p: p.stem)
def test_bad_fixture(fixture: Path) -> None:
    expect, line = _header(fixture)
    with pytest.raises(ScenarioError) as info:
        load_scenario(fixture)
    error = info.value
    _assert_format(error, str(fixture))
    assert len(error.problems) == 1, f"expected one problem, got:\n{error}"
    problem = error.problems[0]
    assert expect in str(problem), f"{expect!r} not in {str(problem)!r}"
    if line is not None:
        assert problem.loc.line == line, str(problem)


def test_message_format_of_the_issue_example() -> None:
    fixture = BAD / "connect-unknown-node.yaml"
    with pytest.raises(ScenarioError) as info:
        load_scenario(fixture)
    assert str(info.value) == (
        f"{fixture}:16:21: error: nodes.client.with.connect: unknown node 'ghost' (nodes: server, client)"
    )


def test_unknown_key_points_at_the_key_and_bad_value_at_the_value(tmp_path: Path) -> None:
    text = "name: t\nnetworks:\n  lan: {subnet: 10.0.1.0/24}\nnodes:\n  a:\n    networks: [lan]\n" \
           "    rol: echo-server\n    replicas: 0\n"
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(text, tmp_path / "s.yaml")
    (key, value) = info.value.problems
    assert (key.loc.line, key.loc.col, key.path) == (7, 5, "nodes.a.rol")
    assert "unknown key 'rol' (did you mean 'role'?)" in key.message
    assert (value.loc.line, value.loc.col, value.path) == (8, 15, "nodes.a.replicas")


def test_all_problems_are_reported_in_file_order(tmp_path: Path) -> None:
    text = """\
name: Bad Name
networks:
  lan: {subnet: 10.0.1.5/24}
  wan: {subnet: 10.0.0.0/16}
nodes:
  server:
    networks: {lan: auto, wna: auto}
    role: echo-sever
  client:
    networks: [wan]
    role: telnet-client
    with: {connect: "ghost:99999", hold: -1}
    after: client
expect:
  - ecko: client
  - concurrent: {nodes: client, at_least: 2}
"""
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(text, tmp_path / "many.yaml")
    messages = [p.message for p in info.value.problems]
    expected = [
        "invalid name 'Bad Name'",
        "10.0.1.5/24 has host bits set",
        "unknown network 'wna' (did you mean 'wan'? networks: lan, wan)",
        "unknown role 'echo-sever' (did you mean 'echo-server'?)",
        "unknown node 'ghost'",
        "duration must be 0 or more",
        "a node cannot be after itself",
        "unknown check 'ecko' (did you mean 'echo'?)",
        "at_least 2 but 'client' names only 1 host",
    ]
    assert len(messages) == len(expected), "\n".join(messages)
    for want, got in zip(expected, messages, strict=True):
        assert want in got
    lines = [p.loc.line for p in info.value.problems]
    assert lines == sorted(lines)


def test_file_too_large_is_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.truncate(SIZE_LIMIT + 1)

    def no_reading(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("the file was read")

    monkeypatch.setattr(Path, "read_bytes", no_reading)
    monkeypatch.setattr(Path, "read_text", no_reading)
    with pytest.raises(ScenarioError) as info:
        load_scenario(big)
    assert str(info.value) == f"{big}:1:1: error: file too large: 1048577 bytes (limit 1048576)"


def test_text_too_large_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="file too large"):
        load_scenario_text("#" * (SIZE_LIMIT + 1), tmp_path / "big.yaml")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}:1:1: error: no such file"


def test_a_folder_is_not_a_scenario(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="not a regular file"):
        load_scenario(tmp_path)


def _program_node(files: str) -> str:
    return (f"name: t\nnetworks:\n  lan: {{subnet: 10.0.1.0/24}}\nnodes:\n  a:\n    networks: [lan]\n"
            f"    run: ./x\n    files: {files}\n")


def test_files_symlink_escaping_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "lab").mkdir()
    os.symlink(tmp_path / "outside", tmp_path / "lab" / "link")
    scenario = tmp_path / "lab" / "s.yaml"
    scenario.write_text(_program_node("link"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(scenario)
    assert "files 'link' is outside the scenario's folder" in str(info.value)
    assert info.value.problems[0].loc.line == 8


def test_files_symlink_inside_the_folder_is_fine(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    scenario = load_scenario_text(_program_node("link"), tmp_path / "s.yaml")
    assert scenario.nodes[0].files == (tmp_path / "real").resolve()


def test_alias_bomb_is_refused_before_expansion(tmp_path: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
    with pytest.raises(ScenarioError, match="YAML aliases are not supported"):
        load_scenario_text(bomb, tmp_path / "bomb.yaml")


@pytest.mark.parametrize("depth", [100, 200_000])
def test_deep_nesting_is_a_clean_error(tmp_path: Path, depth: int) -> None:
    # libyaml's composer recurses in C: this depth would crash the interpreter, not raise. The
    # contract is a located error (the scanner of some PyYAML versions refuses first, in its words).
    with pytest.raises(ScenarioError) as info:
        load_scenario_text("a: " + "[" * depth + "]" * depth + "\n", tmp_path / "deep.yaml")
    problem = info.value.problems[0]
    assert problem.loc.file.endswith("deep.yaml") and problem.loc.line == 1 and problem.loc.col >= 1


def test_many_problems_are_capped(tmp_path: Path) -> None:
    text = "name: t\n" + "".join(f"key{i}: 1\n" for i in range(300))
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(text, tmp_path / "s.yaml")
    problems = info.value.problems
    assert len(problems) == 101 and problems[-1].message.endswith("more problems not shown")


# --- a quick, deterministic fuzz: mutated valid files only ever give a Scenario or a ScenarioError

_GARBAGE = ["\t", ":", ": ", "-", "- ", "{", "}", "[", "]", "'", '"', "&a ", "*a", "!", "!!str ", "#", "%",
            "|", ">", "?", "@", "`", "\\", "\x00", "\x07", "é", "\ufeff", "\n", "  ", "0", "-1", "1e9",
            "~", "null", "yes", ".inf", "/", "../", "0x1F", "1:30", "2001-01-01", "<<: ", "\u2028"]


def _mutate(rng: random.Random, text: str) -> str:
    lines = text.split("\n")
    choice = rng.randrange(6)
    if choice == 0 and len(text) > 1:
        start = rng.randrange(len(text))
        return text[:start] + text[start + rng.randint(1, 8):]
    if choice == 1 and len(lines) > 1:
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines)
    if choice == 2:
        i = rng.randrange(len(lines))
        lines.insert(i, lines[rng.randrange(len(lines))])
        return "\n".join(lines)
    if choice == 3:
        return text[: rng.randrange(len(text) + 1)]
    position = rng.randrange(len(text) + 1)
    return text[:position] + rng.choice(_GARBAGE) + text[position:]


def test_fuzz_mutations_only_ever_yield_scenario_or_scenario_error() -> None:
    sources = sorted(EXAMPLES.glob("*.yaml")) + sorted(GOOD.glob("*.yaml"))
    assert sources
    rng = random.Random(20240601)
    outcomes = {"valid": 0, "invalid": 0}
    for _ in range(300):
        path = rng.choice(sources)
        text = path.read_text()
        for _ in range(rng.randint(1, 4)):
            text = _mutate(rng, text)
        try:
            result = load_scenario_text(text, path)
        except ScenarioError as e:
            outcomes["invalid"] += 1
            _assert_format(e, str(path))
        else:
            outcomes["valid"] += 1
            assert isinstance(result, Scenario)
    assert outcomes["invalid"] > 100


# --- a structural fuzz: mutate the parsed examples (drop, misspell, retype values) and dump them again

_VALUES: list[Any] = [None, True, 0, -1, 3, 70000, 1.5, "", "x", "auto", "default", "server", "client-2",
                      "client-9", "10.0.1.300", "10.0.1.0/24", "10.0.1.1", [], {}, ["lan"], {"a": 1},
                      "http://server/", "server:99", "..", "exercises", "echo-server", "5s", {"tcp": 80}, "("]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from _paths(item, path + (key,))


def _mutate_data(rng: random.Random, data: dict[Any, Any]) -> None:
    path = rng.choice([p for p in _paths(data) if p])
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    key, choice = path[-1], rng.randrange(4)
    if choice == 0:
        del parent[key]
    elif choice == 1 and isinstance(parent, dict):
        letters = list(str(key))
        letters[rng.randrange(len(letters))] = rng.choice("abcdefghijklmnopqrstuvwxyz_-")
        parent["".join(letters)] = parent.pop(key)
    else:
        parent[key] = copy.deepcopy(rng.choice(_VALUES))


def _assert_consistent(scenario: Scenario) -> None:
    """What the plan relies on, for any scenario that validates."""
    subnets = {n.name: n.subnet for n in scenario.networks}
    addresses = [a.address for n in scenario.nodes for a in n.attachments if a.address is not None]
    assert len(addresses) == len(set(addresses))
    for node in scenario.nodes:
        assert node.attachments and not (node.role and node.run)
        for att in node.attachments:
            assert att.address is None or att.address in subnets[att.network]


def test_structural_fuzz_only_ever_yields_consistent_scenario_or_scenario_error() -> None:
    sources = sorted(EXAMPLES.glob("*.yaml")) + sorted(GOOD.glob("*.yaml"))
    rng = random.Random(7)
    for _ in range(300):
        path = rng.choice(sources)
        data = yaml.safe_load(path.read_text())
        for _ in range(rng.randint(1, 3)):
            _mutate_data(rng, data)
        try:
            scenario = load_scenario_text(yaml.safe_dump(data, sort_keys=False), path)
        except ScenarioError as e:
            _assert_format(e, str(path))
        else:
            _assert_consistent(scenario)


FAULTS = """\
name: faults
networks:
  lan: {subnet: 10.0.1.0/24}
nodes:
  server: {networks: {lan: 10.0.1.10}, role: echo-server, with: {port: 9999}}
  client: {networks: [lan], role: telnet-client, with: {connect: "server:9999", reconnect: RECONNECT}}
  web: {networks: {lan: 10.0.1.80}, role: http-server, with: {pages: PAGES}}
  browser: {networks: [lan], role: http-get, with: {url: "http://web/big"}}
expect:
  - EXPECT
"""


def _fault_problem(tmp_path: Path, reconnect: str = "10s", pages: str = "{/big: {bytes: 2MiB}}",
                   expect: str = "recovers: client") -> tuple[str, str, int]:
    text = FAULTS.replace("RECONNECT", reconnect).replace("PAGES", pages).replace("EXPECT", expect)
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(text, tmp_path / "s.yaml")
    [problem] = info.value.problems
    return problem.path, problem.message, problem.loc.line


@pytest.mark.parametrize("change, path, message", [
    ({"reconnect": "-1"}, "nodes.client.with.reconnect", "duration must be 0 or more"),
    ({"pages": "{/big: {bytes: 0}}"}, 'nodes.web.with.pages["/big"].bytes',
     "page size 0 is out of range: expected 1B..64GiB"),
    ({"pages": "{/big: {bytes: lots}}"}, 'nodes.web.with.pages["/big"].bytes', "invalid size 'lots'"),
    ({"pages": "{/big: {size: 2MiB}}"}, 'nodes.web.with.pages["/big"].size', "unknown key 'size' in a generated page"),
    ({"pages": "{/big: {}}"}, 'nodes.web.with.pages["/big"]', "a generated page needs bytes: SIZE"),
    ({"pages": "{/big: [1]}"}, 'nodes.web.with.pages["/big"]',
     "a page body must be a string, got a list (or {bytes: SIZE}: a generated one)"),
    ({"expect": "recovers: browser"}, "expect[0].recovers",
     "recovers needs telnet-client nodes; 'browser' is an http-get"),
    ({"expect": "rate: {nodes: client, rate: 1mbit, window: [1s, 2s]}"}, "expect[0].rate.nodes",
     "rate needs http-get nodes; 'client' is a telnet-client"),
    ({"expect": "rate: browser"}, "expect[0].rate",
     "rate needs parameters: {nodes: ..., rate: 1mbit, window: [1s, 6s]}"),
    ({"expect": "rate: {nodes: browser, rate: 1mbit}"}, "expect[0].rate", "missing required parameter 'window'"),
    ({"expect": "rate: {nodes: browser, rate: 1mbps, window: [1s, 2s]}"}, "expect[0].rate.rate",
     "rate '1mbps' is ambiguous (tc reads bps as bytes per second): write bits, e.g. 8mbit"),
    ({"expect": "rate: {nodes: browser, rate: 1000, window: [1s, 2s]}"}, "expect[0].rate.rate",
     "expected a rate like 800kbit, 1mbit or 1.5mbit, got the integer 1000"),
    ({"expect": "rate: {nodes: browser, rate: 20gbit, window: [1s, 2s]}"}, "expect[0].rate.rate",
     "rate '20gbit' is out of range: expected 8kbit..10gbit"),
    ({"expect": "rate: {nodes: browser, rate: 1mbit, window: [2s, 1s]}"}, "expect[0].rate.window[1]",
     "the window's end must come after its start"),
    ({"expect": "rate: {nodes: browser, rate: 1mbit, window: [1s, soon]}"}, "expect[0].rate.window[1]",
     "invalid duration 'soon'"),
    ({"expect": "rate: {nodes: browser, rate: 1mbit, window: 5s}"}, "expect[0].rate.window",
     "expected a window [FROM, TO] like [1s, 6s], got the string '5s'"),
    ({"expect": "rate: {nodes: browser, rate: 1mbit, window: [1s, 2s], within: 0%}"}, "expect[0].rate.within",
     "a percentage must be more than 0 and at most 100, got '0%'"),
    ({"expect": "rate: {nodes: browser, rate: 1mbit, window: [1s, 2s], within: lots}"}, "expect[0].rate.within",
     "expected a percentage like 20%, got 'lots'"),
])
def test_fault_parameters_are_checked_where_written(tmp_path: Path, change: dict[str, str], path: str,
                                                     message: str) -> None:
    found_path, found, line = _fault_problem(tmp_path, **change)
    assert found_path == path and message in found, (found_path, found)
    key = next(iter(change))
    assert line == {"reconnect": 6, "pages": 7, "expect": 10}[key]
