"""The one progress protocol of the long jobs (matrix, bisect, explore): a stream of ``Event``.

A job calls its watcher with ``start`` when a step begins (a matrix cell, a probed build, an explored
plan), ``running`` with the run's own ``Progress`` while that step's run goes on, ``done`` when the step
ended (``ok`` says how), and ``note`` for a sentence worth showing (what bisect chose to look for).
``text`` is the line a watcher prints; the rest is for watchers that want more (the CLI's live view,
tests). A single run reports ``Progress`` alone (``run.run(config, report=...)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

STATES = ("start", "running", "done", "note")


@dataclass
class Event:
    """One thing a long job tells its watcher."""

    job: str                          # "matrix" | "bisect" | "explore" | "health"
    state: str                        # one of STATES
    text: str = ""                    # the line to print
    index: int = 0                    # the step, 1-based (0: not counted)
    total: int = 0                    # steps planned (0: unknown, as in a search)
    ok: bool | None = None            # a done step: went well / did not / could not tell
    run: Any = None                   # state "running": the run's ``run.Progress``
    item: Any = None                  # what the step is about: a Cell, a probed build, a Plan
    result: Any = None                # state "done": a CellResult, a BisectStep, a Trial


Watcher = Callable[[Event], None]


def ignore(event: Event) -> None:
    """A watcher that does nothing."""


def running(job: str, watch: Watcher, **about: Any) -> Callable[[Any], None]:
    """A run's progress callback that forwards each ``Progress`` to ``watch`` as a ``running`` event."""
    return lambda progress: watch(Event(job, "running", run=progress, **about))
