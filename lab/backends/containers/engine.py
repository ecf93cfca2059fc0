"""The Docker engine, reached through the Docker SDK; its errors become the lab's own.

Every API call carries a timeout: an engine that stops answering is a failure with a name, not a
hang.
"""

from __future__ import annotations

import os
from typing import Any

from lab.errors import BackendError, EnvironmentProblem

API_TIMEOUT = 60  # seconds, per API call
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
FIRST_ASK = "1.24"  # the API version of a TLS client's first call (the engine's own is asked, then used)


def endpoint() -> str:
    return os.environ.get("DOCKER_HOST", DEFAULT_SOCKET)


def connect(pool: int = 64) -> Any:
    """A client for the engine at DOCKER_HOST (default the local socket), or exit 3 saying why."""
    where = endpoint()
    try:
        return remote(where, pool=pool)
    except BackendError as e:
        raise EnvironmentProblem(
            f"{e}; start it: `dockerd &` (or `systemctl start docker`), or install it: "
            "apt-get install docker.io") from None


def remote(where: str, timeout: float = API_TIMEOUT, tls: Any = None, pool: int = 32) -> Any:
    """A client for the engine at `where` (tcp://, ssh://, unix://), once it answers a ping.

    ssh:// uses the system's ssh client (keys and known_hosts as for `ssh` itself). Raises
    BackendError naming the endpoint when it does not answer."""
    try:
        import docker
    except ImportError:  # pragma: no cover - a dependency of the package
        raise EnvironmentProblem("the Docker SDK is missing: pip install docker") from None
    try:
        client = docker.DockerClient(base_url=where, timeout=timeout, max_pool_size=pool, tls=tls or False,
                                     use_ssh_client=where.startswith("ssh://"), version=FIRST_ASK if tls else None)
        if tls:  # REQUESTS_CA_BUNDLE and the like would replace the cluster's CA: only the cluster file counts
            client.api.trust_env = False
            client.api._version = client.api.version(api_version=False)["ApiVersion"]  # as the SDK's "auto" does
    except Exception as e:  # noqa: BLE001 - the SDK raises many types for "cannot reach"
        raise BackendError(f"docker engine {where}: {_short(e)}") from None
    try:
        client.ping()
    except Exception as e:  # noqa: BLE001
        client.close()
        raise BackendError(f"docker engine {where} does not answer: {_short(e)}") from None
    return client


def api_error(what: str, e: Exception) -> BackendError:
    return BackendError(f"docker: {what}: {_short(e)}")


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__
