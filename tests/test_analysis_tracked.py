"""analysis.tracked: the numbers asv tracks for a run, and their history over builds (and its figure)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from restartbench import read_run
from restartbench.analysis import analyze, plots, tracked
from analysis_fixtures import clean_run

DATA = Path(__file__).parent / "data" / "unit" / "runs" / "1.35.0-router-segv"


def test_a_clean_run_tracks_zeros_and_its_summary_numbers(tmp_path):
    done = analyze(clean_run(tmp_path))
    values = tracked.of(done)
    assert set(values) == set(tracked.TRACKED)
    o = done.summary()["overall"]
    assert values["lingering_max"] == 0 and values["gate_failed_checks"] == 0 and values["failing_findings"] == 0
    assert values["unrecovered_share"] == 0 and values["recovery_p95_s"] == o["recovery_p95_s"]
    assert values["crashed_restarts"] == 0


def test_a_unit_run_with_a_router_crash_tracks_the_crash_and_the_failed_check(tmp_path):
    shutil.copytree(DATA, tmp_path / "bad")
    values = tracked.of(analyze(read_run(tmp_path / "bad")))
    assert values["crashed_restarts"] > 0 and values["gate_failed_checks"] >= 1 and values["failing_findings"] >= 1


def test_history_keeps_the_builds_order_and_draws_a_panel_per_value(tmp_path):
    a, b = analyze(clean_run(tmp_path, "a")), analyze(clean_run(tmp_path, "b"))
    df = tracked.history([("unit 1.35.0", a), ("unit 1.34.0", b), ("unit 1.35.0", b)])
    assert list(df.columns) == tracked.HISTORY_COLUMNS and len(df) == 3 * len(tracked.TRACKED)
    assert list(dict.fromkeys(df["label"])) == ["unit 1.35.0", "unit 1.34.0"]
    fig = plots.history(df)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == len(tracked.TRACKED) and visible[0].get_title() == "timeout rate in restart windows"
    assert [t.get_text() for t in visible[-1].get_xticklabels()] == ["unit 1.35.0", "unit 1.34.0"]
    empty = plots.history(pd.DataFrame(columns=tracked.HISTORY_COLUMNS))
    assert "no runs" in [t.get_text() for t in empty.axes[0].texts]
