"""Sustained load on a wasm component app, recorded request by request.

A plain locustfile: restartbench runs it headless, and it works on its own too::

    locust -f locustfiles/restart_load.py --host http://127.0.0.1:8080            # web UI
    locust -f locustfiles/restart_load.py --host http://127.0.0.1:8080 --headless -u 20 -t 30s \\
           --record-dir /tmp/rows                                                # raw rows to CSV

Closed model (default): each user sends its next request when the previous one ends.
Open model (``--rate R``): requests are sent on a fixed schedule, R per second across all users of
all processes, whether or not earlier ones finished; each row then carries its intended send time.
Every request has a short timeout (``--request-timeout``, default 2 s) so a request that hangs across
a restart is a ``timeout``, not a 60 s latency.
"""

from __future__ import annotations

import random
import time

import gevent
from gevent.pool import Pool
from locust import FastHttpUser, constant, events, task

from recorder import Recorder

_recorder: Recorder | None = None


@events.init_command_line_parser.add_listener
def _add_arguments(parser):
    group = parser
    group.add_argument("--request-timeout", type=float, default=2.0, include_in_web_ui=True,
                       help="seconds before a request counts as a timeout (default 2)")
    group.add_argument("--sleep-share", type=float, default=0.1, include_in_web_ui=True,
                       help="share of users that request /sleep?ms=SLEEP_MS, held open by the app (default 0.1)")
    group.add_argument("--sleep-ms", type=int, default=500, include_in_web_ui=True,
                       help="how long /sleep requests are held (default 500)")
    group.add_argument("--rate", type=float, default=0.0, include_in_web_ui=True,
                       help="open model: total requests/s over all users (default 0: closed model)")
    group.add_argument("--record-dir", default="", help="write every request as a raw CSV row here")
    group.add_argument("--t0", type=float, default=0.0,
                       help="time.monotonic() value that row times count from (default: start)")


@events.init.add_listener
def _on_init(environment, **_kw):
    global _recorder
    opts = environment.parsed_options
    if opts is None:
        return
    _Base.network_timeout = _Base.connection_timeout = opts.request_timeout
    HoldUser.path = f"/sleep?ms={opts.sleep_ms}"
    if opts.num_users and opts.num_users >= 2:   # a whole number of holders, at least one
        HoldUser.fixed_count = max(1 if opts.sleep_share > 0 else 0, round(opts.num_users * opts.sleep_share))
        AppUser.fixed_count = opts.num_users - HoldUser.fixed_count
    if opts.rate > 0:
        _Base.concurrency = 1000
    if opts.record_dir and _recorder is None and not _is_master(environment):
        _recorder = Recorder(opts.record_dir, opts.t0 or time.monotonic())
        environment.events.request.add_listener(_recorder.on_request)
        gevent.spawn(_flusher)


def _is_master(environment) -> bool:
    from locust.runners import MasterRunner

    return isinstance(environment.runner, MasterRunner)


def _flusher():
    while _recorder is not None:
        gevent.sleep(_recorder.flush_every_s)
        _recorder.flush()


@events.quitting.add_listener
def _on_quit(environment, **_kw):
    if _recorder is not None:
        _recorder.close()


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
        users = max(1, (opts.num_users if opts else 1) or 1)
        self.interval = users / opts.rate if opts and opts.rate > 0 else 0.0
        self.pool = Pool()

    def on_stop(self):
        self.pool.kill(block=False)

    def request_once(self, t_intended: float | None = None):
        """One request; the recorder sees it through Locust's request event."""
        context = {} if t_intended is None else {"t_intended": t_intended}
        self.client.get(self.path, name=self.name, context=context)

    @task
    def load(self):
        if not self.interval:
            self.request_once()
            return
        # open model: this user's share of the rate on a fixed schedule, independent of replies
        intended = time.monotonic() + random.random() * self.interval
        while True:
            delay = intended - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)
            self.pool.spawn(self.request_once, intended)
            intended += self.interval


class AppUser(_Base):
    """Requests ``/`` back to back: the throughput and availability signal."""

    weight = 9


class HoldUser(_Base):
    """Requests ``/sleep?ms=N``: keeps requests in flight across every restart."""

    weight = 1
    name = "/sleep"
