"""The request recorder: writes every request Locust makes as one raw CSV row.

Imports nothing of restartbench (it runs inside Locust's gevent-patched process). The orchestrator
passes ``--record-dir`` and ``--t0`` and reads the files after the run. Each Locust process that runs
users records its own rows: a local process or a ``--processes`` worker writes
``requests-<pid>.csv`` itself; a worker on another machine hands its rows to a ``send`` callable in
batches (the locustfile ships them to the master, which appends them to ``requests-<worker>.csv``).

Row format (header written once): ``t_start,t_end,latency_ms,status,outcome,name,error,t_intended``.
Times are seconds since ``--t0`` on ``time.monotonic()`` (system-wide on Linux, so they line up with
the orchestrator's clock; a remote worker's rows are shifted by its measured clock offset).
``t_end`` is taken when the request event fires; ``t_start`` is ``t_end`` minus Locust's measured
response time. ``t_intended`` is empty unless the open model set it.
"""

from __future__ import annotations

import io
import os
import socket
import time
from typing import Callable

HEADER = ["t_start", "t_end", "latency_ms", "status", "outcome", "name", "error", "t_intended"]
HEADER_LINE = ",".join(HEADER) + "\n"

_TIMEOUT_NAMES = frozenset(("Timeout", "timeout", "ConnectTimeout", "ReadTimeout", "TimeoutError"))
_CONN_NAMES = frozenset(("HTTPConnectionClosed", "ConnectionRefusedError", "ConnectionResetError",
                         "BrokenPipeError", "HTTPParseError", "IncompleteRead", "RemoteDisconnected"))


def classify(status: int, exception: BaseException | None) -> str:
    """Outcome of one request: ok | http_error | timeout | conn_error | other."""
    if exception is None:
        return "ok" if 0 < status < 400 else "http_error"
    if status >= 400:
        return "http_error"
    name = type(exception).__name__
    if isinstance(exception, TimeoutError) or name in _TIMEOUT_NAMES:
        return "timeout"
    # geventhttpclient wraps errors (RetriesExceeded(original=socket timeout), ...): the real one decides
    cause = getattr(exception, "original", None) or exception.__cause__ or exception.__context__
    if isinstance(cause, BaseException) and cause is not exception and not isinstance(exception, OSError):
        inner = classify(0, cause)
        if inner != "other":
            return inner
    if isinstance(exception, (ConnectionError, socket.gaierror, OSError)) or name in _CONN_NAMES \
            or type(exception).__module__.startswith("geventhttpclient"):
        return "conn_error"
    return "other"


def _quote(text: str) -> str:
    """One CSV field on one line (RFC 4180 quoting only when needed; no newlines in our fields)."""
    if not text or not any(c in text for c in ',"'):
        return text
    return '"' + text.replace('"', '""') + '"'


class Recorder:
    """Appends one CSV row per request, to ``<record_dir>/requests-<pid>.csv`` or, with ``send``, to a
    buffer handed to ``send(text)`` on every flush. Flushed periodically (the locustfile calls
    ``flush`` every ``flush_every_s``) and on close, so a killed Locust loses at most one interval.

    ``t0`` is the ``time.monotonic()`` reading rows count from, *on this process's clock*; a worker
    whose clock differs from the orchestrator's by ``offset`` (master clock − local clock) uses
    ``t0_master - offset``. It may be changed while recording (``set_t0``).
    """

    def __init__(self, record_dir: str | None, t0: float, flush_every_s: float = 0.5,
                 send: Callable[[str], None] | None = None):
        self.send = send
        if send is None:
            os.makedirs(record_dir, exist_ok=True)
            self.path = os.path.join(record_dir, f"requests-{os.getpid()}.csv")
            self._file = open(self.path, "w", newline="", buffering=1 << 20)
            self._file.write(HEADER_LINE)
        else:
            self.path = ""
            self._file = io.StringIO()
        self._write = self._file.write
        self.t0 = t0
        self.flush_every_s = flush_every_s
        self._last_flush = time.monotonic()
        self.rows = 0
        self.closed = False

    def set_t0(self, t0: float) -> None:
        self.t0 = t0

    def on_request(self, request_type, name, response_time, response_length, response=None,
                   context=None, exception=None, **_kw):
        """Locust ``events.request`` listener."""
        if self.closed:
            return
        now = time.monotonic()
        t0 = self.t0
        t_end = now - t0
        latency_ms = float(response_time or 0.0)
        status = (getattr(response, "status_code", 0) or 0) if response is not None else 0
        if exception is None:
            outcome = "ok" if 0 < status < 400 else "http_error"
            error = ""
        else:
            outcome = classify(status, exception)
            error = _quote(f"{type(exception).__name__}: {exception}"[:200].replace("\n", " ").replace("\r", " "))
        intended = context.get("t_intended") if context else None
        self._write("%.6f,%.6f,%.3f,%d,%s,%s,%s,%s\n" % (
            t_end - latency_ms / 1000.0, t_end, latency_ms, status, outcome, _quote(name or ""), error,
            "" if intended is None else "%.6f" % (intended - t0)))
        self.rows += 1
        if now - self._last_flush >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if self.send is not None:
            text = self._file.getvalue()
            if text:
                self._file.seek(0)
                self._file.truncate()
                self.send(text)
        elif not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        if self.closed:
            return
        self.flush()
        self.closed = True
        if self.send is None and not self._file.closed:
            os.fsync(self._file.fileno())
            self._file.close()
