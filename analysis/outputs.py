"""The gate's verdict for CI systems: JUnit XML (what CI servers read: a testsuite per run, a testcase per
check, a failure carrying the reason and the finding) and a Markdown summary (GitHub's job summary)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from restartbench.metadata import SummaryInfo

from .gate import GateResult, verdict_line


def junit_xml(result: GateResult, summaries: dict[str, dict[str, Any]] | None = None) -> str:
    """``result`` as JUnit XML: ``<testsuites>`` of one ``<testsuite>`` per run (named by its run id, with
    the build and scenario as properties), one ``<testcase>`` per check (``classname`` restartbench.<run>):
    ``<failure>`` when the check fails the question asked (message: the value, the limit, the reason;
    text: the findings), ``<skipped>`` when it was not judged or not asked."""
    summaries = summaries or {}
    root = ET.Element("testsuites", name="restartbench gate")
    scopes = list(dict.fromkeys(r.scope for r in result.rows))
    total = failures = skipped = 0
    for scope in scopes:
        rows = [r for r in result.rows if r.scope == scope]
        suite = ET.SubElement(root, "testsuite", name=scope)
        if scope in summaries:
            info = SummaryInfo.of(summaries[scope])
            props = ET.SubElement(suite, "properties")
            for name, value in (("build", f"{info.target.label} {info.target.version}"), ("arch", info.target.arch),
                                ("emulated", str(info.target.emulated).lower()), ("scenario", info.scenario)):
                ET.SubElement(props, "property", name=name, value=value)
        n_fail = n_skip = 0
        for r in rows:
            case = ET.SubElement(suite, "testcase", classname=f"restartbench.{scope}", name=r.check, time="0")
            outcome = result.outcome(r)
            if outcome == "fail":
                n_fail += 1
                found = ", ".join(r.findings)
                failure = ET.SubElement(case, "failure", type="gate", message=(
                    f"{r.check}: {r.value} (limit {r.limit})" + (f": {r.note.lstrip('; ')}" if r.note else "")))
                failure.text = (f"finding: {found}\n" if found else "") + (result.explained(r) or "")
            elif r.verdict == "skip" or outcome in ("not asked", "allowed", "emulation effect"):
                n_skip += 1
                ET.SubElement(case, "skipped", message=(r.note if r.verdict == "skip" else outcome) or "not judged")
        suite.set("tests", str(len(rows)))
        suite.set("failures", str(n_fail))
        suite.set("errors", "0")
        suite.set("skipped", str(n_skip))
        suite.set("time", "0")
        total, failures, skipped = total + len(rows), failures + n_fail, skipped + n_skip
    root.set("tests", str(total))
    root.set("failures", str(failures))
    root.set("errors", "0")
    root.set("skipped", str(skipped))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(result: GateResult, summaries: dict[str, dict[str, Any]] | None = None) -> str:
    """``result`` as Markdown: the verdict line, a table of runs (verdict, build, scenario, failed checks),
    a table of the failing checks with their reasons and findings, and the findings with their rates."""
    summaries = summaries or {}
    failing = result.failures()
    scopes = list(dict.fromkeys(r.scope for r in result.rows))
    lines = [f"## restartbench gate: {'PASS' if result.passed else 'FAIL'}", "", verdict_line(result), "",
             "| verdict | run | build | scenario | failed checks |", "|---|---|---|---|---|"]
    for scope in scopes:
        mine = [r.check for r in failing if r.scope == scope]
        info = SummaryInfo.of(summaries[scope]) if scope in summaries else None
        build = f"{info.target.label} {info.target.version} {info.target.arch}" if info else ""
        lines.append(f"| {'❌ FAIL' if mine else '✅ PASS'} | {_cell(scope)} | {_cell(build)} | "
                     f"{_cell(info.scenario if info else '')} | {_cell(', '.join(mine) or 'none')} |")
    if failing:
        lines += ["", "| check | run | value | limit | why | finding |", "|---|---|---|---|---|---|"]
        lines += [f"| {_cell(r.check)} | {_cell(r.scope)} | {_cell(r.value)} | {_cell(r.limit)} | "
                  f"{_cell(r.note.lstrip('; '))} | {_cell(', '.join(r.findings))} |" for r in failing]
    found = [(scope, f) for scope, fs in result.findings.items() for f in fs]
    if found:
        lines += ["", "| finding | run | kind | seen at | fails |", "|---|---|---|---|---|"]
        lines += [f"| {_cell(f.id)} | {_cell(scope)} | {f.kind} | {f.k}/{f.n} "
                  f"{'restarts' if f.per == 'restart' else 'runs'} | {_cell(', '.join(f.failing) or '—')} |"
                  for scope, f in found]
    return "\n".join(lines) + "\n"
