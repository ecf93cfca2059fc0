"""Converters for the scenario's value types: each returns the typed value or raises `Invalid`.

They are strict on purpose: a lab that silently accepts `port: "80"` or `forwarding: "no"` fails
later, far from the typo. Messages say what was expected and what was found, on one line.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from lab.scenario.source import KeyPath

NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,30}")
NAME_RULE = "use 1-31 lowercase letters, digits or '-', starting with a letter"
MAX_DURATION = 24 * 3600.0
_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_RATE_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(bit|kbit|mbit|gbit)", re.IGNORECASE)
_BYTE_RATE_RE = re.compile(r"[\d.]+\s*[kmg]?bps", re.IGNORECASE)
_RATE_UNIT = {"bit": 1, "kbit": 1000, "mbit": 1000**2, "gbit": 1000**3}
RATE_MIN, RATE_MAX = 8000, 10 * 1000**3  # 8kbit..10gbit: what tbf shapes well


class Invalid(Exception):
    """A value is wrong; `sub` is the key path below the value where the fault is (list items)."""

    def __init__(self, message: str, sub: KeyPath = ()):
        super().__init__(message)
        self.message = message
        self.sub = sub


class Reported(Invalid):
    """The value is wrong because of a fault already reported elsewhere (no second message)."""

    def __init__(self) -> None:
        super().__init__("already reported")


def show(value: Any) -> str:
    """A short, single-line rendering of a value for messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def kind(value: Any) -> str:
    """What the user wrote, in words (YAML's yes/no/on/off are booleans, hence the hint)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()} (quote it if you meant a string)"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {show(value)}"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping"
    return type(value).__name__


def suggest(word: str, known: Iterable[str], what: str, listing: bool = False) -> str:
    """`(did you mean 'role'?)` when something is close, else the known choices; both if `listing`
    (for names the user declared: seeing them all helps more than for fixed keywords)."""
    choices = list(known)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not choices:
        return f"(no {what} are declared)"
    listed = f"{what}: " + ", ".join(choices[:12]) + (", ..." if len(choices) > 12 else "")
    if close:
        return f"(did you mean {close[0]!r}? {listed})" if listing else f"(did you mean {close[0]!r}?)"
    return f"({listed})"


def name(value: Any) -> str:
    """A node, network or scenario name: safe in paths, shells and interface names."""
    if not isinstance(value, str):
        raise Invalid(f"expected a name, got {kind(value)}")
    if not NAME_RE.fullmatch(value):
        raise Invalid(f"invalid name {show(value)}: {NAME_RULE}")
    return value


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"expected a string, got {kind(value)}")
    return value


def text_list(value: Any) -> list[str]:
    """A list of strings; a single string counts as a list of one."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise Invalid(f"expected a string or a list of strings, got {kind(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise Invalid(f"expected a string, got {kind(item)}", (i,))
    return list(value)


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"expected true or false, got {kind(value)}")
    return value


def integer(value: Any, low: int, high: int, what: str = "an integer") -> int:
    """An int in [low, high]; booleans and floats are not integers here."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"expected {what} {low}..{high}, got {kind(value)}")
    if not low <= value <= high:
        raise Invalid(f"{value} is out of range: expected {what} {low}..{high}")
    return value


def port(value: Any) -> int:
    return integer(value, 1, 65535, "a port")


def duration(value: Any, positive: bool = False) -> float:
    """Seconds as a number, or "90s", "2m", "500ms", "1h"; at most 24h."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Invalid(f"expected a duration like 30s, 500ms, 2m or a number of seconds, got {kind(value)}")
    if isinstance(value, str):
        match = _DURATION_RE.fullmatch(value.strip())
        if not match:
            raise Invalid(f"invalid duration {show(value)}: use e.g. 30s, 500ms, 2m or a number of seconds")
        seconds = float(match.group(1)) * _UNIT[match.group(2)]
    else:
        seconds = float(value)
    if math.isnan(seconds) or seconds < 0 or (positive and seconds == 0):
        raise Invalid(f"duration must be {'greater than 0' if positive else '0 or more'}, got {show(value)}")
    if seconds > MAX_DURATION:
        raise Invalid(f"duration {show(value)} is longer than 24h")
    return seconds


def bitrate(value: Any) -> int:
    """Bits per second as tc writes them: 800kbit, 1mbit, 1.5mbit (k = 1000). A unit is required, and
    only the `bit` forms are taken: in tc, `kbps` means kilobytes per second, which reads as kilobits."""
    text = value.strip() if isinstance(value, str) else None
    match = _RATE_RE.fullmatch(text) if text is not None else None
    if match is None:
        if text is not None and _BYTE_RATE_RE.fullmatch(text):
            raise Invalid(f"rate {show(value)} is ambiguous (tc reads bps as bytes per second): "
                          "write bits, e.g. 8mbit for a megabyte per second")
        got = show(value) if isinstance(value, str) else kind(value)
        raise Invalid(f"expected a rate like 800kbit, 1mbit or 1.5mbit, got {got}")
    bits = int(float(match.group(1)) * _RATE_UNIT[match.group(2).lower()])
    if not RATE_MIN <= bits <= RATE_MAX:
        raise Invalid(f"rate {show(value)} is out of range: expected 8kbit..10gbit")
    return bits


def percent(value: Any) -> float:
    """A share: `20%` or 20; more than 0, at most 100."""
    text = value.strip().removesuffix("%") if isinstance(value, str) else value
    try:
        share = float("nan") if isinstance(text, bool) or text is None else float(text)
    except (TypeError, ValueError):
        got = show(value) if isinstance(value, str) else kind(value)
        raise Invalid(f"expected a percentage like 20%, got {got}") from None
    if not 0 < share <= 100:  # NaN fails this too
        raise Invalid(f"a percentage must be more than 0 and at most 100, got {show(str(value))}")
    return share


def ipv4(value: Any) -> IPv4Address:
    if not isinstance(value, str):
        raise Invalid(f"expected an IPv4 address, got {kind(value)}")
    try:
        return IPv4Address(value)
    except ValueError:
        raise Invalid(f"invalid IPv4 address {show(value)}") from None


def cidr(value: Any) -> IPv4Network:
    """An IPv4 network written with its prefix; host bits set is an error with the fix."""
    if not isinstance(value, str) or "/" not in value:
        raise Invalid(f"expected an IPv4 CIDR like 10.0.1.0/24, got {kind(value)}")
    try:
        return IPv4Network(value, strict=True)
    except ValueError:
        pass
    try:
        loose = IPv4Network(value, strict=False)
    except ValueError:
        raise Invalid(f"invalid IPv4 CIDR {show(value)} (expected e.g. 10.0.1.0/24)") from None
    raise Invalid(f"{value} has host bits set; did you mean {loose}?")


def scalar_text(value: Any, raw: str | None) -> str:
    """A string, or a number as it was written (`1.10` stays "1.10"); for env values and argv."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return raw if raw is not None else str(value)
    raise Invalid(f"expected a string, got {kind(value)}")


def article(word: str) -> str:
    """'an echo-server', 'a telnet-client' (for messages)."""
    return ("an " if word[:1] in "aeiouh" else "a ") + word
