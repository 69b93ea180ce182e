"""The results contract: one directory per run, written atomically, read with a format check.

docs/results.md is the contract (every file, column and key; summary.json's layout); this module
writes and reads it. It is the bottom layer: it imports nothing else of restartbench but ``metadata`` (the keys of its JSON
files, typed). The producer
side (hosts, census, load, run) writes through it; the consumer side (analysis) reads through it.
The column dtypes below (REQUEST_COLUMNS, RESTART_COLUMNS, PROCESS_COLUMNS, STATUS_COLUMNS) are the
contract's, in code.

Every file is written under a temporary name and renamed into place; ``run.json`` is written
first with status ``running`` and rewritten last, so a reader never sees a half-written file and
a run whose orchestrator died is recognisable (status ``running``, orchestrator pid gone).
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from .metadata import RUN_KEYS, RunInfo, problems

FORMAT = 2
READABLE = (1, 2)          # format 1: restarts.csv without method, path and name (read as empty)

STATUSES = ("running", "complete", "interrupted", "failed")
OUTCOMES = ("ok", "http_error", "timeout", "conn_error", "other")
#: the role every host may give a process it does not otherwise name; the other roles are the host's own
#: (``Host.roles``: Unit's main, controller, router, prototype, app; wasmtime's main)
OTHER_ROLE = "other"

#: requests.parquet: column -> dtype. ``t_intended`` is NaN in the closed model.
REQUEST_COLUMNS = {
    "t_start": "float64",
    "t_end": "float64",
    "latency_ms": "float64",
    "status": "int32",
    "outcome": "category",
    "error": "string",
    "name": "string",
    "worker": "int16",
    "t_intended": "float64",
}

#: restarts.csv: column -> dtype.
RESTART_COLUMNS = {
    "index": "int64",
    "kind": "string",
    "t_sent": "float64",
    "t_done": "float64",
    "http_status": "int32",
    "body": "string",
    "method": "string",       # format 2: the request the action made ("" when none)
    "path": "string",
    "name": "string",         # format 2: a scenario change's name
}

#: processes.parquet: column -> dtype. ``uss`` is NaN when not sampled this round.
PROCESS_COLUMNS = {
    "t": "float64",
    "pid": "int64",
    "ppid": "int64",
    "role": "category",
    "generation": "int32",
    "rss": "int64",
    "uss": "float64",
    "num_fds": "int32",
    "num_threads": "int32",
    "cpu_s": "float64",
    "state": "string",
    "born": "float64",
    "title": "string",
    "tcp_fds": "float64",     # TCP sockets among num_fds (client connections); sampled with uss, else NaN
}

#: status.parquet (optional): one row per host counter per sample.
STATUS_COLUMNS = {"t": "float64", "key": "string", "value": "float64"}

#: how the orchestrator's own lines in host.log begin (see the module docstring)
LOG_MARK = "--- restartbench"
#: one such line: its event (start, restart, stop), the restart index or stop signal, and the rest
LOG_MARK_LINE = (r"^--- restartbench \S+ \S+ (?P<event>start|restart|stop)(?: (?P<arg>[^:\s]+))?:"
                 r" ?(?P<rest>.*)$")


def log_mark(event: str) -> bytes:
    """An orchestrator line for host.log: ``event`` is ``start: …``, ``restart 3: config``, ``stop: SIGTERM``."""
    return f"{LOG_MARK} {time.strftime('%Y/%m/%d %H:%M:%S')} {event}\n".encode()


class FormatError(ValueError):
    """A results directory this version cannot read (missing, corrupt or of another format)."""


# -- writing ----------------------------------------------------------------------------------

def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and a rename."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_frame(path: Path, frame: pd.DataFrame, columns: dict[str, str] | None = None) -> None:
    """Write a frame as parquet (or CSV if ``path`` ends in .csv), atomically, coerced to ``columns``."""
    path = Path(path)
    if columns is not None:
        frame = conform(frame, columns)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if path.suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def conform(frame: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """Return ``frame`` with exactly ``columns`` (missing ones filled with NA) in contract dtypes."""
    out = pd.DataFrame(index=frame.index)
    for name, dtype in columns.items():
        if name in frame.columns:
            col = frame[name]
        else:
            col = pd.Series(float("nan") if dtype.startswith("float") else pd.NA, index=frame.index,
                            dtype="float64" if dtype.startswith("float") else "object")
        if dtype.startswith(("int", "float")) and col.isna().any():
            dtype = "float64" if dtype.startswith("float") else dtype.capitalize()
        if dtype == "category" and name == "outcome":
            col = pd.Categorical(col, categories=OUTCOMES)
        elif dtype == "category" and name == "role":        # the roles present, in their order of appearance
            col = pd.Categorical(col.astype("object"), categories=list(dict.fromkeys(col.dropna().astype(str))))
        else:
            col = col.astype(dtype)
        out[name] = col
    return out.reset_index(drop=True)


def empty_frame(columns: dict[str, str]) -> pd.DataFrame:
    """An empty frame with the contract's columns and dtypes."""
    return conform(pd.DataFrame(), columns)


def new_run_dir(root: Path, run_id: str) -> Path:
    """Create ``root/run_id`` (fails if it exists) and return it."""
    path = Path(root) / run_id
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir()
    return path


def orchestrator_stamp() -> dict[str, Any]:
    """Who writes this run: lets a reader tell a crashed orchestrator from a live one."""
    return {"pid": os.getpid(), "hostname": socket.gethostname()}


# -- reading ----------------------------------------------------------------------------------

@dataclass
class Run:
    """A results directory, read lazily. ``meta`` is run.json."""

    path: Path
    meta: dict[str, Any]

    @property
    def run_id(self) -> str:
        return self.meta["run_id"]

    @property
    def info(self) -> RunInfo:
        """run.json, typed (``metadata.RunInfo``)."""
        return RunInfo.of(self.meta)

    @property
    def status(self) -> str:
        """The recorded status, or ``crashed`` for a ``running`` run whose orchestrator is gone."""
        status = self.meta.get("status", "failed")
        if status == "running" and not _orchestrator_alive(self.meta.get("orchestrator", {})):
            return "crashed"
        return status

    def _frame(self, name: str, columns: dict[str, str]) -> pd.DataFrame:
        path = self.path / name
        if not path.exists():
            return empty_frame(columns)
        try:
            frame = pd.read_csv(path, keep_default_na=False, na_values=[""]) if path.suffix == ".csv" \
                else pd.read_parquet(path)
        except Exception as exc:  # pyarrow/pandas raise many kinds
            raise FormatError(f"{path}: unreadable ({exc}); the run was cut short before this "
                              f"file was complete — re-run it") from exc
        return conform(frame, columns)

    def requests(self) -> pd.DataFrame:
        return self._frame("requests.parquet", REQUEST_COLUMNS)

    def restarts(self) -> pd.DataFrame:
        return self._frame("restarts.csv", RESTART_COLUMNS)

    def processes(self) -> pd.DataFrame:
        return self._frame("processes.parquet", PROCESS_COLUMNS)

    def host_status(self) -> pd.DataFrame:
        return self._frame("status.parquet", STATUS_COLUMNS)

    def summary(self) -> dict[str, Any] | None:
        path = self.path / "summary.json"
        return json.loads(path.read_text()) if path.exists() else None


def read_run(path: Path | str) -> Run:
    """Open a results directory; raise FormatError if it is not one this version can read."""
    path = Path(path)
    meta_path = path / "run.json"
    if not meta_path.is_file():
        raise FormatError(f"{path}: no run.json here; pass a directory under results/runs/")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise FormatError(f"{meta_path}: not valid JSON ({exc})") from exc
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if fmt not in READABLE:
        raise FormatError(f"{meta_path}: results format {fmt!r} is not supported (this restartbench "
                          f"reads formats {', '.join(map(str, READABLE))}); read it with the restartbench "
                          f"that wrote it")
    wrong = problems(meta, RUN_KEYS)
    if wrong:
        raise FormatError(f"{meta_path}: not a run.json of format {FORMAT} ({'; '.join(wrong)}); "
                          f"it was edited or written by something else")
    return Run(path=path, meta=meta)


def open_runs(specs: Iterable["Run | Path | str"], runs_dir: Path | None = None) -> list[Run]:
    """The one way runs are opened: each spec a run directory, an opened ``Run``, or ``latest`` (the
    newest run under ``runs_dir``). FormatError names the first that is not a readable run."""
    out = []
    for spec in specs:
        if isinstance(spec, Run):
            out.append(spec)
            continue
        if str(spec) == "latest":
            found = sorted(Path(runs_dir or ".").glob("*/run.json"), key=lambda p: p.stat().st_mtime)
            if not found:
                raise FormatError(f"no runs under {runs_dir}: run `make bench` first")
            spec = found[-1].parent
        out.append(read_run(spec))
    return out


def _orchestrator_alive(stamp: dict[str, Any]) -> bool:
    if stamp.get("hostname") != socket.gethostname():
        return True  # cannot tell from here: assume the other machine is still at it
    pid = stamp.get("pid")
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
