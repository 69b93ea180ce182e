"""The numbers asv tracks for one run, and their history over releases.

``of(analysis)`` is what ``benchmarks/restarts.py`` reports to asv for a run (every value bigger-is-worse,
NaN where the host cannot say); ``history(pairs)`` is the same numbers for many runs grouped by build, which
the release-health page draws release after release as asv draws commit after commit.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import pandas as pd

from .summary import Analysis

#: tracked value: (pretty name, unit) as asv shows them (benchmarks/restarts.py track_* use the same)
TRACKED: dict[str, tuple[str, str]] = {
    "window_timeout_rate": ("timeout rate in restart windows", "share of requests"),
    "recovery_p95_s": ("recovery p95", "seconds"),
    "unrecovered_share": ("restarts never recovered", "share of restarts"),
    "lingering_max": ("lingering old processes (max)", "processes"),
    "crashed_restarts": ("restarts followed by a crash", "share of restarts"),
    "rss_slope": ("RSS growth per restart", "bytes/restart"),
    "fd_slope": ("fd growth per restart", "fds/restart"),
    "gate_failed_checks": ("gate checks failed", "checks"),
    "failing_findings": ("findings failing the gate", "findings"),
}

HISTORY_COLUMNS = ["label", "run_id", "metric", "value"]


def number(value: Any) -> float:
    """``value`` as a float, NaN for None."""
    return math.nan if value is None else float(value)


def of(done: Analysis, limits: dict | None = None) -> dict[str, float]:
    """The tracked values of one analysed run (the gate with ``limits``, default limits when None)."""
    from .gate import evaluate

    summary = done.summary()
    verdict = evaluate([done], limits)
    o = summary["overall"]
    restarts = o.get("restarts") or 0
    host_restarts = (summary.get("host_checks") or {}).get("restarts") or []
    return {
        "window_timeout_rate": number(o.get("window_timeout_rate")),
        "recovery_p95_s": number(o.get("recovery_p95_s")),
        "unrecovered_share": (o.get("unrecovered") or 0) / restarts if restarts else math.nan,
        "lingering_max": number(o.get("lingering_max")),
        "crashed_restarts": (sum(1 for r in host_restarts if r.get("crashes")) / len(host_restarts)
                             if host_restarts else math.nan),
        "rss_slope": number(o.get("rss_slope")),
        "fd_slope": number(o.get("fd_slope")),
        "gate_failed_checks": float(len({r.check for r in verdict.failures()})),
        "failing_findings": float(len(verdict.failing_findings(done.run.run_id))),
    }


def history(pairs: Iterable[tuple[str, Analysis]], limits: dict | None = None) -> pd.DataFrame:
    """One row per (build label, run, tracked value), builds in the order given (``HISTORY_COLUMNS``)."""
    rows = [{"label": label, "run_id": done.run.run_id, "metric": key, "value": value}
            for label, done in pairs for key, value in of(done, limits).items()]
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)
