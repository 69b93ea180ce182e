"""The load: Locust in its own process(es), recording every request raw; collected after the run.

Locust monkey-patches the stdlib with gevent, so it never runs inside the orchestrator: ``Load``
starts ``python -m locust -f locustfiles/restart_load.py --headless ...`` as a child and talks to it
only through arguments and the files in ``record_dir`` (see ``locustfiles/recorder.py`` for the row
format):

- one process (default): ``requests-<pid>.csv``;
- ``processes`` = N > 1: Locust's ``--processes N`` (a master and N forked workers, all on loopback);
  every worker writes its own ``requests-<pid>.csv``, the master none;
- ``expect_workers`` = N > 0: this machine runs only the master (bound to ``master_bind``) and waits
  for N workers started elsewhere with ``worker_command()``; they ship their rows to the master,
  which writes ``requests-w-<worker>.csv``, and ``clock-offsets.json`` (each worker's measured
  clock offset, see ``clock_offsets()``).

``frame()`` merges every file into the requests.parquet contract; ``worker`` is the file's index.
"""

from __future__ import annotations

import glob
import json
import math
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from . import procs, results
from .net import free_port

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
    other_share: float = 0.0          # share of users requesting /other (a second app's route)
    fresh_connections: bool = False   # a new connection per request instead of keep-alive
    rate: float = 0.0
    processes: int = 1                # Locust processes (--processes N when > 1)
    expect_workers: int = 0           # > 0: distributed, run the master here, N workers elsewhere
    master_bind: str = "127.0.0.1:5557"   # where that master listens for its workers
    locustfile: str = str(LOCUSTFILE)

    def __post_init__(self) -> None:
        if self.processes < 1:
            raise ValueError(f"load processes must be at least 1, got {self.processes}")
        if self.expect_workers < 0:
            raise ValueError(f"expect_workers must not be negative, got {self.expect_workers}")
        if self.expect_workers and self.processes > 1:
            raise ValueError("Locust runs either --processes N here or a master for remote workers, not "
                             "both: drop --load-processes or --expect-workers")
        self.master_address()           # checks the format

    def master_address(self) -> tuple[str, int]:
        """``master_bind`` as (host, port)."""
        host, sep, port = self.master_bind.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"master bind {self.master_bind!r}: use HOST:PORT, e.g. 127.0.0.1:5557")
        return host.strip("[]"), int(port)

    def describe(self) -> dict:
        return asdict(self)


class Load:
    """One Locust run against ``url`` for ``duration_s``, recording into ``record_dir``."""

    def __init__(self, spec: LoadSpec, url: str, duration_s: float, record_dir: Path, t0: float,
                 log_path: Path, other_url: str | None = None):
        self.spec, self.url, self.duration_s = spec, url, duration_s
        self.other_url = other_url            # a second app's URL: ``other_share`` of the users request it
        self.record_dir, self.t0, self.log_path = Path(record_dir), t0, Path(log_path)
        self.proc = None
        self._counted: dict[str, tuple[int, int, int]] = {}   # file -> (bytes read, rows, not ok)

    def command(self) -> list[str]:
        s = self.spec
        argv = [sys.executable, "-m", "locust", "-f", s.locustfile, "--headless", "--host", self.url,
                "-u", str(s.users), "-r", str(s.spawn_rate or s.users),
                "-t", f"{max(1, round(self.duration_s))}s", "--stop-timeout", str(math.ceil(s.request_timeout_s + 1)),
                "--exit-code-on-error", "0", "--only-summary", "--loglevel", "WARNING",
                "--record-dir", str(self.record_dir), "--t0", repr(self.t0),
                "--request-timeout", f"{s.request_timeout_s:g}", "--sleep-share", f"{s.sleep_share:g}",
                "--sleep-ms", str(s.sleep_ms), "--rate", f"{s.rate:g}"]
        if s.other_share and self.other_url:
            argv += ["--other-share", f"{s.other_share:g}", "--other-url", self.other_url]
        if s.fresh_connections:
            argv.append("--fresh-connections")
        if s.processes > 1:
            # the forked workers talk to their master over loopback, on a port of their own
            port = free_port("127.0.0.1")
            argv += ["--processes", str(s.processes), "--master-bind-host", "127.0.0.1",
                     "--master-bind-port", str(port), "--master-host", "127.0.0.1", "--master-port", str(port)]
        elif s.expect_workers:
            host, port = s.master_address()
            argv += ["--master", "--expect-workers", str(s.expect_workers), "--master-bind-host", host,
                     "--master-bind-port", str(port), "--expect-workers-max-wait", "60"]
        return argv

    def worker_command(self, master_host: str | None = None, python: str = "") -> list[str]:
        """The one command that starts a worker for a distributed run (on any machine with this
        locustfile and Locust): it takes every setting from the master and ships its rows back."""
        host, port = self.spec.master_address()
        if master_host is None:
            master_host = "127.0.0.1" if host in ("0.0.0.0", "*", "::") else host
        prefix = [python, "-m", "locust"] if python else ["locust"]
        return prefix + ["-f", self.spec.locustfile, "--worker", "--master-host", master_host,
                         "--master-port", str(port), "--loglevel", "WARNING"]

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
        return procs.stop_tree(self.proc, grace_s).exited

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

    def clock_offsets(self) -> list[dict]:
        """Each worker's measured clock offset to the master (distributed and ``processes`` > 1 runs;
        empty for a single process), one entry per worker: ``worker`` (its index in requests.parquet,
        or -1 if it recorded nothing), ``file``, ``hostname``, ``pid``, ``offset_s`` (master clock −
        worker clock, from the ping with the shortest round trip), ``rtt_s`` (that round trip: the
        offset is within ±rtt_s/2), ``same_clock`` (same kernel and |offset| <= rtt: no shift applied),
        ``applied_offset_s`` (the shift applied to its rows), ``offset_end_s``/``rtt_end_s`` (measured
        again when it stopped: the drift over the run)."""
        return read_offsets(self.record_dir, self.files())


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


def read_offsets(record_dir: Path, files: list[str]) -> list[dict]:
    """``clock-offsets.json`` of a record dir, each entry tagged with its ``worker`` index in ``files``."""
    path = Path(record_dir) / "clock-offsets.json"
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    index = {Path(f).name: i for i, f in enumerate(files)}
    return [{"worker": index.get(e.get("file", ""), -1), **e} for e in entries]


def _read_csv(path: str) -> pa.Table:
    """One recorder file, whole lines only: a line cut short by a killed writer (it can still have 8
    fields, e.g. with its last number truncated) is dropped, not misread."""
    with open(path, "rb") as f:
        data = f.read()
    data = data[: data.rfind(b"\n") + 1]
    if not data:
        return pa.table({name: pa.array([], type=t) for name, t in _CSV_TYPES.items()})
    opts = pacsv.ConvertOptions(column_types=_CSV_TYPES, strings_can_be_null=False)
    parse = pacsv.ParseOptions(invalid_row_handler=lambda row: "skip")   # a malformed row
    return pacsv.read_csv(pa.BufferReader(data), convert_options=opts, parse_options=parse)

