"""The pytest plugin (entry point `pytest11: lab`): scenarios as tests, and the `lab` fixture.

`pytest scenarios/` collects every scenario file (YAML whose top level has `name`, `nodes` and
`networks`) and makes each expectation a test item (`scenarios/echo.yaml::echo client`). The
scenario runs once, when its first item runs, through the same orchestrator as `lab run`; each item
then passes or fails from its expectation's results, with the reason and a transcript excerpt.

Which YAML files are collected (the plugin is active in every pytest run of the environment, so it
must never take YAML it was not asked for):
- a YAML file named on the command line is a scenario, always (an invalid one is one failing item);
- under a directory named on the command line, the files that look like scenarios, except inside
  the project's `testpaths` (where Python tests keep their fixtures: `pytest` and `pytest tests`
  collect the same Python tests as without the plugin);
- under the directories of the `lab_scenarios` ini option, always (so a plain `pytest` can run
  them, when they are also in `testpaths`).
Plain `pytest` (no arguments) collects scenarios only from `lab_scenarios`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.backends import BACKENDS, ExecResult
from lab.errors import LabError, ScenarioError
from lab.outcome import Checks, RunResult, read_log, read_transcript
from lab.plan import Plan, make_plan
from lab.reports import load_report
from lab.reports.terminal import failure_text
from lab.rundir import RunDir

SCENARIO_KEYS = {"name", "nodes", "networks"}
SUFFIXES = (".yaml", ".yml")
PEEK_LIMIT = 1024 * 1024  # a YAML file larger than this is not looked into for the scenario keys


# -- options and markers ---------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lab", "network labs: scenario files as tests")
    group.addoption("--lab-backend", choices=tuple(BACKENDS), default="netns",
                    help="where scenario hosts live: netns (default), docker or swarm")
    group.addoption("--lab-cluster", default=None, metavar="FILE",
                    help="cluster file for --lab-backend swarm (hosts' Docker endpoints)")
    group.addoption("--lab-out", default=None, metavar="DIR",
                    help="folder for the run folders (default: pytest's temporary folder); "
                         "one sub-folder per xdist worker")
    parser.addini("lab_scenarios", type="paths", default=[],
                  help="folders whose scenario files are always collected (even inside testpaths)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab: a lab scenario's expectation (lab plugin)")
    config.addinivalue_line("markers", "netns: runs on the netns backend (lab plugin)")
    config.addinivalue_line("markers", "docker: runs on the docker backend (lab plugin)")
    config.addinivalue_line("markers", "swarm: runs on the swarm backend (lab plugin)")


# -- which files are scenarios ---------------------------------------------------------------------
@dataclass
class _Scope:
    files: set[Path] = field(default_factory=set)  # YAML files named on the command line
    dirs: list[Path] = field(default_factory=list)  # directories named on the command line
    testpaths: list[Path] = field(default_factory=list)
    always: list[Path] = field(default_factory=list)  # lab_scenarios

    def wants(self, path: Path) -> bool:
        if path in self.files or _under(path, self.always):
            return True
        return not _under(path, self.testpaths) and _under(path, self.dirs)

    @property
    def active(self) -> bool:
        return bool(self.files or self.always or any(not _under(d, self.testpaths) for d in self.dirs))


def _under(path: Path, folders: list[Path]) -> bool:
    return any(path == f or f in path.parents for f in folders)


_scope_key = pytest.StashKey[_Scope]()


def _scope(config: pytest.Config) -> _Scope:
    if _scope_key in config.stash:
        return config.stash[_scope_key]
    scope = _Scope()
    if config.args_source == pytest.Config.ArgsSource.ARGS:
        for arg in config.args:
            path = Path(os.path.abspath(config.invocation_params.dir / arg.split("::")[0]))
            if path.is_dir():
                scope.dirs.append(path)
            elif path.suffix in SUFFIXES:
                scope.files.add(path)
    import glob

    for entry in config.getini("testpaths"):
        for found in glob.glob(str(config.rootpath / entry), recursive=True) or [str(config.rootpath / entry)]:
            scope.testpaths.append(Path(os.path.abspath(found)))
    scope.always = [Path(os.path.abspath(p)) for p in config.getini("lab_scenarios")]
    config.stash[_scope_key] = scope
    return scope


def looks_like_scenario(path: Path) -> bool:
    """A mapping at the top level with `name`, `nodes` and `networks` (anything else is not ours)."""
    try:
        if path.stat().st_size > PEEK_LIMIT:
            return False
        data = yaml.load(path.read_text(errors="replace"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, ValueError, RecursionError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and SCENARIO_KEYS <= set(data)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix not in SUFFIXES:
        return None
    scope = _scope(parent.config)
    path = Path(os.path.abspath(file_path))
    if not scope.wants(path):
        return None
    if path not in scope.files and not looks_like_scenario(path):
        return None
    collector: ScenarioFile = ScenarioFile.from_parent(parent, path=file_path)
    return collector


# -- failures without tracebacks -------------------------------------------------------------------
class LabTestFailure(Exception):
    """An expectation that did not hold (or a scenario that could not run): shown as its message."""


class _LabItem(pytest.Item):
    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str | Any:
        if isinstance(excinfo.value, LabTestFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)


class InvalidScenario(_LabItem):
    def __init__(self, *, problems: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.problems = problems
        self.add_marker("lab")

    def runtest(self) -> None:
        raise LabTestFailure(f"invalid scenario {self.path}:\n{self.problems}")

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, "validate"


# -- a scenario file: one run, one item per expectation --------------------------------------------
class ScenarioFile(pytest.File):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backend: str = self.config.getoption("lab_backend")
        self.plan: Plan | None = None
        self._result: RunResult | None = None
        self._failure: str | None = None  # the run could not happen: why
        self.progress: list[str] = []

    def collect(self) -> Iterator[pytest.Item]:
        from lab.scenario import load_scenario

        try:
            self.plan = make_plan(load_scenario(self.path))
        except LabError as e:
            yield InvalidScenario.from_parent(self, name="validate", problems=str(e))
            return
        for expectation in self.plan.expect:
            item: ExpectationItem = ExpectationItem.from_parent(self, name=expectation.label,
                                                                label=expectation.label)
            yield item

    def result(self) -> RunResult:
        """The scenario's run: done once, by the first item that needs it."""
        if self._failure is not None:
            raise LabTestFailure(self._failure)
        if self._result is None:
            try:
                self._result = self._run()
            except ScenarioError as e:  # changed on disk since collection
                self._failure = f"invalid scenario {self.path}:\n{e}"
            except LabError as e:  # environment problems: not root, image missing, ...
                self._failure = f"the lab could not run ({self.backend}): {e}"
            if self._failure is not None:
                raise LabTestFailure(self._failure)
            assert self._result is not None
            if self._result.interrupted == 2:  # Ctrl-C: the lab is down; stop the session too
                raise KeyboardInterrupt
        return self._result

    def _run(self) -> RunResult:
        from lab import api

        scenario = api.load(self.path)
        out = _unique_folder(runs_root(self.config), scenario.name)
        return api.run(scenario, self.backend, out, cluster=self.config.getoption("lab_cluster"),
                       progress=self.progress.append)


class ExpectationItem(_LabItem):
    def __init__(self, *, label: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.label = label
        self.add_marker("lab")
        self.add_marker(self.scenario_file.backend)

    @property
    def scenario_file(self) -> ScenarioFile:
        assert isinstance(self.parent, ScenarioFile)
        return self.parent

    def runtest(self) -> None:
        result = self.scenario_file.result()
        mine = [e.result for e in result.results if e.expectation == self.label]
        bad = [r for r in mine if not r.passed]
        problem = ""
        if result.interrupted:
            problem = f"the run was interrupted (signal {result.interrupted})"
        elif result.error:
            problem = f"the run failed: {result.error}"
        elif not mine:
            problem = "no verdict for this expectation (the lab did not come up)"
        if bad or problem:
            raise LabTestFailure(failure_text(result, self.label, bad, problem))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.label


# -- run folders -----------------------------------------------------------------------------------
_root_key = pytest.StashKey[Path]()


def runs_root(config: pytest.Config) -> Path:
    """Where this process puts its run folders: --lab-out (one sub-folder per xdist worker), or a
    folder in pytest's temporary folder (already one per worker)."""
    if _root_key in config.stash:
        return config.stash[_root_key]
    option = config.getoption("lab_out")
    worker = getattr(config, "workerinput", {}).get("workerid")
    if option:
        root = Path(option).absolute() / worker if worker else Path(option).absolute()
        root.mkdir(parents=True, exist_ok=True)
    else:
        factory = getattr(config, "_tmp_path_factory", None)
        root = factory.mktemp("lab-runs") if factory else Path(tempfile.mkdtemp(prefix="lab-runs-"))
    config.stash[_root_key] = root
    return root


def _unique_folder(root: Path, name: str) -> Path:
    k = 1
    while True:
        folder = root / (name if k == 1 else f"{name}-{k}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            k += 1


# -- xdist: every item of a scenario file on the same worker, so each scenario runs once ------------
@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "load" or not _scope(config).active:
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ScenarioScheduling(LoadScopeScheduling):
        """Like `load` (every test its own unit), except a scenario file's items go together."""

        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if path.endswith(SUFFIXES) else nodeid

    return ScenarioScheduling(config, log)


# -- the `lab` fixture -----------------------------------------------------------------------------
class RunningLab:
    """A lab kept running (as `lab up`): exec in its nodes, read what they did, check, down."""

    def __init__(self, lab_id: str, backend: str, rundir: RunDir, plan: Plan, status: dict[str, Any]):
        self.id, self.backend, self.rundir, self.plan, self.status = lab_id, backend, rundir, plan, status
        self.started = time.time()
        self.result: RunResult | None = None

    def __repr__(self) -> str:
        return f"<RunningLab {self.plan.name} {self.id} ({self.backend}) {self.rundir.root}>"

    @property
    def nodes(self) -> list[str]:
        return [n.name for n in self.plan.nodes]

    def exec(self, node: str, *argv: str, timeout: float = 60.0,
             input: str | None = None) -> ExecResult:
        """Run a command inside a node (as `lab exec`); its output captured: `.stdout` as text (line
        ends made `\n`), `.stdout_bytes` exactly as written. A node that cannot be entered gives
        `lab exec`'s exit code (2) and its error line on stderr."""
        from lab import api

        try:
            return api.exec(self.id, node, list(argv), input=input, timeout=timeout)
        except LabError as e:
            return ExecResult(["lab", "exec", self.id, node, *argv], e.exit_code, b"", f"lab: error: {e}\n".encode())

    def transcript(self, node: str) -> list[dict[str, Any]]:
        """The node's transcript events so far (roles only): connected, sent, received, closed, error."""
        return read_transcript(self.rundir.transcript(node))

    def log(self, node: str) -> str:
        return read_log(self.rundir.log(node))

    def wait(self, timeout: float = 30.0) -> None:
        """Until every task (client roles, programs without `ready:`) has finished."""
        from lab import api

        tasks = [n.name for n in self.plan.nodes if n.runs_something and not n.service]
        deadline = time.monotonic() + timeout
        while True:
            status = api.status(self.id)
            if all(status.get(t, {}).get("exited") for t in tasks):
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"lab {self.id}: tasks still running after {timeout:g}s")
            time.sleep(0.1)

    def check(self) -> Checks:
        """Every expectation evaluated against the lab now (one result per expectation per node):
        `.passed`, and `.assert_passed()`, which fails listing each failing check and the run folder."""
        from lab import api

        return Checks([e.result for e in api.check(self.id)], str(self.rundir.root))

    def down(self) -> RunResult:
        """Check, write the report, tear down (as `lab down`); idempotent."""
        if self.result is not None:
            return self.result
        from lab import api
        from lab.errors import UnknownLab

        with contextlib.suppress(UnknownLab):  # already down
            api.down(self.id)
        self.result = _result_from_report(self)
        return self.result


def _result_from_report(kept: RunningLab) -> RunResult:
    result = RunResult(kept.plan, kept.rundir, kept.backend, kept.id, kept.started)
    try:
        report = load_report(kept.rundir.root)
    except (OSError, ValueError) as e:
        result.error = f"no report from the lab's keeper ({e}); see {kept.rundir.file('keeper.log')}"
        return result
    result.duration, result.error, result.results = report.duration, report.error, report.results
    result.timed_out, result.interrupted = report.timed_out, report.interrupted
    return result


class Lab:
    """The `lab` fixture: bring scenarios up for a test; every lab it brought up goes down after."""

    def __init__(self, config: pytest.Config, tmp: Path):
        self.backend: str = config.getoption("lab_backend")
        self.cluster: str | None = config.getoption("lab_cluster")
        self.tmp = tmp
        self.labs: list[RunningLab] = []

    def up(self, scenario: str | Path, backend: str | None = None) -> RunningLab:
        """A scenario (a file, or YAML text) brought up and kept running; raises if a node failed."""
        from lab import api

        path = Path(scenario) if isinstance(scenario, Path) or "\n" not in scenario else None
        if path is None:
            path = self.tmp / f"scenario-{len(self.labs) + 1}.yaml"
            path.write_text(str(scenario))
        backend = backend or self.backend
        plan = make_plan(api.load(path))  # invalid: ScenarioError, with every problem
        out = _unique_folder(self.tmp / "runs", plan.name)
        up = api.up(path, backend, out, cluster=self.cluster)
        if not up.ok:
            raise LabTestFailure(f"lab {plan.name} did not come up: {'; '.join(up.status['failures'])} "
                                 f"(torn down; logs in {up.rundir.root})")
        kept = RunningLab(up.id, backend, up.rundir, plan, up.status)
        self.labs.append(kept)
        return kept

    def down_all(self) -> None:
        for kept in self.labs:
            kept.down()


@pytest.fixture
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Labs as an API: `lab.up(path_or_yaml)` -> RunningLab (.exec, .transcript, .log, .wait, .check,
    .down); every lab still up goes down at the end of the test."""
    api = Lab(request.config, tmp_path_factory.mktemp("lab"))
    try:
        yield api
    finally:
        api.down_all()
