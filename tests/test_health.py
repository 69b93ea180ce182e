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
