"""The health of every release (restartbench/health.py): which releases, and the page."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from restartbench import health
from analysis_fixtures import clean_run

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "unit" / "src"


@pytest.mark.skipif(not (SHARED / "freeunit.bundle").is_file(), reason="no Unit history in ../shared/unit/src")
def test_releases_of_both_flavors_from_a_version_on():
    unit = health.releases("unit", str(SHARED / "nginx-unit.bundle"), since="1.32.0")
    assert unit[0] == "1.32.0" and "1.32.1" in unit and unit[-1] == "1.35.0" and "1.31.0" not in unit
    free = health.releases("freeunit", str(SHARED / "freeunit.bundle"), since="1.32.0")
    assert "1.36.0" in free and "1.35.0" not in free          # NGINX's tags in its history are not FreeUnit's
    assert health.releases("unit", str(SHARED / "nginx-unit.bundle"), since="1.33.0", until="1.34.0") == \
        ["1.33.0", "1.34.0"]


def test_the_page_is_a_release_by_finding_table_with_verdicts(tmp_path):
    failing = tmp_path / "runs" / "bad"
    shutil.copytree(Path(__file__).parent / "data" / "unit" / "runs" / "1.35.0-router-segv", failing)
    good = clean_run(tmp_path / "runs", "good")
    rels = [health.Release("unit", "1.35.0", commit="abc", runs=[str(failing)], verdict="FAIL",
                           failed_checks=["crashes while serving"]),
            health.Release("unit", "1.34.0", runs=[str(good.path)], verdict="PASS"),
            health.Release("freeunit", "1.35.2", error="not built: rustc too new")]
    done = health.Health(rels, tmp_path / "health", wall_s=120)
    done.path.mkdir()
    health.write(done)
    html = (done.path / "health.html").read_text()
    assert html.count("<tr>") == 1 + 3 and "unit-router-crash-on-reconfigure" in html     # header + releases
    assert "33% <span" in html and "1/3" in html                 # the router crash: 1 of 3 restarts
    assert 'class="FAIL">FAIL' in html and 'class="PASS">PASS' in html and "not built: rustc too new" in html
    doc = json.loads((done.path / "health.json").read_text())
    assert [r["tag"] for r in doc["releases"]] == ["1.35.0", "1.34.0", "1.35.2"] and doc["findings"]


def _two_releases(root: Path) -> health.Health:
    """A health directory as `health` leaves it: a 1.35.0 run with a router crash, a clean one, a row
    that did not build; the runs under its runs/."""
    failing = root / "runs" / "bad"
    shutil.copytree(Path(__file__).parent / "data" / "unit" / "runs" / "1.35.0-router-segv", failing)
    good = clean_run(root / "runs", "good")
    rels = [health.Release("unit", "1.35.0", commit="abc", runs=[str(failing)]),
            health.Release("unit", "1.34.0", runs=[str(good.path)]),
            health.Release("freeunit", "1.35.2", error="not built: rustc too new")]
    for rel in rels:
        health.judge(rel)
    return health.Health(rels, root, wall_s=120, plan="periodic-restart (restart every 4 s)")


def test_releases_are_judged_by_the_gate_over_their_runs(tmp_path):
    done = _two_releases(tmp_path / "health")
    bad, good, unbuilt = done.releases
    assert bad.verdict == "FAIL" and "crashes while serving" in bad.failed_checks and bad.votes == ["fail"]
    assert good.verdict == "PASS" and good.failed_checks == [] and good.verdict_text == "PASS"
    assert unbuilt.verdict == "" and unbuilt.runs == [] and unbuilt.verdict_text == "not run"


def test_the_majority_of_a_releases_runs_decides_and_the_minority_is_shown(tmp_path):
    """One unlucky run of a rare race does not flip a release (FreeUnit 1.35.2 here: 1 of 3 runs failed,
    5 more passed); what that run failed stays on the row."""
    bad, good = _two_releases(tmp_path / "h").releases[:2]
    for runs, verdict, text in (([bad, good, good], "PASS", "PASS (2/3 runs passed)"),
                                ([bad, bad, good], "FAIL", "FAIL (1/3 runs passed)"),
                                ([bad, good], "SPLIT", "SPLIT (1/2 runs passed)")):
        rel = health.Release("unit", "x", runs=[r.runs[0] for r in runs])
        health.judge(rel)
        assert (rel.verdict, rel.verdict_text) == (verdict, text)
        fails = runs.count(bad)
        assert rel.failing_runs["crashes while serving"] == fails
        assert f"crashes while serving ({fails}/{len(runs)} runs)" in rel.why


def test_the_table_in_markdown_renders_as_a_table_with_a_row_per_release(tmp_path):
    from markdown_it import MarkdownIt

    done = _two_releases(tmp_path / "health")
    health.write(done)
    text = (done.path / "health.md").read_text()
    assert text.startswith("3 release(s), 2 run(s), 2 min wall time; plan: periodic-restart")
    html = MarkdownIt("commonmark").enable("table").render(text)
    assert html.count("<table>") == 1 and html.count("<tr>") == 1 + 3
    assert "<strong>FAIL</strong>" in html and "<td>PASS</td>" in html and "not built: rustc too new" in html
    assert "unit-router-crash-on-reconfigure" in html and "<strong>33% [6%, 79%] 1/3</strong>" in html


def test_the_page_draws_the_tracked_values_release_after_release(tmp_path):
    done = _two_releases(tmp_path / "health")
    health.write(done)
    html = (done.path / "health.html").read_text()
    assert 'alt="tracked values by release" src="data:image/png;base64,' in html
    assert '<td class="fail">33% <span' in html          # the router crash failed a check in the 1.35.0 run
    assert done.releases[0].failing_findings == {"unit-router-crash-on-reconfigure": 1}
    tracked = json.loads((done.path / "health.json").read_text())["tracked"]
    by = {(r["label"], r["metric"]): r["value"] for r in tracked}
    assert by[("unit 1.35.0", "gate_failed_checks")] >= 1 and by[("unit 1.34.0", "gate_failed_checks")] == 0
    assert by[("unit 1.34.0", "lingering_max")] == 0
    assert {label for label, _ in by} == {"unit 1.35.0", "unit 1.34.0"}       # the unbuilt one has no runs


def test_page_judges_a_moved_health_directory_again(tmp_path, capsys, monkeypatch):
    from restartbench import cli

    done = _two_releases(tmp_path / "health")
    health.write(done)
    moved = tmp_path / "elsewhere"
    shutil.move(done.path, moved)
    for rel in json.loads((moved / "health.json").read_text())["releases"]:
        assert all(not Path(p).exists() for p in rel["runs"])
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    (moved / "health.md").unlink()
    assert cli.main(["health", "--page", str(moved)]) == 1          # a release fails: exit 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "PASS" in out and str(moved / "health.html") in out
    assert (moved / "health.md").exists() and summary.read_text().startswith("## Release health")
    limits = tmp_path / "lenient.toml"
    limits.write_text("[limits]\ncrashes_max = 100\ncrashed_restarts_rate_max = 1.0\n")
    assert cli.main(["health", "--page", str(moved), "--gate", str(limits)]) == 0     # judged again: passes
    assert [r["verdict"] for r in json.loads((moved / "health.json").read_text())["releases"]] == \
        ["PASS", "PASS", ""]
    assert cli.main(["health", "--page", str(tmp_path / "nothing")]) == 2
    assert "no readable health.json" in capsys.readouterr().err
