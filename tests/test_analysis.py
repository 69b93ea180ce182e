"""analysis: windows, per-restart and run-level metrics, summary.json — on runs built to known answers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from restartbench.analysis import summarize, write_summary
from restartbench.analysis.metrics import configured_counts, slope
from restartbench.analysis.windows import AFTER, BEFORE, BETWEEN, WARMUP, WINDOW, assign, restart_windows
from analysis_fixtures import (MiB, Tree, clean_run, requests_frame, restarts_frame,
                               write_run)
from restartbench.results import FormatError, read_run
from helpers import load_benchmark


def strict_json(summary: dict) -> dict:
    """The summary survives strict JSON (no NaN) unchanged."""
    return json.loads(json.dumps(summary, allow_nan=False))


# -- windows ----------------------------------------------------------------------------------

def test_windows_are_cut_at_the_next_restart():
    w = restart_windows(restarts_frame([20.0, 10.0, 11.0]), window_s=5.0)
    assert w.starts.tolist() == [10.0, 11.0, 20.0]
    assert w.ends.tolist() == [11.0, 16.0, 25.0]
    assert w.order.tolist() == [1, 2, 0]


def test_phase_of_each_start_time():
    w = restart_windows(restarts_frame([10.0, 20.0]), window_s=5.0)
    t = np.array([0.5, 3.0, 9.99, 10.0, 14.99, 15.0, 19.99, 20.0, 25.0, 99.0, np.nan])
    phase, pos = assign(t, w, warmup_s=1.0)
    assert phase.tolist() == [WARMUP, BEFORE, BEFORE, WINDOW, WINDOW, BETWEEN, BETWEEN, WINDOW,
                              AFTER, AFTER, -1]
    assert pos.tolist() == [-1, -1, -1, 0, 0, 0, 0, 1, 1, 1, -1]


def test_restarts_without_t_sent_are_left_out():
    frame = restarts_frame([10.0, 20.0])
    frame.loc[1, "t_sent"] = np.nan
    assert restart_windows(frame).starts.tolist() == [10.0]


# -- per restart ------------------------------------------------------------------------------

def test_stall_of_1_2_s_recovers_in_1_2_s(tmp_path):
    run = write_run(tmp_path, requests=requests_frame(stalls=[(10.0, 11.2)]),
                    restarts=restarts_frame([10.0]), processes=Tree([10.0]).frame())
    (r,) = summarize(run)["restarts"]
    assert r["recovered"] is True
    assert r["recovery_s"] == pytest.approx(1.2, abs=1e-9)


def test_recovery_counts_from_first_ok_start_not_first_end(tmp_path):
    # requests fail instantly until 11.19; the one started at 11.19 is ok and ends at 11.2
    run = write_run(tmp_path, requests=requests_frame(errors=[(10.0, 11.19)], latency_s=0.01),
                    restarts=restarts_frame([10.0]), processes=Tree([10.0]).frame())
    (r,) = summarize(run)["restarts"]
    assert r["recovery_s"] == pytest.approx(1.2, abs=1e-9)
    assert r["errors"] == 119


def test_a_held_request_started_first_does_not_stretch_recovery(tmp_path):
    # a /sleep request starts right after the restart and is answered ok 500 ms later; the plain
    # requests fail until 10.2, then the app answers again at 10.205: that is the recovery
    req = requests_frame(errors=[(10.0, 10.2)])
    held = req.iloc[[0]].assign(t_start=10.0001, t_end=10.5001, latency_ms=500.0, name="/sleep")
    run = write_run(tmp_path, requests=pd.concat([req, held], ignore_index=True),
                    restarts=restarts_frame([10.0]), processes=Tree([10.0]).frame())
    (r,) = summarize(run)["restarts"]
    assert r["recovery_s"] == pytest.approx(0.205, abs=1e-6)


def test_timeout_rate_exactly_as_constructed(tmp_path):
    # window [10, 15): 500 requests, the 50 started in [10, 10.5) time out; steady state clean
    run = write_run(tmp_path, requests=requests_frame(timeouts=[(10.0, 10.5)]),
                    restarts=restarts_frame([10.0]), processes=Tree([10.0]).frame())
    s = summarize(run)
    (r,) = s["restarts"]
    assert (r["n_requests"], r["timeouts"], r["errors"]) == (500, 50, 50)
    assert r["timeout_rate"] == 0.1 and r["error_rate"] == 0.1
    assert r["recovery_s"] == pytest.approx(0.505)
    assert s["phases"]["windows"]["timeout_rate"] == 0.1
    assert s["phases"]["before"]["timeout_rate"] == 0.0
    assert s["phases"]["before"]["requests"] == 1000
    assert s["phases"]["after"]["requests"] == 1500
    assert s["overall"]["timeout_rate"] == pytest.approx(50 / 3000)
    assert s["overall"]["availability"] == pytest.approx(2950 / 3000)


def test_restart_that_never_recovers_is_censored(tmp_path):
    run = write_run(tmp_path, requests=requests_frame(errors=[(10.0, 30.0)]),
                    restarts=restarts_frame([10.0, 20.0]), processes=Tree([10.0, 20.0]).frame())
    s = strict_json(summarize(run))
    for r in s["restarts"]:
        assert r["recovered"] is False and r["recovery_s"] is None
        assert r["error_rate"] == 1.0
    assert s["overall"]["unrecovered"] == 2
    assert s["overall"]["recovery_p95_s"] is None


def test_window_cut_by_the_end_of_the_load_is_marked(tmp_path):
    run = write_run(tmp_path, requests=requests_frame(duration=12.0, errors=[(10.0, 12.0)]),
                    restarts=restarts_frame([10.0]), processes=Tree([10.0], duration=12.0).frame())
    (r,) = summarize(run)["restarts"]
    assert r["recovered"] is False and r["window_truncated"] is True
    assert summarize(run)["overall"]["unrecovered_truncated"] == 1


def test_overlapping_windows_restarts_1_s_apart(tmp_path):
    times = [10.0, 11.0, 12.0]
    run = write_run(tmp_path, requests=requests_frame(timeouts=[(11.0, 11.5)]),
                    restarts=restarts_frame(times), processes=Tree(times).frame())
    s = summarize(run, window_s=5.0)
    rs = s["restarts"]
    assert [(r["window_start"], r["window_end"]) for r in rs] == [(10, 11), (11, 12), (12, 17)]
    assert [r["n_requests"] for r in rs] == [100, 100, 500]   # each request in one window only
    assert [r["timeout_rate"] for r in rs] == [0.0, 0.5, 0.0]
    assert rs[1]["recovery_s"] == pytest.approx(0.505)
    assert s["phases"]["windows"]["requests"] == 700
    assert s["phases"]["between"]["requests"] == 0


def test_empty_windows(tmp_path):
    # load stops at 12 s; the restart at 20 s has no request in its window
    run = write_run(tmp_path, requests=requests_frame(duration=12.0),
                    restarts=restarts_frame([10.0, 20.0]), processes=Tree([10.0, 20.0]).frame())
    s = strict_json(summarize(run))
    empty = s["restarts"][1]
    assert empty["n_requests"] == 0
    assert empty["timeout_rate"] is None and empty["error_rate"] is None
    assert empty["recovered"] is False and empty["window_truncated"] is True
    assert s["restarts"][0]["recovered"] is True


def test_no_restarts(tmp_path):
    run = write_run(tmp_path, requests=requests_frame(), restarts=restarts_frame([]),
                    processes=Tree([]).frame())
    s = strict_json(summarize(run))
    assert s["restarts"] == []
    assert s["phases"]["before"]["requests"] == 3000
    assert s["phases"]["windows"]["requests"] == 0
    assert s["phases"]["windows"]["timeout_rate"] is None
    assert s["overall"]["restarts"] == 0 and s["overall"]["lingering_max"] is None
    assert s["retention"]["slope_per_restart"]["rss"] is None
    assert s["retention"]["idle"]["rss"] == s["retention"]["end"]["rss"]


def test_zero_requests(tmp_path):
    run = write_run(tmp_path, requests=requests_frame(duration=0.0), restarts=restarts_frame([10.0]),
                    processes=Tree([10.0], lingering_generations={0}).frame())
    s = strict_json(summarize(run))
    assert s["overall"]["requests"] == 0 and s["overall"]["rps"] is None
    assert s["overall"]["latency_p95_ms"] is None
    assert s["restarts"][0]["recovered"] is False
    assert s["restarts"][0]["lingering"] == 2          # the census still judges the restart


def test_three_old_processes_alive_past_grace_linger(tmp_path):
    times = [10.0, 15.0, 20.0]
    run = write_run(tmp_path, requests=requests_frame(), restarts=restarts_frame(times),
                    processes=Tree(times, n_app=3, lingering_generations={0}).frame())
    s = summarize(run, grace_s=5.0)
    assert [r["lingering"] for r in s["restarts"]] == [3, 3, 3]
    assert [r["lingering_prototype"] for r in s["restarts"]] == [1, 1, 1]
    assert s["overall"]["lingering_max"] == 3
    assert all(r["settle_s"] is None for r in s["restarts"])     # gen 0 never leaves
    assert s["params"]["configured_processes"] == 3
    assert s["params"]["configured_processes_source"] == "idle"


def test_lingering_grows_by_n_per_restart(tmp_path):
    times = [10.0, 15.0, 20.0]
    run = write_run(tmp_path, requests=requests_frame(), restarts=restarts_frame(times),
                    processes=Tree(times, n_app=2, lingering_generations={0, 1, 2}).frame())
    assert [r["lingering"] for r in summarize(run)["restarts"]] == [2, 4, 6]


def test_lingering_unknown_when_the_census_ends_before_grace(tmp_path):
    run = write_run(tmp_path, requests=requests_frame(duration=12.0), restarts=restarts_frame([10.0]),
                    processes=Tree([10.0], duration=12.0).frame())
    (r,) = strict_json(summarize(run))["restarts"]
    assert r["lingering"] is None
    assert r["settle_s"] == pytest.approx(0.5)


def test_settle_uses_the_configured_count(tmp_path):
    times = [10.0, 15.0]
    run = write_run(tmp_path, requests=requests_frame(), restarts=restarts_frame(times),
                    processes=Tree(times, n_app=2, spawn_s=0.3, exit_s=0.8).frame(),
                    scenario={"name": "s", "processes": 2})
    s = summarize(run)
    assert [r["settle_s"] for r in s["restarts"]] == [pytest.approx(0.8), pytest.approx(0.8)]
    assert s["params"]["configured_processes_source"] == "scenario"
    assert [r["configured_processes"] for r in s["restarts"]] == [2, 2]
    run3 = write_run(tmp_path, "three", requests=requests_frame(), restarts=restarts_frame(times),
                     processes=Tree(times, n_app=2).frame(), scenario={"name": "s", "processes": 3})
    assert [r["settle_s"] for r in strict_json(summarize(run3))["restarts"]] == [None, None]


def test_process_count_changes_follow_the_plan():
    counts, source = configured_counts({"processes": 2}, ["restart", "processes", "config",
                                                          "processes", "processes"], np.nan)
    assert counts.tolist() == [2, 3, 3, 2, 3] and source == "scenario"
    counts, source = configured_counts({}, ["restart"], 4.0)
    assert counts.tolist() == [4.0] and source == "idle"
    counts, _ = configured_counts({"processes": 1}, [None, "processes"], np.nan)
    assert counts.tolist() == [1, 2]


def test_wasmtime_main_is_the_app_role(tmp_path):
    times = [10.0, 15.0]
    run = write_run(tmp_path, requests=requests_frame(), restarts=restarts_frame(times, http_status=0),
                    processes=Tree(times, only_main=True, lingering_generations={0}).frame(),
                    target={"kind": "wasmtime", "name": "wasmtime", "version": "49.0.3",
                            "arch": "x86_64", "emulated": False})
    s = summarize(run)
    assert s["params"]["app_roles"] == ["main"]
    assert [r["lingering"] for r in s["restarts"]] == [1, 1]
    assert [r["http_status"] for r in s["restarts"]] == [0, 0]
    assert s["overall"]["restart_http_errors"] == 0


def test_rss_growing_2_mib_per_restart(tmp_path):
    times = [10.0, 13.0, 16.0, 19.0, 22.0]
    run = write_run(tmp_path, requests=requests_frame(), restarts=restarts_frame(times),
                    processes=Tree(times, rss_per_restart=2 * MiB, fds_per_restart=3).frame())
    s = summarize(run)
    ret = s["retention"]
    assert ret["slope_per_restart"]["rss"] == pytest.approx(2 * MiB)
    assert ret["slope_per_restart"]["uss"] == pytest.approx(0.8 * 2 * MiB)
    assert ret["slope_per_restart"]["num_fds"] == pytest.approx(3.0)
    assert ret["slope_per_restart"]["num_threads"] == pytest.approx(0.0)
    assert ret["end"]["rss"] - ret["idle"]["rss"] == 5 * 2 * MiB
    assert ret["points"]["rss"] == 6
    assert s["overall"]["rss_slope"] == pytest.approx(2 * MiB)


def test_uss_sampled_less_often(tmp_path):
    times = [10.0, 15.0]
    run = write_run(tmp_path, requests=requests_frame(), restarts=restarts_frame(times),
                    processes=Tree(times, rss_per_restart=MiB).frame(uss_every=7))
    ret = summarize(run)["retention"]
    assert ret["slope_per_restart"]["uss"] == pytest.approx(0.8 * MiB)
    assert ret["idle"]["uss"] is not None


def test_slope_is_least_squares():
    assert slope(np.array([1.0, 3.0, 5.0, np.nan, 9.0])) == pytest.approx(2.0)
    assert np.isnan(slope(np.array([1.0])))
    assert slope(np.array([0.0, 1.0, 0.0, 1.0])) == pytest.approx(0.2)


def test_latency_quantiles_from_raw_rows(tmp_path):
    req = requests_frame(duration=10.0)
    req["latency_ms"] = np.arange(len(req)) % 100 + 1.0     # 1..100 ms, uniform
    run = write_run(tmp_path, requests=req, restarts=restarts_frame([]), processes=None)
    o = summarize(run)["overall"]
    assert o["latency_p50_ms"] == pytest.approx(50.5)
    assert o["latency_p99_ms"] == pytest.approx(99.01)


def test_open_model_coordinated_omission(tmp_path):
    req = requests_frame(duration=20.0, open_model=True)
    late = (req["t_start"] >= 10.0) & (req["t_start"] < 11.0)
    req.loc[late, "t_start"] = 11.0            # the generator was held up for 1 s
    req.loc[late, "t_end"] = 11.005
    req.loc[late, "latency_ms"] = 5.0
    run = write_run(tmp_path, requests=req, restarts=restarts_frame([10.0]),
                    processes=Tree([10.0], duration=20.0).frame(),
                    scenario={"name": "open", "timeout_s": 0.5})
    s = summarize(run)
    w = s["phases"]["windows"]
    assert w["latency_p99_ms"] == pytest.approx(5.0)          # closed view: all fast
    assert w["timeouts"] == 0 and w["co_requests"] == 500
    # intended at 10.00 .. 10.50 (51 of them) ended >= 0.5 s after their intended start
    assert w["co_timeouts"] == 51
    assert w["co_timeout_rate"] == pytest.approx(51 / 500)
    assert w["co_latency_p99_ms"] > 500
    assert s["overall"]["co_latency_p50_ms"] == pytest.approx(5.0)
    assert summarize(run)["overall"]["co_latency_p50_ms"] is not None
    closed = write_run(tmp_path, "closed", requests=requests_frame(), restarts=restarts_frame([10.0]))
    assert summarize(closed)["overall"]["co_latency_p50_ms"] is None


def test_warmup_is_left_out_of_the_steady_state(tmp_path):
    run = write_run(tmp_path, requests=requests_frame(timeouts=[(0.0, 2.0)]),
                    restarts=restarts_frame([10.0]), processes=Tree([10.0]).frame())
    s = summarize(run, warmup_s=2.0)
    assert s["phases"]["warmup"]["requests"] == 200
    assert s["phases"]["before"]["requests"] == 800
    assert s["phases"]["before"]["timeout_rate"] == 0.0
    assert s["phases"]["before"]["rps"] == pytest.approx(100.0)


def test_scenario_window_and_grace_are_the_defaults(tmp_path):
    run = write_run(tmp_path, requests=requests_frame(), restarts=restarts_frame([10.0]),
                    scenario={"name": "s", "window_s": 2.0, "grace_s": 1.0})
    s = summarize(run)
    assert (s["params"]["window_s"], s["params"]["grace_s"]) == (2.0, 1.0)
    assert s["restarts"][0]["window_end"] == 12.0
    assert summarize(run, window_s=5.0)["restarts"][0]["window_end"] == 15.0


# -- whole runs -------------------------------------------------------------------------------

def test_clean_run_summary_and_file(tmp_path):
    run = clean_run(tmp_path)
    path = write_summary(run)
    s = json.loads(path.read_text())
    assert s == strict_json(summarize(run))
    assert s["run"]["run_id"] == "clean" and s["run"]["status"] == "complete"
    assert s["run"]["target"] == {"kind": "unit", "name": "1.34.0", "version": "1.34.0",
                                  "arch": "x86_64", "emulated": False}
    o = s["overall"]
    assert (o["restarts"], o["recovered"], o["lingering_max"]) == (3, 3, 0)
    assert o["window_timeout_rate"] == 0.0 and o["availability"] == 1.0
    assert o["rss_slope"] == 0.0 and o["fd_slope"] == 0.0
    assert o["restart_api_p50_s"] == pytest.approx(0.05)
    assert [r["settle_s"] for r in s["restarts"]] == [pytest.approx(0.5)] * 3
    assert read_run(run.path).summary() == s


def test_interrupted_run_with_missing_files(tmp_path):
    run = write_run(tmp_path, status="interrupted", requests=None, restarts=None, processes=None)
    s = strict_json(summarize(run))
    assert s["run"]["status"] == "interrupted"
    assert s["overall"]["requests"] == 0 and s["restarts"] == []
    assert s["retention"]["idle"]["rss"] is None
    partial = write_run(tmp_path, "partial", status="interrupted",
                        requests=requests_frame(duration=12.0), restarts=restarts_frame([10.0]),
                        processes=None)
    s = strict_json(summarize(partial))
    assert s["restarts"][0]["recovered"] is True
    assert s["restarts"][0]["lingering"] is None and s["restarts"][0]["settle_s"] is None


def test_unfinished_requests_are_not_counted_as_errors(tmp_path):
    req = requests_frame()
    cut = req["t_start"] >= 29.0
    req.loc[cut, ["t_end", "latency_ms"]] = np.nan
    req["outcome"] = req["outcome"].where(~cut, None)
    run = write_run(tmp_path, status="interrupted", requests=req, restarts=restarts_frame([10.0]))
    after = summarize(run)["phases"]["after"]
    assert after["unfinished"] == 100 and after["errors"] == 0 and after["error_rate"] == 0.0


def test_crashed_orchestrator_is_reported(tmp_path):
    run = write_run(tmp_path, status="running", meta={"orchestrator": {"pid": 0, "hostname": "x"}},
                    requests=requests_frame(), restarts=restarts_frame([10.0]))
    assert summarize(run)["run"]["status"] in ("running", "crashed")


def test_unknown_format_refused(tmp_path):
    write_run(tmp_path, "future", fmt=99, requests=requests_frame())
    with pytest.raises(FormatError, match="format 99"):
        read_run(tmp_path / "future")


def test_corrupt_file_is_a_format_error(tmp_path):
    run = clean_run(tmp_path)
    (run.path / "requests.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(FormatError, match="requests.parquet"):
        summarize(run)


def test_ten_thousand_restarts_stay_fast(tmp_path):
    times = np.arange(1000) * 0.5 + 1.0
    req = requests_frame(duration=520.0, rate=50)
    run = write_run(tmp_path, requests=req, restarts=restarts_frame(times),
                    processes=Tree([], duration=520.0).frame())
    import time
    t = time.perf_counter()
    s = summarize(run)
    assert time.perf_counter() - t < 5.0
    assert s["overall"]["restarts"] == 1000


def test_retention_end_point_is_taken_under_load(tmp_path):
    # the census outlives the load by 2 s, and the idle host then holds 5 fewer fds per process
    times = [10.0, 15.0, 20.0]
    procs = Tree(times, duration=32.0, fds_per_restart=1).frame()
    procs.loc[procs["t"] >= 30.5, "num_fds"] -= 5
    run = write_run(tmp_path, requests=requests_frame(duration=30.0), restarts=restarts_frame(times),
                    processes=procs)
    ret = summarize(run)["retention"]
    assert ret["slope_per_restart"]["num_fds"] == pytest.approx(1.0)
    assert ret["end_loaded"]["t"] == pytest.approx(29.9)
    assert ret["end"]["t"] == pytest.approx(31.9)
    assert ret["end"]["num_fds"] == ret["end_loaded"]["num_fds"] - 5 * 6


def test_client_timeout_from_run_json(tmp_path):
    run = write_run(tmp_path, requests=requests_frame(timeouts=[(10.0, 10.5)], timeout_s=0.7),
                    restarts=restarts_frame([10.0]), meta={"load": {"request_timeout_s": 2.0}})
    assert summarize(run)["params"]["timeout_s"] == 2.0
    bare = write_run(tmp_path, "bare", requests=requests_frame(timeouts=[(10.0, 10.5)], timeout_s=0.7),
                     restarts=restarts_frame([10.0]))
    assert summarize(bare)["params"]["timeout_s"] == pytest.approx(0.7)


def test_a_million_requests_summarise_quickly():
    measure = load_benchmark("scale").measure
    result = measure(1_000_000)            # 10 M take ~2.5 s on a 2-core VM; see benchmarks/scale.py
    assert result["restarts"] == 39
    assert result["summarize_s"] < 5.0


def test_analysis_reads_the_run_and_nothing_else(tmp_path):
    """The same run gives the same summary anywhere: analysed in a process whose HOME is empty (no
    build cache, no source mirrors), with no RESTARTBENCH_* settings and, where it can be had, no
    network (a new network namespace), summary.json is the one analysed here."""
    import json
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from restartbench.analysis import summarize
    from restartbench.results import read_run

    run_dir = tmp_path / "run"
    shutil.copytree(Path(__file__).parent / "data" / "unit" / "runs" / "1.35.0-router-segv", run_dir)
    here = summarize(read_run(run_dir))
    (tmp_path / "home").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESTARTBENCH_")} | {
        "HOME": str(tmp_path / "home")}
    code = ("import json, sys; from restartbench.analysis import summarize; from restartbench.results import "
            "read_run; print(json.dumps(summarize(read_run(sys.argv[1]))))")
    argv = [sys.executable, "-c", code, str(run_dir)]
    if shutil.which("unshare") and os.geteuid() == 0:
        argv = ["unshare", "--net", *argv]
    out = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout) == json.loads(json.dumps(here))
    assert not (tmp_path / "home" / ".cache" / "restartbench").exists()    # no cache of ours (matplotlib
    # keeps its font cache there: a library's, not an input)


def test_isolation_windows_end_at_the_next_action_and_skip_daemon_restarts():
    import pandas as pd

    from restartbench.analysis.metrics import isolation

    reqs = pd.DataFrame({"name": ["/other"] * 4 + ["/"],
                         "t_start": [10.2, 11.9, 12.5, 13.0, 10.5], "t_end": [10.3, 12.4, 12.6, 13.1, 10.6],
                         "outcome": ["ok", "conn_error", "conn_error", "ok", "conn_error"]})
    acts = pd.DataFrame({"index": [0, 1], "kind": ["change", "daemon"], "t_sent": [10.0, 12.0]})
    iso = isolation(reqs, acts, window_s=5.0)
    # 11.9 started in the change's window but was cut by the daemon restart; 12.5 is the daemon's own
    assert iso["requests"] == 4 and iso["not_ok"] == 2 and iso["window_not_ok"] == 0
    assert [p["index"] for p in iso["per_restart"]] == [0] and iso["disturbed_restarts"] == []
    acts = pd.DataFrame({"index": [0, 1], "kind": ["change", "restart"], "t_sent": [10.0, 12.0]})
    iso = isolation(reqs, acts, window_s=5.0)
    assert iso["window_not_ok"] == 2 and iso["disturbed_restarts"] == [0, 1]
    assert isolation(reqs[reqs["name"] == "/"], acts, 5.0) is None
