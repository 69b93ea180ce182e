"""The live view: a one-line view of a run's progress, and the watcher that prints a long job's events."""

from __future__ import annotations

from rich.console import Console
from rich.live import Live

from ..events import Event
from ..run import Progress


class LiveProgress:
    """A one-line live view of a run: phase, time, requests, rps, not-ok, restarts, processes."""

    def __init__(self, out: Console, enabled: bool = True):
        self.out, self.quiet, self.enabled = out, not enabled, enabled and out.is_terminal
        self.live = Live(console=out, refresh_per_second=4, transient=True) if self.enabled else None
        self._last = (0.0, 0)
        self._rps = 0.0
        self._phase = ""

    def __enter__(self) -> "LiveProgress":
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def update(self, p: Progress) -> None:
        if self.quiet:                                # --quiet: not even the phase lines
            return
        t, n = self._last
        if p.elapsed_s - t >= 1.0:
            self._rps = (p.requests - n) / (p.elapsed_s - t)
            self._last = (p.elapsed_s, p.requests)
        if self.live is None:
            if p.phase != self._phase:               # not a terminal: one line per phase change
                self._phase = p.phase
                self.out.print(f"[{p.elapsed_s:6.1f}s] {p.phase}", highlight=False)
            return
        done = min(1.0, p.elapsed_s / p.duration_s) if p.duration_s else 0.0
        bar = "━" * int(done * 30) + "╺" + " " * (30 - int(done * 30))
        last = ""
        if p.last_restart is not None:
            r = p.last_restart
            last = f" · last restart {r.kind} {(r.t_done - r.t_sent) * 1000:.0f} ms" + (
                f" HTTP {r.http_status}" if r.http_status else "")
        self.live.update(f"[cyan]{p.phase:>14}[/] {bar} {p.elapsed_s:5.1f}/{p.duration_s:.0f}s · "
                         f"{p.requests:,} req · {self._rps:,.0f} rps · [red]{p.not_ok:,} not ok[/] · "
                         f"restarts {p.restarts_done}/{p.restarts_total} · {p.processes} proc{last}")


class Watch:
    """A long job's watcher (``events.Event``): each step's start in bold, its end in green (ok), red (not
    ok) or yellow (could not tell), notes in bold, and a live view of the step's run in between."""

    def __init__(self, out: Console, enabled: bool = True):
        self.out, self.enabled = out, enabled
        self.live: LiveProgress | None = None

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc) -> None:
        self._close()

    def __call__(self, event: Event) -> None:
        if event.state == "running":
            if self.live is None:
                self.live = LiveProgress(self.out, enabled=self.enabled).__enter__()
            self.live.update(event.run)
            return
        if event.state == "start":
            self._close()
            self.out.print(event.text, style="bold", markup=False, highlight=False, soft_wrap=True)
        elif event.state == "done":
            self._close()
            style = {True: "green", False: "red"}.get(event.ok, "yellow")
            self.out.print(event.text, style=style, markup=False, highlight=False, soft_wrap=True)
        else:
            self.out.print(event.text, style="bold", markup=False, highlight=False, soft_wrap=True)

    def _close(self) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)
            self.live = None
