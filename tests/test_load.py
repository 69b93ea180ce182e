"""The load on real processes: the recorder's outcome classes from real failures, the open model
keeping its schedule through a SIGSTOPped host (the closed model does not), Locust worker processes
and a distributed master with loopback workers merged into one frame, a cut recorder file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from restartbench import apps, installations, procs
from restartbench.hosts import wasmtime as wasmtime_host
from restartbench.load import LOCUSTFILE, Load, LoadSpec, read_records
from restartbench.net import free_port
from restartbench.hosts.wasmtime import WasmtimeTarget


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    target = WasmtimeTarget(wasmtime_host.installation(), apps.build("hello"), tmp_path_factory.mktemp("host"))
    target.start()
    try:
        yield target
    finally:
        if target.pid:
            os.kill(target.pid, signal.SIGCONT)
        target.stop()


# -- the recorder's classes, from real failures ---------------------------------------------------

CLASSIFY = """
import sys, time
sys.path.insert(0, sys.argv[1])
from locust.env import Environment
from locust.contrib.fasthttp import FastHttpSession
from recorder import Recorder
out, refused, silent, app = sys.argv[2:6]
env = Environment()
rec = Recorder(out, time.monotonic())
env.events.request.add_listener(rec.on_request)
for name, base, path in (("refused", refused, "/"), ("silent", silent, "/"), ("missing", app, "/nope"),
                         ("ok", app, "/")):
    s = FastHttpSession(base, env.events.request, None, network_timeout=0.5, connection_timeout=0.5,
                        max_retries=0)
    s.get(path, name=name)
rec.close()
"""


def test_recorder_classifies_real_failures(host, tmp_path):
    refused = free_port()                     # bound and released: nobody listens, connect is refused
    silent = socket.socket()                  # listens (the kernel accepts) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        subprocess.run([sys.executable, "-c", CLASSIFY, str(LOCUSTFILE.parent), str(tmp_path),
                        f"http://127.0.0.1:{refused}", f"http://127.0.0.1:{silent.getsockname()[1]}",
                        host.url], check=True, timeout=30)
    finally:
        silent.close()
    df = read_records(sorted(str(p) for p in tmp_path.glob("requests-*.csv"))).set_index("name")
    assert df.loc["refused", "outcome"] == "conn_error" and df.loc["refused", "status"] == 0
    assert "Refused" in df.loc["refused", "error"]
    assert df.loc["silent", "outcome"] == "timeout" and df.loc["silent", "status"] == 0
    assert 400 <= df.loc["silent", "latency_ms"] < 1500
    assert df.loc["missing", "outcome"] == "http_error" and df.loc["missing", "status"] == 404
    assert df.loc["ok", "outcome"] == "ok" and df.loc["ok", "status"] == 200
    assert pd.isna(df.loc["ok", "error"])


# -- open vs closed model under a stalled host ----------------------------------------------------

def test_open_model_keeps_its_schedule_through_a_stall_closed_does_not(host, tmp_path):
    rate, stall = 400.0, 1.0
    t0 = time.monotonic()
    open_ = Load(LoadSpec(users=8, sleep_share=0, rate=rate), host.url, 4, tmp_path / "open", t0,
                 tmp_path / "open.log")
    closed = Load(LoadSpec(users=8, sleep_share=0), host.url, 4, tmp_path / "closed", t0, tmp_path / "closed.log")
    try:
        open_.start()
        closed.start()
        assert procs.wait_until(lambda: open_.first_request_seen() and closed.first_request_seen(), 20)
        time.sleep(1.2)
        t_stop = time.monotonic() - t0
        os.kill(host.pid, signal.SIGSTOP)
        try:
            # the stall is in effect once every thread of the host is stopped (observed, not assumed:
            # on a busy machine that takes a few ms, in which the host still answers)
            assert procs.wait_until(lambda: _all_threads_stopped(host.pid), 2, step_s=0.001)
            t_stopped = time.monotonic() - t0
            time.sleep(stall)
        finally:
            t_cont = time.monotonic() - t0         # taken before SIGCONT: all of [t_stopped, t_cont) is stalled
            os.kill(host.pid, signal.SIGCONT)
        assert open_.wait(20) and closed.wait(20)
    finally:
        os.kill(host.pid, signal.SIGCONT)
        open_.stop()
        closed.stop()
    o, c = open_.frame(), closed.frame()
    # open: the requests meant for the stall were sent on schedule, and they waited for the host
    during = o[(o.t_intended >= t_stop) & (o.t_intended < t_cont)]
    expected = rate * (t_cont - t_stop)
    assert 0.85 * expected <= len(during) <= 1.15 * expected, (len(during), expected)
    assert (during.t_start - during.t_intended).median() < 0.05        # sent when meant, not after
    assert during.latency_ms.max() > 0.7 * stall * 1000                 # the first ones waited out the stall
    assert o.t_intended.notna().all() and (o.outcome == "ok").mean() > 0.99
    # closed: its users waited. Once every host thread is stopped, a user may still read a response the
    # host wrote just before and send once more (then it waits): at most one request per user starts;
    # and over the whole stall the sending rate collapses
    users = 8
    c_during = c[(c.t_start >= t_stop) & (c.t_start < t_cont)]
    c_settled = c_during[c_during.t_start >= t_stopped]
    c_before = c[(c.t_start >= t_stop - 1.0) & (c.t_start < t_stop)]
    assert len(c_settled) <= users, len(c_settled)
    assert len(c_before) > 10 * len(c_during), (len(c_before), len(c_during))
    assert c.t_intended.isna().all()


def _all_threads_stopped(pid: int) -> bool:
    """Every thread of ``pid`` is in state T (stopped), from /proc."""
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
        except (OSError, IndexError):
            continue
    return bool(states) and all(st in ("T", "t") for st in states)


# -- more cores, more machines --------------------------------------------------------------------

def test_processes_each_worker_writes_its_own_rows(host, tmp_path):
    load = Load(LoadSpec(users=8, sleep_share=0.25, sleep_ms=100, processes=2), host.url, 2,
                tmp_path / "rows", time.monotonic(), tmp_path / "locust.log")
    try:
        load.start()
        assert load.wait(30)
    finally:
        load.stop()
    files = load.files()
    assert len(files) == 2 and f"requests-{load.proc.pid}.csv" not in {Path(f).name for f in files}
    df = load.frame()
    assert sorted(df.worker.unique()) == [0, 1]
    assert (df.groupby("worker").size() > 100).all() and (df.outcome == "ok").mean() > 0.99
    assert set(df.name) == {"/", "/sleep"}
    assert df.t_start.is_monotonic_increasing
    offsets = load.clock_offsets()
    assert sorted(e["worker"] for e in offsets) == [0, 1]
    assert all(e["same_clock"] and e["applied_offset_s"] == 0.0 for e in offsets)


def test_distributed_master_collects_rows_and_clock_offsets_of_loopback_workers(host, tmp_path):
    spec = LoadSpec(users=6, sleep_share=0, rate=300, expect_workers=2, master_bind=f"127.0.0.1:{free_port()}")
    load = Load(spec, host.url, 2, tmp_path / "rows", time.monotonic(), tmp_path / "locust.log")
    workers = []
    try:
        load.start()
        cmd = load.worker_command(python=sys.executable)
        assert cmd[cmd.index("--master-host") + 1] == "127.0.0.1" and "--worker" in cmd
        workers = [procs.spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               cwd=tempfile.gettempdir()) for _ in range(2)]
        assert load.wait(40)
        for w in workers:
            w.wait(timeout=10)                  # workers quit with their master
    finally:
        for w in workers:
            procs.stop_tree(w, 1.0)
        load.stop()
    files = [Path(f).name for f in load.files()]
    assert len(files) == 2 and all(f.startswith("requests-w-") for f in files)
    df = load.frame()
    assert sorted(df.worker.unique()) == [0, 1] and (df.outcome == "ok").mean() > 0.99
    # the rate is the total over both workers
    span = df.t_intended.max() - df.t_intended.min()
    assert 0.8 * 300 <= len(df) / span <= 1.2 * 300
    offsets = load.clock_offsets()
    assert sorted(e["worker"] for e in offsets) == [0, 1]
    for e in offsets:
        assert e["mode"] == "ship" and e["pings"] >= 8
        assert 0 < e["rtt_s"] < 0.05 and abs(e["offset_s"]) < 0.01       # one machine: one clock
        assert "offset_end_s" in e


# -- reading what the recorders wrote -------------------------------------------------------------

HEADER = "t_start,t_end,latency_ms,status,outcome,name,error,t_intended\n"


def test_read_records_tolerates_a_half_written_last_line(tmp_path):
    a, b, c = tmp_path / "requests-1.csv", tmp_path / "requests-2.csv", tmp_path / "requests-3.csv"
    a.write_text(HEADER + "0.1,0.2,100.000,200,ok,/,,\n"
                 '0.3,0.4,100.000,0,conn_error,/,"ConnectionRefusedError: [Errno 111] a, b",0.25\n'
                 "0.5,0.6,100.000,200,ok,/,,0.4")        # cut inside the last number: 8 fields, still dropped
    b.write_text(HEADER + "0.15,0.2,50.000,404,http_error,/nope,HTTPError: 404,\n0.2,0.")
    c.write_text("t_start,t_end,lat")                         # killed before the header was out
    df = read_records([str(a), str(b), str(c)])
    assert len(df) == 3
    assert df.t_start.tolist() == [0.1, 0.15, 0.3] and df.worker.tolist() == [0, 1, 0]
    assert df.error.iloc[2] == "ConnectionRefusedError: [Errno 111] a, b"
    assert df.t_intended.iloc[2] == 0.25 and df.t_intended.iloc[:2].isna().all()
    assert df.outcome.tolist() == ["ok", "http_error", "conn_error"]
    assert str(df.status.dtype) == "int32" and str(df.worker.dtype) == "int16"

