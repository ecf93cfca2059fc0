"""A simulated cluster on this machine: N Docker engines in containers, joined into a swarm.

For tests, demos and CI of `--backend swarm` without N machines. Each host is a container of the
`lab-host` image (Debian with its docker.io, built from Debian's packages like the node image)
running its own dockerd, reachable by the lab at tcp://ADDRESS:2375 on an internal network of its
own (no way out, nothing published on the host). With `tls`, each engine listens on 2376 with
--tlsverify instead, and takes only clients holding a certificate of the cluster's own CA
(certs.py: the folder CLUSTERFILE-tls/ next to the cluster file; the file's hosts carry `tls:`).
Each engine also listens on a unix socket this machine reaches (SOCKETS/NAME/hN/docker.sock), as
an engine forwarded over ssh would be: a cluster file may name it `unix://...`.

`--privileged` is not used (this kind of VM lacks CAP_SYS_RESOURCE): every capability but that
one, no seccomp/apparmor confinement, the host's cgroup tree, and tmpfs for /var/lib/docker and
/run (so a host keeps nothing when it stops).

Everything carries the label `lab.cluster=NAME`; `down` removes by that label only, then the
folders it made (the sockets' and, marked as the lab's, the certificates').
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker.types

from lab.backends.containers import certs, images
from lab.backends.containers.cluster import Host, Tls
from lab.backends.containers.engine import api_error, connect, remote
from lab.backends.containers.remote import tar_files
from lab.errors import BackendError, EnvironmentProblem

LABEL = "lab.cluster"
PORT, TLS_PORT = 2375, 2376
SOCKETS = Path("/run/lab-cluster")  # SOCKETS/NAME/hN/docker.sock: each engine's unix socket, here
CERTS_IN_HOST = "/etc/lab-tls"
POOL = ipaddress.IPv4Network("172.31.0.0/16")  # the hosts' network is a free /24 of this
START_DEADLINE = 60.0  # seconds for every engine to answer

Progress = Callable[[str], None]


def container(name: str, index: int) -> str:
    return f"lab-cluster-{name}-h{index}"


def tls_folder(out: Path) -> Path:
    """Where the certificates of the cluster whose file is `out` live: next to it."""
    return out.parent / f"{out.stem}-tls"


def up(hosts: int = 3, name: str = "sim", out: Path = Path("cluster.yaml"),
       progress: Progress = print, tls: bool = False) -> Path:
    """Start (or complete) the cluster and write its cluster file; returns the file's path. A host
    running with the other `tls` setting is made again."""
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
        folder = tls_folder(out).absolute() if tls else None
        if folder is not None:
            certs.ensure_ca(folder, name)
            certs.client(folder)
        with ThreadPoolExecutor(hosts) as pool:
            list(pool.map(lambda i: _host(client, name, image, i, addresses[i - 1], folder), range(1, hosts + 1)))
        engines = [_wait(a, folder) for a in addresses]
        try:
            _swarm(engines, addresses)
        finally:
            for e in engines:
                e.close()
        out.write_text(cluster_file(name, addresses, folder.name if folder else None))
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
    shutil.rmtree(SOCKETS / name, ignore_errors=True)
    with contextlib.suppress(OSError):
        SOCKETS.rmdir()  # the last cluster's
    if out is not None and (tls_folder(out) / certs.MARK).exists():
        shutil.rmtree(tls_folder(out))
        removed.append(str(tls_folder(out)))
    if out is not None and out.exists() and f"lab cluster {name}" in out.read_text():
        out.unlink()
    progress(f"cluster {name}: removed {len(removed)} object(s)")
    return removed


def cluster_file(name: str, addresses: list[str], tls: str | None = None) -> str:
    """The cluster file (`tls`: the certificates' folder, relative to the file's)."""
    lines = [f"# lab cluster {name}: written by `lab cluster up`; `lab cluster down` removes it.",
             "hosts:"]
    for i, address in enumerate(addresses, 1):
        manager = ", manager: true" if i == 1 else ""
        files = f", tls: {{ca: {tls}/ca.pem, cert: {tls}/cert.pem, key: {tls}/key.pem}}" if tls else ""
        lines.append(f'  h{i}: {{endpoint: "tcp://{address}:{TLS_PORT if tls else PORT}"{manager}{files}}}')
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


def _host(client: Any, name: str, image: str, index: int, address: str, tls: Path | None) -> None:
    """One host: a running dockerd container (kept if it already runs as asked, else made again)."""
    cname = container(name, index)
    found = client.api.containers(all=True, filters={"name": f"^{cname}$", "label": f"{LABEL}={name}"})
    mode = "tls" if tls else "plain"
    if found and found[0]["State"] == "running" and (found[0].get("Labels") or {}).get("lab.tls") == mode:
        return
    if found:
        client.api.remove_container(found[0]["Id"], force=True, v=True)
    api = client.api
    host_config = api.create_host_config(
        cap_add=["ALL"], cap_drop=["SYS_RESOURCE"], cgroupns="host",
        security_opt=["seccomp=unconfined", "apparmor=unconfined"],
        binds={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
               str(_socket_folder(name, index)): {"bind": "/lab-sock", "mode": "rw"}},
        tmpfs={"/var/lib/docker": "", "/run": ""})
    host_config.update(MaskedPaths=[], ReadonlyPaths=[])  # the CLI's --security-opt systempaths=unconfined
    networking = api.create_networking_config(
        {f"lab-cluster-{name}": api.create_endpoint_config(ipv4_address=address)})
    try:
        cid = api.create_container(
            image, name=cname, hostname=f"h{index}", labels={LABEL: name, "lab.host": f"h{index}", "lab.tls": mode},
            command=_dockerd(tls is not None), host_config=host_config, networking_config=networking)["Id"]
        if tls is not None:
            files = certs.server(tls, f"h{index}", address)
            folder = CERTS_IN_HOST.lstrip("/")  # (as ca.pem, cert.pem, key.pem: see _dockerd)
            api.put_archive(cid, "/", tar_files([(f"{folder}/{p.name.split('-')[-1]}", p.read_bytes())
                                                 for p in (files.ca, files.cert, files.key)]))
        api.start(cid)
    except Exception as e:  # noqa: BLE001
        raise api_error(f"start cluster host {cname}", e) from None


def _dockerd(tls: bool) -> list[str]:
    unix = ["-H", "unix:///run/docker.sock", "-H", "unix:///lab-sock/docker.sock"]
    if not tls:
        return ["dockerd", "-H", f"tcp://0.0.0.0:{PORT}", *unix, "--tls=false"]
    return ["dockerd", "-H", f"tcp://0.0.0.0:{TLS_PORT}", *unix, "--tlsverify", "--tlscacert",
            f"{CERTS_IN_HOST}/ca.pem", "--tlscert", f"{CERTS_IN_HOST}/cert.pem", "--tlskey", f"{CERTS_IN_HOST}/key.pem"]


def _socket_folder(name: str, index: int) -> Path:
    folder = SOCKETS / name / f"h{index}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def _wait(address: str, tls: Path | None) -> Any:
    """A client of the host's engine, once it answers (observed; bounded by START_DEADLINE)."""
    deadline = time.monotonic() + START_DEADLINE
    endpoint = f"tcp://{address}:{TLS_PORT if tls else PORT}"
    files = Tls(tls / "ca.pem", tls / "cert.pem", tls / "key.pem") if tls else None
    config = Host("", endpoint, tls=files).client_tls()
    while True:
        try:
            return remote(endpoint, timeout=5, tls=config)
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
