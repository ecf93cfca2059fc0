"""The leak guard: the test session fails if anything of any lab is left on the host at its end,
or if the host is not as it was when the session began (tests/hoststate.py).

It runs in the process that owns the session (the xdist controller when tests run in parallel),
before the first test and after the last, so it sees what the per-test checks cannot when labs
run side by side.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests import stress
from tests.hoststate import changes, host_state, read

TEST_CLUSTER = "pytest"


def pytest_addoption(parser: pytest.Parser) -> None:
    stress.add_options(parser)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    stress.repeat(metafunc)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    return stress.make_scheduler(config, log)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects and before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    stress.mark(items)


HOST_TOOLS = ("ip", "iptables-save", "nft", "docker")
_host_before: list[dict[str, object]] = []


INTEGRATION = Path(__file__).resolve().parent / "integration"


def _guards(config: pytest.Config) -> bool:
    """Only the process that owns the session, as root (no lab could run otherwise), with the tools
    a reading needs (a unit-only machine may lack Docker), when the session may run integration
    tests: unit tests create nothing, and read no engine (a run beside a CI run stays out of it)."""
    return (not hasattr(config, "workerinput") and os.geteuid() == 0
            and all(shutil.which(tool) for tool in HOST_TOOLS) and _may_run_integration(config))


def _may_run_integration(config: pytest.Config) -> bool:
    for arg in config.args or [str(config.rootpath)]:
        path = (config.invocation_params.dir / arg.split("::")[0]).resolve()
        if path == INTEGRATION or INTEGRATION in path.parents or path in INTEGRATION.parents:
            return True
    return False


def pytest_sessionstart(session: pytest.Session) -> None:
    if _guards(session.config):
        _host_before.append(host_state())
    stress.start_session_burners(session.config)


def leftovers() -> list[str]:
    found = []
    netns = Path("/run/netns")
    if netns.is_dir():
        found += [f"namespace {p.name}" for p in netns.iterdir() if p.name.startswith("lab-")]
    if Path(os.environ.get("LAB_STATE_DIR", "/run/lab")).exists():
        found.append("state folder /run/lab")
    # users' rootless labs (tests/integration: USER_BACKEND, test_rootless)
    found += [f"state folder {p}" for p in [*Path("/tmp").glob("lab-[0-9]*"), *Path("/run/user").glob("*/lab")]]
    if shutil.which("docker"):
        out = read("docker", "ps", "-a", "--filter", "label=lab.id", "--format", "{{.Names}}")
        found += [f"container {name}" for name in out.split()]
        for kind in ("ps", "network"):  # the simulated clusters of tests/integration/test_swarm.py
            listing = ["ps", "-a"] if kind == "ps" else ["network", "ls"]
            argv = ["docker", *listing, "--filter", "label=lab.cluster", "--format", "{{.Names}}"]
            out = read(*argv)
            found += [f"cluster {'host' if kind == 'ps' else 'network'} {name}" for name in out.split()
                      if name.startswith(f"lab-cluster-{TEST_CLUSTER}")]
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stress.stop_session_burners()
    if not _guards(session.config):
        return  # an xdist worker (the controller checks once all are done), or no lab could run
    left = leftovers()
    if left:
        print(f"\nLEAK GUARD: the test session left lab resources on the host: {', '.join(left)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    changed = changes(_host_before[0], host_state()) if _host_before else ""
    if changed:
        print(f"\nLEAK GUARD: the host is not as it was when the session began: {changed}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
