"""Validation of `expect:`: each item is one check, on nodes that can produce what it judges.

A check on the wrong kind of node (an echo check on the server) could only ever fail at run time
with a confusing reason, so it is refused here with the reason spelled out.
"""

from __future__ import annotations

from typing import Any

from lab.roles.catalogue import ROLES
from lab.scenario.checker import Checker, NodeInfo, Refs
from lab.scenario.checks import CHECKS, Check
from lab.scenario.model import Expectation
from lab.scenario.params import check_params
from lab.scenario.source import KeyPath
from lab.scenario.values import kind, show, suggest


def check_expect(c: Checker, value: Any, refs: Refs) -> tuple[Expectation, ...]:
    """All valid expectations (problems with the others are reported)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        c.error(("expect",), f"expected a list of checks (- echo: client), got {kind(value)}")
        return ()
    result = (_item(c, ("expect", i), item, refs) for i, item in enumerate(value))
    return tuple(e for e in result if e is not None)


def _item(c: Checker, path: KeyPath, item: Any, refs: Refs) -> Expectation | None:
    if not isinstance(item, dict) or not item:
        c.error(path, "each expect item is a mapping with one check, like '- echo: client'; "
                f"got {kind(item)}")
        return None
    if len(item) > 1:
        c.error(path, f"an expect item has exactly one check, found {len(item)}: {', '.join(item)} "
                "(start each check with '- ')")
        return None
    check, body = next(iter(item.items()))
    here = path + (check,)
    if check not in CHECKS:
        c.error(here, f"unknown check {show(check)} {suggest(check, CHECKS, 'checks')}", at_key=True)
        return None
    spec = CHECKS[check]
    split = _split(c, here, spec, body)
    if split is None:
        return None
    nodes_path, nodes_value, given = split
    grading = _grading(c, here, given)
    targets = _targets(c, nodes_path, nodes_value, refs, spec)
    params = check_params(c, here, given, spec.params, refs, f"check {check}", here)
    if targets is None or params is None or grading is None:
        return None
    if not _consistent(c, here, spec, params, targets):
        return None
    return Expectation(check, targets[0], params, c.source.value_loc(path), *grading)


def _grading(c: Checker, here: KeyPath, given: dict[str, Any]) -> tuple[float, str] | None:
    """`points:` (a number >= 0, default 1) and `hint:` (text shown when the check fails)."""
    points, hint = given.pop("points", 1), given.pop("hint", "")
    ok = True
    if isinstance(points, bool) or not isinstance(points, (int, float)) or not 0 <= points <= 1000:
        c.error(here + ("points",), f"points must be a number from 0 to 1000, not {show(str(points))}")
        ok = False
    if not isinstance(hint, str):
        c.error(here + ("hint",), "hint must be a text")
        ok = False
    return (float(points), hint) if ok else None


def _split(c: Checker, here: KeyPath, check: Check, body: Any) -> tuple[KeyPath, Any, dict[str, Any]] | None:
    """(where the nodes are, the nodes, the other parameters) for the short and the long form."""
    if isinstance(body, (str, list)):
        if check.long_form:
            c.error(here, f"{check.name} needs parameters: {check.long_form}")
            return None
        return here, body, {}
    body = c.mapping(here, body, ("nodes", *check.params, "points", "hint"), required=("nodes",),
                     what="parameter")
    if body is None or "nodes" not in body:
        return None
    given = {k: v for k, v in body.items() if k != "nodes"}
    return here + ("nodes",), body["nodes"], given


def _targets(c: Checker, path: KeyPath, value: Any, refs: Refs,
             check: Check) -> tuple[tuple[str, ...], int] | None:
    """The node names as written and how many hosts they name, if all exist and fit the check."""
    if isinstance(value, str):
        entries: list[tuple[KeyPath, Any]] = [(path, value)]
    elif isinstance(value, list) and value:
        entries = [(path + (i,), ref) for i, ref in enumerate(value)]
    else:
        c.error(path, f"expected a node name or a non-empty list of node names, got {kind(value)}")
        return None
    names: list[str] = []
    hosts = 0
    for where, ref in entries:
        found = c.check(where, ref, refs.resolve)
        if found is not None and _fits(c, where, check, ref, found[0]):
            names.append(ref)
            hosts += found[1] if found[0].replicas_ok else 1_000_000  # unknown: do not judge at_least
    return (tuple(names), hosts) if len(names) == len(entries) else None


def _fits(c: Checker, where: KeyPath, check: Check, ref: str, info: NodeInfo) -> bool:
    """Does this node produce what the check judges (a transcript of the right kind, or a log)?"""
    if info.role is not None and info.role not in ROLES:
        return False  # an unknown role is reported on the node already
    roles = check.roles()
    if roles is None:
        if info.role is None and not info.runs:
            c.error(where, f"{check.name} needs nodes with a role or run; {ref!r} is {info.describe()}")
            return False
        return True
    if info.role not in roles:
        c.error(where, f"{check.name} needs {' or '.join(roles)} nodes; {ref!r} is {info.describe()}")
        return False
    return True


def _consistent(c: Checker, here: KeyPath, check: Check, params: dict[str, Any],
                targets: tuple[tuple[str, ...], int]) -> bool:
    """Rules across parameters: a number of hosts within the nodes named, exactly one of `one_of`."""
    names, hosts = targets
    for key, param in check.params.items():
        if param.type == "hosts" and params[key] > hosts:
            who = repr(names[0]) if len(names) == 1 else ", ".join(names)
            c.error(here + (key,), f"{key} {params[key]} but {who} names only "
                    f"{hosts} host{'s' if hosts != 1 else ''}")
            return False
    if check.one_of:
        given = [key for key in check.one_of if params[key] is not None]
        if not given:
            c.error(here, f"{check.name} needs {' or '.join(check.one_of)}", at_key=True)
            return False
        if len(given) > 1:
            c.error(here + (given[1],), f"{check.name} takes {' or '.join(check.one_of)}, not both", at_key=True)
            return False
    return True
