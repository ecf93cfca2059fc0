"""Parameters of the built-in roles (`with:`) and of the checks (`expect:`), checked against their
schemas in the catalogues (lab/roles/catalogue.py, lab/checks.py): one converter per parameter type.

Validation fills the defaults in, so roles and checks never guess. Converters get the node
references because some parameters name nodes (`connect: server:9999`, `url: http://web/`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from ipaddress import IPv4Address
from typing import Any

from lab.roles.catalogue import Param
from lab.scenario.checker import Checker, Refs
from lab.scenario.limits import bounded_size
from lab.scenario.source import KeyPath
from lab.scenario.values import (
    Invalid,
    bitrate,
    boolean,
    duration,
    integer,
    kind,
    percent,
    port,
    show,
    string,
    text_list,
)

Convert = Callable[[Any, Refs], Any]
_IPV4_LIKE = re.compile(r"[0-9.]+")
_URL_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<host>[^/:?#\s]*)"
                     r"(?::(?P<port>[^/?#\s]*))?(?P<path>[/?][^#\s]*)?")


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


PAGE_MAX = 64 * 1024**3  # a generated page is written in blocks: its size costs the server no memory


def pages(value: Any) -> dict[str, str | dict[str, int]]:
    """Path -> body; each path an absolute URL path, each body a string or `{bytes: SIZE}` (a body the
    server generates: a sustained stream for `rate`, without megabytes of text in the scenario)."""
    if not isinstance(value, dict):
        raise Invalid(f"expected a mapping of path -> body, got {kind(value)}")
    result: dict[str, str | dict[str, int]] = {}
    for path, body in value.items():
        if not isinstance(path, str) or not path.startswith("/") or any(c.isspace() for c in path):
            raise Invalid(f"page path {show(path)} must start with '/' and contain no spaces", (path,))
        result[path] = body if isinstance(body, str) else generated(body, path)
    return result


def generated(body: Any, path: str) -> dict[str, int]:
    """`{bytes: 2MiB}`: the size of a generated body (binary units, as memory sizes are written)."""
    if not isinstance(body, dict):
        raise Invalid(f"a page body must be a string, got {kind(body)} (or {{bytes: SIZE}}: a generated one)", (path,))
    unknown = [key for key in body if key != "bytes"]
    if unknown:
        raise Invalid(f"unknown key {show(unknown[0])} in a generated page (it takes bytes: SIZE)", (path, unknown[0]))
    if "bytes" not in body:
        raise Invalid("a generated page needs bytes: SIZE, e.g. {bytes: 2MiB}", (path,))
    try:
        return {"bytes": bounded_size(body["bytes"], "page size", 1, PAGE_MAX, "2MiB or 512KiB")}
    except Invalid as e:
        raise Invalid(e.message, (path, "bytes")) from None


def window(value: Any) -> list[float]:
    """`[FROM, TO]`: two durations, FROM before TO."""
    if not isinstance(value, list) or len(value) != 2:
        got = f"a list of {len(value)}" if isinstance(value, list) and value else kind(value)
        raise Invalid(f"expected a window [FROM, TO] like [1s, 6s], got {got}")
    bounds = []
    for i, item in enumerate(value):
        try:
            bounds.append(duration(item))
        except Invalid as e:
            raise Invalid(e.message, (i,)) from None
    if bounds[0] >= bounds[1]:
        raise Invalid(f"the window's end must come after its start, got {show(value)}", (1,))
    return bounds


def regex(value: Any) -> str:
    text = string(value)
    try:
        re.compile(text)
    except re.error as e:
        raise Invalid(f"regex does not compile: {e}") from None
    return text


# How a value of each parameter type (lab.roles.catalogue.TYPES) is checked.
CONVERTERS: dict[str, Convert] = {
    "port": _plain(port),
    "text": _plain(string),
    "lines": _plain(text_list),
    "bool": _plain(boolean),
    "duration": _duration(),
    "timeout": _duration(positive=True),
    "pages": _plain(pages),
    "rate": _plain(bitrate),
    "window": _plain(window),
    "percent": _plain(percent),
    "connect": connect,
    "url": url,
    "status": _int(100, 599),
    "code": _int(0, 255),
    "hosts": _int(1, 1_000_000),  # at most as many as the check's nodes name: expect.py compares
    "regex": _plain(regex),
}


def check_params(c: Checker, path: KeyPath, given: dict[str, Any], schema: Mapping[str, Param],
                 refs: Refs, label: str, missing_at: KeyPath) -> dict[str, Any] | None:
    """Validate `given` against `schema` and fill defaults; None if anything was wrong."""
    before = len(c.problems)
    complete = True  # a missing parameter may go unreported (it is there, misspelled)
    result: dict[str, Any] = {}
    c.unknown_keys(path, given, list(schema), f"unknown parameter {{key}} for {label}")
    for key, param in schema.items():
        if key in given:
            result[key] = c.check(path + (key,), given[key], CONVERTERS[param.type], refs)
        elif param.required:
            c.missing(path, key, f"missing required parameter {key!r} for {label}", at=missing_at)
            complete = False
        else:
            result[key] = copy.deepcopy(param.default)
    return result if complete and len(c.problems) == before else None
