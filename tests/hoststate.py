"""What a lab could change on the host, read so that two readings can be compared: namespaces,
links, routes, rules, firewall, sysctls, /etc/hosts, mounts, processes in namespaces of their own
or of a node's uid, the lab's control groups, and Docker's containers, networks and volumes. Each integration test
compares a reading before and after itself (tests/integration/conftest.py); a session that runs
tests side by side (xdist) compares one before its first test and one after its last
(tests/conftest.py), where a single test's reading would see its neighbours' labs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

READ_DEADLINE = 60.0  # s for one reading (`docker ps` on a loaded engine); a hung engine fails the guard


def read(*argv: str) -> str:
    if shutil.which(argv[0]) is None:
        raise RuntimeError(f"{argv[0]} is not installed (scripts/setup.sh installs it)")
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=READ_DEADLINE).stdout
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"`{' '.join(argv)}` did not answer within {READ_DEADLINE:g}s (a hung engine?)") from None


def _lab_netns_inodes() -> set[int]:
    host = os.stat("/proc/self/ns/net").st_ino
    found = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                ino = os.stat(f"/proc/{entry.name}/ns/net").st_ino
            except OSError:
                continue
            if ino != host:
                found.add(ino)
    return found


TEST_USER = 65534  # the ordinary user whose rootless labs the tests run (nobody: it runs nothing here)
OTHER_USER = 34  # a second one (backup), for two users' labs side by side


def host_state() -> dict[str, Any]:
    sysctls = ["net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding", "net/ipv6/conf/all/forwarding"]
    sysctls += [f"net/bridge/{k}" for k in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables")
                if os.path.exists(f"/proc/sys/net/bridge/{k}")]
    return {
        "netns": sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else None,
        "state": sorted(os.listdir("/run/lab")) if os.path.isdir("/run/lab") else None,
        "links": sorted(line.split(":")[1].strip() for line in read("ip", "-o", "link").splitlines()),
        "routes": read("ip", "route", "show", "table", "all"),
        "rules": read("ip", "rule"),
        "iptables": "\n".join(line for line in read("iptables-save").splitlines() if not line.startswith("#")),
        "nft": re.sub(r"counter packets \d+ bytes \d+", "counter", read("nft", "list", "ruleset")),
        "sysctl": {k: Path(f"/proc/sys/{k}").read_text() for k in sysctls},
        "hosts": Path("/etc/hosts").read_bytes(),
        "mounts": sorted(line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()),
        "foreign_netns_processes": _lab_netns_inodes(),
        "containers": read("docker", "ps", "-a", "--format", "{{.Names}} {{.Labels}}"),
        "docker_networks": read("docker", "network", "ls", "--format", "{{.Name}}"),
        "docker_volumes": read("docker", "volume", "ls", "--format", "{{.Name}}"),
        "cgroups": _lab_cgroups(),
        "node_uid_processes": node_uid_processes(),
        "test_user_processes": [p for uid in (TEST_USER, OTHER_USER) for p in live_processes(range(uid, uid + 1))],
        "users_state": sorted(str(p) for p in [*Path("/tmp").glob("lab-[0-9]*"), *Path("/run/user").glob("*/lab")]),
    }


def node_uid_processes() -> list[str]:
    """Processes running as a node's uid (lab/backends/uids.py): none may outlive its lab."""
    from lab.backends import uids

    return live_processes(range(uids.BASE, uids.BASE + uids.SLOTS))


def live_processes(owners: range) -> list[str]:
    """Processes of a uid in `owners` that are still alive (a zombie, or one already dead, is its
    reaper's business): 'PID (uid U, STATE)'."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                uid = entry.stat().st_uid
                state = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if uid in owners and state not in ("Z", "X"):
                found.append(f"{entry.name} (uid {uid}, {state})")
    return sorted(found)


def _lab_cgroups() -> list[str]:
    """The lab's control groups (lab/backends/cgroups.py): folders named lab-ID in this process's
    cgroup of each hierarchy the lab uses."""
    from lab.backends import cgroups

    found = []
    for controller in cgroups.CONTROLLERS:
        base = cgroups.own(controller)
        if base is not None:
            found += sorted(str(p) for p in base.glob("lab-*"))
    return found


def _who(diff: dict[str, Any]) -> str:
    """The processes behind namespaces that came or went (evidence, not just inode numbers)."""
    if "foreign_netns_processes" not in diff:
        return ""
    before, after = diff["foreign_netns_processes"]
    changed = before ^ after
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.stat(f"/proc/{entry.name}/ns/net").st_ino in changed:
                    cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
                    found.append(f"{entry.name}: {cmd}")
            except OSError:
                continue
    return f"; processes now in those namespaces: {found or 'none'}"


def changes(before: dict[str, Any], after: dict[str, Any]) -> str:
    """'' when the host is as it was, else what changed and the processes behind it (evidence).

    A process in a namespace of its own that ended meanwhile was not left by the lab (e.g. one of
    the simulated cluster's engines finishing work it started before): only new ones count."""
    after = {**after, "foreign_netns_processes": after["foreign_netns_processes"] | before["foreign_netns_processes"]}
    diff = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    return f"{diff}{_who(diff)}" if diff else ""
