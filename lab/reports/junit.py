"""junit.xml: a testcase per expectation per node, for CI systems that show test results."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from lab.outcome import RunResult


def junit(result: RunResult) -> ET.Element:
    """One suite; a failing check is a failure, a run that errored or was interrupted one error more."""
    suites = ET.Element("testsuites")
    failures = sum(not e.result.passed for e in result.results)
    errors = 1 if result.error or result.interrupted else 0
    suite = ET.SubElement(suites, "testsuite", name=f"lab.{result.plan.name}",
                          tests=str(len(result.results) + errors),
                          failures=str(failures), errors=str(errors), time=f"{result.duration:.3f}")
    props = ET.SubElement(suite, "properties")
    for key, value in (("backend", result.backend), ("lab_id", result.lab_id)):
        ET.SubElement(props, "property", name=key, value=value)
    for e in result.results:
        r = e.result
        case = ET.SubElement(suite, "testcase", classname=f"{result.plan.name}.{e.expectation}",
                             name=f"{r.check}[{r.node}]", time="0")
        if not r.passed:
            failure = ET.SubElement(case, "failure", message=r.detail, type=r.check)
            failure.text = f"{r.node}: {r.detail} (see nodes/{r.node}.log)"
    if errors:
        case = ET.SubElement(suite, "testcase", classname=f"{result.plan.name}.run", name="run")
        ET.SubElement(case, "error", message=result.error or f"interrupted by signal {result.interrupted}")
    ET.indent(suites)
    return suites


def write_junit(result: RunResult) -> Path:
    path = result.rundir.file("junit.xml")
    ET.ElementTree(junit(result)).write(path, encoding="unicode", xml_declaration=True)
    return path
