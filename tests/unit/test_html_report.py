"""report.html and `lab graph`: the topology drawing, escaping of hostile text, the log cap, the
timeline and its faults, and the wire beside each sequence on the same clocks."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.cli import main
from lab.outcome import CheckResult, ExpectationResult, RunResult
from lab.plan import make_plan
from lab.reports.html_report import LOG_SHOW_LIMIT, topology_svg, write_html
from lab.reports.timeline import AXIS, LEFT
from lab.rundir import RunDir
from lab.scenario import load_scenario
from tests.unit.test_wire import RST, SYN, T0, normal, pcap, tcp

ROOT = Path(__file__).resolve().parents[2]
SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = "</script><script>alert(1)</script>"


def _nodes(svg: str) -> dict[str, ET.Element]:
    tree = ET.fromstring(svg)  # well-formed XML, or this raises
    return {g.get("data-node", ""): g for g in tree.iter(f"{SVG}g") if g.get("class") == "node"}


def test_topology_has_every_node_network_and_link() -> None:
    plan = make_plan(load_scenario(ROOT / "scenarios" / "http-get.yaml"))
    svg = topology_svg(plan)
    nodes = _nodes(svg)
    assert set(nodes) == {"web", "router", "browser"}
    assert all(g.get("data-verdict") == "none" for g in nodes.values())
    for net in plan.networks:
        assert f"{net.name} {net.subnet}" in svg
    for node in plan.nodes:
        for iface in node.interfaces:
            assert str(iface.address.ip) in "".join(nodes[node.name].itertext())
    links = {(ln.get("data-node"), ln.get("data-network")) for ln in ET.fromstring(svg).iter(f"{SVG}line")}
    assert links == {("web", "dmz"), ("router", "dmz"), ("router", "office"), ("browser", "office")}


def test_topology_boxes_never_overlap_at_scale() -> None:
    plan = make_plan(load_scenario(ROOT / "scenarios" / "scale.yaml"))
    verdicts = {n.name: "pass" for n in plan.nodes[:3]} | {plan.nodes[3].name: "fail"}
    nodes = _nodes(topology_svg(plan, verdicts))
    assert len(nodes) == len(plan.nodes) > 100
    assert [nodes[n.name].get("data-verdict") for n in plan.nodes[:5]] == ["pass"] * 3 + ["fail", "none"]
    boxes = []
    for g in nodes.values():
        r = g.find(f"{SVG}rect")
        assert r is not None
        boxes.append(tuple(float(r.get(k, "0")) for k in ("x", "y", "width", "height")))
    for i, (x, y, w, h) in enumerate(boxes):
        for x2, y2, w2, h2 in boxes[i + 1:]:
            assert x + w <= x2 or x2 + w2 <= x or y + h <= y2 or y2 + h2 <= y


def _fake_run(tmp_path: Path) -> RunResult:
    plan = make_plan(load_scenario(ROOT / "scenarios" / "echo.yaml"))
    rundir = RunDir.create(tmp_path / "run", plan.name)
    t = time.time()
    events = [
        {"t": t, "event": "start", "role": "telnet-client"},
        {"t": t + 0.01, "event": "connected", "conn": 1, "peer": "10.0.1.10:9999"},
        {"t": t + 0.02, "event": "sent", "conn": 1, "data": HOSTILE + "\r\n"},
        {"t": t + 0.03, "event": "received", "conn": 1, "data_b64": "AAEC"},
        {"t": t + 0.04, "event": "error", "conn": 1, "kind": "reset", "during": "reply", "message": "<b>x</b>"},
    ]
    rundir.transcript("client-1").write_text("".join(json.dumps(e) + "\n" for e in events) + '{"cut')
    rundir.log("client-1").write_text("<img src=x onerror=alert(1)>\n")
    rundir.log("server").write_text("x" * (LOG_SHOW_LIMIT + 50_000))
    results = [ExpectationResult("echo client", CheckResult("echo", "client-1", False, f"got {HOSTILE!r}")),
               ExpectationResult("echo client", CheckResult("echo", "client-2", True, "ok"))]
    return RunResult(plan, rundir, "netns", "abcd1234", t, duration=1.5, results=results)


def test_report_escapes_hostile_text_and_caps_logs(tmp_path: Path) -> None:
    path = write_html(_fake_run(tmp_path))
    assert path == tmp_path / "run" / "report.html"
    page = path.read_text()
    assert page.count("<script") == 1 and "alert(1)</script>" not in page
    assert "<img" not in page and "<b>x</b>" not in page
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;\\r\\n" in page  # the sent data, \r\n visible
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "(binary, base64) AAEC" in page
    assert 'class="check fail" data-node="client-1"' in page and 'class="check pass" data-node="client-2"' in page
    assert 'data-node="client-1" data-verdict="fail"' in page
    assert 'data-node="client-2" data-verdict="pass"' in page and 'data-node="server" data-verdict="none"' in page
    assert "+0.020s" in page and 'id="seq-client-1"' in page  # from the node's start (its first event)
    assert f"cut: showing the first 256 KiB of {LOG_SHOW_LIMIT + 50_000} bytes" in page
    assert LOG_SHOW_LIMIT < len(page) < LOG_SHOW_LIMIT + 40_000
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched
    assert not list((tmp_path / "run").glob(".*tmp"))


def test_graph_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t.svg"
    assert main(["graph", str(ROOT / "scenarios" / "http-get.yaml"), "-o", str(out)]) == 0
    assert set(_nodes(out.read_text())) == {"web", "router", "browser"}
    assert main(["graph", str(ROOT / "scenarios" / "echo.yaml")]) == 0
    assert set(_nodes(capsys.readouterr().out)) == {"server", "client-1", "client-2", "client-3"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnetworks: {lan: {subnet: 10.0.0.0/24}}\nnodes:\n  a: {networks: [lan], rol: x}\n")
    assert main(["graph", str(bad)]) == 2
    assert "rol" in capsys.readouterr().err


def test_the_timeline_tells_who_was_connected_when_and_who_closed(tmp_path: Path) -> None:
    """One lane per node on the lab's clock: its run, its readiness, each connection open to closed
    (and by whom); the phases above; a crashed service in red in the nodes table."""
    from lab.execution import NodeState
    from lab.reports.html_report import render

    result = _fake_run(tmp_path)
    result.t0, result.wall0 = 100.0, time.time() - 5
    result.phases = {"plan": (0.0, 0.01), "up": (0.01, 0.2), "run": (0.2, 1.0), "down": (1.0, 1.2)}
    result.states = {"client-2": NodeState(result.plan.node("client-2"), started_at=100.3, ready_at=100.3,
                                           exited=True, exited_at=100.9, exit_code=0)}
    events = [{"t": result.wall0 + 0.4, "event": "connected", "conn": 1, "peer": "10.0.1.10:9999"},
              {"t": result.wall0 + 0.7, "event": "closed", "conn": 1, "by": "server"}]
    result.rundir.transcript("client-2").write_text("".join(json.dumps(e) + "\n" for e in events))
    result.results.append(ExpectationResult("service server", CheckResult("service", "server", False, "exited 3")))
    page = render(result)
    start = page.index('<svg id="timeline"')
    tree = ET.fromstring(page[start:page.index("</svg>", start) + 6])
    lanes = {g.get("data-node"): g for g in tree.iter(f"{SVG}g") if "lane" in g.get("class", "").split()}
    assert set(lanes) == {n.name for n in result.plan.nodes}
    assert lanes["server"].get("class") == "lane crashed"
    (conn,) = [ln for ln in lanes["client-2"].iter(f"{SVG}line") if ln.get("class") == "conn"]
    assert conn.get("data-closed-by") == "server"
    (run,) = [r for r in lanes["client-2"].iter(f"{SVG}rect") if r.get("class") == "run"]
    assert float(run.get("x", 0)) < float(conn.get("x1", 0)) < float(conn.get("x2", 0))  # connected while it ran
    assert [g.get("data-phase") for g in tree.iter(f"{SVG}g") if g.get("class") == "phase"] == list(result.phases)
    assert 'class="node fail crashed" data-node="server"' in page


def _captured(result: RunResult) -> RunResult:
    """A run that captured its network `lan`: client-1's echo (handshake, 12 B each way, FIN/FIN) and
    client-2 refused; the capturer's counts say 3 packets did not fit under the size limit. client-1's
    transcript tells the same echo, stamped as the capture (it started 0.5 s before its SYN)."""
    ip = {n.name: str(n.interfaces[0].address.ip) for n in result.plan.nodes}
    server, one, two = (ip["server"], 9999), (ip["client-1"], 40112), (ip["client-2"], 40200)
    result.wall0 = T0 - 2.0  # the capture's T0 is 2 s into the run
    frames = normal(T0, one, server) + [(T0 + 0.5, tcp(two, server, SYN, 7)), (T0 + 0.501, tcp(server, two, RST, 0))]
    folder = result.rundir.file("captures")
    folder.mkdir()
    pcap(folder / "lan.pcap", frames)
    (folder / "lan.json").write_text(json.dumps({"packets": 10, "bytes": 900, "over_limit": 3, "kernel_drops": 0}))
    events = [{"t": T0 - 0.5, "event": "start", "role": "telnet-client"},
              {"t": T0 + 0.002, "event": "connected", "conn": 1, "peer": f"{server[0]}:9999"},
              {"t": T0 + 0.010, "event": "sent", "conn": 1, "data": "hello there\n"},
              {"t": T0 + 0.011, "event": "received", "conn": 1, "data": "hello there\n"},
              {"t": T0 + 0.020, "event": "closed", "conn": 1, "by": "client-1"}]
    result.rundir.transcript("client-1").write_text("".join(json.dumps(e) + "\n" for e in events))
    return result


def _section(page: str, id_: str) -> str:
    start = page.index(f'id="{id_}"')
    return page[start:page.index("</section>", start)]


def test_the_wire_is_shown_beside_each_node_and_its_capture_linked(tmp_path: Path) -> None:
    page = write_html(_captured(_fake_run(tmp_path))).read_text()
    opened = ("client-1:40112 -&gt; server:9999 opened 2.000s (SYN 2.000, SYN-ACK 2.001, ACK 2.002), closed by "
              "client-1 2.020s (FIN), 12 B -&gt;, 12 B &lt;-")
    refused = "client-2:40200 -&gt; server:9999 refused 2.501s (SYN 2.500, RST 2.501)"
    assert f"on lan: {opened}" in _section(page, "wire-client-1")
    assert page.index('id="seq-client-1"') < page.index('id="wire-client-1"')  # beside its sequence
    assert opened in _section(page, "wire-server") and refused in _section(page, "wire-server")  # took part in both
    assert refused in _section(page, "wire-client-2") and opened not in _section(page, "wire-client-2")
    assert 'id="wire-client-3"' not in page  # no connection of its own
    assert ('<tr class="wire SYN-ACK"><td class="t">2.001s</td><td class="t rel">+0.501s</td><td>SYN-ACK</td>'
            "<td>server:9999 → client-1:40112") in page  # the lab's clock, and from client-1's start
    assert '<a href="captures/lan.pcap">captures/lan.pcap</a>' in page
    row = page[page.index('<tr class="capture cut" data-network="lan">'):]
    assert "<td>10</td><td>2</td>" in row and "cut at its size limit: 3 packets not written" in row


def test_no_capture_no_wire(tmp_path: Path) -> None:
    page = write_html(_fake_run(tmp_path)).read_text()
    assert "<h2>Captures</h2>" not in page and 'class="wire"' not in page


def _rows(section: str, cls: str) -> list[list[str]]:
    """The cells' text of a section's rows of class `cls` (`ev closed`, `wire FIN`)."""
    rows = []
    for chunk in section.split(f'<tr class="{cls}">')[1:]:
        row = ET.fromstring("<tr>" + chunk[:chunk.index("</tr>")] + "</tr>")
        rows.append(["".join(td.itertext()) for td in row])
    return rows


def test_a_line_and_its_segment_on_the_wire_read_the_same_times(tmp_path: Path) -> None:
    """The sequence and the wire table count from the same origin, on the same clock: client-1's
    "closed" and its FIN at the same moment show the same lab time and the same time from its start."""
    page = write_html(_captured(_fake_run(tmp_path))).read_text()
    (closed,) = _rows(_section(page, "seq-client-1"), "ev closed")
    fin = _rows(_section(page, "wire-client-1"), "wire FIN")[0]  # client-1's FIN, then the server's
    assert closed[:2] == fin[:2] == ["2.020s", "+0.520s"]
    (connected,) = _rows(_section(page, "seq-client-1"), "ev connected")
    ack = _rows(_section(page, "wire-client-1"), "wire ACK")[0]
    assert connected[:2] == ack[:2] == ["2.002s", "+0.502s"]  # the handshake's ACK: the client connected
    assert "started at 1.500s on the lab's clock" in _section(page, "seq-client-1")
    heads = '<th title="seconds since the run began">lab clock</th><th title="seconds since the node'
    assert _section(page, "seq-client-1").count(heads) == _section(page, "wire-client-1").count(heads) == 1


def _faulted(tmp_path: Path) -> RunResult:
    """A run whose timeline took the server down at 0.5 s and restarted it at 0.52 s (it ended 143),
    and never reached the step that would have brought it back up."""
    result = _fake_run(tmp_path)
    result.phases = {"plan": (0.0, 0.01), "up": (0.01, 0.2), "run": (0.2, 1.0), "down": (1.0, 1.2)}
    result.timeline = [
        {"step": "down server", "where": "scenarios/f.yaml:18:16", "fired": True, "t": 0.5},
        {"step": "restart server", "where": "scenarios/f.yaml:19:5", "fired": True, "t": 0.52,
         "codes": {"server": 143}},
        {"step": "up server", "where": HOSTILE, "fired": False, "t": None},
    ]
    return result


def _timeline(page: str) -> ET.Element:
    start = page.index('<svg id="timeline"')
    return ET.fromstring(page[start:page.index("</svg>", start) + 6])


def test_the_faults_cross_the_timeline_where_they_fired(tmp_path: Path) -> None:
    page = write_html(_faulted(tmp_path)).read_text()
    tree = _timeline(page)
    faults = {g.get("data-step"): g for g in tree.iter(f"{SVG}g") if g.get("class") == "fault"}
    assert list(faults) == ["down server", "restart server"]  # the step not reached has no moment to mark
    lanes = [g for g in tree.iter(f"{SVG}g") if "lane" in g.get("class", "").split()]
    last = max(float(t.get("y", 0)) for t in lanes[-1].iter(f"{SVG}text"))
    first = min(float(t.get("y", 0)) for t in lanes[0].iter(f"{SVG}text"))
    xs = []
    for name, g in faults.items():
        (marker,) = [ln for ln in g.iter(f"{SVG}line") if ln.get("class") == "marker"]
        assert marker.get("stroke-dasharray") and marker.get("stroke") == "#d32f2f"
        assert float(marker.get("y1", 0)) < first and float(marker.get("y2", 0)) > last  # across every lane
        xs.append(float(marker.get("x1", 0)))
        assert "".join(g.find(f"{SVG}text").itertext()) == name  # type: ignore[union-attr]
    assert xs == pytest.approx([LEFT + t / 1.2 * AXIS for t in (0.5, 0.52)], abs=0.1)  # the lab's clock's axis
    title = "".join(faults["restart server"].find(f"{SVG}title").itertext())  # type: ignore[union-attr]
    assert title == "restart server: fired at 0.520s (scenarios/f.yaml:19:5); server 143 (SIGTERM)"
    labels = [float(g.find(f"{SVG}text").get("y", 0)) for g in faults.values()]  # type: ignore[union-attr]
    assert labels[0] != labels[1]  # 20 ms apart: the second label stacked under the first, not over it


def test_the_faults_table_says_when_each_step_fired_or_that_it_did_not(tmp_path: Path) -> None:
    page = write_html(_faulted(tmp_path)).read_text()
    assert page.index("<h2>Timeline</h2>") < page.index("<h2>Faults</h2>") < page.index("<h2>Expectations</h2>")
    table = page[page.index('<table id="faults">'):]
    table = table[:table.index("</table>") + 8]
    rows = {tr.get("data-step"): (tr.get("class"), ["".join(td.itertext()) for td in tr])
            for tr in ET.fromstring(table).iter("tr") if tr.get("data-step")}
    assert rows == {
        "down server": ("fault fired", ["down server", "0.500s", "", "scenarios/f.yaml:18:16"]),
        "restart server": ("fault fired",
                           ["restart server", "0.520s", "server 143 (SIGTERM)", "scenarios/f.yaml:19:5"]),
        "up server": ("fault not-fired", ["up server", "not reached (the run ended first)", "", HOSTILE]),
    }
    assert "1 of 3 not reached: the run ended before it." in page
    assert page.count("<script") == 1  # the hostile `where` is text


def test_no_timeline_no_faults(tmp_path: Path) -> None:
    page = write_html(_fake_run(tmp_path)).read_text()
    assert "<h2>Faults</h2>" not in page and 'class="fault' not in page and "Dashed red lines" not in page
