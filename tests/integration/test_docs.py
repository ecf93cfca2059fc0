"""The outputs the README and the tutorial show are what the lab prints: every ```console block
preceded by a `<!-- doc-test -->` comment is run, in a copy of the repository's scenarios, and each
line it shows must be printed, in that order, by the command above it. Times, lab ids, pids and
run folders are masked on both sides; `<!-- doc-test: replace FILE OLD NEW -->` changes a file of
the copy first (the tutorial's "change the program and run again")."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import ROOT

DOCS = [ROOT / "README.md", ROOT / "docs" / "tutorial.md"]
DIRECTIVE = re.compile(r"<!-- doc-test(?::(?P<body>.*?))? -->")
MASKS = [
    (re.compile(r"\b\d+\.\d+s\b"), "N.NNs"),  # durations and moments
    (re.compile(r"\b[0-9a-f]{8}\b"), "LABID"),  # lab ids
    (re.compile(r"\(pid \d+\)"), "(pid N)"),
    (re.compile(r"(runs|grades)/[\w.-]+(?:/[\w.-]+)*"), r"\1/…"),  # run folders (named by time)
    (re.compile(r"/tmp/[\w./-]+/(runs|grades)/"), r"\1/"),
    (re.compile(r"[ \t]+"), " "),  # table alignment follows the widths of the names
]


@dataclass
class Block:
    where: str  # FILE:LINE
    replaces: list[tuple[str, str, str]] = field(default_factory=list)
    steps: list[tuple[str, list[str]]] = field(default_factory=list)  # (command, lines it must print)


def blocks() -> list[Block]:
    found = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        for k, line in enumerate(lines):
            m = DIRECTIVE.fullmatch(line.strip())
            if not m or k + 1 >= len(lines) or lines[k + 1].strip() != "```console":
                continue
            block = Block(f"{doc.relative_to(ROOT)}:{k + 2}")
            for directive in filter(None, (m.group("body") or "").split(";")):
                verb, *args = shlex.split(directive)
                assert verb == "replace" and len(args) == 3, f"{block.where}: unknown directive {directive!r}"
                block.replaces.append((args[0], args[1], args[2]))
            for text in lines[k + 2:lines.index("```", k + 2)]:
                if text.startswith("$ "):
                    block.steps.append((text[2:], []))
                elif text.strip():
                    assert block.steps, f"{block.where}: output before any command"
                    block.steps[-1][1].append(text)
            found.append(block)
    return found


def mask(text: str) -> str:
    for pattern, replacement in MASKS:
        text = pattern.sub(replacement, text)
    return text.strip()


@pytest.mark.parametrize("block", blocks(), ids=lambda b: b.where)
def test_the_docs_show_what_the_lab_prints(block: Block, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "scenarios", tmp_path / "scenarios")
    for file, old, new in block.replaces:
        path = tmp_path / file
        assert old in path.read_text(), f"{block.where}: {file} has no {old!r}"
        path.write_text(path.read_text().replace(old, new))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for command, expected in block.steps:
        argv = shlex.split(command)
        assert argv[0] == "lab", f"{block.where}: only `lab` commands are run ({command!r})"
        done = subprocess.run([sys.executable, "-m", "lab", *argv[1:]], cwd=tmp_path, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=180)  # as a terminal shows
        printed = [mask(line) for line in done.stdout.splitlines()]
        at = 0
        for line in map(mask, expected):
            assert line in printed[at:], (f"{block.where}: `{command}` did not print {line!r} (after line {at}):\n"
                                          + "\n".join(printed))
            at = printed.index(line, at) + 1


def test_every_console_block_is_checked() -> None:
    """A console block the test does not run would be free to drift: each has its directive."""
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        for k, line in enumerate(lines):
            if line.strip() == "```console":
                assert k and DIRECTIVE.fullmatch(lines[k - 1].strip()), f"{doc.name}:{k + 1}: no <!-- doc-test -->"
