"""What a swarm lab has on its cluster's hosts, besides its running containers: the overlay
networks (docker's own address block in each, created on the manager), and the removal of
everything the lab has there, by label, from every host that answers.
"""

from __future__ import annotations

import ipaddress
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker.types

from lab.backends.containers.base import LABEL_ID, LABEL_NETWORK, LABEL_NODE, OUT, lab_filter, remove_containers
from lab.backends.containers.cluster import Cluster
from lab.backends.containers.engine import api_error
from lab.backends.containers.remote import extract
from lab.plan import Plan
from lab.rundir import MAX_OUTPUT

TEARDOWN_TIMEOUT = 20.0  # per API call while tearing down

Block = tuple[ipaddress.IPv4Network, ipaddress.IPv4Address]


def network_name(lab_id: str, network: str) -> str:
    return f"lab-{lab_id}-{network}"


def docker_block(subnet: ipaddress.IPv4Network, used: set[ipaddress.IPv4Address], hosts: int) -> Block | None:
    """(ip_range, gateway) for docker's own addresses on an overlay: a block of the subnet, from
    the top, holding no node's address, big enough for a gateway and one endpoint per host."""
    size = 4
    while size < hosts + 3:
        size *= 2
    prefix = 32 - (size.bit_length() - 1)
    if prefix < subnet.prefixlen:
        return None
    usable = set(subnet.hosts())
    for block in reversed(list(subnet.subnets(new_prefix=prefix))):
        mine = [a for a in block if a in usable]
        if len(mine) >= hosts + 2 and not any(a in used for a in block):
            return block, mine[-1]
    return None


def create_networks(manager: Any, plan: Plan, lab_id: str, blocks: dict[str, Block]) -> None:
    """Each scenario network as an attachable, internal overlay network (no way out), on the manager."""
    api = manager.api
    for net in plan.networks:
        block, gateway = blocks[net.name]
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
            subnet=str(net.subnet), iprange=str(block), gateway=str(gateway))])
        try:
            api.create_network(network_name(lab_id, net.name), driver="overlay",
                               attachable=True, internal=True, ipam=ipam, check_duplicate=True,
                               labels={LABEL_ID: lab_id, LABEL_NETWORK: net.name})
        except Exception as e:  # noqa: BLE001
            raise api_error(f"create overlay network for {net.name}", e) from None


def remove_lab(cluster: Cluster, lab_id: str, clients: dict[str, Any],
               wait: bool = True) -> tuple[list[str], list[str]]:
    """Remove the lab's containers from every reachable host, then its networks (by label).

    Returns (removed, networks left in place): without `wait`, a network is tried once (an
    unreachable host's container may hold it until that host answers again)."""
    label = lab_filter(lab_id)

    def containers(item: tuple[str, Any]) -> list[str]:
        host, client = item
        return [f"{name}@{host}" for name in remove_containers(client, lab_id)]

    try:
        with ThreadPoolExecutor(max(1, len(clients))) as pool:
            removed = [name for names in pool.map(containers, clients.items()) for name in names]
    except Exception as e:  # noqa: BLE001
        raise api_error("remove the lab's containers", e) from None
    manager = clients.get(cluster.manager.name)
    if manager is None:
        return removed, []
    networks = [n["Name"] for n in manager.api.networks(filters=label)]
    left = _remove_networks(manager, label, TEARDOWN_TIMEOUT if wait else 0.0)
    if not left:
        _wait_networks_gone(clients, label)
    return removed + [n for n in networks if n not in left], left


def _wait_networks_gone(clients: dict[str, Any], label: dict[str, str]) -> None:
    """Each host drops its copy of a removed overlay network a moment later: the lab is only gone
    once no host lists it (observed, bounded)."""
    deadline = time.monotonic() + TEARDOWN_TIMEOUT
    pending = dict(clients)
    while pending and time.monotonic() < deadline:
        for host, client in list(pending.items()):
            try:
                if not client.api.networks(filters=label):
                    del pending[host]
            except Exception:  # noqa: BLE001 - asked again until the deadline
                pass
        if pending:
            time.sleep(0.1)


def _remove_networks(manager: Any, label: dict[str, str], patience: float) -> list[str]:
    """Overlay networks, once the hosts have let go of them (an endpoint lingers briefly).
    Returns the names of those still in use after `patience` seconds."""
    deadline = time.monotonic() + patience
    pending = manager.api.networks(filters=label)
    while pending:
        left = []
        for n in pending:
            try:
                manager.api.remove_network(n["Id"])
            except Exception as e:  # noqa: BLE001
                if "No such network" in str(e) or "not found" in str(e):
                    continue
                if patience and time.monotonic() > deadline:
                    raise api_error(f"remove network {n['Name']}", e) from None
                left.append(n)
        if not patience:
            return [n["Name"] for n in left]
        pending = left
        if pending:
            time.sleep(0.2)  # the engines detach endpoints asynchronously; nothing to watch
    return []


def rescue_logs(clients: dict[str, Any], lab_id: str, run_dir: Path) -> None:
    """Before `lab clean` removes a dead lab's containers: copy their logs into its run folder."""
    nodes = run_dir / "nodes"
    if not nodes.is_dir():
        return
    for client in clients.values():
        try:
            found = client.api.containers(all=True, filters=lab_filter(lab_id))
        except Exception:  # noqa: BLE001 - best effort: removal (which reports) matters more
            continue
        for c in found:
            node = (c.get("Labels") or {}).get(LABEL_NODE, "")
            if not node:  # (what was streamed of its files is overwritten by the same bytes, then completed)
                continue
            try:
                stream, _ = client.api.get_archive(c["Id"], OUT)
                extract(stream, {f"{node}.log": nodes / f"{node}.log", f"{node}.jsonl": nodes / f"{node}.jsonl"},
                        MAX_OUTPUT)
            except Exception:  # noqa: BLE001 - best effort: removal matters more
                continue
