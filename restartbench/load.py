"""The load: Locust in its own process(es), recording every request raw; collected after the run.

Locust monkey-patches the stdlib with gevent, so it never runs inside the orchestrator: ``Load``
starts ``python -m locust -f locustfiles/restart_load.py --headless ...`` as a child and talks to it
only through arguments and the files in ``record_dir`` (one ``requests-<pid>.csv`` per Locust
process; see ``locustfiles/recorder.py`` for the row format).
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from . import procs, results

LOCUSTFILE = Path(__file__).resolve().parent.parent / "locustfiles" / "restart_load.py"

_CSV_TYPES = {"t_start": pa.float64(), "t_end": pa.float64(), "latency_ms": pa.float64(),
              "status": pa.int32(), "outcome": pa.string(), "name": pa.string(), "error": pa.string(),
              "t_intended": pa.float64()}


@dataclass
class LoadSpec:
    """How much load, of which shape. ``rate`` > 0 selects the open model (requests/s in total)."""

    users: int = 20
    spawn_rate: float = 0.0           # users/s; 0 = all at once
    request_timeout_s: float = 2.0
    sleep_share: float = 0.1
    sleep_ms: int = 500
    rate: float = 0.0
    processes: int = 1                # Locust processes (--processes N when > 1)
    locustfile: str = str(LOCUSTFILE)

    def describe(self) -> dict:
        return asdict(self)


class Load:
    """One Locust run against ``url`` for ``duration_s``, recording into ``record_dir``."""

    def __init__(self, spec: LoadSpec, url: str, duration_s: float, record_dir: Path, t0: float,
                 log_path: Path):
        self.spec, self.url, self.duration_s = spec, url, duration_s
        self.record_dir, self.t0, self.log_path = Path(record_dir), t0, Path(log_path)
        self.proc = None
        self._counted: dict[str, tuple[int, int, int]] = {}   # file -> (bytes read, rows, not ok)

    def command(self) -> list[str]:
        s = self.spec
        argv = [sys.executable, "-m", "locust", "-f", s.locustfile, "--headless", "--host", self.url,
                "-u", str(s.users), "-r", str(s.spawn_rate or s.users),
                "-t", f"{max(1, round(self.duration_s))}s", "--stop-timeout", f"{s.request_timeout_s + 1:g}",
                "--exit-code-on-error", "0", "--only-summary", "--loglevel", "WARNING",
                "--record-dir", str(self.record_dir), "--t0", repr(self.t0),
                "--request-timeout", f"{s.request_timeout_s:g}", "--sleep-share", f"{s.sleep_share:g}",
                "--sleep-ms", str(s.sleep_ms), "--rate", f"{s.rate:g}"]
        if s.processes > 1:
            argv += ["--processes", str(s.processes)]
        return argv

    def start(self) -> None:
        self.record_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = procs.spawn(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.record_dir,
                                env=env)
        log.close()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout_s: float) -> bool:
        """Wait for Locust to finish on its own; True if it did."""
        return procs.wait_until(lambda: not self.running(), timeout_s, step_s=0.05)

    def stop(self, grace_s: float = 5.0) -> bool:
        """Stop Locust (SIGTERM lets it flush its files), then kill its whole session."""
        if self.proc is None:
            return True
        return procs.stop_group(self.proc, grace_s, signal.SIGTERM)

    def files(self) -> list[str]:
        return sorted(glob.glob(str(self.record_dir / "requests-*.csv")))

    def progress(self) -> tuple[int, int]:
        """(requests recorded so far, of which not ok), read incrementally from the files."""
        total = bad = 0
        for path in self.files():
            offset, rows, not_ok = self._counted.get(path, (0, 0, 0))
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            whole = chunk[: chunk.rfind(b"\n") + 1]          # count whole lines only
            lines = whole.count(b"\n") - (1 if offset == 0 and whole else 0)   # minus the header
            rows += lines
            not_ok += lines - whole.count(b",ok,")
            end = len(whole)
            self._counted[path] = (offset + end, rows, not_ok)
            total += rows
            bad += not_ok
        return total, bad

    def first_request_seen(self) -> bool:
        return self.progress()[0] > 0

    def frame(self) -> pd.DataFrame:
        """Every recorded request, all Locust processes merged, in the requests.parquet contract."""
        return read_records(self.files())


def read_records(paths: list[str]) -> pd.DataFrame:
    """Merge recorder CSV files into one frame (``worker`` = file index), tolerating a cut last line."""
    frames = []
    for worker, path in enumerate(paths):
        table = _read_csv(path)
        frame = table.to_pandas()
        frame["worker"] = worker
        frames.append(frame)
    if not frames:
        return results.empty_frame(results.REQUEST_COLUMNS)
    frame = pd.concat(frames, ignore_index=True).sort_values("t_start", kind="stable")
    frame["error"] = frame["error"].where(frame["error"].str.len() > 0)
    return results.conform(frame, results.REQUEST_COLUMNS)


def _read_csv(path: str) -> pa.Table:
    opts = pacsv.ConvertOptions(column_types=_CSV_TYPES, strings_can_be_null=False)
    parse = pacsv.ParseOptions(invalid_row_handler=lambda row: "skip")   # a half-written last row
    return pacsv.read_csv(path, convert_options=opts, parse_options=parse)

