"""Parameter schemas of the built-in roles (`with:`) and of the checks (`expect:`).

One table per role and per check: type (a converter), required or default. Validation fills the
defaults in, so roles and checks never guess. Converters get the node references because some
parameters name nodes (`connect: server:9999`, `url: http://web/`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from lab.scenario.checker import Checker, Refs
from lab.scenario.source import KeyPath
from lab.scenario.values import (
    Invalid,
    boolean,
    duration,
    integer,
    kind,
    port,
    show,
    string,
    text_list,
)

Convert = Callable[[Any, Refs], Any]
_IPV4_LIKE = re.compile(r"[0-9.]+")
_URL_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<host>[^/:?#\s]*)"
                     r"(?::(?P<port>[^/?#\s]*))?(?P<path>[/?][^#\s]*)?")


@dataclass(frozen=True)
class Param:
    """One parameter: how to convert it, and whether it is required or what it defaults to."""

    convert: Convert
    required: bool = False
    default: Any = None


def _plain(convert: Callable[[Any], Any]) -> Convert:
    return lambda value, refs: convert(value)


def _duration(positive: bool = False) -> Convert:
    return lambda value, refs: duration(value, positive)


def _int(low: int, high: int) -> Convert:
    return lambda value, refs: integer(value, low, high)


def _host(host: str, refs: Refs, what: str) -> None:
    """A host is an IPv4 address or the name of exactly one node."""
    if _IPV4_LIKE.fullmatch(host):
        try:
            IPv4Address(host)
        except ValueError:
            raise Invalid(f"invalid IPv4 address {show(host)} in {what}") from None
    else:
        refs.single(host, what)


def _port_text(text: str, what: str) -> None:
    if not text.isascii() or not text.isdigit():
        raise Invalid(f"invalid port {show(text)} in {what}: expected a number 1..65535")
    if not 1 <= int(text) <= 65535:
        raise Invalid(f"port {int(text)} in {what} is out of range: expected 1..65535")


def connect(value: Any, refs: Refs) -> str:
    """`NODE:PORT` or `IPv4:PORT`, kept as written (the plan resolves the node to its address)."""
    text = string(value)
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise Invalid(f"expected NODE:PORT or IPv4:PORT, got {show(text)}")
    _host(host, refs, "connect")
    _port_text(port_text, "connect")
    return text


def url(value: Any, refs: Refs) -> str:
    """`http://HOST[:PORT][/path]` where HOST is a node name or an IPv4 address; kept as written."""
    text = string(value)
    match = _URL_RE.fullmatch(text)
    if not match:
        raise Invalid(f"expected a URL like http://web:8080/index.html, got {show(text)}")
    if match["scheme"] != "http":
        raise Invalid(f"only http:// URLs are supported, got {show(text)}")
    if not match["host"]:
        raise Invalid(f"the URL has no host: {show(text)}")
    _host(match["host"], refs, "url")
    if match["port"] is not None:
        _port_text(match["port"], "url")
    return text


def pages(value: Any) -> dict[str, str]:
    """Path -> body; each path an absolute URL path."""
    if not isinstance(value, dict):
        raise Invalid(f"expected a mapping of path -> body, got {kind(value)}")
    for path, body in value.items():
        if not path.startswith("/") or any(c.isspace() for c in path):
            raise Invalid(f"page path {show(path)} must start with '/' and contain no spaces", (path,))
        if not isinstance(body, str):
            raise Invalid(f"a page body must be a string, got {kind(body)}", (path,))
    return dict(value)


def regex(value: Any) -> str:
    text = string(value)
    try:
        re.compile(text)
    except re.error as e:
        raise Invalid(f"regex does not compile: {e}") from None
    return text


ROLE_PARAMS: dict[str, dict[str, Param]] = {
    "echo-server": {"port": Param(_plain(port), required=True)},
    "greeting-server": {
        "port": Param(_plain(port), required=True),
        "text": Param(_plain(string), default="Thank you for connecting"),
    },
    "http-server": {
        "port": Param(_plain(port), default=80),
        "pages": Param(_plain(pages), default={"/": "<h1>It works</h1>"}),
    },
    "telnet-client": {
        "connect": Param(connect, required=True),
        "send": Param(_plain(text_list), default=[]),
        "read_greeting": Param(_plain(boolean), default=False),
        "hold": Param(_duration(), default=0.0),
        "interval": Param(_duration(), default=0.0),
        "quiet": Param(_duration(positive=True), default=0.25),
        "timeout": Param(_duration(positive=True), default=5.0),
    },
    "http-get": {
        "url": Param(url, required=True),
        "timeout": Param(_duration(positive=True), default=5.0),
    },
}

CHECK_PARAMS: dict[str, dict[str, Param]] = {
    "echo": {},
    "greeting": {"text": Param(_plain(string), required=True)},
    "http": {"status": Param(_int(100, 599), default=200), "body_contains": Param(_plain(string))},
    "concurrent": {"at_least": Param(_int(1, 1_000_000), required=True)},
    "exit": {"code": Param(_int(0, 255), default=0)},
    "output": {"contains": Param(_plain(string)), "regex": Param(_plain(regex))},
}

# Checks that may be written `- echo: client` (their parameters all have defaults), and how the
# others are written (for the message when the short form is used for them).
SHORT_FORM = ("echo", "http", "exit")
LONG_FORM = {
    "greeting": "{nodes: ..., text: ...}",
    "concurrent": "{nodes: ..., at_least: N}",
    "output": "{nodes: ..., contains: ...} or {nodes: ..., regex: ...}",
}

# Which roles a check can judge (None: any node that runs something, a role or a program).
CHECK_ROLES: dict[str, tuple[str, ...] | None] = {
    "echo": ("telnet-client",),
    "greeting": ("telnet-client",),
    "concurrent": ("telnet-client",),
    "http": ("http-get",),
    "exit": None,
    "output": None,
}


def check_params(c: Checker, path: KeyPath, given: dict[str, Any], schema: dict[str, Param],
                 refs: Refs, label: str, missing_at: KeyPath) -> dict[str, Any] | None:
    """Validate `given` against `schema` and fill defaults; None if anything was wrong."""
    before = len(c.problems)
    complete = True  # a missing parameter may go unreported (it is there, misspelled)
    result: dict[str, Any] = {}
    c.unknown_keys(path, given, list(schema), f"unknown parameter {{key}} for {label}")
    for key, param in schema.items():
        if key in given:
            result[key] = c.check(path + (key,), given[key], param.convert, refs)
        elif param.required:
            c.missing(path, key, f"missing required parameter {key!r} for {label}", at=missing_at)
            complete = False
        else:
            result[key] = copy.deepcopy(param.default)
    return result if complete and len(c.problems) == before else None
