"""restartbench.hosts.unit.checks on results directories rebuilt from the real Unit reference runs (tests/data/unit/):
app-process sets polled around real restarts, the leak repro's idle state, real logs and shutdowns."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pandas as pd
import pytest

from restartbench.hosts.unit import checks as unit_checks
from restartbench import results

DATA = Path(__file__).parent / "data" / "unit"
POLL = re.compile(r"^\+(\d+)ms\s+(.*)$")
PROC = re.compile(r"(\d+):(prototype|application)\(ppid (\d+)\)")
TITLES = {"prototype": 'unit: "labapp" prototype', "application": 'unit: "labapp" application'}


def poll_sets(name: str) -> list[tuple[float, list[tuple[int, str, int]]]]:
    """(t, [(pid, kind, ppid)]) for each line of a reference app-process poll (changes only)."""
    out = []
    for line in (DATA / name).read_text().splitlines():
        m = POLL.match(line)
        if m:
            out.append((int(m.group(1)) / 1000, [(int(p), k, int(pp)) for p, k, pp in PROC.findall(m.group(2))]))
    return out


def census(sets, restarts: list[float], end: float, fixed: dict[int, str], dt: float = 0.1) -> pd.DataFrame:
    """A processes.parquet frame sampled every ``dt`` from the poll's change points; ``fixed`` are the
    pids of main, controller and router (alive throughout)."""
    rows, born = [], {}
    for k in range(int(round(end / dt)) + 1):
        t = round(k * dt, 6)
        current = [s for s in sets if s[0] <= t]
        procs = current[-1][1] if current else []
        for pid, role in fixed.items():
            rows.append((t, pid, 1, role, 0, -1.0, f"unit: {role}"))
        for pid, kind, ppid in procs:
            born.setdefault(pid, next(s[0] for s in sets if any(p[0] == pid for p in s[1])))
            gen = sum(r <= born[pid] for r in restarts)
            rows.append((t, pid, ppid, "prototype" if kind == "prototype" else "app", gen, born[pid], TITLES[kind]))
    frame = pd.DataFrame(rows, columns=["t", "pid", "ppid", "role", "generation", "born", "title"])
    return frame.assign(rss=10 << 20, uss=float("nan"), num_fds=10, num_threads=1, cpu_s=0.0, state="sleeping")


def write_run(root: Path, processes: pd.DataFrame, restarts: list[float], *, load_end: float,
              status: pd.DataFrame | None = None, log: str = "", kind: str = "unit", meta: dict | None = None,
              t0_wall: float = 0.0) -> results.Run:
    root.mkdir(parents=True, exist_ok=True)
    req = pd.DataFrame({"t_start": [0.5, load_end - 0.01], "t_end": [0.51, load_end], "latency_ms": [10.0, 10.0],
                        "status": [200, 200], "outcome": ["ok", "ok"]})
    rs = pd.DataFrame({"index": range(len(restarts)), "kind": "restart", "t_sent": restarts,
                       "t_done": [t + 0.01 for t in restarts], "http_status": 200, "body": '{"success":"Ok"}'})
    results.write_frame(root / "requests.parquet", req, results.REQUEST_COLUMNS)
    results.write_frame(root / "restarts.csv", rs, results.RESTART_COLUMNS)
    results.write_frame(root / "processes.parquet", processes, results.PROCESS_COLUMNS)
    if status is not None:
        results.write_frame(root / "status.parquet", status, results.STATUS_COLUMNS)
    (root / "host.log").write_text(log)
    results.write_json(root / "run.json", {"format": results.FORMAT, "run_id": root.name, "status": "complete",
                                           "target": {"kind": kind, "version": "1.32.0"}, "t0_wall": t0_wall,
                                           "scenario": {"grace_s": 5.0}, "findings": [], "survivors": [],
                                           **(meta or {})})
    return results.read_run(root)


def log_lines(name: str, stamp: str) -> str:
    return "".join(line + "\n" for line in (DATA / name).read_text().splitlines() if stamp in line)


# -- per restart ------------------------------------------------------------------------------

def test_restart_with_a_request_in_flight_1_32(tmp_path):
    """07: restart at t=3 s while a 3 s request runs on app 5034: its prototype 5033 stays until ~5.06 s."""
    sets = poll_sets("poll-apps-1.32.0-restart-inflight.txt")
    procs = census(sets, [3.0], 12.0, {2128: "main", 2132: "controller", 2133: "router"})
    run = write_run(tmp_path / "r", procs, [3.0], load_end=10.0,
                    log=log_lines("unit-1.32.0.log", "18:04:55 "))
    short = unit_checks.check_run(run, grace_s=1.0)
    (r,) = short["restarts"]
    assert (r["old_prototypes"], r["old_apps"], r["extra_prototypes"]) == (1, 1, 0)
    assert [f["kind"] for f in short["findings"]] == ["lingering_prototypes", "lingering_apps"]
    assert short["findings"][0]["restarts"] == [0] and short["verdict"] == "findings"
    full = unit_checks.check_run(run)                      # grace 5 s from the scenario: all gone by then
    assert (full["restarts"][0]["old_prototypes"], full["restarts"][0]["old_apps"]) == (0, 0)
    assert full["idle"]["prototypes"] == {"labapp": 1} and full["idle"]["old_processes"] == 0
    assert full["alerts"] == {**full["alerts"], "total": 1, "noise": 1, "findings": 0}
    assert full["findings"] == [] and full["verdict"] == "ok"
    json.dumps(full, allow_nan=False)


def test_clean_idle_restart_1_35(tmp_path):
    """05: restart 0.2 s after the poll began; the new generation replaces the old within 242 ms."""
    sets = poll_sets("poll-apps-1.35.0-restart-idle.txt")
    procs = census(sets, [0.2], 8.0, {13333: "main", 13337: "controller", 13338: "router"})
    run = write_run(tmp_path / "r", procs, [0.2], load_end=6.0, log=log_lines("unit-1.35.0.log", "18:15:16 "))
    out = unit_checks.check_run(run, grace_s=1.0)
    assert out["restarts"][0] | {"old_prototypes": 0, "old_apps": 0, "extra_prototypes": 0} == out["restarts"][0]
    assert out["alerts"]["noise"] == 1 and out["alerts"]["findings"] == 0
    assert out["verdict"] == "ok" and out["idle"]["stuck"] is None


def test_leftover_generation_and_stuck_connections_at_idle_1_32(tmp_path):
    """repro-leak: from iteration 4 on, two prototypes and connections.active=7 stay at idle for good."""
    text = (DATA / "repro-leak-1.32.0.txt").read_bytes().decode().replace("\r", "")   # it has stray CRs
    final = PROC.findall(re.search(r"^final app-process set: (.*)$", text, re.M).group(1))
    last = re.findall(r"^iter 10: .*after load: connections\.active=(\d+) .*?app\.requests\.active=(\d+)", text,
                      re.M)[0]
    older, newer = sorted({int(pp) for _, k, pp in final if k == "application"})
    sets = [(0.0, [(int(p), k, int(pp)) for p, k, pp in final if older in (int(p), int(pp))]),
            (6.0, [(int(p), k, int(pp)) for p, k, pp in final])]
    procs = census(sets, [2.0, 4.0, 5.9], 9.0, {14752: "main", 14753: "controller", 14757: "router"})
    status = pd.DataFrame({"t": [8.5, 8.5, 9.0, 9.0], "key": ["connections.active", "app.requests.active"] * 2,
                           "value": [float(last[0]), float(last[1])] * 2})
    run = write_run(tmp_path / "r", procs, [2.0, 4.0, 5.9], load_end=8.0, status=status)
    out = unit_checks.check_run(run, grace_s=1.0)
    assert out["idle"]["prototypes"] == {"labapp": 2} and out["idle"]["extra_prototypes"] == 1
    assert out["idle"]["old_processes"] == 3
    assert out["idle"]["status"] == {"app.requests.active": 0.0, "connections.active": 7.0}
    assert out["idle"]["stuck"] is True and out["idle"]["status_samples"] == 2
    kinds = [f["kind"] for f in out["findings"]]
    assert {"idle_extra_prototypes", "idle_old_generation", "stuck_active", "extra_prototypes"} <= set(kinds)
    assert out["restarts"][-1]["extra_prototypes"] == 1


# -- the log ----------------------------------------------------------------------------------

@pytest.mark.parametrize("version, noise, classes", [
    ("1.32.0", 24, {"app_start": 2, "ipc": 2, "signalfd": 1}),
    ("1.35.0", 25, {"app_start": 2, "ipc": 1, "signalfd": 1}),
])
def test_alerts_of_the_reference_logs(version, noise, classes):
    out = unit_checks.classify_alerts((DATA / f"unit-{version}.log").read_text())
    assert out["noise"] == noise and out["by_class"] == {"noise": noise, **classes}
    assert out["findings"] == sum(classes.values()) == out["total"] - noise
    assert out["templates"]["sendmsg(N, N, N, N) failed (32: Broken pipe)"] == noise
    assert {e["class"] for e in out["examples"]} == set(classes)
    assert any('Python failed to import module "does_not_exist"' in e["line"] for e in out["examples"])


def test_alert_times_and_restarts():
    text = (DATA / "unit-1.32.0.log").read_text()
    start = re.match(r"(\S+ \S+)", text).group(1)                 # 2026/11/26 18:04:20, local time
    t0 = time.mktime(time.strptime(start, "%Y/%m/%d %H:%M:%S"))
    out = unit_checks.classify_alerts(text, t0, pd.Series([4.9, 10.0]))
    first = unit_checks.classify_alerts(log_lines("unit-1.32.0.log", "18:04:25 "), t0, pd.Series([4.9]))
    assert first["noise"] == 2 and out["examples"][0]["t"] == pytest.approx(68.0)   # 18:05:28
    assert out["examples"][0]["restart"] == 1
    assert unit_checks.classify_alerts("") == {"total": 0, "noise": 0, "findings": 0, "by_class": {},
                                               "templates": {}, "examples": []}


# -- shutdown and other targets ---------------------------------------------------------------

def test_shutdown_hang_and_survivors(tmp_path):
    rows = [line.split() for line in (DATA / "ps-1.32.0-orphans.txt").read_text().splitlines()[2:]]
    survivors = [{"pid": int(r[0]), "ppid": int(r[1]), "title": " ".join(r[5:]),
                  "role": "prototype" if r[-1] == "prototype" else "app"} for r in rows]
    procs = census(poll_sets("poll-apps-1.35.0-restart-idle.txt"), [0.2], 4.0, {2128: "main"})
    meta = {"findings": [{"kind": "stop_hang", "detail": "..."}], "survivors": survivors,
            "stop": {"graceful": False, "stop_s": 5.2}}
    out = unit_checks.check_run(write_run(tmp_path / "r", procs, [0.2], load_end=3.0, meta=meta))
    assert out["shutdown"] == {"graceful": False, "stop_s": 5.2, "hang": True, "survivors": 3,
                               "survivor_roles": ["app", "prototype"]}
    assert [f["kind"] for f in out["findings"]][-2:] == ["stop_hang", "survivors"]


def test_not_a_unit_run(tmp_path):
    procs = census([], [], 1.0, {1: "main"})
    out = unit_checks.check_run(write_run(tmp_path / "r", procs, [], load_end=1.0, kind="wasmtime"))
    assert out == {"applicable": False, "reason": "target kind 'wasmtime' is not unit"}


def test_no_restarts_and_no_requests(tmp_path):
    procs = census([], [], 1.0, {1: "main"})
    run = write_run(tmp_path / "r", procs, [], load_end=1.0)
    (run.path / "requests.parquet").unlink()
    out = unit_checks.check_run(run)
    assert out["restarts"] == [] and out["idle"]["measured"] is False and out["verdict"] == "ok"


# -- process exits in real logs of the wasm-wasi-component module (runs of the shared builds) --

def _exits(name: str) -> pd.DataFrame:
    return unit_checks.process_exits((DATA / name).read_text())


def test_crashes_of_1_32_0_under_load_one_per_restart():
    """1.32.0 under load: the old app process dies at every restart (a Rust panic -> SIGABRT, or
    SIGSEGV), right after the restart mark; the shutdown's own SIGKILL is not counted."""
    exits = _exits("wasm-1.32.0-load.log")
    crashes = unit_checks.crash_summary(exits, 3)
    assert crashes["per_restart"] == [1, 1, 1] and crashes["total"] == 3
    crashed = exits[exits["signal"].notna()]
    assert set(crashed["role"]) == {"app"} and set(crashed["signal_name"]) <= {"SIGABRT", "SIGSEGV"}
    assert crashed["restart"].tolist() == [0, 1, 2] and set(crashed["phase"]) == {"run"}
    assert "exited on signal" in crashed["line"].iloc[0]


def test_1_32_0_at_light_load_hangs_instead_of_crashing():
    exits = _exits("wasm-1.32.0-light.log")
    assert unit_checks.crash_summary(exits, 3)["total"] == 0
    # its stop never completes by itself: nothing but main's own children exit after SIGTERM
    lines = pd.Series((DATA / "wasm-1.32.0-light.log").read_text().splitlines(), dtype="string")
    phases = unit_checks.log_phases(lines)
    assert phases["phase"].iloc[-1] == "killed" and "shutdown" in set(phases["phase"])


def test_a_sound_build_logs_clean_exits_only():
    exits = _exits("wasm-1.35.0-load.log")
    assert len(exits) and exits["signal"].isna().all() and (exits["code"] == 0).all()
    crashes = unit_checks.crash_summary(exits, 3)
    assert crashes["total"] == 0 and crashes["nonzero_exits"] == 0
    # roles from Unit's own "... started" lines when no census is given (main logs "controller
    # started" under its own pid, so the controller's exit stays "other" without a census)
    assert {"app", "prototype", "router", "discovery"} <= set(exits["role"])
    assert "controller" not in set(exits["role"])


def test_a_log_without_marks_still_counts_crashes():
    """A log from before the suite marked restarts: crashes counted, not placed."""
    crashes = unit_checks.crash_summary(_exits("wasm-1.32.1-segv.log"), 3)
    assert crashes["total"] == 1 and crashes["by_kind"] == {"app SIGSEGV": 1}
    assert crashes["per_restart"] == [0, 0, 0] and crashes["steady"] == 1


def test_exit_line_shapes():
    text = "\n".join([
        "--- restartbench 2026/01/01 00:00:00 restart 0: restart",
        "2026/01/01 00:00:00 [alert] 10#10 app process 12 exited on signal 11 (core dumped)",
        "2026/01/01 00:00:00 [alert] 10#10 app process 13 (isolated 2) exited on signal 6",
        "2026/01/01 00:00:00 [alert] 1#1 process 10 exited on signal 9",
        "2026/01/01 00:00:00 [notice] 1#1 process 14 exited with code 1",
        "--- restartbench 2026/01/01 00:00:01 stop: SIGTERM",
        "2026/01/01 00:00:01 [alert] 1#1 process 15 exited on signal 11",
        "--- restartbench 2026/01/01 00:00:02 stop: SIGKILL",
        "2026/01/01 00:00:02 [alert] 10#10 app process 16 exited on signal 9",
    ])
    procs = pd.DataFrame({"t": [0.5, 0.5], "pid": [10, 15], "role": ["prototype", "router"],
                          "generation": [0, 1]})
    exits = unit_checks.process_exits(text, procs)
    assert exits["pid"].tolist() == [12, 13, 10, 14, 15, 16]
    assert exits["core"].tolist() == [True, False, False, False, False, False]
    assert exits["role"].tolist()[:3] == ["app", "app", "prototype"] and exits["role"].iloc[4] == "router"
    assert exits["phase"].tolist() == ["run"] * 4 + ["shutdown", "killed"]
    crashes = unit_checks.crash_summary(exits, 1)
    assert crashes["total"] == 4 and crashes["per_restart"] == [3] and crashes["shutdown"] == 1
    assert crashes["nonzero_exits"] == 1


# -- a real run of every declared Unit build, judged by the gate (conftest.unit_install) ------------

@pytest.mark.unit
def test_real_unit_run_verdict(unit_install, unit_default_run):
    """The default load, three restarts 4 s apart: 1.32.0 fails the gate, naming why; a fixed
    build passes. Generations are exact, every process is accounted for, nothing is left."""
    from helpers import has_restart_bug

    from restartbench.analysis import evaluate, summarize

    r = unit_default_run
    procs_ = r.processes()
    assert {"main", "controller", "router", "prototype", "app"} <= set(procs_["role"].astype(str))
    restarts = r.restarts()
    assert len(restarts) >= 2
    # generations: by the census's marks (t_sent, last pid) — a process born after a mark is newer
    marks = r.meta["census"]["marks"]
    first = procs_.drop_duplicates("pid")
    for _, p in first.iterrows():
        newer = sum(1 for t, last in marks if p.born >= t or (p.born > t - 0.01 and p.pid > last))
        assert p.generation == newer, (p.pid, p.role, p.born, marks)
    summary = summarize(r)
    result = evaluate([r])
    failed = {row.check: row for row in result.failures()}
    if has_restart_bug(unit_install):
        assert result.exit_code == 1, result.frame().to_string()
        assert "shutdown hang" in failed                     # its old app processes never exit
        assert {"restarts whose old processes crashed", "lingering", "every restart recovers"} & set(failed)
        why = " ".join(row.note for row in failed.values())
        assert "did not exit" in why and ("crashed instead of exiting" in why or "still running" in why)
        assert (restarts["http_status"] == 200).all()          # every restart answered "Ok"
    else:
        known = {b["id"] for b in summary["known_bugs"]}
        assert not known & {"unit-1179-restart-hang", "unit-1179-restart-crash"}, known
        assert [x["lingering"] for x in summary["restarts"]] == [0] * len(restarts)
        assert summary["host_checks"]["shutdown"]["hang"] is False and not r.meta["survivors"]
        if result.exit_code != 0:
            # a rare crash of the build itself (seen once: 1.35.0's router, SIGSEGV at a restart,
            # tests/data/unit/runs/1.35.0-router-segv): real, so the gate fails it; the catalogue names it
            from restartbench.analysis.catalogue import NO_MATCH

            for row in result.failures():
                assert result.explained(row) not in ("", NO_MATCH), (row.check, row.value, row.note, known)
        else:
            assert (restarts["http_status"] == 200).all()
    born = dict(zip(first["pid"], first["born"]))
    assert not [pid for pid in born if _same_process_alive(int(pid), born[pid], r.meta)]


def _same_process_alive(pid: int, born: float, meta: dict) -> bool:
    """Is the process the census saw as ``pid`` (born at ``born`` s since t0) still alive (not a
    zombie)? A recycled pid with another birth time is another process."""
    import psutil

    try:
        p = psutil.Process(pid)
        started = p.create_time() - meta["t0_wall"]
        return abs(started - born) < 1.0 and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
