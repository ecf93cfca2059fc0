"""Validation of one node (`nodes.NAME`): its networks, routes, what it runs and how it starts.

Each part reports its own problems and returns what it could validate, so one typo does not hide
the next one; the Node built here is only used when the whole scenario turned out valid.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from lab.roles.catalogue import ROLES
from lab.scenario.checker import Checker, Refs
from lab.scenario.limits import check_limits
from lab.scenario.model import Attachment, Limits, Network, Node, Route
from lab.scenario.params import check_params
from lab.scenario.source import KeyPath
from lab.scenario.values import (
    Invalid,
    boolean,
    cidr,
    duration,
    ipv4,
    kind,
    name,
    port,
    scalar_text,
    show,
    string,
    suggest,
)

NODE_KEYS = ("networks", "routes", "forwarding", "role", "with", "run", "files", "ready", "after",
             "replicas", "env", "image", "stdin", "host", "limits")
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DEFAULT_ROUTE = IPv4Network("0.0.0.0/0")


@dataclass
class Scope:
    """What a node is checked against: the scenario's networks, node names and folder."""

    checker: Checker
    networks: dict[str, Network]  # valid networks
    declared: list[str] | None  # network names declared, valid or not; None if `networks:` is invalid
    hidden: list[str]  # declared names that are invalid (reported already)
    refs: Refs
    folder: Path
    limits: Limits = field(default_factory=Limits)  # the lab's (`limits:` at the top), under each node's
    steps: tuple[str, ...] = ()  # the timeline's step names (a node may start after one)


def check_node(s: Scope, name: str, raw: Any, replicas: int | None) -> Node | None:
    """A Node with whatever validated (partial if there were problems, which were reported)."""
    c = s.checker
    path: KeyPath = ("nodes", name)
    if name in NODE_KEYS and not (isinstance(raw, dict) and "networks" in raw):  # `with:` indented too little
        c.error(path, f"a node named {name!r} (a node's key) with no networks: if it belongs to the node "
                      f"above, indent it under that node", at_key=True)
        return None
    body = c.mapping(path, raw, NODE_KEYS, required=("networks",), hints=_indent_hints(path, raw))
    if body is None:
        return None
    before = len(c.problems)
    attachments = _attachments(s, path + ("networks",), body["networks"], replicas) \
        if "networks" in body else ()
    nets_ok = len(c.problems) == before
    role, params, run = _program(s, path, body)
    ready_tcp, ready_timeout = _ready(c, path, body)
    return Node(
        name=name,
        attachments=attachments,
        loc=c.source.key_loc(path),
        routes=_routes(s, path + ("routes",), body.get("routes"), attachments, nets_ok)
        if "routes" in body else (),
        forwarding=bool(c.check(path + ("forwarding",), body.get("forwarding", False), boolean)),
        role=role,
        params=params,
        run=run,
        files=_files(s, path + ("files",), body["files"]) if "files" in body else None,
        ready_tcp=ready_tcp,
        ready_timeout=ready_timeout,
        after=_after(s, name, path + ("after",), body["after"]) if "after" in body else (),
        after_steps=_after_steps(s, body["after"]) if "after" in body else (),
        replicas=replicas,
        env=_env(c, path + ("env",), body["env"]) if "env" in body else {},
        image=c.check(path + ("image",), body["image"], string) if "image" in body else None,
        stdin=_stdin(c, path, body) if "stdin" in body else None,
        hosts=_hosts(c, path + ("host",), body["host"]) if "host" in body else (),
        host_loc=c.source.value_loc(path + ("host",)) if "host" in body else None,
        image_loc=c.source.value_loc(path + ("image",)) if "image" in body else None,
        limits=check_limits(c, path + ("limits",), body["limits"], s.limits) if "limits" in body else s.limits,
    )


def _indent_hints(path: KeyPath, raw: Any) -> dict[str, tuple[str, KeyPath]]:
    """A role's parameter written beside `role:` instead of under `with:`: say so, not `did you mean`."""
    role = raw.get("role") if isinstance(raw, dict) else None
    if not isinstance(role, str) or role not in ROLES:
        return {}
    return {key: (f"(it is a parameter of {role}: indent it under `with:`)", path + ("with", key))
            for key in ROLES[role].params}


def misplaced_with(c: Checker, raw_nodes: dict[str, Any]) -> None:
    """A `with:` indented too little, read as a node after the node it belongs to: its parameters
    are not missing from that node (the misplaced `with` is reported, once)."""
    names = list(raw_nodes)
    for above, node in zip(names, names[1:], strict=False):
        body = raw_nodes[node]
        if node == "with" and isinstance(body, dict) and "networks" not in body:
            c.misspelled.update(("nodes", above, "with", key) for key in body)


def _known_network(s: Scope, path: KeyPath, net: str, at_key: bool) -> bool:
    if net in s.networks:
        return True
    if s.declared is not None and net not in s.declared:
        hint = suggest(net, [n for n in s.declared if n not in s.hidden], "networks", listing=True)
        s.checker.error(path, f"unknown network {show(net)} {hint}", at_key)
    return False


def _attachments(s: Scope, path: KeyPath, value: Any, replicas: int | None) -> tuple[Attachment, ...]:
    """`{lan: 10.0.1.10, wan: auto}` or `[lan, wan]` (all auto)."""
    c = s.checker
    if isinstance(value, list):
        entries = [((i,), item, "auto") for i, item in enumerate(value)]
    elif isinstance(value, dict):
        entries = [((net,), net, addr) for net, addr in value.items()]
    else:
        c.error(path, f"expected a mapping of network -> address or a list of networks, got {kind(value)}")
        return ()
    if not entries:
        c.error(path, "a node needs at least one network")
    result: list[Attachment] = []
    seen: set[str] = set()
    for sub, net, addr in entries:
        if not isinstance(net, str):
            c.error(path + sub, f"expected a network name, got {kind(net)}")
        elif net in seen:
            c.error(path + sub, f"network {net!r} is listed twice")
        elif _known_network(s, path + sub, net, at_key=isinstance(value, dict)):
            seen.add(net)
            if addr == "auto":
                result.append(Attachment(net, None))
            else:
                address = c.check(path + sub, addr, _address, s.networks[net], replicas)
                if address is not None:
                    result.append(Attachment(net, address))
    return tuple(result)


def _address(value: Any, net: Network, replicas: int | None) -> IPv4Address:
    """A static address: inside its subnet, not its network or broadcast address, one host only."""
    if not isinstance(value, str):
        raise Invalid(f"expected an IPv4 address or auto, got {kind(value)}")
    address = ipv4(value)
    subnet = net.subnet
    if address not in subnet:
        raise Invalid(f"{address} is not in network {net.name} ({subnet})")
    if address in (subnet.network_address, subnet.broadcast_address):
        which = "network" if address == subnet.network_address else "broadcast"
        raise Invalid(f"{address} is the {which} address of {net.name} ({subnet}), not a host address")
    if replicas is not None and replicas > 1:
        raise Invalid(f"replicas need auto addresses: {replicas} replicas cannot share {address} "
                      f"(write {net.name}: auto)")
    return address


def _routes(s: Scope, path: KeyPath, value: Any, attachments: tuple[Attachment, ...],
            nets_ok: bool) -> tuple[Route, ...]:
    """`[{to: CIDR|default, via: IPv4}]`; the gateway must be on one of the node's networks."""
    c = s.checker
    if not isinstance(value, list):
        c.error(path, f"expected a list of {{to: ..., via: ...}}, got {kind(value)}")
        return ()
    subnets = [s.networks[a.network] for a in attachments]
    result: list[Route] = []
    for i, item in enumerate(value):
        body = c.mapping(path + (i,), item, ("to", "via"), required=("to", "via"))
        if body is None or "to" not in body or "via" not in body:
            continue
        to = DEFAULT_ROUTE if body["to"] == "default" else c.check(path + (i, "to"), body["to"], cidr)
        via = c.check(path + (i, "via"), body["via"], ipv4)
        if to is None or via is None:
            continue
        direct = next((n for n in subnets if n.subnet == to), None)
        if nets_ok and not any(via in n.subnet for n in subnets):
            on = ", ".join(f"{n.name} {n.subnet}" for n in subnets)
            c.error(path + (i, "via"), f"via {via} is not on any network of this node ({on})")
        elif direct is not None:
            c.error(path + (i, "to"), f"{to} is network {direct.name}, which this node reaches directly")
        elif any(r.to == to for r in result):
            c.error(path + (i, "to"), f"route to {body['to']} is declared twice")
        else:
            result.append(Route(to, via))
    return tuple(result)


def _program(s: Scope, path: KeyPath, body: dict[str, Any]) -> tuple[str | None, dict[str, Any],
                                                                      tuple[str, ...] | None]:
    """`role` + `with`, or `run`: never both; `with` only with a role."""
    c = s.checker
    role = c.check(path + ("role",), body["role"], _role) if "role" in body else None
    if "role" in body and "run" in body:
        c.error(path + ("run",), "role and run are exclusive: a node runs a built-in role or a program",
                at_key=True)
    if "with" in body and "role" not in body and path + ("role",) not in c.misspelled:
        c.error(path + ("with",), "with gives a role's parameters, but this node has no role", at_key=True)
    params: dict[str, Any] = {}
    if role is not None:
        given = body.get("with")
        missing_at = path + ("with",) if "with" in body else path + ("role",)
        if given is None or isinstance(given, dict):
            params = check_params(c, path + ("with",), given or {}, ROLES[role].params, s.refs, role,
                                  missing_at) or {}
        else:
            c.error(path + ("with",), f"expected a mapping of parameters, got {kind(given)}")
    run = c.check(path + ("run",), body["run"], _argv, path + ("run",), c) if "run" in body else None
    return role, params, run


def _role(value: Any) -> str:
    text = string(value)
    if text not in ROLES:
        raise Invalid(f"unknown role {show(text)} {suggest(text, ROLES, 'roles')}")
    return text


def _argv(value: Any, path: KeyPath, c: Checker) -> tuple[str, ...]:
    """A string split like a shell would (no shell is ever used), or a list of arguments."""
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as e:
            raise Invalid(f"cannot split run into arguments: {e}") from None
    elif isinstance(value, list):
        argv = []
        for i, item in enumerate(value):
            try:
                argv.append(scalar_text(item, c.raw(path + (i,))))
            except Invalid as e:
                raise Invalid(e.message, (i,)) from None
    else:
        raise Invalid(f"expected a command (string or list), got {kind(value)}")
    if not argv or not argv[0]:
        raise Invalid("run is empty: give the program to run")
    if any("\0" in arg for arg in argv):
        raise Invalid("run contains a NUL character")
    return tuple(argv)


def _files(s: Scope, path: KeyPath, value: Any) -> Path | None:
    """A folder inside the scenario's folder (after resolving symlinks); it must exist."""
    text = s.checker.check(path, value, string)
    if text is None:
        return None
    try:
        if not text.strip():
            raise Invalid("files is empty: give a folder relative to the scenario's folder")
        if os.path.isabs(text) or text.startswith("~"):
            raise Invalid(f"files must be relative to the scenario's folder, got {show(text)}")
        base = s.folder.resolve()
        target = (s.folder / text).resolve()
        if not target.is_relative_to(base):
            raise Invalid(f"files {show(text)} is outside the scenario's folder ({_printable(target)})")
        if not target.exists():
            raise Invalid(f"folder {show(text)} does not exist (looked for {_printable(target)})")
        if not target.is_dir():
            raise Invalid(f"{show(text)} is not a folder")
    except Invalid as e:
        s.checker.error(path, e.message)
        return None
    except (OSError, ValueError, RuntimeError) as e:
        s.checker.error(path, f"cannot use files {show(text)}: {e}")
        return None
    return target


def _printable(path: Path) -> str:
    """A path for a one-line message (odd characters escaped)."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def _ready(c: Checker, path: KeyPath, body: dict[str, Any]) -> tuple[int | None, float]:
    """`ready: {tcp: PORT, timeout: 10s}`, for programs only (roles signal readiness themselves)."""
    if "ready" not in body:
        return None, 10.0
    if "run" not in body:
        c.error(path + ("ready",), "ready is for run nodes; built-in roles announce readiness themselves",
                at_key=True)
        return None, 10.0
    ready = c.mapping(path + ("ready",), body["ready"], ("tcp", "timeout"), required=("tcp",))
    if ready is None:
        return None, 10.0
    tcp = c.check(path + ("ready", "tcp"), ready["tcp"], port) if "tcp" in ready else None
    timeout = c.check(path + ("ready", "timeout"), ready.get("timeout", 10.0), duration, True)
    return tcp, 10.0 if timeout is None else timeout


def _stdin(c: Checker, path: KeyPath, body: dict[str, Any]) -> tuple[tuple[str, str | float], ...] | None:
    """Scripted input for a program, like a person at its terminal: a text, or steps
    (`- "text"`, `- {send: "text"}`, `- {wait: 0.5s}`); the program then sees end of input."""
    path = path + ("stdin",)
    if "run" not in body:
        c.error(path, "stdin is for run nodes (programs); built-in roles take their input from `with`",
                at_key=True)
        return None
    value = body["stdin"]
    if isinstance(value, str):
        return (("send", value),)
    if not isinstance(value, list):
        c.error(path, f"stdin must be a text or a list of steps (text, {{send: TEXT}} or {{wait: DURATION}}), "
                      f"not {type(value).__name__}")
        return None
    steps: list[tuple[str, str | float]] = []
    for i, item in enumerate(value):
        where = path + (i,)
        if isinstance(item, str):
            steps.append(("send", item))
            continue
        step = c.mapping(where, item, ("send", "wait"))
        if step is None:
            continue
        if len(step) != 1:
            c.error(where, "a stdin step is exactly one of send: TEXT or wait: DURATION")
            continue
        if "send" in step:
            text = c.check(where + ("send",), step["send"], string)
            if text is not None:
                steps.append(("send", text))
        else:
            seconds = c.check(where + ("wait",), step["wait"], duration)
            if seconds is not None:
                steps.append(("wait", seconds))
    return tuple(steps)


def _after(s: Scope, name: str, path: KeyPath, value: Any) -> tuple[str, ...]:
    """Node, group or replica names this node waits for; never itself."""
    c = s.checker
    if isinstance(value, str):
        entries: list[tuple[KeyPath, Any]] = [(path, value)]
    elif isinstance(value, list):
        entries = [(path + (i,), item) for i, item in enumerate(value)]
    else:
        c.error(path, f"expected a node name or a list of node names, got {kind(value)}")
        return ()
    result: list[str] = []
    for where, ref in entries:
        if isinstance(ref, str) and ref in s.steps and ref not in s.refs.nodes:
            continue  # a step of the timeline (`_after_steps`)
        found = c.check(where, ref, s.refs.resolve)
        if found is None:
            continue
        if found[0].name == name:
            c.error(where, "a node cannot be after itself")
        else:
            result.append(ref)
    return tuple(result)


def _after_steps(s: Scope, value: Any) -> tuple[str, ...]:
    """The timeline's steps (by `name`) among what a node waits for: it starts once they happened
    (a client that starts once its link is shaped)."""
    refs = value if isinstance(value, list) else [value]
    return tuple(r for r in refs if isinstance(r, str) and r in s.steps and r not in s.refs.nodes)


def _hosts(c: Checker, path: KeyPath, value: Any) -> tuple[str, ...]:
    """`host: h2` pins a node to a cluster host; `host: [h2, h3]` spreads its replicas over those.

    The names are checked against the cluster file by the swarm backend (other backends ignore
    them, so one scenario runs unchanged on one machine or on a cluster)."""
    items = value if isinstance(value, list) else [value]
    if not items:
        c.error(path, "expected a host name or a non-empty list of host names")
        return ()
    result: list[str] = []
    for i, item in enumerate(items):
        sub = path + (i,) if isinstance(value, list) else path
        got = c.check(sub, item, name)
        if got is not None and got in result:
            c.error(sub, f"host {show(got)} is listed twice")
        elif got is not None:
            result.append(got)
    return tuple(result)


def _env(c: Checker, path: KeyPath, value: Any) -> dict[str, str]:
    """Environment variables: NAME -> string (numbers are taken as written)."""
    if not isinstance(value, dict):
        c.error(path, f"expected a mapping of NAME: value, got {kind(value)}")
        return {}
    result: dict[str, str] = {}
    for key, item in value.items():
        if not _ENV_KEY_RE.fullmatch(key):
            c.error(path + (key,), f"invalid environment variable name {show(key)} "
                    "(letters, digits and '_', not starting with a digit)", at_key=True)
            continue
        text = c.check(path + (key,), item, scalar_text, c.raw(path + (key,)))
        if text is not None and "\0" in text:
            c.error(path + (key,), "an environment value cannot contain a NUL character")
        elif text is not None:
            result[key] = text
    return result
