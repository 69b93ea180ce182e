"""The gate's CI outputs (analysis/outputs.py): JUnit XML read as CI servers read it, Markdown rendered."""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import junitparser
import pytest
from markdown_it import MarkdownIt

from restartbench import cli
from restartbench.analysis import evaluate
from restartbench.analysis.outputs import junit_xml, markdown
from restartbench.results import read_run
from analysis_fixtures import clean_run

FAILING = Path(__file__).parent / "data" / "unit" / "runs" / "1.35.0-router-segv"


@pytest.fixture
def runs(tmp_path):
    failing = tmp_path / "failing"
    shutil.copytree(FAILING, failing)
    return read_run(failing), clean_run(tmp_path, "clean")


def test_junit_parses_as_junit_with_a_suite_per_run_and_a_case_per_check(runs, tmp_path):
    result = evaluate(list(runs))
    path = tmp_path / "gate.xml"
    path.write_text(junit_xml(result))
    xml = junitparser.JUnitXml.fromfile(str(path))
    suites = {s.name: s for s in xml}
    failing, clean = runs[0].run_id, runs[1].run_id
    assert set(suites) == {failing, clean}
    assert suites[clean].failures == 0 and suites[failing].failures == 1
    cases = {c.name: c for c in suites[failing]}
    assert set(cases) == {r.check for r in result.rows if r.scope == failing}
    bad = cases["crashes while serving"]
    assert not bad.is_passed and isinstance(bad.result[0], junitparser.Failure)
    assert "router SIGSEGV" in bad.result[0].message and "unit-router-crash-on-reconfigure" in bad.result[0].text
    assert cases["run completed"].is_passed
    assert xml.tests == sum(s.tests for s in xml) == len(result.rows)


def test_junit_has_the_shape_of_pytests_own(tmp_path):
    """The same elements and attributes pytest's --junitxml writes for a passing, a failing, a skipped test."""
    (tmp_path / "test_x.py").write_text("import pytest\ndef test_ok(): pass\ndef test_bad(): assert 0\n"
                                        "def test_skip(): pytest.skip('no')\n")
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_x.py"),
                    f"--junitxml={tmp_path / 'pytest.xml'}"], capture_output=True, timeout=120)
    theirs = ET.parse(tmp_path / "pytest.xml").getroot()
    ours = ET.fromstring(junit_xml(evaluate([clean_run(tmp_path, "c")])).encode())

    def shape(root) -> set[tuple[str, str]]:
        return {(el.tag, a) for el in root.iter() if el.tag in ("testsuites", "testsuite", "testcase", "failure",
                                                                "skipped") for a in el.attrib}
    need = {(t, a) for t, a in shape(theirs) if a in ("name", "tests", "failures", "errors", "skipped",
                                                       "classname", "time", "message")}
    assert {t for t, _ in need if t in ("testsuite", "testcase")} == {"testsuite", "testcase"}
    missing = {(t, a) for t, a in need if t in ("testsuite", "testcase") and (t, a) not in shape(ours)}
    assert not missing, missing


def test_markdown_renders_as_tables(runs):
    text = markdown(evaluate(list(runs)))
    html = MarkdownIt("commonmark").enable("table").render(text)
    assert html.count("<table>") == 3                      # runs, failing checks, findings
    assert "<td>❌ FAIL</td>" in html and "<td>✅ PASS</td>" in html
    assert "crashes while serving" in html and "unit-router-crash-on-reconfigure" in html


def test_cli_gate_writes_junit_markdown_and_the_job_summary(runs, tmp_path, monkeypatch, capsys):
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code = cli.main(["gate", str(runs[0].path), str(runs[1].path), "--junit", str(tmp_path / "out" / "j.xml"),
                     "--markdown", str(tmp_path / "out" / "m.md")])
    out = capsys.readouterr().out
    assert code == 1
    assert f"junit: {tmp_path / 'out' / 'j.xml'}" in out and f"markdown: {tmp_path / 'out' / 'm.md'}" in out
    assert junitparser.JUnitXml.fromfile(str(tmp_path / "out" / "j.xml")).failures == 1
    text = summary.read_text()
    assert text.startswith("earlier step\n") and "## restartbench gate: FAIL" in text
