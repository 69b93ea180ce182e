"""The results contract: atomic writes, round-trips, dtype conformance, format refusal, crash detection."""

import json
import os

import pandas as pd
import pytest

from restartbench import results
from restartbench.results import FormatError, open_runs
from analysis_fixtures import clean_run, write_run


def make_run(tmp_path, **meta):
    path = results.new_run_dir(tmp_path, "r1")
    results.write_json(path / "run.json", {"format": results.FORMAT, "run_id": "r1", "status": "complete",
                                           "orchestrator": results.orchestrator_stamp(), **meta})
    return path


def test_round_trip(tmp_path):
    path = make_run(tmp_path)
    req = pd.DataFrame({"t_start": [0.1, 0.2], "t_end": [0.15, 2.2], "latency_ms": [50.0, 2000.0],
                        "status": [200, 0], "outcome": ["ok", "timeout"], "error": [None, "Timeout"],
                        "name": ["/", "/sleep"], "worker": [0, 1]})
    results.write_frame(path / "requests.parquet", req, results.REQUEST_COLUMNS)
    rs = pd.DataFrame({"index": [0], "kind": ["restart"], "t_sent": [1.0], "t_done": [1.01],
                       "http_status": [200], "body": ['{"success": "Ok"}']})
    results.write_frame(path / "restarts.csv", rs, results.RESTART_COLUMNS)
    run = results.read_run(path)
    back = run.requests()
    assert list(back.columns) == list(results.REQUEST_COLUMNS)
    assert back.outcome.tolist() == ["ok", "timeout"] and back.t_intended.isna().all()
    assert back.error.isna().tolist() == [True, False]
    assert run.restarts().body.tolist() == ['{"success": "Ok"}']
    assert run.processes().empty and list(run.processes().columns) == list(results.PROCESS_COLUMNS)


def test_unknown_format_is_refused_with_a_clear_error(tmp_path):
    path = make_run(tmp_path, format=99)
    with pytest.raises(results.FormatError, match="format 99 is not supported.*reads formats 1, 2"):
        results.read_run(path)


def test_format_1_runs_are_read_with_empty_action_requests(tmp_path):
    path = make_run(tmp_path, format=1)
    (path / "restarts.csv").write_text('index,kind,t_sent,t_done,http_status,body\n0,restart,1.0,1.1,200,"{""success"": ""Ok""}"\n')
    restarts = results.read_run(path).restarts()
    assert list(restarts.columns) == list(results.RESTART_COLUMNS)
    assert restarts["method"].isna().all() and restarts["body"].tolist() == ['{"success": "Ok"}']


def test_not_a_run_dir(tmp_path):
    with pytest.raises(results.FormatError, match="no run.json"):
        results.read_run(tmp_path)
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(results.FormatError, match="not valid JSON"):
        results.read_run(tmp_path)


def test_truncated_parquet_is_a_format_error(tmp_path):
    path = make_run(tmp_path)
    (path / "requests.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(results.FormatError, match="unreadable"):
        results.read_run(path).requests()


def test_write_atomic_leaves_no_temp_and_keeps_old_on_failure(tmp_path):
    target = tmp_path / "x.json"
    results.write_json(target, {"a": 1})
    with pytest.raises(TypeError):
        results.write_atomic(target, 12345)          # not bytes/str: fails before the rename
    assert json.loads(target.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["x.json"]


def test_running_run_with_dead_orchestrator_reads_as_crashed(tmp_path):
    path = make_run(tmp_path, status="running")
    meta = json.loads((path / "run.json").read_text())
    meta["orchestrator"]["pid"] = 2 ** 22 + 12345        # no such pid
    results.write_json(path / "run.json", meta)
    assert results.read_run(path).status == "crashed"
    meta["orchestrator"]["pid"] = os.getpid()
    results.write_json(path / "run.json", meta)
    assert results.read_run(path).status == "running"


def test_open_runs_names_the_run_it_cannot_read(tmp_path):
    clean_run(tmp_path)
    write_run(tmp_path, "future", fmt=99)
    assert [r.run_id for r in open_runs([tmp_path / "clean"])] == ["clean"]
    with pytest.raises(FormatError, match="format 99"):        # latest: the newest run, here the unreadable one
        open_runs(["latest"], tmp_path)
    with pytest.raises(FormatError, match="format 99"):
        open_runs([tmp_path / "clean", tmp_path / "future"])
    with pytest.raises(FormatError, match="no run.json"):
        open_runs([tmp_path / "nothing"])
    with pytest.raises(FormatError, match="no runs under"):
        open_runs(["latest"], tmp_path / "nothing")
