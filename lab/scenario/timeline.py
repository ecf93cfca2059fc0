"""`timeline:` (faults the lab causes while it runs) and `capture:` (what it records off the wire).

A timeline is a list of steps, each one action at one moment:

    timeline:
      - {at: 1s, down: server}                       # the server's links go down (cable pulled)
      - {at: 3s, up: server}
      - {at: 0s, shape: client, rate: 1mbit}         # tbf on the client's links, both ways
      - {at: 0s, shape: client, loss: 10%}           # nftables drops 10% of its frames, each way
      - {after: server, wait: 2s, restart: server}   # stop, kill, restart, pause, resume
      - {at: 1s, partition: [[client-1], [server]]}  # no frame between the groups; `heal: true` ends it

`at` counts from the moment the lab is up (every node started, every service ready), so a slow
engine never moves a fault to a different point of the conversation; `after` names a node (when it
became ready) or an earlier step (by its `name`). Everything is checked here, located, before
anything exists; the plan makes the names concrete.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from lab.scenario.checker import Checker, Refs, find_cycles
from lab.scenario.limits import bounded_size
from lab.scenario.model import Capture, Network, Node, Scenario, Shape, Step
from lab.scenario.source import KeyPath
from lab.scenario.values import Invalid, Reported, bitrate, boolean, duration, kind, name, percent, show, suggest

LINK_ACTIONS = ("down", "up", "shape")  # on a node's links (all of them, or `network:`)
NODE_ACTIONS = ("stop", "kill", "restart", "pause", "resume")  # on what a node runs
ACTIONS = LINK_ACTIONS + NODE_ACTIONS + ("partition", "heal")
WHEN = ("at", "after", "wait", "name")
SHAPING = ("rate", "loss", "delay")
CAPTURE_KEYS = ("limit", "networks")
CAPTURE_MIN, CAPTURE_MAX = 64 * 1024, 4 * 1024**3


def capture_size(value: Any) -> int:
    """A capture file's bound: 64MiB, 1GiB, or bytes."""
    return bounded_size(value, "capture limit", CAPTURE_MIN, CAPTURE_MAX, "64MiB")


def check_capture(c: Checker, value: Any, networks: list[Network], asked: list[str]) -> Capture:
    """`capture: true` (every network), `capture: {limit: 64MiB, networks: [lan]}`, or networks'
    own `capture: true` (`asked`)."""
    path: KeyPath = ("capture",)
    if value is None:
        return Capture(tuple(asked), loc=c.source.key_loc(("networks", asked[0], "capture")) if asked else None)
    if not isinstance(value, dict):
        on = c.check(path, value, boolean)
        every = tuple(n.name for n in networks) if on else tuple(asked)
        return Capture(every, loc=c.source.key_loc(path) if every else None)
    body = c.mapping(path, value, CAPTURE_KEYS) or {}
    limit = c.check(path + ("limit",), body["limit"], capture_size) if "limit" in body else None
    chosen = [n.name for n in networks]
    if "networks" in body:
        raw = body["networks"]
        if not isinstance(raw, list) or not raw:
            c.error(path + ("networks",), f"expected a list of network names, got {kind(raw)}")
        else:
            known = [n.name for n in networks]
            for k, net in enumerate(raw):
                if net not in known:
                    hint = suggest(str(net), known, "networks", listing=True)
                    c.error(path + ("networks", k), f"unknown network {show(str(net))} {hint}")
            chosen = [n for n in known if n in raw or n in asked]
    return Capture(tuple(chosen), limit or Capture().limit, c.source.key_loc(path))


def capture_all(scenario: Scenario) -> Scenario:
    """The scenario recording every network (`lab run --capture`), within its own `limit` if it says one."""
    every = tuple(n.name for n in scenario.networks)
    return replace(scenario, capture=replace(scenario.capture, networks=every))


def check_timeline(c: Checker, value: Any, refs: Refs, nodes: list[Node], timeout: float | None) -> tuple[Step, ...]:
    """Every valid step (problems with the others reported, each at its key)."""
    if not isinstance(value, list):
        c.error(("timeline",), f"expected a list of steps (- {{at: 1s, down: server}}), got {kind(value)}")
        return ()
    by_name = {n.name: n for n in nodes}
    steps: list[Step] = []
    names: list[str] = []
    for k, item in enumerate(value):
        step = _step(c, ("timeline", k), item, refs, by_name, names, timeout)
        if step is not None:
            steps.append(step)
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            names.append(item["name"])
    _waits(c, steps, value, refs, nodes)
    return tuple(steps)


def _waits(c: Checker, steps: list[Step], raw: list[Any], refs: Refs, nodes: list[Node]) -> None:
    """Nodes that start after steps, and steps after nodes or steps: one graph, which must have no
    cycle through a step (neither would ever happen); each such cycle is reported at its first
    step's `after`. Cycles of nodes alone are `after:`'s own (validate.py)."""
    named = {s.name: s for s in steps if s.name}
    graph: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for node in nodes:
        graph[("node", node.name)] = [("node", _base(a, refs)) for a in node.after] + \
            [("step", n) for n in node.after_steps if n in named]
    for step in named.values():
        if step.after is not None:
            target = ("step", step.after) if step.after in named else ("node", _base(step.after, refs))
            graph[("step", step.name)] = [target]
    where = {item["name"]: k for k, item in enumerate(raw)
             if isinstance(item, dict) and isinstance(item.get("name"), str)}
    for cycle in find_cycles(graph):
        first = next((name for kind, name in cycle if kind == "step"), None)
        if first is not None:
            shown = " -> ".join(name for _, name in cycle)
            c.error(("timeline", where[first], "after"), f"waits in a circle: {shown} (none of them would happen)")


def _step(c: Checker, path: KeyPath, item: Any, refs: Refs, nodes: dict[str, Node], earlier: list[str],
          timeout: float | None) -> Step | None:
    if not isinstance(item, dict) or not item:
        c.error(path, "each step is a mapping with a moment and one action, like {at: 1s, down: server}; "
                      f"got {kind(item)}")
        return None
    before = len(c.problems)
    body = c.mapping(path, item, WHEN + ACTIONS + SHAPING + ("network",), what="timeline key") or {}
    actions = [a for a in ACTIONS if a in body]
    if len(actions) != 1:
        c.error(path, f"a step has exactly one action ({', '.join(ACTIONS)}), found "
                      f"{', '.join(actions) if actions else 'none'}")
        return None
    action = actions[0]
    at, after, wait, step_name = _when(c, path, body, refs, earlier, timeout)
    nodes_of = _targets(c, path + (action,), body[action], refs, nodes, action) \
        if action not in ("partition", "heal") else []
    network = _network(c, path, body, action, nodes_of, refs, nodes)
    groups = _groups(c, path + ("partition",), body["partition"], refs) if action == "partition" else ()
    if action == "heal":
        c.check(path + ("heal",), body["heal"], _true)
    shape = _shape(c, path, body, action)
    if len(c.problems) > before:
        return None
    return Step(action, c.source.key_loc(path + (action,)), tuple(nodes_of), network, groups, shape,
                at, after, wait or 0.0, step_name or "")


def _base(ref: str, refs: Refs) -> str:
    """The node a reference belongs to (itself when it names none: an invalid one, reported already)."""
    try:
        return refs.resolve(ref)[0].name
    except (Invalid, Reported):
        return ref


def _true(value: Any) -> bool:
    if value is not True:
        raise Invalid("write `heal: true` (it ends every partition)")
    return True


def _when(c: Checker, path: KeyPath, body: dict[str, Any], refs: Refs, earlier: list[str],
          timeout: float | None) -> tuple[float | None, str | None, float | None, str | None]:
    """(at, after, wait, name): exactly one of `at` and `after`; `wait` only with `after`."""
    if ("at" in body) == ("after" in body):
        c.error(path, "a step has exactly one of `at: DURATION` (after the lab is up) and `after: NODE or STEP`")
    at = c.check(path + ("at",), body["at"], duration) if "at" in body else None
    if at is not None and timeout is not None and at >= timeout:
        c.error(path + ("at",), f"at {at:g}s is not before the run's timeout ({timeout:g}s): "
                                "the step would never happen")
    if "wait" in body and "after" not in body:
        c.error(path + ("wait",), "`wait` goes with `after` (with `at`, write the moment itself)", at_key=True)
    wait = c.check(path + ("wait",), body["wait"], duration) if "wait" in body else None
    after = c.check(path + ("after",), body["after"], _after, refs, earlier) if "after" in body else None
    step_name = c.check(path + ("name",), body["name"], name) if "name" in body else None
    if step_name is not None and step_name in earlier:
        c.error(path + ("name",), f"another step is already named {step_name!r}")
    if step_name is not None and step_name in refs.nodes:
        c.error(path + ("name",), f"{step_name!r} is a node's name: a step's name must differ (`after` names either)")
    return at, after, wait, step_name


def _after(value: Any, refs: Refs, earlier: list[str]) -> str:
    """An earlier step's name, or one node (the moment it became ready)."""
    if isinstance(value, str) and value in earlier:
        return value
    try:
        refs.single(value, "after")
    except Invalid as e:
        raise Invalid(f"{e.message} (`after` names a node, or an earlier step by its `name`)") from None
    return str(value)


def _targets(c: Checker, path: KeyPath, value: Any, refs: Refs, nodes: dict[str, Node], action: str) -> list[str]:
    """The nodes (or groups) an action names: one name or a list."""
    items = value if isinstance(value, list) else [value]
    if not items:
        c.error(path, "expected a node name or a list of them, got an empty list")
    found: list[str] = []
    for k, ref in enumerate(items):
        where = path + (k,) if isinstance(value, list) else path
        try:
            info, _ = refs.resolve(ref)
        except Reported:
            continue
        except Invalid as e:
            c.error(where, e.message)
            continue
        if action in NODE_ACTIONS and not info.runs and info.role is None:
            c.error(where, f"{ref} is a plain host: it runs nothing to {action}")
        found.append(ref)
    return found


def _network(c: Checker, path: KeyPath, body: dict[str, Any], action: str, targets: list[str], refs: Refs,
             nodes: dict[str, Node]) -> str | None:
    if "network" not in body:
        return None
    if action not in LINK_ACTIONS:
        c.error(path + ("network",), f"`network` goes with {', '.join(LINK_ACTIONS)} (the links it acts on)",
                at_key=True)
        return None
    net = c.check(path + ("network",), body["network"], name)
    for ref in targets:
        node = nodes.get(refs.resolve(ref)[0].name)
        if net is not None and node is not None and net not in {a.network for a in node.attachments}:
            c.error(path + ("network",), f"{ref} is not on network {net!r} (its networks: "
                    f"{', '.join(a.network for a in node.attachments)})")
    return net


def _groups(c: Checker, path: KeyPath, value: Any, refs: Refs) -> tuple[tuple[str, ...], ...]:
    """Two or more lists of nodes; a node in one group only."""
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(g, list) and g for g in value):
        c.error(path, "expected two or more lists of nodes, like [[client-1], [server]]")
        return ()
    seen: dict[str, int] = {}
    groups: list[tuple[str, ...]] = []
    for k, group in enumerate(value):
        for j, ref in enumerate(group):
            try:
                info, _ = refs.resolve(ref)
            except Reported:
                continue
            except Invalid as e:
                c.error(path + (k, j), e.message)
                continue
            hosts = [f"{info.name}-{n}" for n in range(1, info.replicas + 1)] \
                if ref == info.name and info.replicas else [str(ref)]
            twice = next((h for h in hosts if h in seen), None)
            if twice is not None:
                c.error(path + (k, j), f"{twice} is already in group {seen[twice] + 1}")
            seen.update(dict.fromkeys(hosts, k))
        groups.append(tuple(str(r) for r in group))
    return tuple(groups)


def _shape(c: Checker, path: KeyPath, body: dict[str, Any], action: str) -> Shape:
    given = [key for key in SHAPING if key in body]
    if action != "shape":
        for key in given:
            c.error(path + (key,), f"`{key}` goes with `shape` (a step that shapes a link)", at_key=True)
        return Shape()
    rate = c.check(path + ("rate",), body["rate"], bitrate) if "rate" in body else None
    loss = c.check(path + ("loss",), body["loss"], percent) if "loss" in body else None
    delay = c.check(path + ("delay",), body["delay"], duration, True) if "delay" in body else None
    return Shape(rate, loss, delay)
