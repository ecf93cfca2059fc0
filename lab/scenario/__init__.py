"""Scenario files: reading (with locations), strict validation, and the validated model.

`load_scenario` is the only way the rest of the lab gets a Scenario, so everything downstream
may trust it: an invalid file raises `ScenarioError` with one located problem per line.
"""

from __future__ import annotations

from pathlib import Path

from lab.scenario.model import Scenario
from lab.scenario.source import parse, read_file
from lab.scenario.validate import validate


def load_scenario(path: Path | str) -> Scenario:
    """Read and validate a scenario file (refusing oversized files before reading them)."""
    path = Path(path)
    return load_scenario_text(read_file(path), path)


def load_scenario_text(text: str, path: Path | str) -> Scenario:
    """Validate scenario text; `path` names the file in messages and anchors `files:` folders."""
    path = Path(path)
    source = parse(text, str(path))
    return validate(source, path.absolute())


__all__ = ["Scenario", "load_scenario", "load_scenario_text"]
