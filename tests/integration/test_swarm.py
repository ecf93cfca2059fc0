"""The swarm backend on a simulated 3-host cluster (`lab cluster up --tls`: Docker engines in
containers, joined into a swarm, that take only clients with a certificate of the cluster's CA).
After every test, no container or network of any lab is left on any host."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from lab.backends.containers.cluster import load_cluster
from lab.backends.containers.engine import remote
from lab.errors import BackendError
from tests.conftest import TEST_CLUSTER
from tests.integration.conftest import ROOT, LabRun, lab, until

HERE = Path(__file__).resolve().parent / "scenarios" / "swarm"
EXAMPLES = ROOT / "scenarios"


@dataclass
class SimCluster:
    file: Path
    hosts: dict[str, str]  # name -> endpoint

    def client(self, host: str, timeout: int = 30) -> Any:
        """A client of one host's engine, with the cluster file's certificates (as the lab's)."""
        return remote(self.hosts[host], timeout=timeout,
                      tls=next(h for h in load_cluster(self.file).hosts if h.name == host).client_tls())

    def lab_objects(self) -> dict[str, list[str]]:
        """Every container and network of any lab, per host."""
        found: dict[str, list[str]] = {}
        for host in self.hosts:
            c = self.client(host)
            try:
                names = [x["Names"][0] for x in c.api.containers(all=True, filters={"label": "lab.id"})]
                names += [n["Name"] for n in c.api.networks(filters={"label": "lab.id"})]
            finally:
                c.close()
            if names:
                found[host] = names
        return found


@pytest.fixture(scope="session")
def cluster(lab_image: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    file = tmp_path_factory.mktemp("cluster") / "cluster.yaml"
    done = lab("cluster", "up", "--hosts", "3", "--name", TEST_CLUSTER, "--file", str(file), "--tls", timeout=900)
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        endpoints = {line.split(":")[0].strip(): line.split('"')[1]
                     for line in file.read_text().splitlines() if "endpoint" in line}
        # The hosts' links on this machine get their IPv6 link-local addresses after a duplicate
        # check of a second or two: the first test's before-and-after view of the host must not see it.
        until("the cluster's links settled", lambda: not subprocess.run(
            ["ip", "-6", "-o", "addr", "show", "tentative"], capture_output=True, text=True).stdout.strip())
        yield SimCluster(file, endpoints)
    finally:
        down = lab("cluster", "down", "--name", TEST_CLUSTER, "--file", str(file), timeout=300)
        assert down.returncode == 0, down.stdout + down.stderr
    assert not file.exists() and not (file.parent / "cluster-tls").exists()  # its certificates went with it


@pytest.fixture(autouse=True)
def hosts_clean(cluster: SimCluster) -> Iterator[None]:
    yield
    assert cluster.lab_objects() == {}, "a lab left containers or networks on the cluster's hosts"


def run(cluster: SimCluster, scenario: Path, out: Path, *extra: str, timeout: float = 240) -> LabRun:
    done = lab("run", str(scenario), "--backend", "swarm", "--cluster", str(cluster.file), "--out", str(out),
               *extra, timeout=timeout)
    return LabRun(done.returncode, done.stdout, done.stderr, out)


def hosts_of(result: LabRun) -> dict[str, str]:
    return {n["name"]: n["host"] for n in result.report["nodes"]}


@pytest.mark.parametrize("example", ["echo", "greeting", "http-get", "exercise-echo", "real-tools"])
def test_examples_pass_across_hosts(cluster: SimCluster, tmp_path: Path, example: str) -> None:
    result = run(cluster, EXAMPLES / f"{example}.yaml", tmp_path / "run")
    assert result.code == 0, result.stdout + result.stderr
    placed = hosts_of(result)
    assert set(placed.values()) <= set(cluster.hosts) and len(set(placed.values())) >= 2
    assert "hosts: h" in result.stdout
    for node in result.report["nodes"]:  # every host's clock was measured (the hosts share this kernel's)
        assert abs(node["clock_offset_s"]) < 0.5 and node["clock_uncertainty_s"] < 0.5


def test_echo_server_and_clients_on_different_hosts(cluster: SimCluster, tmp_path: Path) -> None:
    result = run(cluster, EXAMPLES / "echo.yaml", tmp_path / "run")
    assert result.code == 0, result.stdout + result.stderr
    placed = hosts_of(result)
    clients = {h for n, h in placed.items() if n.startswith("client")}
    assert placed["server"] not in clients and len(clients) == 2
    assert all(c["passed"] for c in result.checks("concurrent"))
    log = (result.out / "nodes" / "server.log").read_text()
    assert log.count("echoed 'hello from client-") == 3  # logs came back from the server's host
    transcript = (result.out / "nodes" / "client-1.jsonl").read_text()
    assert '"event": "received"' in transcript
    assert '"event": "released", "conn": 1, "by": "lab"' in transcript  # through the agent's channel


@pytest.mark.parametrize(("scenario", "code"), [("prompt-echo", 0), ("sequential", 1), ("chunked-http", 0),
                                              ("crash-on-eof", 1)])
def test_verdicts_are_the_same_across_hosts(cluster: SimCluster, tmp_path: Path, scenario: str, code: int) -> None:
    # A prompting server with odd bytes passes; one that serves one client at a time fails `concurrent`;
    # a chunked HTTP server passes; a server that crashes as its client leaves fails.
    result = run(cluster, ROOT / "tests" / "integration" / "scenarios" / "verdicts" / f"{scenario}.yaml",
                 tmp_path / "run")
    assert result.code == code, result.stdout + result.stderr
    assert all(c["passed"] for c in result.checks("echo") + result.checks("http"))
    assert all(c["passed"] == (code == 0) for c in result.checks("concurrent"))
    assert all("IndexError" in c["detail"] for c in result.checks("service"))
    assert bool(result.checks("service")) == (scenario == "crash-on-eof")


def test_the_image_reaches_hosts_without_a_registry(cluster: SimCluster, tmp_path: Path) -> None:
    tag = json.loads(subprocess.run([sys.executable, "-c", "import json; from lab.backends.containers import images; "
                                     "print(json.dumps(images.node_tag()))"],
                                    capture_output=True, text=True, cwd=ROOT, check=True).stdout)
    for host in cluster.hosts:
        c = cluster.client(host)
        try:
            if c.api.images(name=tag):
                c.api.remove_image(tag, force=True)
        finally:
            c.close()
    result = run(cluster, EXAMPLES / "echo.yaml", tmp_path / "run")
    assert result.code == 0, result.stdout + result.stderr
    for host in set(hosts_of(result).values()):
        c = cluster.client(host)
        try:
            assert c.api.images(name=tag), f"{tag} not loaded on {host}"
        finally:
            c.close()


def test_routes_are_set_then_the_capability_is_dropped(cluster: SimCluster, tmp_path: Path) -> None:
    result = run(cluster, HERE / "routes-caps.yaml", tmp_path / "run")
    assert result.code == 0, result.stdout + result.stderr + (tmp_path / "run" / "nodes" / "probe.log").read_text()


def test_unknown_host_is_a_located_error_and_nothing_is_created(cluster: SimCluster, tmp_path: Path) -> None:
    scenario = tmp_path / "pinned.yaml"
    scenario.write_text((HERE / "host-away.yaml").read_text().replace("host: h3", "host: h7"))
    result = run(cluster, scenario, tmp_path / "run")
    assert result.code == 2, result.stdout + result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"{scenario}:20:") and "nodes.far.host: unknown host 'h7'" in line
    assert not (tmp_path / "run").exists()


def test_swarm_without_a_cluster_file_says_what_to_do(tmp_path: Path) -> None:
    done = lab("run", str(EXAMPLES / "echo.yaml"), "--backend", "swarm")
    assert done.returncode == 3 and "--cluster FILE" in done.stderr, done.stderr
    done = lab("run", str(EXAMPLES / "echo.yaml"), "--backend", "swarm", "--cluster", str(tmp_path / "none.yaml"))
    assert done.returncode == 2 and "none.yaml" in done.stderr, done.stderr


def start(cluster: SimCluster, scenario: Path, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "lab", "run", str(scenario), "--backend", "swarm",
                             "--cluster", str(cluster.file), "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_line(proc: subprocess.Popen[str], text: str, deadline: float = 120) -> list[str]:
    assert proc.stderr is not None
    seen: list[str] = []
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"{text!r} not seen: {''.join(seen)}")


def node_file(client: Any, node: str, name: str) -> str:
    """A file of a running node's output folder, read on its host through the engine's API: the
    lab copies it back only when the node ends ("" while the container or the file is not there)."""
    try:
        running = client.api.containers(filters={"label": f"lab.node={node}"})
        if not running:
            return ""
        stream, _ = client.api.get_archive(running[0]["Id"], f"/lab/out/{name}")
    except docker.errors.APIError:  # not there yet (404), or the container is changing state
        return ""
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.extractfile(name)
        return member.read().decode(errors="replace") if member else ""


def wait_until_clients_connected(cluster: SimCluster) -> None:
    """host-away.yaml: until the server (h1) has echoed near's line and far (h3) is connected."""
    h1, h3 = cluster.client("h1"), cluster.client("h3")
    try:
        until("near echoed and far connected",
              lambda: "echoed 'near" in node_file(h1, "server", "server.log")
              and '"event": "connected"' in node_file(h3, "far", "far.jsonl"), deadline=60)
    finally:
        h1.close()
        h3.close()


def test_ctrl_c_tears_down_every_host_and_keeps_the_logs(cluster: SimCluster, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = start(cluster, HERE / "host-away.yaml", out)
    wait_for_line(proc, "ready   server")
    wait_until_clients_connected(cluster)  # their transcripts must survive the interrupt
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    report = json.loads((out / "report.json").read_text())
    assert report["interrupted"] == signal.SIGINT
    assert "echoed 'near" in (out / "nodes" / "server.log").read_text()
    assert '"event": "connected"' in (out / "nodes" / "far.jsonl").read_text()


def test_a_host_that_goes_away_fails_clearly_and_the_rest_is_removed(cluster: SimCluster, tmp_path: Path) -> None:
    """h3 freezes mid-run (its engine stops answering, like a host cut off the network)."""
    out = tmp_path / "run"
    h3 = f"lab-cluster-{TEST_CLUSTER}-h3"
    proc = start(cluster, HERE / "host-away.yaml", out)
    try:
        wait_for_line(proc, "ready   server")
        wait_until_clients_connected(cluster)
        subprocess.run(["docker", "pause", h3], check=True, capture_output=True)
        t = time.monotonic()
        stdout, err = proc.communicate(timeout=120)
        took = time.monotonic() - t
    finally:
        subprocess.run(["docker", "unpause", h3], capture_output=True)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, err
    assert "host h3 (tcp://" in err and "went away during the run" in err and "far were lost" in err
    assert took < 30, f"the lost host was noticed and the rest removed in {took:.1f}s"
    report = json.loads((out / "report.json").read_text())
    assert "host h3" in report["error"] and not report["passed"]
    far = next(c for c in report["checks"] if c["node"] == "far")
    assert not far["passed"] and "went away" in far["detail"]
    assert '"event": "connected"' in (out / "nodes" / "far.jsonl").read_text()  # streamed before h3 went
    assert "echoed 'near" in (out / "nodes" / "server.log").read_text()  # the other hosts' logs came back
    left = cluster.lab_objects()  # containers have a leading "/"; the overlay network h3's container holds stays
    assert not [name for host in ("h1", "h2") for name in left.get(host, []) if name.startswith("/")], left
    assert "network(s) lab-" in err and "`lab clean`" in err
    # h3 answers again: `lab clean` finishes from the journal (h3's container and the network it held)
    done = lab("clean", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cleaned lab" in done.stdout


def test_clean_after_kill_9_removes_everything_and_rescues_the_logs(cluster: SimCluster, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = start(cluster, HERE / "host-away.yaml", out)
    wait_for_line(proc, "ready   server")
    wait_until_clients_connected(cluster)
    proc.kill()
    proc.communicate(timeout=30)
    assert cluster.lab_objects(), "the killed lab's containers should still be there"
    done = lab("clean", timeout=120)
    assert done.returncode == 0 and "cleaned lab" in done.stdout, done.stdout + done.stderr
    assert "echoed 'near" in (out / "nodes" / "server.log").read_text()  # copied off h1 before removal
    assert '"event": "connected"' in (out / "nodes" / "far.jsonl").read_text()


def test_cluster_up_repairs_a_stopped_host(cluster: SimCluster, tmp_path: Path) -> None:
    """On a cluster of its own (made and removed here): a stopped worker is recreated and rejoins."""
    name, file = f"{TEST_CLUSTER}-repair", tmp_path / "repair.yaml"
    try:
        for step in range(2):
            done = lab("cluster", "up", "--hosts", "2", "--name", name, "--file", str(file), timeout=300)
            assert done.returncode == 0, done.stdout + done.stderr
            if step == 0:
                subprocess.run(["docker", "stop", f"lab-cluster-{name}-h2"], check=True, capture_output=True)
        endpoint = file.read_text().split('"')[1]
        manager = docker.DockerClient(base_url=endpoint, timeout=30)
        try:
            nodes = manager.api.nodes()
        finally:
            manager.close()
        assert sorted(n["Description"]["Hostname"] for n in nodes) == ["h1", "h2"]
        assert all(n["Status"]["State"] == "ready" for n in nodes)
        result = run(SimCluster(file, {}), EXAMPLES / "echo.yaml", tmp_path / "run")
        assert result.code == 0 and set(hosts_of(result).values()) == {"h1", "h2"}, result.stdout + result.stderr
    finally:
        done = lab("cluster", "down", "--name", name, "--file", str(file), timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr


def test_a_kept_lab_on_three_hosts_exec_logs_follow_check_and_down(cluster: SimCluster, tmp_path: Path) -> None:
    """`lab up` on the cluster; exec on each host (a node on h1 talks to one on h3); `logs -f` and
    `check` see what a running node on another host wrote (streamed, not copied at its end)."""
    out = tmp_path / "kept"
    up = lab("up", str(HERE / "kept.yaml"), "--backend", "swarm", "--cluster", str(cluster.file), "--out", str(out),
             timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    lab_id = next(ln.split()[1] for ln in up.stdout.splitlines() if " is up (swarm)" in ln)
    assert all("LAB-READY" in (out / "nodes" / f"{n}.log").read_text() for n in "abc")  # sent before "ready"
    follow = subprocess.Popen([sys.executable, "-m", "lab", "logs", "-f", lab_id, "c"], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(follow.stdout or ()), daemon=True)
    reader.start()
    try:
        nodes = json.loads(lab("ps", lab_id, "--json").stdout)
        assert {n["name"]: n["host"] for n in nodes} == {"a": "h1", "b": "h2", "c": "h3"}
        assert lab("check", lab_id).returncode == 1  # nothing sent to c yet
        for node in ("a", "b", "c"):
            assert lab("exec", lab_id, node, "--", "hostname").stdout.strip() == node
        sent = lab("exec", lab_id, "a", "--", "sh", "-c", "printf 'from a\\r\\n' | nc -N c 9999")
        assert sent.returncode == 0 and sent.stdout == "from a\n", sent.stdout + sent.stderr
        assert lab("exec", lab_id, "b", "--", "sh", "-c", "exit 7").returncode == 7
        until("c's log, followed here, shows the echo", lambda: any("echoed 'from a" in ln for ln in seen))
        check = lab("check", lab_id)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        down = lab("down", lab_id, timeout=180)
    assert down.returncode == 0 and "is down: PASSED" in down.stdout, down.stdout + down.stderr
    assert follow.wait(timeout=30) == 0  # `logs -f` ends with the lab
    reader.join(timeout=10)
    report = json.loads((out / "report.json").read_text())
    assert {n["name"]: n["host"] for n in report["nodes"]} == {"a": "h1", "b": "h2", "c": "h3"}
    assert (out / "nodes" / "c.log").read_text().count("echoed 'from a") == 1  # streamed, then copied: once


def test_an_engine_reached_without_the_cluster_s_certificate_refuses(cluster: SimCluster, tmp_path: Path) -> None:
    endpoint = cluster.hosts["h1"]
    assert endpoint.startswith("tcp://") and endpoint.endswith(":2376")
    ca = load_cluster(cluster.file).hosts[0].tls
    assert ca is not None
    for tls in (None, docker.tls.TLSConfig(ca_cert=str(ca.ca), verify=True)):  # plain HTTP; TLS, no certificate
        with pytest.raises(BackendError):
            remote(endpoint, timeout=10, tls=tls).close()
    plain = tmp_path / "plain.yaml"  # the same hosts, without `tls:`
    plain.write_text("hosts:\n" + "".join(f'  {h}: {{endpoint: "{e}"{", manager: true" if h == "h1" else ""}}}\n'
                                          for h, e in cluster.hosts.items()))
    result = run(SimCluster(plain, cluster.hosts), EXAMPLES / "echo.yaml", tmp_path / "run")
    assert result.code == 3 and "h1" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was made


def test_a_unix_socket_endpoint_works_as_the_readme_says(cluster: SimCluster, tmp_path: Path) -> None:
    """An engine forwarded to a local socket (`ssh -L`, in the README): the simulated h1's own."""
    socket = f"/run/lab-cluster/{TEST_CLUSTER}/h1/docker.sock"
    local = tmp_path / "local.yaml"
    local.write_text(f'hosts:\n  h1: {{endpoint: "unix://{socket}", manager: true}}\n')
    result = run(SimCluster(local, {"h1": f"unix://{socket}"}), EXAMPLES / "echo.yaml", tmp_path / "run")
    assert result.code == 0, result.stdout + result.stderr
    assert set(hosts_of(result).values()) == {"h1"}


def test_the_lab_fixture_keeps_a_lab_on_the_cluster(cluster: SimCluster, tmp_path: Path) -> None:
    """`pytest --lab-backend swarm --lab-cluster FILE`: the `lab` fixture's labs span the hosts."""
    test = tmp_path / "test_on_cluster.py"
    test.write_text(f"""
import time

def test_kept_on_three_hosts(lab):
    kept = lab.up({str(HERE / "kept.yaml")!r})
    assert "LAB-READY" in kept.log("c")  # heard of as ready: its log up to then is here
    done = kept.exec("a", "sh", "-c", "printf 'from a\\\\r\\\\n' | nc -N c 9999")
    assert done.returncode == 0 and done.stdout_bytes == b"from a\\r\\n", done.stderr
    assert kept.exec("b", "hostname").stdout.strip() == "b"
    deadline = time.monotonic() + 30  # c's log comes from h3 as it grows (a quarter of a second apart)
    while "echoed 'from a" not in kept.log("c") and time.monotonic() < deadline:
        time.sleep(0.05)
    kept.check().assert_passed()
    kept.down().assert_passed()
    assert "echoed 'from a" in kept.log("c")
""")
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(test), "--basetemp",
                           str(tmp_path / "tmp"), "--lab-backend", "swarm", "--lab-cluster", str(cluster.file)],
                          capture_output=True, text=True, cwd=ROOT, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
