"""The lab's own L2 fabric, shared by every backend that runs nodes on this machine.

Layout: one namespace of the lab's own (`lab-ID`) holds one bridge per scenario network; each node
namespace (`lab-ID-NODE`, created with `ip netns add`, or a container's namespace attached under
that name) gets one veth per network (eth0, eth1, ...) whose peer is a port of that bridge.
Nothing is attached to the host's root namespace, so the host's firewall (Docker's FORWARD DROP,
br_netfilter) never sees lab frames, and the lab has no way out. Two labs with the same addresses
never meet: each has its own bridges.

Speed: everything is done in bulk: the namespaces are made a few at once, each with its settings
written as it is made (`sysctls`); one `ip -batch` in the lab's namespace makes the bridges and all
links; each node's addresses, routes and neighbours go over rtnetlink, in-process, a few nodes at
once (rtnetlink.py).
Scale: the lab's links say nothing it did not ask for. Each interface gets its MAC from the lab and
knows its hubs' in advance (neighbours.py: no ARP storm, no full neighbour table at 1000 hosts),
and IPv6 is off on them, as Docker does for networks without IPv6 (no address autoconfiguration,
duplicate address detection or multicast listener reports, each of which the bridge copies to
every port); `::1` on loopback stays.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from lab.backends import linux, rtnetlink
from lab.backends.capture import Capture
from lab.backends.faults import Faults
from lab.backends.neighbours import Neighbours, mac
from lab.errors import BackendError, EnvironmentProblem
from lab.journal import Journal, state_lock
from lab.plan import NodePlan, Plan, StepPlan

NETNS_DIR = "/run/netns"
IP_TIMEOUT = 30.0
NETNS = "netns"  # journal kind
QUIET_LINKS = {"net/ipv6/conf/default/disable_ipv6": "1"}  # links made in the namespace from then on
# A veth is made with a queue per CPU unless told, then cut to one, and each cut waits for an RCU
# grace period under the kernel's network lock: two per link, machine-wide, made one after another.
ONE_QUEUE = "numtxqueues 1 numrxqueues 1"
WORKERS = min(4, os.cpu_count() or 1)  # namespaces made or configured at once
T = TypeVar("T")


def check_machine(needs_root: str | None) -> None:
    """Raise EnvironmentProblem unless this process can build a fabric: it is root (`needs_root`
    tells the user why; None: a rootless lab, root of its own user namespace once up) and iproute2
    is installed."""
    if needs_root is not None and os.geteuid() != 0:
        raise EnvironmentProblem(f"{needs_root}: {as_root()}")
    if shutil.which("ip") is None:
        raise EnvironmentProblem("'ip' (iproute2) is not installed: apt-get install iproute2")


def as_root() -> str:
    """The command line again, as root: `sudo lab` finds no `lab` in a virtualenv (sudo's PATH is
    its own), so the advice names the very program that runs."""
    argv = list(sys.argv)
    if argv and argv[0].endswith("__main__.py"):  # python -m lab
        argv = [sys.executable, "-m", "lab", *argv[1:]]
    elif argv:
        argv[0] = os.path.abspath(argv[0])
    return "sudo " + shlex.join(argv) if argv else "run it as root"


class Fabric:
    def __init__(self, journal: Journal):
        self.journal = journal
        self.prefix = f"lab-{journal.lab_id}"
        self.neighbours: Neighbours | None = None  # of the plan being wired
        self.captures: dict[Path, Capture] = {}  # a network's pcap -> its capture, running
        self.faults: Faults | None = None  # the timeline's network faults in force

    def start_captures(self, plan: Plan, folder: Path) -> None:
        """One capture per network the plan records, on its bridge, each ready before any node
        starts (so a handshake is never missed): `folder/NET.pcap`, bounded by the plan's limit."""
        if not plan.capture.networks:
            return
        folder.mkdir(exist_ok=True)
        bridges = {net.name: f"br{k}" for k, net in enumerate(plan.networks)}
        for net in plan.capture.networks:
            out = folder / f"{net}.pcap"
            self.captures[out] = Capture.start(self.path(""), bridges[net], out, plan.capture.limit)

    def stop_captures(self) -> None:
        """Each capture drains what it was given and says what it wrote (`NET.json` beside its pcap).
        Every capture is stopped whatever fails on the way (a full disk must not leave one running,
        holding the lab's namespace); the first error is raised once all are."""
        captures, self.captures = self.captures, {}
        first: BaseException | None = None
        for out, capture in captures.items():
            try:
                summary = capture.stop()
                out.with_suffix(".json").write_text(json.dumps(summary) + "\n")
            except BaseException as e:  # (a Ctrl-C too: the other captures are still stopped)
                first = first or e
        if first is not None:
            raise first

    def disturb(self, plan: Plan, step: StepPlan) -> None:
        """A network step of the fault timeline (lab/backends/faults.py)."""
        if self.faults is None:
            self.faults = Faults(plan, self.prefix, {n.name: self.ns(n.name) for n in plan.nodes})
        self.faults.apply(step)

    def ns(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    def path(self, node: str) -> str:
        """A node's namespace file ("": the lab's own)."""
        return f"{NETNS_DIR}/{self.ns(node)}" if node else f"{NETNS_DIR}/{self.prefix}"

    def create(self, plan: Plan) -> None:
        """Create the fabric namespace and one namespace per node, each with its settings, a few at
        once: most of the work is the kernel's, and it makes namespaces in parallel."""
        self._claim(plan)
        gid = _highest_gid()  # (read once: the same for every node)
        settings = {self.ns(n.name): sysctls(n, gid) for n in plan.nodes}
        _each(lambda name: linux.add_netns(f"{NETNS_DIR}/{name}", sysctls=settings[name]), list(settings))

    def _claim(self, plan: Plan) -> None:
        """Journal every namespace of the plan and make the lab's own, under the state lock: from
        then on /run/netns holds one of this lab's, so that the last other lab out, which removes
        the folder once it is empty (_release_netns_dir), never takes it from under this one."""
        with state_lock(self.journal.state):
            _claim_netns_dir(self.journal)
            self.journal.record_many(NETNS, [self.prefix] + [self.ns(n.name) for n in plan.nodes])
            linux.add_netns(f"{NETNS_DIR}/{self.prefix}", sysctls=sysctls(None))

    def wire(self, plan: Plan) -> None:
        """Bridges, veths, addresses, routes and forwarding, as the plan says (all nodes at once)."""
        lines = self._bridges(plan)
        for k, node in enumerate(plan.nodes):
            lines += self._ports(plan, k, node)
        ip_batch("\n".join(lines) + "\n", netns=self.prefix)
        neighbours = self.neighbours = Neighbours(plan)
        _each(lambda n: rtnetlink.configure(self.path(n.name), n, neighbours), plan.nodes)

    def create_bridges(self, plan: Plan) -> None:
        """Only the lab's own namespace and its bridges (nodes join one by one: `join`)."""
        self._claim(plan)
        ip_batch("\n".join(self._bridges(plan)) + "\n", netns=self.prefix)
        self.neighbours = Neighbours(plan)

    def join(self, plan: Plan, node: NodePlan, pid: int) -> None:
        """Attach one running container's namespace (by pid) and wire it. Thread-safe."""
        linux.add_netns(self.path(node.name), pid)
        with linux.in_netns(self.path(node.name)):
            linux.write_sysctls(sysctls(node))
        k = plan.nodes.index(node)
        ip_batch("\n".join(self._ports(plan, k, node)) + "\n", netns=self.prefix)
        rtnetlink.configure(self.path(node.name), node, self.neighbours or Neighbours(plan))
        if self.faults is not None and node.name in self.faults.absent:  # a restarted node's new host
            self.faults.arrived(node.name)

    def leave(self, plan: Plan, node: NodePlan) -> None:
        """A node's host goes and another takes its place (the timeline restarts a container): its
        links and its namespace's name go now, so that `join` can wire the new one alike."""
        if self.faults is not None:
            self.faults.left(node.name)
        k = plan.nodes.index(node)
        ip_batch("".join(f"link del n{k}e{j}\n" for j in range(len(node.interfaces))), netns=self.prefix, force=True)
        linux.delete_netns(self.path(node.name))

    def _bridges(self, plan: Plan) -> list[str]:
        lines = ["link set lo up"]
        for k in range(len(plan.networks)):
            lines += [f"link add br{k} type bridge", f"link set br{k} up"]
        return lines

    def _ports(self, plan: Plan, k: int, node: NodePlan) -> list[str]:
        bridge = {net.name: f"br{j}" for j, net in enumerate(plan.networks)}
        lines = []
        for j, iface in enumerate(node.interfaces):
            port = f"n{k}e{j}"
            lines += [
                f"link add {port} {ONE_QUEUE} type veth peer name {iface.name} {ONE_QUEUE} address {mac(iface)} "
                f"netns {self.ns(node.name)}",
                f"link set {port} master {bridge[iface.network]} up",
            ]
        return lines

    def remove(self, kill: bool = True) -> list[str]:
        """Delete every namespace the journal lists (killing what runs inside, unless told not to);
        the captures first write what they hold. The namespaces go even if that fails (a full disk
        must not leave the lab's links behind); the first error is raised after, a later one noted."""
        failed: BaseException | None = None
        try:
            self.stop_captures()
        except BaseException as e:  # (a Ctrl-C too)
            failed = e
        try:
            removed = remove_namespaces(journal_namespaces(self.journal), kill=kill, journal=self.journal)
        except BaseException as e:
            if failed is None:
                raise
            failed.add_note(f"then: {e}")
        if failed is not None:
            raise failed
        return removed


def _each(work: Callable[[T], None], items: Iterable[T]) -> None:
    """work(item) for every item, WORKERS at once. The first error (or a Ctrl-C) is raised once the
    calls under way have ended, and no other call starts after it."""
    pool = ThreadPoolExecutor(WORKERS)
    try:
        for _ in pool.map(work, items):
            pass
    except BaseException:
        pool.shutdown(cancel_futures=True)
        raise
    pool.shutdown()


def sysctls(node: NodePlan | None, highest_gid: int | None = None) -> dict[str, str]:
    """A namespace's settings, written as it is made (`linux.add_netns`), before any link is in
    it: quiet links, and ip_forward set explicitly everywhere (new namespaces may inherit 1 from
    the host; links made later take the namespace's default, which the write sets too). In a
    node's (None: the lab's own), every port may be bound without privilege (as Docker does): its
    processes run as an unprivileged uid with no capability (sandbox.py), and a server on :80
    still works; and ping works without privilege (ICMP echo sockets), as in Docker, for every
    group up to `highest_gid` (default: this process's highest mapped group)."""
    if node is None:
        return {**QUIET_LINKS, "net/ipv4/ip_forward": "0"}
    return {**QUIET_LINKS, "net/ipv4/ip_forward": "1" if node.forwarding else "0",
            "net/ipv4/ip_unprivileged_port_start": "0",
            "net/ipv4/ping_group_range": f"0 {_highest_gid() if highest_gid is None else highest_gid}"}


def _highest_gid() -> int:
    """The highest group id this process's user namespace maps (all of them for root; 0 alone in a
    rootless lab's): ping_group_range may only name mapped groups."""
    highest = 0
    with open("/proc/self/gid_map") as f:
        for line in f:
            inside, _, count = (int(x) for x in line.split())
            highest = max(highest, inside + count - 1)
    return min(highest, 2**31 - 1)


def journal_namespaces(journal: Journal) -> list[str]:
    return [e["name"] for e in journal.entries() if e.get("kind") == NETNS]


def remove_namespaces(names: list[str], kill: bool, journal: Journal) -> list[str]:
    """Kill every process inside the namespaces (found by namespace, not by name), delete them,
    and give back /run/netns when a lab created it and it is now empty."""
    present = [n for n in names if os.path.exists(f"{NETNS_DIR}/{n}")]
    if kill:
        inodes = [i for i in (linux.netns_inode(f"{NETNS_DIR}/{n}") for n in present) if i is not None]
        _kill_inside(inodes)
    for name in present:
        linux.delete_netns(f"{NETNS_DIR}/{name}")
    left = [n for n in present if os.path.exists(f"{NETNS_DIR}/{n}")]
    if left:  # keep the journal: `lab clean` must still be able to find them
        raise BackendError(f"could not remove namespace(s) {', '.join(left)}")
    _release_netns_dir(journal)
    return present


def _kill_inside(inodes: list[int]) -> None:
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        pids = linux.pids_in_netns(inodes)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)  # SIGKILL is asynchronous: look again until the namespaces are empty


def ip_batch(batch: str, netns: str | None = None, force: bool = False) -> None:
    argv = ["ip"] + (["-n", netns] if netns else []) + (["-force"] if force else []) + ["-batch", "-"]
    try:
        done = subprocess.run(argv, input=batch.encode(), capture_output=True, timeout=IP_TIMEOUT,
                              start_new_session=True)  # a Ctrl-C on the terminal must not kill it
    except subprocess.TimeoutExpired:
        raise BackendError(f"{' '.join(argv)}: no answer within {IP_TIMEOUT:.0f}s") from None
    if done.returncode != 0 and not force:
        raise BackendError(f"{' '.join(argv)}: {_first_line(done.stderr)}")


def _first_line(raw: bytes) -> str:
    text = raw.decode(errors="replace").strip()
    return text.splitlines()[0] if text else "failed"


# /run/netns is iproute2's folder: `ip netns add` creates it (and bind-mounts it on itself) when it
# is missing. When a lab was the one to create it, the last lab out removes it again, so that the
# host is left as it was found.
_NETNS_MARK = "netns-dir-created"


def _claim_netns_dir(journal: Journal) -> None:
    """Called with the state lock held, before any namespace of the lab is created."""
    mark = journal.state / _NETNS_MARK
    own = not os.path.exists(NETNS_DIR)
    if own:
        mark.write_text("mounted\n")
    linux.prepare_netns_dir(NETNS_DIR, own)


def _release_netns_dir(journal: Journal) -> None:
    mark = journal.state / _NETNS_MARK
    with state_lock(journal.state):
        if not mark.exists():
            return
        try:
            if os.listdir(NETNS_DIR):
                return
        except FileNotFoundError:
            mark.unlink()
            return
        if linux.is_mountpoint(NETNS_DIR):
            try:
                linux.umount(NETNS_DIR, linux.MNT_DETACH)
            except OSError:
                return
        try:
            Path(NETNS_DIR).rmdir()
        except OSError:
            return
        mark.unlink()


def hosts_path(journal: Journal, node: str) -> Path:
    """A node's /etc/hosts, in the lab's own folder (`write_hosts_files`)."""
    return journal.folder / "hosts" / node


def write_hosts_files(plan: Plan, journal: Journal) -> None:
    """Each node's /etc/hosts at `hosts_path` (for its programs, and for `lab shell` / `lab exec`):
    one file per view (plan.hosts_file), the other nodes with that view getting a hard link to it,
    so 1000 nodes cost 1000 links and not 1000 copies of a 1000-line file."""
    hosts_path(journal, "").mkdir(exist_ok=True)
    first: dict[tuple[str, ...], Path] = {}
    for n in plan.nodes:
        path, key = hosts_path(journal, n.name), plan.view(n.name)
        if key in first:
            os.link(first[key], path)
        else:
            path.write_text(plan.hosts_file(n.name))
            first[key] = path
