"""The request recorder: writes every request Locust makes as one raw CSV row.

Imports nothing of restartbench (it runs inside Locust's gevent-patched process). The orchestrator
passes ``--record-dir`` and ``--t0`` and reads the files after the run; with several Locust processes
each writes its own ``requests-<pid>.csv``.

Row format (header written once): ``t_start,t_end,latency_ms,status,outcome,name,error,t_intended``.
Times are seconds since ``--t0`` on ``time.monotonic()`` (system-wide on Linux, so they line up with
the orchestrator's clock). ``t_end`` is taken when the request event fires; ``t_start`` is ``t_end``
minus Locust's measured response time. ``t_intended`` is empty unless the open model set it.
"""

from __future__ import annotations

import csv
import os
import socket
import time

HEADER = ["t_start", "t_end", "latency_ms", "status", "outcome", "name", "error", "t_intended"]


def classify(status: int, exception: BaseException | None) -> str:
    """Outcome of one request: ok | http_error | timeout | conn_error | other."""
    if exception is None:
        return "ok" if 0 < status < 400 else "http_error"
    if status >= 400:
        return "http_error"
    if isinstance(exception, TimeoutError) or type(exception).__name__ in ("Timeout", "timeout"):
        return "timeout"
    # geventhttpclient wraps some errors; look through the cause chain for the real one
    cause = exception.__cause__ or exception.__context__
    if cause is not None and cause is not exception and not isinstance(exception, OSError):
        inner = classify(0, cause)
        if inner != "other":
            return inner
    if isinstance(exception, (ConnectionError, socket.gaierror, OSError)):
        return "conn_error"
    if type(exception).__name__ in ("HTTPConnectionClosed",):
        return "conn_error"
    return "other"


class Recorder:
    """Appends one CSV row per request to ``<record_dir>/requests-<pid>.csv``; flushed periodically
    and on close so a killed Locust loses at most the last flush interval."""

    def __init__(self, record_dir: str, t0: float, flush_every_s: float = 0.5):
        os.makedirs(record_dir, exist_ok=True)
        self.path = os.path.join(record_dir, f"requests-{os.getpid()}.csv")
        self._file = open(self.path, "w", newline="", buffering=1 << 20)
        self._writer = csv.writer(self._file)
        self._writer.writerow(HEADER)
        self.t0 = t0
        self.flush_every_s = flush_every_s
        self._last_flush = time.monotonic()
        self.rows = 0

    def on_request(self, request_type, name, response_time, response_length, response=None,
                   context=None, exception=None, **_kw):
        """Locust ``events.request`` listener."""
        now = time.monotonic()
        t_end = now - self.t0
        latency_ms = float(response_time or 0.0)
        status = int(getattr(response, "status_code", 0) or 0) if response is not None else 0
        outcome = classify(status, exception)
        error = "" if exception is None else f"{type(exception).__name__}: {exception}"[:200]
        intended = (context or {}).get("t_intended")
        self._writer.writerow([f"{t_end - latency_ms / 1000.0:.6f}", f"{t_end:.6f}", f"{latency_ms:.3f}",
                               status, outcome, name, error,
                               "" if intended is None else f"{intended - self.t0:.6f}"])
        self.rows += 1
        if now - self._last_flush >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
