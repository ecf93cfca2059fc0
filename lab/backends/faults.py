"""The fault timeline's network steps, on the lab's own fabric (netns and docker alike).

Every link of a node is a veth pair: the node's `ethN` in its namespace, and the port `nKeJ` on the
lab's bridge in the lab's namespace. The faults act where the node cannot undo them:
- `down`/`up`: the port goes down, as a pulled cable (the node keeps its address and routes; what
  it sends is lost, so TCP sees timeouts, not refusals);
- `shape`: the egress of both ends of the pair gets one qdisc: `tbf` for a rate, `netem` for a delay
  (and the rate with it, where the kernel has netem);
- loss and partitions: one nftables table of the lab's (`bridge` family, forward hook) in the lab's
  namespace, rebuilt whole from the current state at each step and loaded in one transaction. A
  partition drops frames between the groups' ports on one bridge, and IPv4 packets between their
  addresses on every bridge: a router between the groups forwards nothing across.
Nothing touches the host's namespace or tables, and all of it goes with the lab's namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field

from lab.errors import BackendError, EnvironmentProblem
from lab.plan import Plan, StepPlan
from lab.scenario.model import Shape

TOOL_TIMEOUT = 30.0
TABLE = "lab"
NETEM_MISSING = ("this kernel has no netem (module sch_netem), which a link's delay needs: "
                 "`modprobe sch_netem` where the module exists, or remove `delay`")


def check_kernel(plan: Plan) -> None:
    """What the timeline needs of this machine, before anything of the lab exists: `tc` for a shape,
    `nft` for loss and partitions, and netem for a delay. Netem is probed in a namespace of its own
    that vanishes at once (a user namespace too, for a lab without root)."""
    actions = {s.action for s in plan.timeline}
    needs = {"tc": "iproute2"} if "shape" in actions else {}
    if "partition" in actions or any(s.shape.loss is not None for s in plan.timeline):
        needs["nft"] = "nftables"
    for tool, package in needs.items():
        if shutil.which(tool) is None:
            step = next(s for s in plan.timeline if s.action in ("shape", "partition"))
            raise EnvironmentProblem(f"{step.loc}: {step.label}: `{tool}` is not installed: apt-get install {package}")
    delays = [s for s in plan.timeline if s.shape.delay is not None]
    if not delays:
        return
    own = ["--map-root-user"] if os.geteuid() != 0 else []
    try:
        done = subprocess.run(["unshare", *own, "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                               "delay", "1ms"], capture_output=True, timeout=TOOL_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EnvironmentProblem(f"{delays[0].loc}: {delays[0].label}: cannot probe for netem: {e}") from None
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip()
        if "qdisc kind is unknown" not in why and "No such file" not in why:
            raise EnvironmentProblem(f"{delays[0].loc}: {delays[0].label}: cannot probe for netem: "
                                     f"{why.splitlines()[0] if why else 'unshare failed'}")
        raise EnvironmentProblem(f"{delays[0].loc}: {delays[0].label}: {NETEM_MISSING}")


@dataclass
class Faults:
    """The network faults in force in one lab; `apply` changes them a step at a time."""

    plan: Plan
    lab_ns: str  # the lab's own namespace (its bridges)
    node_ns: dict[str, str]  # node -> its namespace's name (under /run/netns)
    loss: dict[str, float] = field(default_factory=dict)  # port -> percent
    partitions: list[tuple[tuple[str, ...], ...]] = field(default_factory=list)  # groups of ports
    cut: list[tuple[tuple[str, ...], ...]] = field(default_factory=list)  # the same groups' addresses
    ruled: bool = False  # the lab's nftables table exists
    down: set[tuple[str, str]] = field(default_factory=set)  # links taken down, until brought up
    shapes: dict[tuple[str, str], Shape] = field(default_factory=dict)  # links shaped (rate, delay)
    absent: set[str] = field(default_factory=set)  # nodes whose host is being made again (restart)

    def port(self, node: str, network: str) -> tuple[str, str]:
        """(the bridge's port in the lab's namespace, the node's interface) of one link."""
        k = next(i for i, n in enumerate(self.plan.nodes) if n.name == node)
        j, iface = next((j, i.name) for j, i in enumerate(self.plan.nodes[k].interfaces) if i.network == network)
        return f"n{k}e{j}", iface

    def apply(self, step: StepPlan) -> None:
        """One step; what it does to the links of a node whose host is being made again is recorded,
        and done when the new host is wired (`arrived`)."""
        if step.action in ("down", "up"):
            for node, net in step.links:
                (self.down.add if step.action == "down" else self.down.discard)((node, net))
                if node not in self.absent:
                    run(["ip", "-n", self.lab_ns, "link", "set", self.port(node, net)[0], step.action])
        elif step.action == "shape":
            for node, net in step.links:
                self._shape(node, net, step.shape)
            self._rules()
        elif step.action == "partition":
            self.partitions.append(tuple(tuple(self.port(n, i.network)[0] for n in group
                                               for i in self.plan.node(n).interfaces) for group in step.groups))
            self.cut.append(tuple(tuple(str(i.address.ip) for n in group for i in self.plan.node(n).interfaces)
                                  for group in step.groups))
            self._rules()
        elif step.action == "heal":
            self.partitions.clear()
            self.cut.clear()
            self._rules()

    def left(self, node: str) -> None:
        """The node's host is going (a restart on an engine): its links go with it."""
        self.absent.add(node)

    def arrived(self, node: str) -> None:
        """The node's new host is wired: its links get what the timeline put on the old ones (a
        link down stays down, a shape stays), so a restart means the same on every backend."""
        self.absent.discard(node)
        for link in [x for x in self.down if x[0] == node]:
            run(["ip", "-n", self.lab_ns, "link", "set", self.port(*link)[0], "down"])
        for (name, net), shape in [(x, y) for x, y in self.shapes.items() if x[0] == node]:
            self._shape(name, net, shape)

    def _shape(self, node: str, network: str, shape: Shape) -> None:
        port, iface = self.port(node, network)
        if _qdisc(shape):
            self.shapes[node, network] = shape
        else:
            self.shapes.pop((node, network), None)
        if shape.loss is None:
            self.loss.pop(port, None)
        else:
            self.loss[port] = shape.loss
        if node in self.absent:
            return
        qdisc = _qdisc(shape)
        for ns, dev in ((self.lab_ns, port), (self.node_ns[node], iface)):
            if qdisc:
                run(["tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", *qdisc])
            else:  # back to the device's default (deleting what is not there is no error here)
                run(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"], missing_ok=True)

    def _rules(self) -> None:
        """The lab's table as the state says, replacing the last one in one transaction. A loss is
        drawn in ten-thousandths (0.01% steps), and never less than one: a loss asked for (always
        more than 0) that rounds to none would silently drop nothing, so under 0.01% it is 0.01%."""
        lines = []
        for port, share in sorted(self.loss.items()):
            threshold = max(1, round(share * 100))  # in ten-thousandths: 0.01% steps, at least one
            lines += [f'iifname "{port}" numgen random mod 10000 < {threshold} counter drop',
                      f'oifname "{port}" numgen random mod 10000 < {threshold} counter drop']
        # between two groups: frames between their ports on one bridge (ARP too), then IPv4 packets
        # between their addresses, wherever routed (a router between them)
        for partitions, rule, item in ((self.partitions, "iifname {} oifname {}", '"{}"'),
                                       (self.cut, "ether type ip ip saddr {} ip daddr {}", "{}")):
            for groups in partitions:
                lines += [rule.format(_set(a, item), _set(b, item)) + " counter drop"
                          for i, a in enumerate(groups) for j, b in enumerate(groups) if i != j and a and b]
        if not lines and not self.ruled:
            return
        script = (f"table bridge {TABLE} {{}}\ndelete table bridge {TABLE}\n"  # replaced whole, at once
                  f"table bridge {TABLE} {{\n  chain forward {{\n"
                  "    type filter hook forward priority 0; policy accept;\n"
                  + "".join(f"    {line}\n" for line in lines) + "  }\n}\n")
        run(["ip", "netns", "exec", self.lab_ns, "nft", "-f", "-"], stdin=script)
        self.ruled = True


def _set(members: tuple[str, ...], item: str) -> str:
    """An nftables anonymous set: each member written as `item` says (names quoted, addresses bare)."""
    return "{ " + ", ".join(item.format(m) for m in members) + " }"


def _qdisc(shape: Shape) -> list[str]:
    """tc's words for the shape's rate and delay ([]: neither, the default qdisc)."""
    if shape.delay is not None:
        rate = ["rate", f"{shape.rate}bit"] if shape.rate else []
        return ["netem", "delay", f"{shape.delay * 1000:g}ms", *rate]
    if shape.rate is None:
        return []
    burst = max(shape.rate // 8 // 50, 4 * 1514)  # 20 ms of the rate, never less than a few frames
    return ["tbf", "rate", f"{shape.rate}bit", "burst", str(burst), "latency", "200ms"]


def run(argv: list[str], stdin: str | None = None, missing_ok: bool = False) -> None:
    try:
        done = subprocess.run(argv, input=None if stdin is None else stdin.encode(), capture_output=True,
                              timeout=TOOL_TIMEOUT, start_new_session=True)
    except subprocess.TimeoutExpired:
        raise BackendError(f"{' '.join(argv)}: no answer within {TOOL_TIMEOUT:.0f}s") from None
    except FileNotFoundError:
        raise EnvironmentProblem(f"{argv[0]} is not installed (the fault timeline needs it)") from None
    if done.returncode != 0 and not missing_ok:
        text = done.stderr.decode(errors="replace").strip()
        raise BackendError(f"{' '.join(argv)}: {text.splitlines()[0] if text else 'failed'}")
