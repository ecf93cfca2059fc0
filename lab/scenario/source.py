"""Reading a scenario file into plain values that remember where each came from.

Validation reports `FILE:LINE:COL`, so values are built straight from the YAML event stream
while the position of every key and value is recorded under its key path. Building by hand
(instead of `yaml.safe_load`) also lets us refuse what a lab description never needs and what
makes YAML dangerous or surprising: anchors and aliases (alias bombs), explicit tags (object
construction), duplicate keys (silently last-wins in PyYAML), several documents. The builder is
iterative with a depth limit: libyaml's own composer recurses in C and crashes the interpreter
on deeply nested input. Every failure becomes a located `ScenarioError`, never a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import ScalarNode

from lab.errors import Location, Problem, ScenarioError
from lab.scenario.yaml_errors import reader_error, syntax_error

SIZE_LIMIT = 1 << 20  # 1 MiB: far beyond any real scenario; refused before reading
MAX_DEPTH = 64  # a scenario nests about 6 levels deep
KeyPath = tuple[str | int, ...]

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser is much faster
_RESOLVER = yaml.resolver.Resolver()
_CONSTRUCTOR = SafeConstructor()
_TAG = "tag:yaml.org,2002:"
_STRING_TAGS = {_TAG + "str", _TAG + "timestamp", _TAG + "merge", _TAG + "value"}  # dates stay text
_EXPLICIT_OK = {yaml.ScalarEvent: _TAG + "str", yaml.SequenceStartEvent: _TAG + "seq",
                yaml.MappingStartEvent: _TAG + "map"}
_SKIP = object()  # the value of a key that was refused (duplicate, not a string)


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


MAX_PROBLEMS = 100  # a broken file can have thousands; the first ones are what a user reads


def fail(file: str, message: str, line: int = 1, col: int = 1) -> ScenarioError:
    """A single-problem ScenarioError."""
    return ScenarioError([Problem(Location(file, line, col), "", message)])


def problems_error(problems: list[Problem]) -> ScenarioError:
    """A ScenarioError with the first MAX_PROBLEMS problems (in file order) and a count of the rest."""
    ordered = sorted(problems, key=lambda p: (p.loc.line, p.loc.col))
    if len(ordered) <= MAX_PROBLEMS:
        return ScenarioError(ordered)
    rest = ordered[MAX_PROBLEMS]
    more = Problem(rest.loc, "", f"{len(ordered) - MAX_PROBLEMS} more problems not shown")
    return ScenarioError(ordered[:MAX_PROBLEMS] + [more])


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
    """Build the plain values of `text`; ScenarioError for anything that is not a usable mapping."""
    if len(text) > SIZE_LIMIT:
        raise fail(file, f"file too large: {len(text.encode('utf-8', 'replace'))} bytes (limit {SIZE_LIMIT})")
    builder = _Builder(file, text)
    try:
        builder.run(_events(text))
    except yaml.MarkedYAMLError as e:
        raise fail(file, *syntax_error(text, e)) from None
    except yaml.reader.ReaderError as e:
        raise fail(file, *reader_error(text, e, byte_offsets=_LOADER is not yaml.SafeLoader)) from None
    except yaml.YAMLError as e:
        raise fail(file, "YAML: " + " ".join(str(e).split())) from None
    return builder.finish()


def _events(text: str) -> Iterator[yaml.Event]:
    loader = _LOADER(text)  # the pure-Python reader refuses control characters right here
    try:
        while loader.check_event():
            yield loader.get_event()
    finally:
        loader.dispose()


@dataclass
class _Frame:
    """An open mapping or sequence (or a refused subtree, `value` None, that is only skipped)."""

    value: dict[str, Any] | list[Any] | None
    path: KeyPath
    key: Any = None  # in a mapping: the key whose value comes next (None: a key comes next)
    first_line: dict[str, int] = field(default_factory=dict)


class _Builder:
    """YAML events -> plain values and positions; collects problems instead of stopping at one."""

    def __init__(self, file: str, text: str):
        self.file = file
        self.source = Source(file, text, {})
        self.problems: list[Problem] = []
        self.stack: list[_Frame] = []
        self.root: Any = None
        self.documents = 0

    def run(self, events: Iterator[yaml.Event]) -> None:
        for event in events:
            if isinstance(event, yaml.DocumentStartEvent):
                self.documents += 1
                if self.documents > 1:
                    loc = self._loc(event.start_mark)
                    raise fail(self.file, "only one YAML document is allowed (found a second '---')",
                               loc.line, loc.col)
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                self.stack.pop()
            elif isinstance(event, yaml.NodeEvent):
                self._node(event)

    def finish(self) -> Source:
        if self.root is None and self.problems:
            raise problems_error(self.problems)
        if self.root is None:
            raise fail(self.file, "empty file: a scenario is a mapping with name, networks and nodes")
        if not isinstance(self.root, dict):
            loc = self.source.value_loc(())
            raise fail(self.file, "the top level must be a mapping (name: ..., networks: ..., nodes: ...)",
                       loc.line, loc.col)
        if self.problems:
            raise problems_error(self.problems)
        self.source.data = self.root
        return self.source

    def _node(self, event: yaml.NodeEvent) -> None:
        """Place one scalar, alias or collection start: as a key, a value, an item or the root."""
        if not self.stack:
            self.root = self._open(event, (), ())
            return
        parent = self.stack[-1]
        if parent.value is None:
            self._open(event, None, ())  # inside a refused subtree
        elif isinstance(parent.value, list):
            path = parent.path + (len(parent.value),)
            parent.value.append(self._open(event, path, path))
        elif parent.key is None:
            self._key(parent, event)
        elif parent.key is _SKIP:
            self._open(event, None, ())
            parent.key = None
        else:
            path = parent.path + (parent.key,)
            parent.value[parent.key] = self._open(event, path, path)
            parent.key = None

    def _key(self, parent: _Frame, event: yaml.NodeEvent) -> None:
        loc = self._loc(event.start_mark)
        if not isinstance(event, yaml.ScalarEvent) or event.anchor is not None:
            self._problem(loc, parent.path, "mapping keys must be plain strings (no aliases or anchors)")
            self._open(event, None, ())
            parent.key = _SKIP
            return
        key = event.value  # as written: `on:` or `80:` stay strings, as names are
        assert isinstance(parent.value, dict)
        if key in parent.first_line:
            self._problem(loc, parent.path + (key,),
                          f"duplicate key {key!r} (first at line {parent.first_line[key]})")
            parent.key = _SKIP
            return
        parent.first_line[key] = loc.line
        self.source.keys[parent.path + (key,)] = loc
        parent.key = key

    def _open(self, event: yaml.NodeEvent, path: KeyPath | None, where: KeyPath) -> Any:
        """The value an event starts; collections are pushed (refused ones with value None)."""
        loc = self._loc(event.start_mark)
        if path is not None:
            self.source.values[path] = loc
            if isinstance(event, yaml.AliasEvent):
                path = None  # its anchor is reported already (an undefined alias is a syntax error)
            elif getattr(event, "anchor", None) is not None:
                self._problem(loc, where, f"YAML aliases are not supported (anchor &{event.anchor}: "
                              "write the value out where it is used)")
                path = None
            elif _explicit_tag(event) is not None:
                tag = str(_explicit_tag(event)).replace(_TAG, "!!")
                self._problem(loc, where, f"YAML tag {tag} is not supported")
                path = None
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if len(self.stack) >= MAX_DEPTH:
                raise fail(self.file, f"YAML nesting is too deep (more than {MAX_DEPTH} levels)",
                           loc.line, loc.col)
            value: Any = None if path is None else {} if isinstance(event, yaml.MappingStartEvent) else []
            self.stack.append(_Frame(value, path or ()))
            return value
        if path is None or not isinstance(event, yaml.ScalarEvent):
            return None
        self.source.raw[path] = event.value
        return _scalar(event)

    def _loc(self, mark: Any) -> Location:
        return Location(self.file, mark.line + 1, mark.column + 1)

    def _problem(self, loc: Location, path: KeyPath, message: str) -> None:
        self.problems.append(Problem(loc, format_path(path), message))


def _explicit_tag(event: yaml.NodeEvent) -> str | None:
    """An explicit tag other than !!str, !!seq, !!map on their own kind (which change nothing)."""
    tag = getattr(event, "tag", None)
    if tag is None or tag == _EXPLICIT_OK.get(type(event)):
        return None
    if isinstance(event, yaml.ScalarEvent) and tag == "!" and not event.implicit[0]:
        return None  # `! text` and quoted strings: plain strings
    return str(tag)


def _scalar(event: yaml.ScalarEvent) -> Any:
    """A scalar as SafeLoader would build it, except dates and merge keys, which stay text."""
    if event.tag == _TAG + "str" or event.tag == "!":
        return event.value
    tag = _RESOLVER.resolve(ScalarNode, event.value, event.implicit)
    if tag in _STRING_TAGS:
        return event.value
    node = ScalarNode(tag, event.value)
    if tag == _TAG + "null":
        return None
    if tag == _TAG + "bool":
        return _CONSTRUCTOR.construct_yaml_bool(node)
    if tag == _TAG + "int":
        return _CONSTRUCTOR.construct_yaml_int(node)
    if tag == _TAG + "float":
        return _CONSTRUCTOR.construct_yaml_float(node)
    return event.value


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
