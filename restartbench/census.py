"""The census: a psutil sampler of a host's whole process tree, tagging each process with its role
and its generation (how many restarts had been sent when it was born).

It runs in a thread of the orchestrator (never inside Locust's gevent-patched process). Times are
seconds since the run's t0 on ``time.monotonic()``. A process's birth time comes from the kernel
(``/proc/<pid>/stat`` starttime), converted to the same clock, so it does not depend on the
sampling interval. That time has clock-tick resolution (10 ms): a process forked a millisecond
after a restart mark can read as born before it. Generations are therefore exact by a second
fact: at every mark the census reads the last pid the kernel handed out (``/proc/loadavg``), and
pids are allocated in increasing order, so a process whose birth tick is within one tick of a
mark is new exactly when its pid is above that mark's last pid (see ``Mark.after``).

Cost (benchmarks/overhead.py): a round reads ``/proc`` directly, only for the host's processes —
one ``stat`` read and one ``fd`` listing per process, and its children from
``/proc/<pid>/task/<tid>/children`` (no scan of every process on the machine); a full scan of
``/proc`` runs every ``rescan_every`` rounds as a safety net (and every round on a kernel without
that file). psutil is kept for what is rare: a new process's title and, in *full* samples, USS.
A full sample (every ``full_every`` rounds, and one taken at each restart mark just before the
restart is sent) also counts each process's TCP sockets (``tcp_fds``: readlink of its fds against
/proc/net/tcp{,6}, ~5 ms), so that fd retention can leave out client connections, which come and
go with the load, and is measured exactly before each restart.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import pandas as pd
import psutil

from . import results
from .procs import process_title

#: seconds to add to a boot-relative time (/proc starttime) to get a time.monotonic() reading
_BOOT_TO_MONO = time.monotonic() - time.clock_gettime(time.CLOCK_BOOTTIME)
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
#: /proc/<pid>/stat state letters, named as psutil names them
_STATES = {"R": "running", "S": "sleeping", "D": "disk-sleep", "T": "stopped", "t": "tracing-stop",
           "Z": psutil.STATUS_ZOMBIE, "X": "dead", "x": "dead", "K": "wake-kill", "W": "waking", "I": "idle",
           "P": "parked"}
_HAS_CHILDREN_FILE = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
_TICK_S = 1.0 / _CLK_TCK


def _pid_max() -> int:
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 22


_PID_MAX = _pid_max()
#: after a wrap the kernel hands out pids from just above this (RESERVED_PIDS)
_PID_WRAP_FLOOR = 300


def last_pid() -> int | None:
    """The last pid the kernel allocated in this pid namespace (``/proc/loadavg``'s last field)."""
    data = _read("/proc/loadavg")
    try:
        return int(data.split()[-1]) if data else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Mark:
    """A restart mark: when it was sent (s since t0) and the last pid allocated just before."""

    t: float
    last_pid: int | None = None

    def after(self, born: float, pid: int | None = None) -> bool:
        """Was a process born at ``born`` (s since t0, floored to a clock tick) with ``pid`` born
        after this mark? By the clock when it is more than a tick away, else by the pid."""
        if born >= self.t:                       # the true birth is at or after the floored tick
            return True
        if born + _TICK_S <= self.t or pid is None or self.last_pid is None:
            return False                         # a whole tick before: certainly older
        if pid > self.last_pid:
            return True
        # a pid wrap inside this one tick: the counter restarted just above the reserved pids
        return self.last_pid > _PID_MAX - 1000 and pid < _PID_WRAP_FLOOR + 1000


def _read(path: str) -> bytes | None:
    """A small /proc file in one read (no Python file object: this runs ~200 times a second)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        data = chunk = os.read(fd, 4096)
        while len(chunk) == 4096:            # a long children list
            chunk = os.read(fd, 4096)
            data += chunk
        return data
    except OSError:                          # the process went away meanwhile
        return None
    finally:
        os.close(fd)


def _read_stat(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` after ``comm`` (index 0 = state, field 3), or None if gone."""
    data = _read(f"/proc/{pid}/stat")
    if data is None:
        return None
    return data[data.rfind(b")") + 2:].split()


def _descendants(pids: set[int]) -> list[int]:
    """Every descendant of ``pids`` now, from one scan of all of ``/proc`` (what psutil's
    ``children(recursive=True)`` does per call)."""
    by_parent: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            f = _read_stat(int(name))
            if f is not None and len(f) > 1:
                by_parent.setdefault(int(f[1]), []).append(int(name))
    out, stack = [], list(pids)
    while stack:
        for child in by_parent.get(stack.pop(), ()):
            if child not in pids:
                pids.add(child)
                out.append(child)
                stack.append(child)
    return out


def _children(pid: int, threads: int) -> list[int]:
    """Children of ``pid`` now, from each of its threads' ``children`` file (a forking thread owns them)."""
    tids = [pid]
    if threads > 1:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except (FileNotFoundError, ProcessLookupError):
            return []
    out = []
    for tid in tids:
        data = _read(f"/proc/{pid}/task/{tid}/children")
        if data:
            out.extend(int(c) for c in data.split())
    return out


def tcp_inodes() -> set[bytes]:
    """Socket inodes of every TCP socket in this network namespace (/proc/net/tcp and tcp6)."""
    out: set[bytes] = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name, "rb") as f:
                next(f, None)                               # the header
                for line in f:
                    fields = line.split()
                    if len(fields) > 9:
                        out.add(fields[9])
        except OSError:
            continue
    return out


def tcp_fds(pid: int, fds: list[str], inodes: set[bytes]) -> float:
    """How many of ``pid``'s open fds (``fds``: the names in its /proc fd dir) are TCP sockets."""
    base = f"/proc/{pid}/fd"
    n = 0
    for fd in fds:
        try:
            link = os.readlink(f"{base}/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1].encode() in inodes:
            n += 1
    return float(n)


def born_monotonic(proc: psutil.Process) -> float:
    """When ``proc`` started, on the ``time.monotonic()`` clock."""
    # psutil: create_time = boot_time + starttime/CLK_TCK, so the difference is the raw starttime
    return proc.create_time() - psutil.boot_time() + _BOOT_TO_MONO


@dataclass
class Census:
    """Samples the processes under ``roots()`` every ``interval_s`` until stopped.

    ``roots`` returns the host's top-level pids now (a restart by process replacement changes
    them); ``role(title, pid, ppid)`` says a process's role; ``status`` (optional) returns host counters
    sampled every ``status_every`` rounds. USS (costly: reads smaps) and TCP sockets are sampled
    in full samples only (every ``full_every`` rounds, and at each restart mark). Processes once
    seen stay watched until they exit, so descendants reparented away from the tree (to init) are
    still counted.
    """

    roots: Callable[[], Iterable[int]]
    role: Callable[[str, int, int], str]
    t0: float
    interval_s: float = 0.1
    full_every: int = 20
    status: Callable[[], dict[str, float]] | None = None
    status_every: int = 5
    marks: list[Mark] = field(default_factory=list)        # each restart: t_sent (s since t0), last pid
    last_count: int = 0          # processes in the latest sample
    _rows: list[tuple] = field(default_factory=list, repr=False)
    _status_rows: list[tuple] = field(default_factory=list, repr=False)
    rescan_every: int = 10
    _seen: dict[int, tuple[psutil.Process, float, str]] = field(default_factory=dict, repr=False)
    _start: dict[int, int] = field(default_factory=dict, repr=False)     # pid -> kernel starttime
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _sampling: threading.Lock = field(default_factory=threading.Lock, repr=False)
    rounds: int = 0
    busy_s: float = 0.0          # wall time spent sampling
    cpu_s: float = 0.0           # CPU time spent sampling (the census's own cost; roots() and status included)

    def note_restart(self, t_sent: float) -> None:
        """Record that a restart is sent at ``t_sent`` (s since t0): later births are a new generation.
        Call it before the restart's request goes out: it takes a full sample (with TCP sockets) of
        the tree as it is before the restart, then reads the last pid."""
        if self._thread is not None and self._thread.is_alive():
            self.sample(detail=True)
        mark = Mark(t_sent, last_pid())
        with self._lock:
            bisect.insort(self.marks, mark, key=lambda m: m.t)

    @property
    def restarts(self) -> list[float]:
        """``t_sent`` of each restart noted, s since t0, in order."""
        return [m.t for m in self.marks]

    def generation(self, born: float, pid: int | None = None) -> int:
        """How many restarts had been sent when the process ``pid`` born at ``born`` (s since t0,
        as the kernel's starttime gives it) started; exact with ``pid`` (see ``Mark.after``)."""
        with self._lock:
            marks = list(self.marks)
            # every mark more than a tick before the birth counts; the rest are decided one by one
            n = bisect.bisect_right(marks, born - _TICK_S, key=lambda m: m.t)
            while n < len(marks) and marks[n].after(born, pid):
                n += 1
            return n

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

    def sample(self, detail: bool = False) -> None:
        """Take one sample of every live process of the host now; a full one (USS, TCP sockets)
        with ``detail`` and every ``full_every`` rounds. Thread-safe."""
        with self._sampling:
            self._sample(detail)

    def _sample(self, detail: bool) -> None:
        t_begin = time.monotonic()
        cpu_begin = time.thread_time()
        full = detail or self.rounds % self.full_every == 0
        t = t_begin - self.t0
        todo = list(dict.fromkeys([*self.roots(), *self._seen]))
        if not _HAS_CHILDREN_FILE or self.rounds % self.rescan_every == 0:
            # safety net (and the only way without children files): every descendant, from one /proc scan
            todo.extend(_descendants(set(todo)))
        done: set[int] = set()
        count = 0
        inodes = tcp_inodes() if full else None
        while todo:                               # the roots, every process seen, and their descendants
            pid = todo.pop()
            if pid in done:
                continue
            done.add(pid)
            row, threads = self._row(pid, t, inodes)
            if row is None:
                continue
            self._rows.append(row)
            count += 1
            if _HAS_CHILDREN_FILE and threads:
                todo.extend(c for c in _children(pid, threads) if c not in done)
        self.last_count = count
        if self.status is not None and self.rounds % self.status_every == 0:
            try:
                counters = self.status()
            except Exception:       # a host that stops answering is a finding for analysis, not a crash
                counters = {}
            self._status_rows.extend((t, k, float(v)) for k, v in counters.items())
        self.rounds += 1
        self.busy_s += time.monotonic() - t_begin
        self.cpu_s += time.thread_time() - cpu_begin

    def _row(self, pid: int, t: float, inodes: set[bytes] | None) -> tuple[tuple | None, int]:
        """One sample row of ``pid`` (None if it is gone) and its thread count (0 for a zombie);
        a full one (USS, TCP sockets among its fds) when given the TCP ``inodes``."""
        f = _read_stat(pid)
        if f is None or len(f) < 22:
            self._forget(pid)
            return None, 0
        start = int(f[19])
        known = self._seen.get(pid)
        if known is None or self._start.get(pid) != start:       # new, or the pid was reused
            try:
                p = psutil.Process(pid)
            except psutil.NoSuchProcess:
                self._forget(pid)
                return None, 0
            known = (p, start / _CLK_TCK + _BOOT_TO_MONO - self.t0, process_title(p))
            self._seen[pid], self._start[pid] = known, start
        p, born, title = known
        state = _STATES.get(f[0].decode(), f[0].decode())
        if t - born < 1.0 and state != psutil.STATUS_ZOMBIE:
            # a young process may still change its title (fork, exec); a zombie keeps its last one
            title = process_title(p) or title
            self._seen[pid] = (p, born, title)
        if state == psutil.STATUS_ZOMBIE:
            return (t, pid, int(f[1]), self.role(title, pid, int(f[1])), self.generation(born, pid), 0, float("nan"),
                    0, 0, 0.0, state, born, title, float("nan")), 0
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except (FileNotFoundError, ProcessLookupError):
            self._forget(pid)
            return None, 0
        except PermissionError:
            fds = None
        uss = tcp = float("nan")
        if inodes is not None:
            try:
                uss = float(p.memory_full_info().uss)
            except (psutil.AccessDenied, psutil.ZombieProcess, psutil.NoSuchProcess):
                pass
            if fds is not None:
                tcp = tcp_fds(pid, fds, inodes)
        threads = int(f[17])
        return (t, pid, int(f[1]), self.role(title, pid, int(f[1])), self.generation(born, pid), int(f[21]) * _PAGE, uss,
                len(fds or ()), threads, (int(f[11]) + int(f[12])) / _CLK_TCK, state, born, title, tcp), threads

    def _forget(self, pid: int) -> None:
        self._seen.pop(pid, None)
        self._start.pop(pid, None)

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
        rows = list(self._rows)            # a snapshot: the census thread may be appending
        return results.conform(pd.DataFrame(rows, columns=cols), results.PROCESS_COLUMNS)

    def status_frame(self) -> pd.DataFrame:
        """Host counters sampled so far, in the status.parquet contract."""
        return results.conform(pd.DataFrame(list(self._status_rows), columns=["t", "key", "value"]),
                               results.STATUS_COLUMNS)
