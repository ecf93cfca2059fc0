"""The hosts of a swarm lab as the lab reaches them: one API client per engine (and a quick one
for liveness), each host's clock against the lab's, and whether it still answers.

A host that stops answering is noticed by a ping in the background, once a second, and named in
the error that ends the run, with the nodes it took; the lab then removes what it has everywhere else.
"""

from __future__ import annotations

import time
from collections.abc import ItemsView, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from lab.backends.containers.cluster import Cluster, Host
from lab.backends.containers.engine import remote
from lab.backends.containers.remote import clock_offset
from lab.errors import BackendError, EnvironmentProblem

PROBE_EVERY = 1.0  # seconds between liveness probes of each host during a run
PROBE_TIMEOUT = 3.0  # a host that does not answer a ping within this is gone


@dataclass
class Engine:
    host: Host
    client: Any = None
    probe: Any = None  # a client with a short timeout, for liveness
    offset: float = 0.0
    uncertainty: float = 0.0
    lost: str = ""  # why the host is taken as gone ("" while it answers)
    probing: Future[None] | None = None
    last_probe: float = 0.0


class Engines:
    """Every host's engine, by host name; `placement` (node -> host) says which nodes a lost host took."""

    def __init__(self, cluster: Cluster) -> None:
        self.by_name = {h.name: Engine(h) for h in cluster.hosts}
        self.placement: dict[str, str] = {}
        self.probes = ThreadPoolExecutor(len(self.by_name), thread_name_prefix="lab-probe")

    def __getitem__(self, host: str) -> Engine:
        return self.by_name[host]

    def items(self) -> ItemsView[str, Engine]:
        return self.by_name.items()

    def clients(self) -> dict[str, Any]:
        """The engines that answer, by host."""
        return {n: e.client for n, e in self.by_name.items() if e.client is not None and not e.lost}

    def connect(self, hosts: Iterable[str], pool: int) -> None:
        """A client of each of `hosts` (at once), and its clock; exit 3 naming a host that does not answer."""
        names = sorted(hosts)
        with ThreadPoolExecutor(len(names)) as workers:
            list(workers.map(lambda name: self._connect(self.by_name[name], pool), names))

    @staticmethod
    def _connect(engine: Engine, pool: int) -> None:
        h = engine.host
        tls = h.client_tls()
        try:
            engine.client = remote(h.endpoint, tls=tls, pool=pool)
            engine.probe = remote(h.endpoint, timeout=PROBE_TIMEOUT, tls=tls, pool=2)
        except BackendError as e:
            raise EnvironmentProblem(f"host {h.name}: {e}") from None
        engine.offset, engine.uncertainty = clock_offset(engine.client)

    def probe(self) -> None:
        """Ask every host in use whether it is still there (in the background, once a second);
        raise the error naming one that is not."""
        now = time.monotonic()
        for name in sorted(set(self.placement.values())):
            e = self.by_name[name]
            if e.probing is not None and e.probing.done():
                error = e.probing.exception()
                e.probing = None
                if error is not None:
                    e.lost = f"no answer to a ping within {PROBE_TIMEOUT:.0f}s: {str(error)[:120]}"
                    raise self.lost_error(name)
            elif e.probing is not None and now - e.last_probe > PROBE_TIMEOUT + 2:
                e.lost = f"no answer to a ping within {PROBE_TIMEOUT + 2:.0f}s"
                raise self.lost_error(name)
            if e.probing is None and now - e.last_probe >= PROBE_EVERY and not e.lost:
                e.last_probe = now
                e.probing = self.probes.submit(e.probe.ping)

    def lost_now(self, host: str) -> BackendError | None:
        """If `host` is gone (a quick ping fails), the error that says so; else None."""
        e = self.by_name[host]
        if not e.lost:
            try:
                e.probe.ping()
                return None
            except Exception as error:  # noqa: BLE001
                e.lost = str(error)[:120]
        return self.lost_error(host)

    def check_all(self) -> None:
        """Ping every connected host at once (at teardown: one that hangs is skipped from then on)."""
        in_use = [n for n, e in self.by_name.items() if e.client is not None and not e.lost]
        if in_use:
            with ThreadPoolExecutor(len(in_use)) as workers:
                list(workers.map(self.lost_now, in_use))

    def lost_error(self, host: str) -> BackendError:
        e = self.by_name[host]
        nodes = [n for n, h in self.placement.items() if h == host]
        shown = ", ".join(nodes[:5]) + (f" and {len(nodes) - 5} more" if len(nodes) > 5 else "")
        return BackendError(f"host {host} ({e.host.endpoint}) went away during the run ({e.lost}); "
                            f"its node(s) {shown} were lost")

    def lost(self) -> dict[str, str]:
        return {n: e.lost for n, e in self.by_name.items() if e.lost}

    def stop_probing(self) -> None:
        self.probes.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        for e in self.by_name.values():
            for client in (e.client, e.probe):
                if client is not None:
                    client.close()
