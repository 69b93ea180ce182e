"""How long summarising a big run takes: N synthetic requests, a restart every 5 s.

    .venv/bin/python benchmarks/scale.py 10000000

Prints the seconds to read the run and to compute its summary (from the files, as
``write_summary`` does). Not a test: it writes a few hundred MB under a temp dir and removes it.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from restartbench.results import (FORMAT, OUTCOMES, PROCESS_COLUMNS, REQUEST_COLUMNS,
                                  RESTART_COLUMNS, read_run, write_frame, write_json)

from restartbench.analysis.summary import summarize


def synthetic_run(root: Path, n_requests: int, rps: float = 5000.0, restart_every: float = 5.0,
                  seed: int = 1) -> Path:
    """Write a results dir with ``n_requests`` rows at ``rps`` (unsorted, as a recorder writes
    them: by end time), restarts every ``restart_every`` s and a census every 100 ms."""
    rng = np.random.default_rng(seed)
    duration = n_requests / rps
    t_start = np.sort(rng.uniform(0.0, duration, n_requests))
    latency = rng.lognormal(np.log(0.004), 0.5, n_requests)
    outcome = rng.choice(len(OUTCOMES), n_requests, p=[0.97, 0.01, 0.01, 0.005, 0.005])
    t_end = t_start + latency
    order = np.argsort(t_end, kind="stable")
    requests = pd.DataFrame({
        "t_start": t_start[order], "t_end": t_end[order], "latency_ms": latency[order] * 1000,
        "status": np.where(outcome[order] == 0, 200, 0).astype("int32"),
        "outcome": pd.Categorical.from_codes(outcome[order], categories=list(OUTCOMES)),
        "error": pd.Series(pd.NA, index=range(n_requests), dtype="string"),
        "name": pd.Series("/", index=range(n_requests), dtype="string"),
        "worker": (np.arange(n_requests) % 64).astype("int16"),
        "t_intended": np.nan,
    })
    t_sent = np.arange(restart_every, duration, restart_every)
    restarts = pd.DataFrame({"index": np.arange(1, len(t_sent) + 1), "kind": "api", "t_sent": t_sent,
                             "t_done": t_sent + 0.05, "http_status": 200, "body": ""})
    samples = np.arange(int(duration * 10)) / 10
    gen = np.searchsorted(t_sent, samples, side="right")
    procs = []
    for pid, role in enumerate(("main", "controller", "router", "prototype", "app", "app"), 1):
        procs.append(pd.DataFrame({
            "t": samples, "pid": pid if role in ("main", "controller", "router") else pid * 1000 + gen,
            "ppid": 1, "role": role, "generation": 0 if pid <= 3 else gen, "rss": 20 << 20,
            "uss": float(16 << 20), "num_fds": 12, "num_threads": 3, "cpu_s": 0.0,
            "state": "sleeping", "born": 0.0 if pid <= 3 else np.r_[0.0, t_sent + 0.2][gen],
            "title": role}))
    path = root / "bench"
    path.mkdir()
    write_json(path / "run.json", {"format": FORMAT, "run_id": "bench", "status": "complete",
                                   "target": {"kind": "unit", "name": "synthetic"},
                                   "scenario": {"name": "bench"}, "duration_s": duration})
    write_frame(path / "requests.parquet", requests, REQUEST_COLUMNS)
    write_frame(path / "restarts.csv", restarts, RESTART_COLUMNS)
    write_frame(path / "processes.parquet", pd.concat(procs, ignore_index=True), PROCESS_COLUMNS)
    return path


def measure(n_requests: int) -> dict[str, float]:
    """Seconds to read the requests and to summarise a synthetic run of ``n_requests`` rows."""
    with tempfile.TemporaryDirectory() as tmp:
        path = synthetic_run(Path(tmp), n_requests)
        run = read_run(path)
        t0 = time.perf_counter()
        run.requests()
        t1 = time.perf_counter()
        summary = summarize(run)
        t2 = time.perf_counter()
    assert summary["overall"]["requests"] == n_requests
    return {"rows": n_requests, "read_s": t1 - t0, "summarize_s": t2 - t1,
            "restarts": summary["overall"]["restarts"]}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    n = int(float(argv[0])) if argv else 10_000_000
    result = measure(n)
    print(f"{result['rows']:,} requests, {result['restarts']} restarts: read {result['read_s']:.2f} s, "
          f"summarize (read + metrics) {result['summarize_s']:.2f} s")


if __name__ == "__main__":
    main()
