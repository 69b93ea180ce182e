"""analysis.compare: grouping repeated runs, bootstrap CIs, emulated labelling, CSV and rich output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from restartbench.analysis import compare_table, write_csv, write_summary
from restartbench.analysis.compare import bootstrap_ci, render
from analysis_fixtures import Tree, requests_frame, restarts_frame, write_run
from restartbench.results import write_json

TIMES = [10.0, 15.0, 20.0]
NATIVE = {"kind": "unit", "name": "1.34.0", "version": "1.34.0", "arch": "x86_64", "emulated": False}
EMULATED = {"kind": "unit", "name": "1.34.0-arm", "version": "1.34.0", "arch": "aarch64",
            "runner": ["qemu-aarch64-static"], "emulated": True}


def run_with(root, run_id, target, timeout_until=10.0, n_linger=0):
    req = requests_frame(timeouts=[(10.0, timeout_until)])
    tree = Tree(TIMES, n_app=max(n_linger, 1), lingering_generations={0} if n_linger else set())
    return write_run(root, run_id, requests=req, restarts=restarts_frame(TIMES),
                     processes=tree.frame(), target=target)


@pytest.fixture
def runs(tmp_path):
    # native: window timeout rates 1/1500*{15, 30, 45} = 1%, 2%, 3%
    native = [run_with(tmp_path, f"n{i}", NATIVE, 10.0 + 0.15 * (i + 1)) for i in range(3)]
    emulated = [run_with(tmp_path, "e0", EMULATED, 10.0, n_linger=2)]
    return native + emulated


def test_repeated_runs_are_one_row(runs):
    df = compare_table(runs)
    assert len(df) == 2
    native = df[~df["emulated"]].iloc[0]
    assert native["runs"] == 3 and native["incomplete"] == 0
    assert native["window_timeout_rate"] == pytest.approx(0.02)
    assert native["window_timeout_rate_lo"] <= 0.02 <= native["window_timeout_rate_hi"]
    assert 0.01 <= native["window_timeout_rate_lo"] and native["window_timeout_rate_hi"] <= 0.03
    assert native["lingering_max"] == 0 and native["lingering_max_lo"] == 0
    assert native["label"] == "unit@1.34.0 x86_64"
    assert native["note"] == ""


def test_emulated_runs_are_labelled_and_noted(runs):
    df = compare_table(runs)
    emu = df[df["emulated"]].iloc[0]
    assert emu["label"] == "unit@1.34.0-arm aarch64 (emulated)"
    assert "not comparable with native" in emu["note"] and "recovery p95" in emu["note"]
    assert emu["runs"] == 1 and np.isnan(emu["rps_lo"])          # one run: no CI
    assert emu["lingering_max"] == 2
    assert any(n.startswith("†") for n in df.attrs["notes"])
    console = Console(record=True, width=250)
    console.print(render(df))
    text = console.export_text()
    assert "(emulated)" in text and "†" in text and "not comparable" in text


def test_bootstrap_is_deterministic_and_sane():
    values = np.array([1.0, 2.0, 3.0, 4.0])
    assert bootstrap_ci(values) == bootstrap_ci(values)
    mean, lo, hi = bootstrap_ci(values)
    assert mean == 2.5 and 1.0 <= lo < 2.5 < hi <= 4.0
    assert bootstrap_ci(np.array([5.0, 5.0, 5.0])) == (5.0, 5.0, 5.0)
    mean, lo, hi = bootstrap_ci(np.array([7.0, np.nan]))
    assert mean == 7.0 and np.isnan(lo) and np.isnan(hi)
    assert all(np.isnan(bootstrap_ci(np.array([]))))


def test_csv_round_trip(runs, tmp_path):
    df = compare_table(runs)
    path = write_csv(df, tmp_path / "compare.csv")
    back = pd.read_csv(path)
    assert list(back.columns) == list(df.columns)
    assert back["runs"].tolist() == df["runs"].tolist()


def test_stale_cached_summary_is_recomputed(runs):
    path = write_summary(runs[0])
    write_json(path, {"summary_format": 0, "overall": {"rps": -1}})
    df = compare_table(runs[:1])
    assert df["rps"].iloc[0] > 0


def test_interrupted_runs_are_counted(tmp_path):
    done = run_with(tmp_path, "a", NATIVE)
    cut = write_run(tmp_path, "b", status="interrupted", requests=None, restarts=None,
                    processes=None, target=NATIVE)
    df = compare_table([done, cut])
    assert df["runs"].iloc[0] == 2 and df["incomplete"].iloc[0] == 1
    assert df["rps"].iloc[0] == pytest.approx(compare_table([done])["rps"].iloc[0])
