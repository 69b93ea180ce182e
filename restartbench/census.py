"""The census: a psutil sampler of a host's whole process tree, tagging each process with its role
and its generation (how many restarts had been sent when it was born).

It runs in a thread of the orchestrator (never inside Locust's gevent-patched process). Times are
seconds since the run's t0 on ``time.monotonic()``. A process's birth time comes from the kernel
(``/proc/<pid>/stat`` starttime, 10 ms resolution), converted to the same clock, so a process born
just before a restart is never mistaken for one born after it, whatever the sampling interval.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import pandas as pd
import psutil

from . import results
from .targets.base import process_title, tree

#: seconds to add to a boot-relative time (/proc starttime) to get a time.monotonic() reading
_BOOT_TO_MONO = time.monotonic() - time.clock_gettime(time.CLOCK_BOOTTIME)


def born_monotonic(proc: psutil.Process) -> float:
    """When ``proc`` started, on the ``time.monotonic()`` clock."""
    # psutil: create_time = boot_time + starttime/CLK_TCK, so the difference is the raw starttime
    return proc.create_time() - psutil.boot_time() + _BOOT_TO_MONO


@dataclass
class Census:
    """Samples the processes under ``roots()`` every ``interval_s`` until stopped.

    ``roots`` returns the host's top-level pids now (a restart by process replacement changes
    them); ``role`` maps a process title to a role; ``status`` (optional) returns host counters
    sampled every ``status_every`` rounds. USS (costly: reads smaps) is sampled every ``uss_every``
    rounds. Processes once seen stay watched until they exit, so descendants reparented away from
    the tree (to init) are still counted.
    """

    roots: Callable[[], Iterable[int]]
    role: Callable[[str], str]
    t0: float
    interval_s: float = 0.1
    uss_every: int = 10
    status: Callable[[], dict[str, float]] | None = None
    status_every: int = 5
    restarts: list[float] = field(default_factory=list)   # t_sent of each restart, s since t0
    _rows: list[tuple] = field(default_factory=list, repr=False)
    _status_rows: list[tuple] = field(default_factory=list, repr=False)
    _seen: dict[int, tuple[psutil.Process, float, str]] = field(default_factory=dict, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    rounds: int = 0
    busy_s: float = 0.0          # time spent sampling (the census's own cost)

    def note_restart(self, t_sent: float) -> None:
        """Record that a restart was sent at ``t_sent`` (s since t0): later births are a new generation."""
        with self._lock:
            bisect.insort(self.restarts, t_sent)

    def generation(self, born: float) -> int:
        """How many restarts had been sent when a process born at ``born`` (s since t0) started."""
        with self._lock:
            return bisect.bisect_right(self.restarts, born)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="census", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling (after one final sample) and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        next_t = time.monotonic()
        while True:
            self.sample()
            if self._stop.is_set():
                return
            next_t += self.interval_s
            delay = next_t - time.monotonic()
            if delay < 0:                       # fell behind: skip missed slots, never burst
                next_t = time.monotonic()
                delay = 0
            if self._stop.wait(delay):
                self.sample()
                return

    def sample(self) -> None:
        """Take one sample of every live process of the host now."""
        t_begin = time.monotonic()
        with_uss = self.rounds % self.uss_every == 0
        procs = {}
        for root in list(self.roots()):
            for p in tree(root):
                procs[p.pid] = p
        for pid, (p, _born, _title) in list(self._seen.items()):
            procs.setdefault(pid, p)
        t = t_begin - self.t0
        for p in procs.values():
            row = self._row(p, t, with_uss)
            if row is not None:
                self._rows.append(row)
        if self.status is not None and self.rounds % self.status_every == 0:
            try:
                counters = self.status()
            except Exception:       # a host that stops answering is a finding for analysis, not a crash
                counters = {}
            self._status_rows.extend((t, k, float(v)) for k, v in counters.items())
        self.rounds += 1
        self.busy_s += time.monotonic() - t_begin

    def _row(self, p: psutil.Process, t: float, with_uss: bool) -> tuple | None:
        try:
            known = self._seen.get(p.pid)
            if known is None or known[0].create_time() != p.create_time():
                born = born_monotonic(p) - self.t0
                known = (p, born, process_title(p))
                self._seen[p.pid] = known
            _, born, title = known
            if t - born < 1.0:          # a young process may still change its title (fork, exec)
                title = process_title(p) or title
                self._seen[p.pid] = (p, born, title)
            with p.oneshot():
                state = p.status()
                if state == psutil.STATUS_ZOMBIE:
                    return (t, p.pid, _ppid(p), self.role(title), self.generation(born), 0, float("nan"),
                            0, 0, 0.0, state, born, title)
                mem = p.memory_info()
                cpu = p.cpu_times()
                uss = float("nan")
                if with_uss:
                    try:
                        uss = float(p.memory_full_info().uss)
                    except (psutil.AccessDenied, psutil.ZombieProcess):
                        pass
                return (t, p.pid, p.ppid(), self.role(title), self.generation(born), mem.rss, uss,
                        p.num_fds(), p.num_threads(), cpu.user + cpu.system, state, born, title)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            self._seen.pop(p.pid, None)
            return None
        except psutil.AccessDenied:
            return None

    def leftovers(self) -> list[psutil.Process]:
        """Processes the census has seen that are still alive now (not zombies): after the host's stop,
        every one of them escaped the stop."""
        out = []
        for p, _born, _title in list(self._seen.values()):
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
            except psutil.NoSuchProcess:
                continue
        return out

    def frame(self) -> pd.DataFrame:
        """All samples so far, in the processes.parquet contract."""
        cols = list(results.PROCESS_COLUMNS)
        return results.conform(pd.DataFrame(self._rows, columns=cols), results.PROCESS_COLUMNS)

    def status_frame(self) -> pd.DataFrame:
        """Host counters sampled so far, in the status.parquet contract."""
        return results.conform(pd.DataFrame(self._status_rows, columns=["t", "key", "value"]),
                               results.STATUS_COLUMNS)


def _ppid(p: psutil.Process) -> int:
    try:
        return p.ppid()
    except psutil.NoSuchProcess:
        return 0
