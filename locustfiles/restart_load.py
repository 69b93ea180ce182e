"""Sustained load on a wasm component app, recorded request by request.

A plain locustfile: restartbench runs it headless, and it works on its own too::

    locust -f locustfiles/restart_load.py --host http://127.0.0.1:8080            # web UI
    locust -f locustfiles/restart_load.py --host http://127.0.0.1:8080 --headless -u 20 -t 30s \\
           --record-dir /tmp/rows                                                # raw rows to CSV

Closed model (default): each user sends its next request when the previous one ends, so a host that
hangs is sent fewer requests (coordinated omission).
Open model (``--rate R``): requests are sent on a fixed schedule, R per second across all users of
all processes, whether or not earlier ones finished; each row then carries its intended send time
(``t_intended``), and a hung host is sent exactly as many requests as a healthy one.
Every request has a short timeout (``--request-timeout``, default 2 s) so a request that hangs across
a restart is a ``timeout``, not a 60 s latency. Users keep no cookies unless ``--cookies``.

More cores: ``--processes N`` (Locust's own): each worker process writes its own
``requests-<pid>.csv``; the master records nothing. More machines: run the master here
(``--master --expect-workers N``) and on every other machine ONE command::

    locust -f locustfiles/restart_load.py --worker --master-host <master-host> --master-port 5557

Such a worker gets every setting (host, rate, timeouts, t0) from the master, measures its clock
offset to the master (a ping of ``time.monotonic()``, best of 16 by round trip, RTT/2 correction)
and ships its rows to the master in batches, which appends them to ``requests-<worker>.csv`` and
writes the offsets to ``clock-offsets.json`` in the record dir.
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import time

import gevent
from gevent.event import AsyncResult
from gevent.pool import Pool
from locust import FastHttpUser, constant, events, task
from locust.runners import LocalRunner, MasterRunner, WorkerRunner
from locust.user.task import LOCUST_STATE_STOPPING

from recorder import HEADER_LINE, Recorder

_recorder: Recorder | None = None
_clock: dict = {}            # worker: the measured offset to the master's clock
_sink: dict = {}             # master: row files, offsets and flush acknowledgements per worker
PINGS = 16


@events.init_command_line_parser.add_listener
def _add_arguments(parser):
    group = parser
    group.add_argument("--request-timeout", type=float, default=2.0, include_in_web_ui=True,
                       help="seconds before a request counts as a timeout (default 2)")
    group.add_argument("--sleep-share", type=float, default=0.1, include_in_web_ui=True,
                       help="share of users that request /sleep?ms=SLEEP_MS, held open by the app (default 0.1)")
    group.add_argument("--sleep-ms", type=int, default=500, include_in_web_ui=True,
                       help="how long /sleep requests are held (default 500)")
    group.add_argument("--other-share", type=float, default=0.0, include_in_web_ui=True,
                       help="share of users requesting --other-url (a second app beside the one under test)")
    group.add_argument("--other-url", default="", help="the second app's URL; its requests are named /other")
    group.add_argument("--rate", type=float, default=0.0, include_in_web_ui=True,
                       help="open model: total requests/s over all users (default 0: closed model)")
    group.add_argument("--cookies", action="store_true", default=False,
                       help="keep a cookie jar per user (default off: the apps under test set no cookies, "
                       "and the jar costs ~10%% of Locust's CPU per request)")
    group.add_argument("--fresh-connections", action="store_true", default=False,
                       help="a new connection per request (Connection: close) instead of keep-alive")
    group.add_argument("--record-dir", default="", help="write every request as a raw CSV row here")
    group.add_argument("--t0", type=float, default=0.0,
                       help="time.monotonic() value that row times count from (default: start)")


# -- set-up per process -----------------------------------------------------------------------

@events.init.add_listener
def _on_init(environment, runner=None, **_kw):
    global _recorder
    opts = environment.parsed_options
    if opts is None:
        return
    _configure(opts)
    runner = runner or environment.runner
    if opts.num_users and opts.num_users >= 2:   # a whole number of holders, at least one
        HoldUser.fixed_count = max(1 if opts.sleep_share > 0 else 0, round(opts.num_users * opts.sleep_share))
        other = (getattr(opts, "other_share", 0.0) or 0.0) if getattr(opts, "other_url", "") else 0.0
        OtherUser.fixed_count = min(opts.num_users - HoldUser.fixed_count - 1,
                                    max(1 if other > 0 else 0, round(opts.num_users * other)))
        AppUser.fixed_count = opts.num_users - HoldUser.fixed_count - OtherUser.fixed_count
        if OtherUser.fixed_count and OtherUser not in environment.user_classes:
            environment.user_classes.append(OtherUser)      # Locust drops weight-0 classes when it starts
    if isinstance(runner, MasterRunner):
        if not opts.t0:                          # one t0 for every worker, on the master's clock
            opts.t0 = time.monotonic()
        _master_setup(environment, runner)
        return
    if isinstance(runner, WorkerRunner):
        _worker_setup(environment, runner)
    if opts.record_dir and _recorder is None:    # local or same-machine worker: its own file
        _recorder = Recorder(opts.record_dir, opts.t0 or time.monotonic())
        _start_recording(environment)


def _configure(opts) -> None:
    """Apply the options that shape every user (again when a worker receives the master's)."""
    _Base.network_timeout = _Base.connection_timeout = opts.request_timeout
    HoldUser.path = f"/sleep?ms={opts.sleep_ms}"
    OtherUser.path = getattr(opts, "other_url", "") or "/other"
    # open model: a user holds up to rate x timeout / users requests in flight (one connection each)
    users = max(1, int(getattr(opts, "rate_users", 0) or opts.num_users or 1))
    _Base.concurrency = (max(10, min(1000, int(opts.rate * (opts.request_timeout + 1) / users) + 4))
                         if opts.rate > 0 else 10)


@events.test_start.add_listener
def _on_test_start(environment, **_kw):
    global _recorder
    opts, runner = environment.parsed_options, environment.runner
    if opts is None:
        return
    if isinstance(runner, (MasterRunner, LocalRunner)):
        opts.rate_users = runner.target_user_count or opts.num_users   # sent to workers with the spawn
    _configure(opts)
    if isinstance(runner, WorkerRunner) and opts.record_dir and _recorder is None:
        # a worker started elsewhere: rows go to the master, times shifted onto the master's clock
        _recorder = Recorder(None, opts.t0 - _clock.get("applied_s", 0.0),
                             send=lambda text: runner.send_message("rb_rows", {"rows": text}))
        _start_recording(environment)


def _start_recording(environment) -> None:
    environment.events.request.add_listener(_recorder.on_request)
    gevent.spawn(_flusher)


def _flusher():
    while _recorder is not None and not _recorder.closed:
        gevent.sleep(_recorder.flush_every_s)
        _recorder.flush()


@events.quitting.add_listener
def _on_quit(environment, **_kw):
    if _recorder is not None:
        try:
            _recorder.close()
        except Exception:           # a shipping worker whose master has gone: its rows went before
            pass
    if _sink:
        _write_offsets(environment)
        for f in _sink["files"].values():
            f.close()
        _sink["files"].clear()


# -- worker side: clock offset, final flush ---------------------------------------------------

def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _worker_setup(environment, runner) -> None:
    runner.register_message("rb_pong", _on_pong)
    runner.register_message("rb_flush", _on_flush, concurrent=True)
    _clock.update(pending={}, mode="file" if environment.parsed_options.record_dir else "ship")
    gevent.spawn(_report_clock, runner, "start")


def _on_pong(environment, msg, **_kw):
    waiter = _clock["pending"].pop(msg.data["i"], None)
    if waiter is not None:
        waiter.set((time.monotonic(), msg.data["t"], msg.data.get("boot_id", "")))


def measure_offset(runner, pings: int = PINGS) -> dict:
    """Offset of the master's ``time.monotonic()`` to ours (master − local), from the ping with the
    shortest round trip: offset = t_master − (t_sent + t_received) / 2, error at most RTT/2."""
    best = None
    for i in range(pings):
        waiter = AsyncResult()
        key = f"{os.getpid()}-{i}-{random.random()}"
        _clock["pending"][key] = waiter
        t_sent = time.monotonic()
        runner.send_message("rb_ping", {"i": key})
        try:
            t_recv, t_master, boot_id = waiter.get(timeout=0.5)
        except gevent.Timeout:
            _clock["pending"].pop(key, None)
            continue
        rtt = t_recv - t_sent
        if best is None or rtt < best["rtt_s"]:
            best = {"offset_s": t_master - (t_sent + t_recv) / 2, "rtt_s": rtt, "master_boot_id": boot_id}
    return best or {}


def _report_clock(runner, when: str) -> None:
    m = measure_offset(runner)
    if not m:
        return
    # the same kernel and an offset within the measurement error: the very same clock, use it as is
    same = m["master_boot_id"] == _boot_id() and abs(m["offset_s"]) <= m["rtt_s"]
    if when == "start":
        _clock.update(offset_s=m["offset_s"], rtt_s=m["rtt_s"], same_clock=same,
                      applied_s=0.0 if same else m["offset_s"])
        opts = runner.environment.parsed_options
        if _recorder is not None and _recorder.send is not None and opts is not None:
            _recorder.set_t0(opts.t0 - _clock["applied_s"])
    runner.send_message("rb_clock", {
        "when": when, "offset_s": m["offset_s"], "rtt_s": m["rtt_s"], "same_clock": same,
        "applied_offset_s": _clock.get("applied_s", 0.0), "pings": PINGS, "hostname": socket.gethostname(),
        "pid": os.getpid(), "mode": _clock.get("mode", "ship")})


def _on_flush(environment, msg, **_kw):
    """The master is stopping: stop our users (in-flight requests end, bounded by --stop-timeout),
    hand over the last rows, re-measure the clock (drift), then say so."""
    runner = environment.runner
    runner.stop()
    if _recorder is not None:
        _recorder.flush()
    _report_clock(runner, "end")
    runner.send_message("rb_done", {"rows": _recorder.rows if _recorder is not None else 0})


# -- master side: pongs, rows, offsets, orderly stop ------------------------------------------

def _master_setup(environment, runner) -> None:
    _sink.update(files={}, offsets={}, done=set())
    runner.register_message("rb_ping", _on_ping)
    runner.register_message("rb_rows", _on_rows)
    runner.register_message("rb_clock", _on_clock)
    runner.register_message("rb_done", lambda environment, msg, **kw: _sink["done"].add(msg.node_id))


def _on_ping(environment, msg, **_kw):
    environment.runner.send_message("rb_pong", {"i": msg.data["i"], "t": time.monotonic(),
                                                "boot_id": _boot_id()}, client_id=msg.node_id)


def worker_file(node_id: str) -> str:
    return "requests-w-" + re.sub(r"[^A-Za-z0-9_.-]", "_", node_id) + ".csv"


def _on_rows(environment, msg, **_kw):
    record_dir = environment.parsed_options.record_dir
    if not record_dir:
        return
    f = _sink["files"].get(msg.node_id)
    if f is None:
        os.makedirs(record_dir, exist_ok=True)
        path = os.path.join(record_dir, worker_file(msg.node_id))
        new = not os.path.exists(path)
        f = _sink["files"][msg.node_id] = open(path, "a", newline="", buffering=1 << 20)
        if new:
            f.write(HEADER_LINE)
    f.write(msg.data["rows"])
    f.flush()                   # one batch = one worker's last half second: visible to progress() at once


def _on_clock(environment, msg, **_kw):
    d = dict(msg.data)
    entry = _sink["offsets"].setdefault(msg.node_id, {"client_id": msg.node_id})
    if d.pop("when") == "end":
        entry.update(offset_end_s=d["offset_s"], rtt_end_s=d["rtt_s"])
    else:
        entry.update(d, file=worker_file(msg.node_id) if d["mode"] == "ship" else f"requests-{d['pid']}.csv")
    _write_offsets(environment)


def _write_offsets(environment) -> None:
    record_dir = environment.parsed_options.record_dir if environment.parsed_options else ""
    if not record_dir or not _sink.get("offsets"):
        return
    os.makedirs(record_dir, exist_ok=True)
    path = os.path.join(record_dir, "clock-offsets.json")
    with open(path + ".tmp", "w") as f:
        json.dump(sorted(_sink["offsets"].values(), key=lambda e: e["client_id"]), f, indent=1)
    os.replace(path + ".tmp", path)


@events.test_stopping.add_listener
def _on_test_stopping(environment, **_kw):
    """Master: ask every worker to stop its users and hand over its last rows, and wait for them
    (bounded) before Locust's own quit, which waits only 0.5 s."""
    runner, opts = environment.runner, environment.parsed_options
    if not isinstance(runner, MasterRunner) or opts is None or not opts.record_dir:
        return
    pending = {c.id for c in runner.clients.all}
    _sink["done"].clear()               # (a web UI run can be stopped and started again)
    runner.send_message("rb_flush")
    deadline = time.monotonic() + (environment.stop_timeout or 0) + 5
    while pending - _sink["done"] and time.monotonic() < deadline:
        gevent.sleep(0.05)
    for f in _sink["files"].values():
        f.flush()


# -- the users --------------------------------------------------------------------------------

class _Base(FastHttpUser):
    """Shared by both user kinds: short timeouts, closed or open model."""

    abstract = True
    wait_time = constant(0)
    network_timeout = 2.0
    connection_timeout = 2.0
    path = "/"
    name = "/"

    def on_start(self):
        opts = self.environment.parsed_options
        rate = opts.rate if opts else 0.0
        users = max(1, int(getattr(opts, "rate_users", 0) or (opts.num_users if opts else 1) or 1))
        self.interval = users / rate if rate > 0 else 0.0      # this user's share of the total rate
        self.pool = Pool()
        if not getattr(opts, "cookies", False):
            self.client.client.cookiejar = None                 # geventhttpclient then skips cookies

    def on_stop(self):
        self.pool.kill(block=False)

    def request_once(self, t_intended: float | None = None):
        """One request; the recorder sees it through Locust's request event."""
        opts = self.environment.parsed_options
        headers = {"Connection": "close"} if getattr(opts, "fresh_connections", False) else None
        self.client.get(self.path, name=self.name, headers=headers,
                        context={} if t_intended is None else {"t_intended": t_intended})

    @task
    def load(self):
        if not self.interval:
            self.request_once()
            return
        # open model: this user's share of the rate on a fixed schedule, independent of replies.
        # A late schedule (a busy event loop) sends at once: t_intended keeps the planned time.
        intended = time.monotonic() + random.random() * self.interval
        while self._state != LOCUST_STATE_STOPPING:
            delay = intended - time.monotonic()
            if delay > 0:
                gevent.sleep(min(delay, 0.05))     # wake up now and then to notice a stop
                continue
            self.pool.spawn(self.request_once, intended)
            intended += self.interval
        # stopping: let requests in flight end (each is bounded by the request timeout)
        self.pool.join(timeout=self.network_timeout + 0.5)


class AppUser(_Base):
    """Requests ``/`` back to back: the throughput and availability signal."""

    weight = 9


class HoldUser(_Base):
    """Requests ``/sleep?ms=N``: keeps requests in flight across every restart."""

    weight = 1
    name = "/sleep"


class OtherUser(_Base):
    """Requests ``--other-url`` (named ``/other``): a second app beside the one under test
    (``--other-share`` of the users), judged for isolation."""

    weight = 0
    fixed_count = 0
    path = "/other"
    name = "/other"
