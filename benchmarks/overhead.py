"""What restartbench's own measuring costs, and how exact it is: ratios measured side by side here.

    .venv/bin/python benchmarks/overhead.py [--quick] [--only recorder,processes,census,analysis,accuracy]

Not an asv file and not a test: it prints a table and writes ``results/overhead.json``.

- ``recorder``   requests/s of the locustfile with the request recorder vs the same locustfile without a
                 record dir (plain Locust), closed model, against one wasmtime host; runs interleaved.
- ``processes``  requests/s of restartbench's load (recorder on) with 1..N Locust processes vs ``wrk``
                 (Debian package) with as many connections, against the same host.
- ``census``     CPU of the census sampling a 20-process tree every 100 ms, in % of one core
                 (getrusage of this process while its main thread sleeps).
- ``census-unit`` the census as a run uses it on a real NGINX Unit (the newest build declared:
                 UNITD= or RESTARTBENCH_UNITS; 5 processes, its roots(), /status every 5th round,
                 TCP sockets every 20th), at idle and then under 20 Locust users, side by side; CPU
                 of the census thread (``Census.cpu_s``, thread time) per second of wall time.
- ``analysis``   seconds to read and summarise a synthetic run of 10 M request rows (benchmarks/scale.py).
- ``accuracy``   the host SIGSTOPped for exactly 300 ms, K times, under load: recovery_s as the analysis
                 computes it from the raw rows vs the known stall.

Every load stays on 127.0.0.1 and every step is bounded in time; nothing is left running.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from restartbench import apps, installations, procs, tools  # noqa: E402
from restartbench.hosts import wasmtime as wasmtime_host
from restartbench.census import Census  # noqa: E402
from restartbench.load import Load, LoadSpec  # noqa: E402
from restartbench.hosts.wasmtime import WasmtimeTarget  # noqa: E402

GOALS = {"recorder": ("rps with recorder / plain Locust", ">=", 0.90),
         "processes": ("restartbench load rps / wrk rps (best N)", ">=", 0.80),
         "census": ("census CPU, % of one core (20 processes, 100 ms)", "<=", 2.0),
         "census-unit": ("census CPU on a real Unit, % of a core (100 ms, loaded)", "<=", 2.0),
         "analysis": ("seconds to summarise 10 M rows", "<=", 10.0),
         "accuracy": ("worst |recovery_s - stall| (ms), 300 ms stalls", "<=", 10.0)}


# -- helpers ----------------------------------------------------------------------------------

class Host:
    """One wasmtime serve of the hello app on a free 127.0.0.1 port, for the whole benchmark."""

    def __enter__(self) -> "Host":
        self.dir = Path(tempfile.mkdtemp(prefix="rb-overhead-"))
        self.target = WasmtimeTarget(wasmtime_host.installation(), apps.build("hello"), self.dir / "host")
        self.target.start()
        return self

    @property
    def url(self) -> str:
        return self.target.url

    def __exit__(self, *exc) -> None:
        try:
            if self.target.pid:
                os.kill(self.target.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        self.target.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class _NoHost:
    def __enter__(self):
        return None

    def __exit__(self, *exc) -> None:
        pass


def cpu_s(who: int = resource.RUSAGE_SELF) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def _busy_s() -> float:
    """CPU seconds the whole machine has been busy since boot (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_quiet(max_wait_s: float = 120.0, busy_below: float = 0.10) -> float:
    """Wait (bounded) until the machine is idle: other developers' runs here skew every ratio.
    Returns the busy share of the last second looked at."""
    deadline = time.monotonic() + max_wait_s
    while True:
        b0, t0 = _busy_s(), time.monotonic()
        time.sleep(1.0)
        share = (_busy_s() - b0) / ((time.monotonic() - t0) * (os.cpu_count() or 1))
        if share < busy_below or time.monotonic() >= deadline:
            return share


def clean(measure, *args, attempts: int = 4, others_below: float = 0.05) -> dict:
    """``measure(*args)`` again (bounded) while other processes took more than ``others_below`` of the
    machine during it; the result says how many attempts it took and how busy the others were."""
    for attempt in range(1, attempts + 1):
        r = measure(*args)
        if r["others_cpu_share"] <= others_below:
            break
    r["attempts"] = attempt
    return r


class Meter:
    """CPU seconds used during a block: by our children (Locust, wrk: reaped before the block ends),
    by the host, by this process, and by everything else on the machine (interference)."""

    def __init__(self, host_pid: int | None = None):
        self.host_pid = host_pid

    def _host_cpu(self) -> float:
        if not self.host_pid:
            return 0.0
        import psutil
        t = psutil.Process(self.host_pid).cpu_times()
        return t.user + t.system

    def __enter__(self) -> dict:
        self.r = {}
        self._start = (time.monotonic(), cpu_s(resource.RUSAGE_CHILDREN), self._host_cpu(), cpu_s(), _busy_s())
        return self.r

    def __exit__(self, *exc) -> None:
        w0, c0, h0, s0, b0 = self._start
        wall = time.monotonic() - w0
        children, host, own = cpu_s(resource.RUSAGE_CHILDREN) - c0, self._host_cpu() - h0, cpu_s() - s0
        busy = _busy_s() - b0
        self.r.update(wall_s=round(wall, 3), load_cpu_s=round(children, 3), host_cpu_s=round(host, 3),
                      self_cpu_s=round(own, 3),
                      others_cpu_share=round(max(0.0, busy - children - host - own) / (wall * (os.cpu_count() or 1)), 3))


def locust_rps(url: str, users: int, duration_s: int, record_dir: Path | None, workdir: Path,
               host_pid: int | None = None) -> dict:
    """One closed-model Locust run of the restartbench locustfile; requests/s from Locust's own count."""
    spec = LoadSpec(users=users, sleep_share=0.0)
    load = Load(spec, url, duration_s, record_dir or workdir / "unused", time.monotonic(), workdir / "locust.log")
    argv = load.command() + ["--json"]
    if record_dir is None:                       # plain Locust: the same locustfile, no recorder
        i = argv.index("--record-dir")
        del argv[i:i + 2]
    if record_dir is not None:
        shutil.rmtree(record_dir, ignore_errors=True)          # rows of this run only (clean() may retry)
    wait_quiet()
    with Meter(host_pid) as m:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60, cwd=workdir,
                             start_new_session=True)
    stats = json.loads(out.stdout[out.stdout.index("["):])
    n = sum(s["num_requests"] for s in stats)
    rows = sum(max(0, len(p.read_bytes().splitlines()) - 1) for p in record_dir.glob("requests-*.csv")) \
        if record_dir else None
    return {"requests": n, "rps": n / duration_s, "rows": rows, **m,
            "load_cpu_ms_per_request": round(1000 * m["load_cpu_s"] / max(1, n), 4),
            "host_cpu_ms_per_request": round(1000 * m["host_cpu_s"] / max(1, n), 4)}


def load_rps(url: str, users: int, duration_s: int, processes: int, workdir: Path,
             host_pid: int | None = None) -> dict:
    """restartbench's load (recorder on) with ``processes`` Locust processes: rps from the raw rows."""
    rows_dir = workdir / f"rows-{processes}"
    shutil.rmtree(rows_dir, ignore_errors=True)
    load = Load(LoadSpec(users=users, sleep_share=0.0, processes=processes), url, duration_s, rows_dir,
                time.monotonic(), workdir / "locust.log")
    wait_quiet()
    with Meter(host_pid) as m:
        try:
            load.start()
            load.wait(duration_s + 60)
        finally:
            load.stop()
    df = load.frame()
    # the steady part: from when every worker sends to the end of the first one to stop
    begin = df.groupby("worker").t_start.min().max()
    end = df.groupby("worker").t_start.max().min()
    steady = df[(df.t_start >= begin) & (df.t_start < end)]
    return {"processes": processes, "requests": len(df), "rps": len(steady) / (end - begin),
            "workers": int(df.worker.nunique()), **m,
            "load_cpu_ms_per_request": round(1000 * m["load_cpu_s"] / max(1, len(df)), 4),
            "host_cpu_ms_per_request": round(1000 * m["host_cpu_s"] / max(1, len(df)), 4)}


def wrk_rps(url: str, connections: int, duration_s: int, threads: int, host_pid: int | None = None) -> dict:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk not found: apt-get install wrk")
    wait_quiet()
    with Meter(host_pid) as m:
        out = subprocess.run([wrk, f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", url + "/"],
                             capture_output=True, text=True, timeout=duration_s + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    n = int(re.search(r"(\d+) requests in", out).group(1))
    return {"connections": connections, "threads": threads, "rps": rps, **m,
            "load_cpu_ms_per_request": round(1000 * m["load_cpu_s"] / max(1, n), 4),
            "host_cpu_ms_per_request": round(1000 * m["host_cpu_s"] / max(1, n), 4)}


# -- the five measurements --------------------------------------------------------------------

def measure_recorder(host: Host, quick: bool, work: Path) -> dict:
    reps, duration, users = (2, 5, 50) if quick else (4, 8, 50)
    runs = {"plain": [], "recorder": []}
    for rep in range(reps):
        order = ("plain", "recorder") if rep % 2 == 0 else ("recorder", "plain")
        for mode in order:
            rec = work / f"rec-{rep}" if mode == "recorder" else None
            runs[mode].append(clean(locust_rps, host.url, users, duration, rec, work, host.target.pid))
    plain = statistics.median(r["rps"] for r in runs["plain"])
    recorded = statistics.median(r["rps"] for r in runs["recorder"])
    missing = [r["requests"] - r["rows"] for r in runs["recorder"]]
    # the same from Locust's CPU per request (less sensitive to what else runs on the machine)
    cpu_plain = statistics.median(r["load_cpu_ms_per_request"] for r in runs["plain"])
    cpu_rec = statistics.median(r["load_cpu_ms_per_request"] for r in runs["recorder"])
    return {"value": recorded / plain, "plain_rps": plain, "recorder_rps": recorded,
            "cpu_ratio": cpu_plain / cpu_rec, "plain_cpu_ms_per_request": cpu_plain,
            "recorder_cpu_ms_per_request": cpu_rec, "users": users, "duration_s": duration, "reps": reps,
            "rows_missing_vs_locust_count": missing, "runs": runs}


def measure_processes(host: Host, quick: bool, work: Path) -> dict:
    reps, duration, users = (1, 5, 50) if quick else (3, 8, 50)
    cores = os.cpu_count() or 1
    pid = host.target.pid
    kinds = [("load", n) for n in sorted({1, 2, cores})] + [("wrk", users), ("wrk", 2)]
    runs: dict[str, list[dict]] = {f"{k}-{n}": [] for k, n in kinds}
    for rep in range(reps):                       # interleaved, in a rotating order
        for kind, n in kinds[rep % len(kinds):] + kinds[:rep % len(kinds)]:
            if kind == "load":
                runs[f"load-{n}"].append(clean(load_rps, host.url, users, duration, n, work, pid))
            else:
                runs[f"wrk-{n}"].append(clean(wrk_rps, host.url, n, duration, 1 if n < cores else cores, pid))
    med = {key: {"rps": statistics.median(r["rps"] for r in rs),
                 "load_cpu_ms_per_request": statistics.median(r["load_cpu_ms_per_request"] for r in rs),
                 "host_cpu_ms_per_request": statistics.median(r["host_cpu_ms_per_request"] for r in rs)}
           for key, rs in runs.items()}
    best_load = max(v["rps"] for k, v in med.items() if k.startswith("load"))
    best_wrk = max(v["rps"] for k, v in med.items() if k.startswith("wrk"))
    return {"value": best_load / best_wrk, "median": med, "best_load_rps": best_load, "best_wrk_rps": best_wrk,
            "users": users, "duration_s": duration, "reps": reps, "cores": cores, "runs": runs}


TREE = """
import os, sys, time
def child(n):
    for _ in range(n):
        if os.fork() == 0:
            time.sleep(120); os._exit(0)
# root + 3 direct children + 4 children with 3 children each = 20 processes
child(3)
for _ in range(4):
    if os.fork() == 0:
        child(3); time.sleep(120); os._exit(0)
time.sleep(120)
"""


def measure_census(quick: bool, work: Path) -> dict:
    duration = 5.0 if quick else 15.0
    root = procs.spawn([sys.executable, "-c", TREE])
    try:
        procs.wait_until(lambda: len(procs.session_members(root.pid)) >= 20, 10)
        n = len(procs.session_members(root.pid))
        census = Census(roots=lambda: [root.pid], role=lambda title, *_: "app", t0=time.monotonic(), interval_s=0.1)
        wait_quiet()
        with Meter() as m:
            census.start()
            time.sleep(duration)
            census.stop()
        cpu, wall = m["self_cpu_s"], m["wall_s"]
        frame = census.frame()
    finally:
        procs.stop_tree(root, 1.0, signal.SIGKILL)
    last = frame[frame.t == frame.t.max()]
    return {"value": 100.0 * cpu / wall, "cpu_s": cpu, "wall_s": wall, "rounds": census.rounds,
            "ms_per_round": 1000.0 * cpu / max(1, census.rounds), "tree_processes": n,
            "processes_in_last_sample": len(last), "others_cpu_share": m["others_cpu_share"],
            "system_processes": sum(1 for d in os.listdir("/proc") if d.isdigit())}


def measure_census_unit(quick: bool, work: Path) -> dict:
    from restartbench.hosts.unit import discovery as units
    from restartbench.hosts.unit.target import UnitTarget

    duration = 5 if quick else 15
    try:
        inst = units.resolve()
    except installations.InstallationError as exc:
        return {"value": float("nan"), "skipped": str(exc).splitlines()[0]}
    target = UnitTarget(inst, apps.build("hello"), work / "unit")
    target.start()
    out: dict = {"unit": f"{inst.label} {inst.version}"}
    try:
        for phase in ("idle", "loaded"):
            census = Census(roots=target.roots, role=target.role, t0=time.monotonic(), interval_s=0.1,
                            status=target.status_sample)
            if phase == "idle":
                wait_quiet()
            t = time.monotonic()
            census.start()
            if phase == "idle":
                time.sleep(duration)
            else:
                out["load"] = {k: v for k, v in load_rps(target.url, 20, duration, 1, work).items()
                               if k in ("rps", "requests")}
            census.stop()
            wall = time.monotonic() - t
            out[phase] = {"cpu_share_pct": round(100.0 * census.cpu_s / wall, 3), "rounds": census.rounds,
                          "ms_per_round": round(1000.0 * census.cpu_s / max(1, census.rounds), 3),
                          "wall_share_pct": round(100.0 * census.busy_s / wall, 3),
                          "processes": census.last_count}
    finally:
        target.stop()
    out["value"] = max(out["idle"]["cpu_share_pct"], out["loaded"]["cpu_share_pct"])
    return out


def measure_analysis(quick: bool, work: Path) -> dict:
    import scale as bench_scale
    rows = 1_000_000 if quick else 10_000_000
    m = bench_scale.measure(rows)
    scaled = m["summarize_s"] * 10_000_000 / rows
    return {"value": scaled, "rows": rows, "read_s": m["read_s"], "summarize_s": m["summarize_s"],
            "restarts": m["restarts"], "scaled_to_10M": rows != 10_000_000}


def measure_accuracy(host: Host, quick: bool, work: Path) -> dict:
    from restartbench.analysis.metrics import Requests, window_stats
    from restartbench.analysis.windows import assign, restart_windows
    stalls, stall_s, every = (4, 0.3, 1.0) if quick else (10, 0.3, 1.0)
    duration = int(1.5 + stalls * every + 1.5)
    t0 = time.monotonic()
    load = Load(LoadSpec(users=20, sleep_share=0.0), host.url, duration, work / "acc-rows", t0, work / "acc.log")
    pid = host.target.pid
    sent: list[tuple[float, float]] = []
    stop_lag: list[float] = []
    wait_quiet()
    try:
        load.start()
        procs.wait_until(load.first_request_seen, 30)
        next_at = time.monotonic() + 1.0
        for _ in range(stalls):
            time.sleep(max(0.0, next_at - time.monotonic()))
            t_kill = time.monotonic()
            os.kill(pid, signal.SIGSTOP)
            # SIGSTOP is a group stop: kill() returns before every thread has stopped (a thread that
            # must dequeue it may wait for a CPU). The stall starts when all of them have.
            stopped = procs.wait_until(lambda: all_stopped(pid), 1.0, step_s=0)
            t_stop = time.monotonic()
            stop_lag.append(t_stop - t_kill if stopped else float("nan"))
            until = t_stop + stall_s
            time.sleep(max(0.0, until - time.monotonic() - 0.002))
            while time.monotonic() < until:          # the last 2 ms busy: a stall of exactly stall_s
                pass
            t_cont = time.monotonic()
            os.kill(pid, signal.SIGCONT)
            sent.append((t_stop - t0, t_cont - t0))
            next_at += every
        load.wait(duration + 30)
    finally:
        os.kill(pid, signal.SIGCONT)
        load.stop()
    df = load.frame()
    restarts = pd.DataFrame({"t_sent": [s for s, _ in sent]})
    windows = restart_windows(restarts, window_s=every - 0.05)
    req = Requests.from_frame(df)
    phase, pos = assign(req.t_start, windows)
    stats = window_stats(req, windows, phase, pos)
    known = np.array([c - s for s, c in sent])
    errors_ms = (stats.recovery_s.to_numpy() - known) * 1000.0
    return {"value": float(np.nanmax(np.abs(errors_ms))), "stalls": stalls, "stall_s": stall_s,
            "known_stall_ms": [round(k * 1000, 3) for k in known],
            "recovery_ms": [round(r * 1000, 3) for r in stats.recovery_s],
            "error_ms": [round(e, 3) for e in errors_ms], "mean_error_ms": float(np.nanmean(errors_ms)),
            "sigstop_to_all_threads_stopped_ms": [round(x * 1000, 3) for x in stop_lag], "requests": len(df)}


def all_stopped(pid: int) -> bool:
    """Every thread of ``pid`` in the stopped state (``T``)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        if data[data.rfind(b")") + 2:][:1] not in (b"T", b"t"):
            return False
    return True


# -- main -------------------------------------------------------------------------------------

def verdict(name: str, value: float) -> bool:
    _, op, goal = GOALS[name]
    return value >= goal if op == ">=" else value <= goal


def preflight(names: list[str], out: Path) -> str:
    """Everything the chosen measurements need, checked before any of them starts: what is missing, in
    one line saying what to install ("" when nothing)."""
    missing = []
    if "processes" in names and shutil.which("wrk") is None:
        missing.append("wrk (the reference load generator of 'processes'): apt-get install wrk")
    if set(names) & {"recorder", "processes", "accuracy"}:
        try:
            tools.wasmtime()
        except tools.ToolMissing as exc:
            missing.append(str(exc).splitlines()[0])
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(out.parent, os.W_OK):
            raise PermissionError
    except OSError:
        missing.append(f"{out.parent} is not writable: pass --out elsewhere")
    return "; ".join(missing)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs, 1 M rows (scaled): a smoke run")
    ap.add_argument("--only", default="", help="comma-separated: " + ",".join(GOALS))
    ap.add_argument("--out", type=Path, default=REPO / "results" / "overhead.json")
    args = ap.parse_args(argv)
    names = [n for n in (args.only.split(",") if args.only else GOALS) if n]
    unknown = set(names) - set(GOALS)
    if unknown:
        ap.error(f"unknown measurement(s): {', '.join(sorted(unknown))}")
    problem = preflight(names, args.out)
    if problem:                       # before any measuring: nothing is half done
        print(f"error: cannot measure {', '.join(names)}: missing {problem} (or leave it out with --only)",
              file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="rb-overhead-work-"))
    results: dict[str, dict] = {}
    try:
        with Host() if set(names) & {"recorder", "processes", "accuracy"} else _NoHost() as host:
            for name in names:
                t = time.monotonic()
                print(f"measuring {name} ...", file=sys.stderr, flush=True)
                if name == "recorder":
                    results[name] = measure_recorder(host, args.quick, work)
                elif name == "processes":
                    results[name] = measure_processes(host, args.quick, work)
                elif name == "census":
                    results[name] = measure_census(args.quick, work)
                elif name == "census-unit":
                    results[name] = measure_census_unit(args.quick, work)
                elif name == "analysis":
                    results[name] = measure_analysis(args.quick, work)
                elif name == "accuracy":
                    results[name] = measure_accuracy(host, args.quick, work)
                results[name]["seconds"] = round(time.monotonic() - t, 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'measurement':<10} {'what':<52} {'value':>9} {'goal':>8}  met")
    for name, r in results.items():
        what, op, goal = GOALS[name]
        r["goal"] = f"{op} {goal:g}"
        if r.get("skipped"):
            print(f"{name:<10} {what:<52} skipped: {r['skipped']}")
            continue
        r["met"] = verdict(name, r["value"])
        print(f"{name:<10} {what:<52} {r['value']:>9.3f} {op + ' ' + format(goal, 'g'):>8}  "
              f"{'yes' if r['met'] else 'NO'}")
    doc = {"quick": args.quick, "machine": _machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
           "command": " ".join([".venv/bin/python", "benchmarks/overhead.py"] + (argv or sys.argv[1:])),
           "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.exists() and args.only else {}
    if previous.get("results") and previous.get("quick") == args.quick:
        doc["results"] = {**previous["results"], **results}     # --only updates its part
    args.out.write_text(json.dumps(doc, indent=1, default=_jsonable) + "\n")
    print(f"\nwritten: {args.out}")
    return 0


def _jsonable(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    return str(x)


def _machine() -> dict:
    from restartbench.run import machine
    return machine()


if __name__ == "__main__":
    sys.exit(main())
