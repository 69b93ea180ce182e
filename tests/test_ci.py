"""The pull-request workflow (ci/github-workflow.yml) and its script (ci/restartbench-ci.sh), run here on a
checkout of FreeUnit's history: what a Unit or FreeUnit repository gets when it copies them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "ci" / "restartbench-ci.sh"
BUNDLE = REPO.parent / "shared" / "unit" / "src" / "freeunit.bundle"


def test_the_workflow_runs_the_script_with_the_pull_requests_commits():
    flow = yaml.safe_load((REPO / "ci" / "github-workflow.yml").read_text())
    steps = flow["jobs"]["restartbench"]["steps"]
    gate = next(s for s in steps if "restartbench-ci.sh" in str(s.get("run", "")))
    assert gate["env"]["HEAD"] == "${{ github.event.pull_request.head.sha }}"
    assert gate["env"]["BASE"] == "${{ github.event.pull_request.base.sha }}" and gate["env"]["SOURCE"] == "."
    assert any(s.get("with", {}).get("fetch-depth") == 0 for s in steps)
    uploaded = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert "restartbench-out/junit.xml" in uploaded["with"]["path"] and "report.html" in uploaded["with"]["path"]


def test_the_script_refuses_bad_input_in_one_line(tmp_path):
    env = {**os.environ, "RESTARTBENCH": str(REPO), "SOURCE": str(tmp_path), "HEAD": "master", "BASE": "abc1234",
           "OUT": str(tmp_path / "out")}
    out = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "must be commit SHAs, got 'master'" in out.stderr


@pytest.mark.unit
@pytest.mark.slow                     # builds two revisions: minutes on a cold cache
@pytest.mark.timeout(3600)
def test_the_workflow_script_on_freeunit_master_and_its_parent(tmp_path):
    from markdown_it import MarkdownIt
    import junitparser

    if not BUNDLE.is_file():
        pytest.skip(f"no FreeUnit history at {BUNDLE}")
    checkout = tmp_path / "freeunit"
    subprocess.run(["git", "clone", "-q", str(BUNDLE), str(checkout)], check=True, timeout=300)
    rev = lambda r: subprocess.run(["git", "-C", str(checkout), "rev-parse", r], capture_output=True,  # noqa: E731
                                   text=True, check=True).stdout.strip()
    summary = tmp_path / "step-summary.md"
    env = {**os.environ, "RESTARTBENCH": str(REPO), "SOURCE": str(checkout), "HEAD": rev("HEAD"),
           "BASE": rev("HEAD^"), "FLAVOR": "freeunit", "OUT": str(tmp_path / "out"), "RUNS": "2",
           "GITHUB_STEP_SUMMARY": str(summary)}
    out = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=3500)
    assert out.returncode in (0, 1), out.stdout[-3000:] + out.stderr[-3000:]
    o = tmp_path / "out"
    xml = junitparser.JUnitXml.fromfile(str(o / "junit.xml"))
    suites = [s.name for s in xml]
    assert {"head-1", "head-2"} <= set(suites)
    assert (out.returncode == 1) == (xml.failures > 0)
    html = MarkdownIt("commonmark").enable("table").render((o / "summary.md").read_text())
    assert "<table>" in html and summary.read_text() == (o / "summary.md").read_text() + "\n"
    report = (o / "report.html").read_text()
    assert report.index("Verdict") < report.index("Comparison")
