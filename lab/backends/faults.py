"""The fault timeline's network steps, on the lab's own fabric (netns and docker alike).

Every link of a node is a veth pair: the node's `ethN` in its namespace, and the port `nKeJ` on the
lab's bridge in the lab's namespace. The faults act where the node cannot undo them:
- `down`/`up`: the port goes down, as a pulled cable (the node keeps its address and routes; what
  it sends is lost, so TCP sees timeouts, not refusals);
- `shape`: the egress of both ends of the pair gets one qdisc: `tbf` for a rate, `netem` for a delay
  (and the rate with it, where the kernel has netem);
- loss and partitions: one nftables table of the lab's (`bridge` family, forward hook) in the lab's
  namespace, rebuilt whole from the current state at each step and loaded in one transaction.
Nothing touches the host's namespace or tables, and all of it goes with the lab's namespace.
"""

from __future__ import annotations

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
    """A timeline that delays a link needs netem: probed in a namespace of its own that vanishes at
    once (nothing of the lab exists yet), so the run stops before anything is created."""
    delays = [s for s in plan.timeline if s.shape.delay is not None]
    if not delays:
        return
    done = subprocess.run(["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                          capture_output=True, timeout=TOOL_TIMEOUT)
    if done.returncode != 0:
        raise EnvironmentProblem(f"{delays[0].loc}: {delays[0].label}: {NETEM_MISSING}")


@dataclass
class Faults:
    """The network faults in force in one lab; `apply` changes them a step at a time."""

    plan: Plan
    lab_ns: str  # the lab's own namespace (its bridges)
    node_ns: dict[str, str]  # node -> its namespace's name (under /run/netns)
    loss: dict[str, float] = field(default_factory=dict)  # port -> percent
    partitions: list[tuple[tuple[str, ...], ...]] = field(default_factory=list)  # groups of ports
    ruled: bool = False  # the lab's nftables table exists

    def port(self, node: str, network: str) -> tuple[str, str]:
        """(the bridge's port in the lab's namespace, the node's interface) of one link."""
        k = next(i for i, n in enumerate(self.plan.nodes) if n.name == node)
        j, iface = next((j, i.name) for j, i in enumerate(self.plan.nodes[k].interfaces) if i.network == network)
        return f"n{k}e{j}", iface

    def apply(self, step: StepPlan) -> None:
        if step.action in ("down", "up"):
            for node, net in step.links:
                run(["ip", "-n", self.lab_ns, "link", "set", self.port(node, net)[0], step.action])
        elif step.action == "shape":
            for node, net in step.links:
                self._shape(node, net, step.shape)
            self._rules()
        elif step.action == "partition":
            self.partitions.append(tuple(tuple(self.port(n, i.network)[0] for n in group
                                               for i in self.plan.node(n).interfaces) for group in step.groups))
            self._rules()
        elif step.action == "heal":
            self.partitions.clear()
            self._rules()

    def _shape(self, node: str, network: str, shape: Shape) -> None:
        port, iface = self.port(node, network)
        qdisc = _qdisc(shape)
        for ns, dev in ((self.lab_ns, port), (self.node_ns[node], iface)):
            if qdisc:
                run(["tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", *qdisc])
            else:  # back to the device's default (deleting what is not there is no error here)
                run(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"], missing_ok=True)
        if shape.loss is None:
            self.loss.pop(port, None)
        else:
            self.loss[port] = shape.loss

    def _rules(self) -> None:
        """The lab's table as the state says, replacing the last one in one transaction."""
        lines = []
        for port, share in sorted(self.loss.items()):
            threshold = round(share * 100)  # in ten-thousandths: 0.01% steps
            lines += [f'iifname "{port}" numgen random mod 10000 < {threshold} counter drop',
                      f'oifname "{port}" numgen random mod 10000 < {threshold} counter drop']
        for groups in self.partitions:
            for i, a in enumerate(groups):
                for j, b in enumerate(groups):
                    if i != j and a and b:
                        lines.append(f"iifname {_set(a)} oifname {_set(b)} counter drop")
        if not lines and not self.ruled:
            return
        script = (f"table bridge {TABLE} {{}}\ndelete table bridge {TABLE}\n"  # replaced whole, at once
                  f"table bridge {TABLE} {{\n  chain forward {{\n"
                  "    type filter hook forward priority 0; policy accept;\n"
                  + "".join(f"    {line}\n" for line in lines) + "  }\n}\n")
        run(["ip", "netns", "exec", self.lab_ns, "nft", "-f", "-"], stdin=script)
        self.ruled = True


def _set(ports: tuple[str, ...]) -> str:
    return "{ " + ", ".join(f'"{p}"' for p in ports) + " }"


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
