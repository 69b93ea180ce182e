"""Synthetic results directories whose true metrics are known by construction.

Times are built from integers (``k / rate``) so window edges fall exactly where intended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from restartbench.results import (FORMAT, PROCESS_COLUMNS, REQUEST_COLUMNS, RESTART_COLUMNS,
                                  read_run, write_frame, write_json)

MiB = 1 << 20


# -- requests ---------------------------------------------------------------------------------

def requests_frame(duration: float = 30.0, rate: int = 100, latency_s: float = 0.005,
                   stalls: Iterable[tuple[float, float]] = (),
                   timeouts: Iterable[tuple[float, float]] = (),
                   errors: Iterable[tuple[float, float]] = (),
                   timeout_s: float = 1.0, open_model: bool = False) -> pd.DataFrame:
    """One request every ``1/rate`` s from 0 to ``duration``, ``ok`` after ``latency_s``.

    ``stalls`` (a, b): requests started in [a, b) end ok at b. ``timeouts`` (a, b): they end as
    ``timeout`` after ``timeout_s``. ``errors`` (a, b): they end as ``conn_error`` at once.
    """
    k = np.arange(int(round(duration * rate)))
    t_start = k / rate
    t_end = t_start + latency_s
    outcome = np.full(len(k), "ok", dtype=object)
    status = np.full(len(k), 200)
    for a, b in stalls:
        m = (t_start >= a) & (t_start < b)
        t_end[m] = b
    for a, b in timeouts:
        m = (t_start >= a) & (t_start < b)
        t_end[m] = t_start[m] + timeout_s
        outcome[m] = "timeout"
        status[m] = 0
    for a, b in errors:
        m = (t_start >= a) & (t_start < b)
        t_end[m] = t_start[m]
        outcome[m] = "conn_error"
        status[m] = 0
    frame = pd.DataFrame({
        "t_start": t_start, "t_end": t_end, "latency_ms": (t_end - t_start) * 1000.0,
        "status": status, "outcome": outcome, "error": pd.NA, "name": "/", "worker": k % 4,
        "t_intended": t_start if open_model else np.nan,
    })
    return frame


# -- restarts ---------------------------------------------------------------------------------

def restarts_frame(times: Sequence[float], api_s: float = 0.05, http_status: int = 200) -> pd.DataFrame:
    times = np.asarray(times, dtype="float64")
    return pd.DataFrame({"index": np.arange(1, len(times) + 1), "kind": "api",
                         "t_sent": times, "t_done": times + api_s,
                         "http_status": http_status, "body": '{"success": "ok"}'})


# -- processes --------------------------------------------------------------------------------

@dataclass
class Proc:
    pid: int
    role: str
    generation: int
    born: float
    died: float = np.inf
    rss: int = 10 * MiB
    fds: int = 10
    threads: int = 2
    rss_per_restart: int = 0     # growth of this process's rss after each restart
    fds_per_restart: int = 0


@dataclass
class Tree:
    """A Unit-like process tree: main, controller, router, and per generation one prototype and
    ``n_app`` apps, born ``spawn_s`` after the restart; the old generation exits ``exit_s`` after."""

    restarts: Sequence[float]
    duration: float = 30.0
    n_app: int = 2
    spawn_s: float = 0.3
    exit_s: float = 0.5
    lingering_generations: set[int] = field(default_factory=set)   # these never exit
    rss_per_restart: int = 0
    fds_per_restart: int = 0
    only_main: bool = False      # wasmtime: one process per generation, role main

    def procs(self) -> list[Proc]:
        gens = [0.0, *[t + self.spawn_s for t in self.restarts]]
        deaths = [t + self.exit_s for t in self.restarts] + [np.inf]
        out: list[Proc] = []
        pid = 100
        if not self.only_main:
            out += [Proc(1, "main", 0, -1.0, rss_per_restart=self.rss_per_restart,
                         fds_per_restart=self.fds_per_restart),
                    Proc(2, "controller", 0, -1.0), Proc(3, "router", 0, -1.0)]
        for g, born in enumerate(gens):
            died = np.inf if g in self.lingering_generations else deaths[g]
            if self.only_main:
                out.append(Proc(pid, "main", g, born if g else -1.0, died,
                                rss_per_restart=self.rss_per_restart,
                                fds_per_restart=self.fds_per_restart))
                pid += 1
                continue
            out.append(Proc(pid, "prototype", g, born, died))
            pid += 1
            for _ in range(self.n_app):
                out.append(Proc(pid, "app", g, born, died, rss=20 * MiB))
                pid += 1
        return out

    def frame(self, dt_rate: int = 10, uss_every: int = 1) -> pd.DataFrame:
        samples = np.arange(int(round(self.duration * dt_rate))) / dt_rate
        restarts = np.asarray(self.restarts, dtype="float64")
        n_before = np.searchsorted(restarts, samples, side="right")
        parts = []
        for p in self.procs():
            alive = (samples >= p.born) & (samples < p.died)
            t = samples[alive]
            n = n_before[alive]
            rss = p.rss + p.rss_per_restart * n
            uss = np.where((np.arange(len(samples))[alive] % uss_every) == 0, rss * 0.8, np.nan)
            parts.append(pd.DataFrame({
                "t": t, "pid": p.pid, "ppid": 1, "role": p.role, "generation": p.generation,
                "rss": rss, "uss": uss, "num_fds": p.fds + p.fds_per_restart * n,
                "num_threads": p.threads, "cpu_s": 0.0, "state": "sleeping",
                "born": p.born, "title": p.role}))
        return pd.concat(parts, ignore_index=True).sort_values(["t", "pid"], kind="stable")


# -- the run directory ------------------------------------------------------------------------

def write_run(root: Path, run_id: str = "run1", *, requests: pd.DataFrame | None = None,
              restarts: pd.DataFrame | None = None, processes: pd.DataFrame | None = None,
              status: str = "complete", target: dict[str, Any] | None = None,
              scenario: dict[str, Any] | None = None, fmt: Any = FORMAT,
              meta: dict[str, Any] | None = None):
    """Write a results directory and open it (its path if ``fmt`` is not readable); a frame
    passed as None is left out, as in an interrupted run."""
    path = Path(root) / run_id
    path.mkdir(parents=True)
    write_json(path / "run.json", {
        "format": fmt, "run_id": run_id, "status": status, "reason": None,
        "target": target or {"kind": "unit", "name": "1.34.0", "version": "1.34.0",
                             "arch": "x86_64", "runner": [], "emulated": False},
        "scenario": scenario if scenario is not None else {"name": "api-restart"},
        "t0_wall": 1_700_000_000.0, "duration_s": 30.0, **(meta or {})})
    if requests is not None:
        write_frame(path / "requests.parquet", requests, REQUEST_COLUMNS)
    if restarts is not None:
        write_frame(path / "restarts.csv", restarts, RESTART_COLUMNS)
    if processes is not None:
        write_frame(path / "processes.parquet", processes, PROCESS_COLUMNS)
    return read_run(path) if fmt == FORMAT else path


def clean_run(root: Path, run_id: str = "clean", restarts: Sequence[float] = (10.0, 15.0, 20.0),
              duration: float = 30.0, **tree: Any):
    """A healthy run: restarts every 5 s, short spawn, no timeouts, no lingering, flat memory."""
    return write_run(root, run_id, requests=requests_frame(duration),
                     restarts=restarts_frame(restarts),
                     processes=Tree(restarts, duration=duration, **tree).frame())
