"""Reading a scenario file into plain values that remember where each came from.

Validation reports `FILE:LINE:COL`, so the YAML is composed (not loaded) and every key and value
is converted by hand while its position is recorded under its key path. Converting by hand also
lets us refuse what a lab description never needs and what makes YAML dangerous or surprising:
aliases (alias bombs: a shared node is refused before anything is expanded), explicit tags
(object construction), duplicate keys (silently last-wins in PyYAML), several documents.
Composition uses libyaml when PyYAML has it (several times faster on big files).
Every failure becomes a located `ScenarioError`, never a traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from lab.errors import Location, Problem, ScenarioError

SIZE_LIMIT = 1 << 20  # 1 MiB: far beyond any real scenario; refused before reading
KeyPath = tuple[str | int, ...]

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_RESOLVER = yaml.resolver.Resolver()
_TAG = "tag:yaml.org,2002:"
_STR = _TAG + "str"
_PLAIN_STRING_TAGS = {_STR, _TAG + "timestamp", _TAG + "merge", _TAG + "value"}


@dataclass
class Source:
    """A parsed scenario: plain values plus the position of every key and value by key path."""

    file: str
    text: str
    data: dict[str, Any]
    values: dict[KeyPath, Location] = field(default_factory=dict)
    keys: dict[KeyPath, Location] = field(default_factory=dict)
    raw: dict[KeyPath, str] = field(default_factory=dict)  # scalars' text as written (e.g. "1.10")

    def value_loc(self, path: KeyPath) -> Location:
        """Where the value at `path` starts (or its closest recorded ancestor)."""
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, Location(self.file, 1, 1))

    def key_loc(self, path: KeyPath) -> Location:
        """Where the key holding `path` is written (the value's place for list items)."""
        return self.keys.get(path) or self.value_loc(path)


def _loc(file: str, mark: Any) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


def fail(file: str, message: str, line: int = 1, col: int = 1) -> ScenarioError:
    """A single-problem ScenarioError about the file as a whole."""
    return ScenarioError([Problem(Location(file, line, col), "", message)])


def read_file(path: Path) -> str:
    """Read a scenario as UTF-8 text, refusing oversized files before reading a byte."""
    file = str(path)
    try:
        size = os.stat(path).st_size
        if size > SIZE_LIMIT:
            raise fail(file, f"file too large: {size} bytes (limit {SIZE_LIMIT})")
        if not path.is_file():
            raise fail(file, "not a regular file")
        data = path.read_bytes()
    except FileNotFoundError:
        raise fail(file, "no such file") from None
    except (OSError, ValueError) as e:
        raise fail(file, f"cannot read: {getattr(e, 'strerror', None) or e}") from None
    return decode(data, file)


def decode(data: bytes, file: str) -> str:
    """UTF-8 (a BOM is tolerated); bad bytes are reported at their line and column."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        before = data[: e.start]
        line = before.count(b"\n") + 1
        col = e.start - (before.rfind(b"\n") + 1) + 1
        raise fail(file, f"not UTF-8 text: byte 0x{data[e.start]:02x} cannot be decoded", line, col) from None


def parse(text: str, file: str) -> Source:
    """Compose `text` and convert it; raises ScenarioError for anything that is not a usable mapping."""
    if len(text) > SIZE_LIMIT:
        raise fail(file, f"file too large: {len(text.encode('utf-8', 'replace'))} bytes (limit {SIZE_LIMIT})")
    loader: Any = None
    try:
        loader = _LOADER(text)  # the pure-Python reader already refuses control characters here
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        raise _syntax_error(file, text, e) from None
    except yaml.reader.ReaderError as e:
        raise _reader_error(file, text, e) from None
    except yaml.YAMLError as e:
        raise fail(file, "YAML: " + " ".join(str(e).split())) from None
    except RecursionError:
        raise fail(file, "YAML nesting is too deep") from None
    finally:
        if loader is not None:
            loader.dispose()
    if root is None:
        raise fail(file, "empty file: a scenario is a mapping with name, networks and nodes")
    if not isinstance(root, MappingNode):
        loc = _loc(file, root.start_mark)
        raise fail(file, "the top level must be a mapping (name: ..., networks: ..., nodes: ...)",
                   loc.line, loc.col)
    try:
        return _Converter(file, text).run(root)
    except RecursionError:
        raise fail(file, "YAML nesting is too deep") from None


def _syntax_error(file: str, text: str, e: yaml.MarkedYAMLError) -> ScenarioError:
    """One line per YAML error, at the most useful position, with a hint for the classic mistakes."""
    problem = " ".join((e.problem or "syntax error").split())
    context = " ".join((e.context or "").split())
    mark = e.problem_mark or e.context_mark
    quote = _open_quote(text, mark.line if mark is not None else len(text))
    at_end = mark is not None and not text[_offset(text, mark):].strip()
    if "'\\t'" in problem or "tab" in problem or _char_at(text, mark) == "\t":
        message = "tab character: YAML must be indented with spaces"
    elif "quoted scalar" in context and e.context_mark is not None:
        message, mark = "unclosed quote: " + problem, e.context_mark
    elif quote is not None and mark is not None:
        line, col = quote
        message = (f"unclosed quote: the string runs on to line {mark.line + 1}, "
                   f"where YAML fails: {problem}")
        return fail(file, message, line, col)
    elif at_end and context and e.context_mark is not None:
        what = context.removeprefix("while parsing ").removeprefix("while scanning ")
        message, mark = f"YAML syntax: {what} is not closed before the end of the file ({problem})", \
            e.context_mark
    elif "single document" in context:
        message = "only one YAML document is allowed (found a second '---')"
    elif context and e.context_mark is not None:
        where = f"line {e.context_mark.line + 1}, column {e.context_mark.column + 1}"
        message = f"YAML syntax: {problem} ({context} at {where})"
    else:
        message = f"YAML syntax: {problem}"
    if mark is None:
        return fail(file, message)
    return fail(file, message, mark.line + 1, mark.column + 1)


def _open_quote(text: str, last_line: int) -> tuple[int, int] | None:
    """(line, col) of the first quote left open at the end of its line, up to `last_line` (0-based).

    A quoted YAML string may span lines, so a missing closing quote often surfaces as an
    unrelated error much later; pointing at the quote is what helps.
    """
    for number, line in enumerate(text.split("\n")[: last_line + 1]):
        col = _open_quote_in(line)
        if col is not None:
            return number + 1, col + 1
    return None


def _open_quote_in(line: str) -> int | None:
    """Column of a quote that starts a value on this line and is not closed on it."""
    quote, start, i = "", 0, 0
    while i < len(line):
        char = line[i]
        if quote == '"' and char == "\\":
            i += 1
        elif quote and char == quote:
            if quote == "'" and line[i + 1: i + 2] == "'":
                i += 1
            else:
                quote = ""
        elif not quote and char in "\"'" and line[:i].rstrip()[-1:] in ("", ":", "-", "[", "{", ","):
            quote, start = char, i
        elif not quote and char == "#" and (i == 0 or line[i - 1] in " \t"):
            break
        i += 1
    return start if quote else None


def _offset(text: str, mark: Any) -> int:
    """The character offset of a mark's line and column."""
    lines = text.split("\n")
    return sum(len(line) + 1 for line in lines[: mark.line]) + mark.column


def _char_at(text: str, mark: Any) -> str:
    if mark is None:
        return ""
    offset = _offset(text, mark)
    return text[offset: offset + 1]


def _reader_error(file: str, text: str, e: yaml.reader.ReaderError) -> ScenarioError:
    """Non-printable characters: reported at their line and column (libyaml counts UTF-8 bytes)."""
    pos = e.position
    if _LOADER is not yaml.SafeLoader:
        pos = len(text.encode("utf-8")[: max(pos, 0)].decode("utf-8", "ignore"))
    pos = min(max(pos, 0), len(text))
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    char = e.character if isinstance(e.character, str) else chr(e.character)
    return fail(file, f"unacceptable character U+{ord(char):04X} (control characters are not allowed)",
                line, col)


class _Converter:
    """Node tree -> plain values, recording marks; collects duplicate-key and key-type problems."""

    def __init__(self, file: str, text: str):
        self.file = file
        self.source = Source(file, text, {})
        self.problems: list[Problem] = []
        self.seen: set[int] = set()  # ids of converted nodes: a node met twice is an alias

    def run(self, root: MappingNode) -> Source:
        self.source.values[()] = _loc(self.file, root.start_mark)
        self.source.data = self._mapping(root, ())
        if self.problems:
            raise ScenarioError(self.problems)
        return self.source

    def _value(self, node: Node, path: KeyPath) -> Any:
        if id(node) in self.seen:
            self._problem(self.source.key_loc(path), path, "YAML aliases are not supported "
                          "(write the value out)")
            return None
        self.seen.add(id(node))
        self.source.values[path] = loc = _loc(self.file, node.start_mark)
        tag = _unexpected_tag(node)
        if tag is not None:
            self._problem(loc, path, f"YAML tag {tag.replace(_TAG, '!!')} is not supported")
            return None
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            return [self._value(item, path + (i,)) for i, item in enumerate(node.value)]
        assert isinstance(node, ScalarNode)
        self.source.raw[path] = node.value
        return _scalar(node)

    def _mapping(self, node: MappingNode, path: KeyPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key_loc = _loc(self.file, key_node.start_mark)
            if not isinstance(key_node, ScalarNode):
                self._problem(key_loc, path, "mapping keys must be plain strings")
                continue
            key = key_node.value  # as written: `on:` or `80:` stay strings, as names are
            if key in first_line:
                self._problem(key_loc, path + (key,),
                              f"duplicate key {key!r} (first at line {first_line[key]})")
                continue
            first_line[key] = key_loc.line
            self.source.keys[path + (key,)] = key_loc
            result[key] = self._value(value_node, path + (key,))
        return result

    def _problem(self, loc: Location, path: KeyPath, message: str) -> None:
        self.problems.append(Problem(loc, format_path(path), message))


def _unexpected_tag(node: Node) -> str | None:
    """An explicit tag that changes what the value would be without it (`!!str` is fine)."""
    if isinstance(node, MappingNode):
        return None if node.tag == _TAG + "map" else node.tag
    if isinstance(node, SequenceNode):
        return None if node.tag == _TAG + "seq" else node.tag
    if node.tag == _STR:
        return None
    plain = not getattr(node, "style", None)  # libyaml reports '' for plain scalars, PyYAML None
    implicit = _RESOLVER.resolve(ScalarNode, node.value, (True, False)) if plain else _STR
    return None if node.tag == implicit else node.tag


def _scalar(node: ScalarNode) -> Any:
    """A scalar as SafeLoader would build it, except dates and merge keys, which stay text."""
    tag = node.tag
    if tag in _PLAIN_STRING_TAGS:
        return node.value
    constructor = SafeConstructor()
    if tag == _TAG + "null":
        return None
    if tag == _TAG + "bool":
        return constructor.construct_yaml_bool(node)
    if tag == _TAG + "int":
        return constructor.construct_yaml_int(node)
    if tag == _TAG + "float":
        return constructor.construct_yaml_float(node)
    return node.value


def format_path(path: KeyPath) -> str:
    """`nodes.client.with.connect`, `expect[1].http`, `...pages["/a.txt"]` for odd keys."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part and all(c.isalnum() or c in "-_" for c in part) and part.isascii():
            out += f".{part}" if out else part
        else:
            out += "[" + _quote(part) + "]"
    return out


def _quote(text: str) -> str:
    """A double-quoted, escaped, single-line rendering of a key."""
    escaped = text.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    return f'"{escaped}"'
