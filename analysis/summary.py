"""One run's metrics as a JSON-able dict (summary.json): overall, per phase, per restart, retention,
the host's own checks and the known bugs it matches. ``analyze(run)`` computes all of it once; its
``Analysis`` is what the summary table, summary.json, the gate and the report are all made from
(docs/metrics.md defines every number, docs/results.md the file)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from restartbench import hosts
from restartbench.results import Run, open_runs, write_json

from . import metrics
from .windows import Windows, restart_windows

#: Bumped when the layout or a definition in summary.json changes; compare redoes cached
#: summaries of another format (the gate always recomputes).
SUMMARY_FORMAT = 5

TARGET_KEYS = ("kind", "name", "version", "arch", "emulated")


@dataclass
class Analysis:
    """Everything computed for one run; ``summary()`` turns it into summary.json's dict."""

    run: Run
    params: dict[str, Any]
    requests: metrics.Requests
    windows: Windows
    phase: np.ndarray
    restart_pos: np.ndarray
    census: metrics.Census
    phases: dict[str, dict[str, Any]]
    restarts: pd.DataFrame
    retention: dict[str, Any]
    overall: dict[str, Any] = field(default_factory=dict)
    _summary: dict[str, Any] | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        """summary.json's dict (computed once; the host's checks and known bugs included)."""
        if self._summary is None:
            base = jsonable({
                "summary_format": SUMMARY_FORMAT,
                "params": self.params,
                "run": run_info(self.run),
                "overall": self.overall,
                "phases": self.phases,
                "restarts": self.restarts.to_dict(orient="records"),
                "retention": self.retention,
            })
            self._summary = with_host_checks(self.run, base, self.params["grace_s"])
            from .gate import run_findings

            self._summary["findings"] = [f.describe() for f in run_findings(self.run, self._summary)]
        return self._summary

    def matches(self, window_s: float | None, grace_s: float | None) -> bool:
        """Whether this analysis used the W and grace that ``window_s``/``grace_s`` ask for (None:
        the scenario's), with no warm-up cut: then it can stand for a fresh one."""
        scenario = self.run.meta.get("scenario") or {}
        return (self.params["window_s"], self.params["grace_s"]) == analysis_params(scenario, window_s, grace_s) \
            and not self.params.get("warmup_s")


def analyze(run: Run, window_s: float | None = None, grace_s: float | None = None,
            warmup_s: float = 0.0, app_roles: Sequence[str] | None = None,
            timeout_s: float | None = None) -> Analysis:
    """Read a run's files and compute all metrics (docs/metrics.md defines them; metrics.py computes).

    ``window_s``/``grace_s`` default to the scenario's (run.json), else 5 s. ``warmup_s``: requests
    started before it (and before the first restart) are left out of the steady state.
    ``app_roles``: whose processes count for lingering and settle (default ``app`` if the census
    saw any, else ``main``). ``timeout_s``: the client timeout for the coordinated-omission
    corrected timeouts (default: run.json's load/scenario setting, else inferred from ``timeout``
    rows).
    """
    scenario = run.meta.get("scenario") or {}
    window_s, grace_s = analysis_params(scenario, window_s, grace_s)
    frame = run.requests()
    req = metrics.Requests.from_frame(frame[frame["name"] != metrics.OTHER_ROUTE])   # the app under test
    restarts = run.restarts()
    processes = run.processes()
    census = metrics.Census.from_frame(processes)
    windows = restart_windows(restarts, window_s)
    roles = tuple(app_roles) if app_roles else metrics.default_app_roles(census)
    if timeout_s is None:
        timeout_s = metrics.infer_timeout_s(req, run.meta)

    phases, phase, pos = metrics.phase_table(req, windows, warmup_s, timeout_s)
    idle = metrics.idle_count(census, windows, roles)
    kinds = restarts["kind"].to_numpy(dtype=object)[windows.order]
    counts, count_source = metrics.configured_counts(scenario, kinds, idle)
    table = restart_table(restarts, windows, req, phase, pos, census, roles, grace_s, counts)
    retention = metrics.retention(census, windows, table, load_end=req.span()[1])
    retention["by_role"] = metrics.role_retention(processes, windows, load_end=req.span()[1])
    params = {"window_s": window_s, "grace_s": grace_s, "warmup_s": warmup_s,
              "app_roles": list(roles), "timeout_s": timeout_s,
              "configured_processes": _base_count(scenario, idle),
              "configured_processes_source": count_source}
    analysis = Analysis(run=run, params=params, requests=req, windows=windows, phase=phase,
                        restart_pos=pos, census=census, phases=phases, restarts=table,
                        retention=retention)
    analysis.overall = overall(analysis, unplaced=len(restarts) - len(windows))
    analysis.overall["isolation"] = metrics.isolation(frame, restarts, window_s)
    return analysis


def analysis_params(scenario: dict[str, Any], window_s: float | None,
                    grace_s: float | None) -> tuple[float, float]:
    """W and grace: as given, else the scenario's, else 5 s."""
    def pick(given: float | None, key: str) -> float:
        if given is not None:
            return float(given)
        value = scenario.get(key)
        return float(value) if isinstance(value, (int, float)) and value > 0 else 5.0
    return pick(window_s, "window_s"), pick(grace_s, "grace_s")


def restart_table(restarts: pd.DataFrame, windows: Windows, req: metrics.Requests,
                  phase: np.ndarray, pos: np.ndarray, census: metrics.Census,
                  app_roles: Sequence[str], grace_s: float, counts: np.ndarray) -> pd.DataFrame:
    """One row per restart (in time order): restarts.csv fields, restart_api_s, window stats,
    lingering, settle and the tree totals just before it."""
    rows = restarts.iloc[windows.order].reset_index(drop=True)
    t_sent = rows["t_sent"].to_numpy(dtype="float64", na_value=np.nan)
    t_done = rows["t_done"].to_numpy(dtype="float64", na_value=np.nan)
    head = pd.DataFrame({
        "index": rows["index"].astype("Int64"),
        "kind": rows["kind"].astype(object),
        "name": rows["name"].astype(object).where(rows["name"].notna(), None),
        "t_sent": t_sent, "t_done": t_done, "restart_api_s": t_done - t_sent,
        "http_status": rows["http_status"].astype("Int64"),
    })
    table = pd.concat([head, metrics.window_stats(req, windows, phase, pos),
                       metrics.census_stats(census, windows, app_roles, grace_s, counts),
                       pd.DataFrame({"configured_processes": counts})], axis=1)
    # a scripted change need not replace the app (a listener, a route, a setting): one that started no
    # new app process left nothing to linger or to settle
    kept = (table["kind"] == "change") & (table["fresh_app"] == 0).fillna(False)
    table.loc[kept, "lingering"] = 0
    table.loc[kept, "settle_s"] = 0.0
    table["replaced_app"] = ~kept
    return table


def overall(a: Analysis, unplaced: int = 0) -> dict[str, Any]:
    """Run-level numbers: all requests, plus the headline restart metrics."""
    begin, end = a.requests.span()
    duration = end - begin if np.isfinite(end - begin) else 0.0
    placed = a.phase >= 0
    out = metrics.request_stats(a.requests, placed, duration, a.params["timeout_s"])
    t = a.restarts
    # recovery quantiles over the restarts that recovered; the others are ``unrecovered``
    # (docs/metrics.md "Over all restarts": the gate, compare, the report and asv read these keys)
    rec = t["recovery_s"].to_numpy(dtype="float64")[t["recovered"].to_numpy(dtype=bool)]
    r50, r95 = metrics.quantiles(rec, (50, 95))
    api = t["restart_api_s"].to_numpy(dtype="float64")
    settle = t["settle_s"].to_numpy(dtype="float64")
    out.update({
        "restarts": len(t), "restarts_unplaced": unplaced,
        "recovered": int(t["recovered"].sum()), "unrecovered": int((~t["recovered"]).sum()),
        "unrecovered_truncated": int((~t["recovered"] & t["window_truncated"]).sum()),
        "recovery_p50_s": r50, "recovery_p95_s": r95, "recovery_max_s": _max(rec),
        "restart_api_p50_s": metrics.quantiles(api, (50,))[0], "restart_api_max_s": _max(api),
        "restart_http_errors": int((t["http_status"] >= 400).fillna(False).sum()),
        "lingering_max": _count(_max(t["lingering"].to_numpy(dtype="float64", na_value=np.nan))),
        "lingering_prototype_max": _count(_max(t["lingering_prototype"].to_numpy(dtype="float64",
                                                                                 na_value=np.nan))),
        "settle_p95_s": metrics.quantiles(settle, (95,))[0],
        "unsettled": int(np.isnan(settle).sum()),
        "steady_timeout_rate": a.phases["before"]["timeout_rate"],
        "steady_error_rate": a.phases["before"]["error_rate"],
        "window_timeout_rate": a.phases["windows"]["timeout_rate"],
        "window_error_rate": a.phases["windows"]["error_rate"],
        "after_timeout_rate": a.phases["after"]["timeout_rate"],
        "after_error_rate": a.phases["after"]["error_rate"],
        "rss_slope": a.retention["slope_per_restart"]["rss"],
        "fd_slope_of": fd_slope_of(a.retention),
        "fd_slope": a.retention["slope_per_restart"][fd_slope_of(a.retention)],
        "rss_slope_by_role": a.retention.get("by_role", {}).get("rss", {}),
        "fd_slope_by_role": a.retention.get("by_role", {}).get("num_fds", {}),
    })
    return out


def fd_slope_of(retention: dict[str, Any]) -> str:
    """Which fd total the retained-fds slope is of: the fds other than TCP sockets (``fds_held``:
    client connections follow the load, not the restarts) when the census counted those, else all."""
    return "fds_held" if retention["points"]["fds_held"] >= 2 else "num_fds"


def _max(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.max()) if len(values) else np.nan


def _base_count(scenario: dict[str, Any], idle: float) -> float:
    """The app process count before any restart: the scenario's int, else the idle count."""
    value = scenario.get("processes")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else idle


def _count(value: float) -> int | float:
    return int(value) if np.isfinite(value) else value


def run_info(run: Run) -> dict[str, Any]:
    """The essentials of run.json a reader of the summary needs to tell runs apart."""
    meta = run.meta
    target = meta.get("target") or {}
    scenario = meta.get("scenario") or {}
    return {
        "run_id": meta.get("run_id", run.path.name),
        "status": run.status,
        "reason": meta.get("reason"),
        "target": {k: target.get(k) for k in TARGET_KEYS} | {"emulated": run.info.target.emulated},
        "scenario": scenario.get("name"),
        "t0_wall": meta.get("t0_wall"),
        "duration_s": meta.get("duration_s"),
    }


def summarize(run: Run, window_s: float | None = None, grace_s: float | None = None,
              **options: Any) -> dict[str, Any]:
    """The run's metrics as a JSON-able dict (NaN -> None). W and grace default to the scenario's,
    else 5 s; ``options``: warmup_s, app_roles, timeout_s (see ``analyze``)."""
    return analyze(run, window_s=window_s, grace_s=grace_s, **options).summary()


def analyses(items: Sequence[Run | Analysis | Path | str], window_s: float | None = None,
             grace_s: float | None = None) -> list[Analysis]:
    """An Analysis for each item: one given that used these W and grace is kept as it is (analysed
    once per command), a run or a path is analysed now."""
    out = []
    for item in items:
        if isinstance(item, Analysis) and item.matches(window_s, grace_s):
            out.append(item)
        else:
            run = item.run if isinstance(item, Analysis) else open_runs([item])[0]
            out.append(analyze(run, window_s=window_s, grace_s=grace_s))
    return out


def with_host_checks(run: Run, summary: dict[str, Any], grace_s: float | None = None) -> dict[str, Any]:
    """``summary`` plus what the run's host reports itself (``Host.run_checks``: for Unit its log and
    /status): ``host_checks``, each restart's ``crashes`` and the run's ``overall.crashes`` when the
    host reports crashes; for every run ``known_bugs``, the catalogue entries it matches."""
    host = hosts.for_run(run.meta)
    checks = host.run_checks(run, grace_s=grace_s) if host is not None else None
    summary["host_checks"] = None if checks is None else {"host": host.kind, **jsonable(checks)}
    if checks is not None and checks.get("crashes") is not None:
        per = {r.get("index"): r.get("crashes") for r in summary["host_checks"].get("restarts", [])}
        for r in summary["restarts"]:
            r["crashes"] = per.get(r.get("index"))
        summary["overall"]["crashes"] = (summary["host_checks"].get("crashes") or {}).get("total")
    from .catalogue import match

    summary["known_bugs"] = [m.describe() for m in match(run, summary)]
    return summary


def write_summary(run: Run | Analysis, window_s: float | None = None, grace_s: float | None = None,
                  **options: Any) -> Path:
    """Write ``summary.json`` into the run's directory (atomically) and return its path; given an
    Analysis, its summary (no second analysis)."""
    if isinstance(run, Analysis) and not options and run.matches(window_s, grace_s):
        summary, run = run.summary(), run.run
    else:
        run = run.run if isinstance(run, Analysis) else run
        summary = summarize(run, window_s=window_s, grace_s=grace_s, **options)
    path = Path(run.path) / "summary.json"
    write_json(path, summary)
    return path


def cached_summary(run: Run, window_s: float | None = None, grace_s: float | None = None) -> dict[str, Any]:
    """summary.json if it was written by this format with these parameters, else a fresh one."""
    cached = run.summary()
    window_s, grace_s = analysis_params(run.meta.get("scenario") or {}, window_s, grace_s)
    if cached and cached.get("summary_format") == SUMMARY_FORMAT:
        params = cached.get("params") or {}
        if params.get("window_s") == window_s and params.get("grace_s") == grace_s \
                and not params.get("warmup_s"):
            cached["run"]["status"] = run.status  # a crashed orchestrator is found at read time
            return cached
    return summarize(run, window_s=window_s, grace_s=grace_s)


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy/pandas scalars made plain and NaN/inf/NA made None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if obj is None or obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj
