"""A simulated cluster on this machine: N Docker engines in containers, joined into a swarm.

For tests, demos and CI of `--backend swarm` without N machines. Each host is a container of the
`lab-host` image (Debian with its docker.io, built from Debian's packages like the node image)
running its own dockerd, reachable by the lab at tcp://ADDRESS:2375 on an internal network of its
own (no way out, nothing published on the host). `--privileged` is not used (this kind of VM
lacks CAP_SYS_RESOURCE): every capability but that one, no seccomp/apparmor confinement, the host's
cgroup tree, and tmpfs for /var/lib/docker and /run (so a host keeps nothing when it stops).

Everything carries the label `lab.cluster=NAME`; `down` removes by that label only.
"""

from __future__ import annotations

import ipaddress
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker.types

from lab.backends.containers import images
from lab.backends.containers.engine import api_error, connect, remote
from lab.errors import BackendError, EnvironmentProblem

LABEL = "lab.cluster"
PORT = 2375
POOL = ipaddress.IPv4Network("172.31.0.0/16")  # the hosts' network is a free /24 of this
START_DEADLINE = 60.0  # seconds for every engine to answer

Progress = Callable[[str], None]


def container(name: str, index: int) -> str:
    return f"lab-cluster-{name}-h{index}"


def up(hosts: int = 3, name: str = "sim", out: Path = Path("cluster.yaml"),
       progress: Progress = print) -> Path:
    """Start (or complete) the cluster and write its cluster file; returns the file's path."""
    if not 1 <= hosts <= 16:
        raise EnvironmentProblem(f"--hosts {hosts}: a simulated cluster has 1 to 16 hosts")
    image = images.build_host(progress)
    client = connect()
    try:
        t = time.monotonic()
        subnet = _network(client, name)
        for c in client.api.containers(all=True, filters={"label": f"{LABEL}={name}"}):
            if int((c.get("Labels") or {}).get("lab.host", "h0")[1:] or 0) > hosts:  # fewer hosts than before
                client.api.remove_container(c["Id"], force=True, v=True)
        addresses = [str(subnet.network_address + 10 + i) for i in range(1, hosts + 1)]
        with ThreadPoolExecutor(hosts) as pool:
            list(pool.map(lambda i: _host(client, name, image, i, addresses[i - 1]), range(1, hosts + 1)))
        engines = [_wait(a) for a in addresses]
        try:
            _swarm(engines, addresses)
        finally:
            for e in engines:
                e.close()
        out.write_text(cluster_file(name, addresses))
        progress(f"cluster {name}: {hosts} host(s) in a swarm in {time.monotonic() - t:.1f}s -> {out}")
        return out
    finally:
        client.close()


def down(name: str = "sim", out: Path | None = Path("cluster.yaml"), progress: Progress = print) -> list[str]:
    """Remove the cluster's hosts and network (by label); its cluster file too."""
    client = connect()
    removed: list[str] = []
    try:
        for c in client.api.containers(all=True, filters={"label": f"{LABEL}={name}"}):
            client.api.remove_container(c["Id"], force=True, v=True)
            removed.append(c["Names"][0].lstrip("/"))
        for n in client.api.networks(filters={"label": f"{LABEL}={name}"}):
            client.api.remove_network(n["Id"])
            removed.append(n["Name"])
    except Exception as e:  # noqa: BLE001
        raise api_error(f"remove cluster {name}", e) from None
    finally:
        client.close()
    if out is not None and out.exists() and f"lab cluster {name}" in out.read_text():
        out.unlink()
    progress(f"cluster {name}: removed {len(removed)} object(s)")
    return removed


def cluster_file(name: str, addresses: list[str]) -> str:
    lines = [f"# lab cluster {name}: written by `lab cluster up`; `lab cluster down` removes it.",
             "hosts:"]
    for i, address in enumerate(addresses, 1):
        manager = ", manager: true" if i == 1 else ""
        lines.append(f'  h{i}: {{endpoint: "tcp://{address}:{PORT}"{manager}}}')
    return "\n".join(lines) + "\n"


def _network(client: Any, name: str) -> ipaddress.IPv4Network:
    """The hosts' internal network (created once; its subnet is a /24 no other network uses)."""
    net_name = f"lab-cluster-{name}"
    mine = client.api.networks(names=[net_name], filters={"label": f"{LABEL}={name}"})
    if mine:
        return ipaddress.IPv4Network(client.api.inspect_network(mine[0]["Id"])["IPAM"]["Config"][0]["Subnet"])
    used = [ipaddress.ip_network(c["Subnet"]) for n in client.api.networks()
            for c in ((client.api.inspect_network(n["Id"]).get("IPAM") or {}).get("Config") or [])
            if "Subnet" in c and ":" not in c["Subnet"]]
    used += _host_routes()
    subnet = next((s for s in POOL.subnets(new_prefix=24) if not any(s.overlaps(u) for u in used)), None)
    if subnet is None:
        raise EnvironmentProblem(f"no free /24 in {POOL} for the cluster's network")
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=str(subnet))])
    try:
        client.api.create_network(net_name, driver="bridge", internal=True, ipam=ipam,
                                  labels={LABEL: name})
    except Exception as e:  # noqa: BLE001
        raise api_error(f"create network {net_name}", e) from None
    return subnet


def _host_routes() -> list[ipaddress.IPv4Network]:
    """The IPv4 destinations this machine already routes (a cluster must not shadow any of them)."""
    done = subprocess.run(["ip", "-4", "-o", "route", "show", "table", "all"], capture_output=True, text=True)
    found = []
    for line in done.stdout.splitlines():
        word = line.split()[0] if line.split() else ""
        if word in ("broadcast", "local", "unreachable", "prohibit", "blackhole"):
            word = line.split()[1]
        try:
            if word != "default":
                found.append(ipaddress.IPv4Network(word, strict=False))
        except ValueError:
            continue
    return found


def _host(client: Any, name: str, image: str, index: int, address: str) -> None:
    """One host: a running dockerd container (kept if it already runs, restarted if stopped)."""
    cname = container(name, index)
    found = client.api.containers(all=True, filters={"name": f"^{cname}$", "label": f"{LABEL}={name}"})
    if found and found[0]["State"] == "running":
        return
    if found:
        client.api.remove_container(found[0]["Id"], force=True, v=True)
    api = client.api
    host_config = api.create_host_config(
        cap_add=["ALL"], cap_drop=["SYS_RESOURCE"], cgroupns="host",
        security_opt=["seccomp=unconfined", "apparmor=unconfined"],
        binds={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}},
        tmpfs={"/var/lib/docker": "", "/run": ""})
    host_config.update(MaskedPaths=[], ReadonlyPaths=[])  # the CLI's --security-opt systempaths=unconfined
    networking = api.create_networking_config(
        {f"lab-cluster-{name}": api.create_endpoint_config(ipv4_address=address)})
    try:
        cid = api.create_container(
            image, name=cname, hostname=f"h{index}", labels={LABEL: name, "lab.host": f"h{index}"},
            command=["dockerd", "-H", f"tcp://0.0.0.0:{PORT}", "-H", "unix:///run/docker.sock", "--tls=false"],
            host_config=host_config, networking_config=networking)["Id"]
        api.start(cid)
    except Exception as e:  # noqa: BLE001
        raise api_error(f"start cluster host {cname}", e) from None


def _wait(address: str) -> Any:
    """A client of the host's engine, once it answers (observed; bounded by START_DEADLINE)."""
    deadline = time.monotonic() + START_DEADLINE
    endpoint = f"tcp://{address}:{PORT}"
    while True:
        try:
            return remote(endpoint, timeout=5)
        except BackendError as e:
            if time.monotonic() > deadline:
                raise EnvironmentProblem(f"cluster host {endpoint} did not answer within "
                                         f"{START_DEADLINE:.0f}s: {e}") from None
            time.sleep(0.2)  # the engine is starting: nothing to watch but its socket


def _swarm(engines: list[Any], addresses: list[str]) -> None:
    """Host 1 is the manager; the others join it as workers (hosts already in it are kept)."""
    manager = engines[0]
    fresh = manager.info()["Swarm"].get("LocalNodeState") != "active"
    if fresh:  # a new manager: workers still in the old swarm leave it first
        manager.swarm.init(advertise_addr=addresses[0], listen_addr="0.0.0.0:2377")
    token = manager.swarm.attrs["JoinTokens"]["Worker"]
    for engine, address in zip(engines[1:], addresses[1:], strict=True):
        if engine.info()["Swarm"].get("LocalNodeState") == "active":
            if not fresh:
                continue
            engine.swarm.leave(force=True)
        engine.swarm.join(remote_addrs=[f"{addresses[0]}:2377"], join_token=token,
                          advertise_addr=address, listen_addr="0.0.0.0:2377")
    current = {e.info()["Swarm"]["NodeID"] for e in engines}
    for n in manager.api.nodes():  # a host recreated since: its old entry is gone for good
        if n["ID"] not in current:
            manager.api.remove_node(n["ID"], force=True)
