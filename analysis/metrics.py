"""The metrics of docs/metrics.md, computed with numpy/pandas over whole columns.

Requests are handled as arrays (no per-request Python); per-restart and per-sample quantities
loop over restarts only. Every function tolerates empty inputs and returns NaN where a value is
undefined (an empty window, a run that ended before the grace period, no census sample).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from restartbench.results import OUTCOMES

from .windows import (AFTER, BEFORE, BETWEEN, PHASES, WARMUP, WINDOW, Windows, assign,
                      phase_durations, window_durations)

OK = OUTCOMES.index("ok")
TIMEOUT = OUTCOMES.index("timeout")
QUANTILES = (50, 95, 99)
TREE_METRICS = ("rss", "uss", "num_fds", "num_threads", "tcp_fds")
#: tree totals derived from others: open fds other than TCP sockets (client connections come and
#: go with the load; what a restart leaks is the rest: pipes, unix sockets, files)
DERIVED_METRICS = ("fds_held",)


# -- requests ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Requests:
    """The columns of requests.parquet the metrics need, as numpy arrays."""

    t_start: np.ndarray
    t_end: np.ndarray
    latency_ms: np.ndarray
    outcome: np.ndarray      # codes into OUTCOMES; -1 = unknown (request never finished)
    t_intended: np.ndarray   # NaN in the closed model

    def __len__(self) -> int:
        return len(self.t_start)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> "Requests":
        def col(name: str) -> np.ndarray:
            if name not in frame.columns:
                return np.full(len(frame), np.nan)
            return frame[name].to_numpy(dtype="float64", na_value=np.nan)

        outcome = frame["outcome"] if "outcome" in frame.columns else pd.Series([], dtype=object)
        if not isinstance(outcome.dtype, pd.CategoricalDtype) or \
                list(outcome.cat.categories) != list(OUTCOMES):
            outcome = pd.Series(pd.Categorical(outcome, categories=OUTCOMES))
        codes = outcome.cat.codes.to_numpy() if len(frame) else np.zeros(0, dtype=np.int8)
        return cls(t_start=col("t_start"), t_end=col("t_end"), latency_ms=col("latency_ms"),
                   outcome=codes, t_intended=col("t_intended"))

    def span(self) -> tuple[float, float]:
        """``(begin, end)`` of the load: first start, last start or end; NaN without requests."""
        if not len(self) or np.isnan(self.t_start).all():
            return np.nan, np.nan
        begin = float(np.nanmin(self.t_start))
        end = float(np.nanmax([np.nanmax(self.t_start),
                               np.nanmax(self.t_end) if not np.isnan(self.t_end).all() else -np.inf]))
        return begin, end


def quantiles(values: np.ndarray, qs: Sequence[float] = QUANTILES) -> list[float]:
    """Percentiles of the finite ``values`` (linear interpolation); NaN for none."""
    values = values[np.isfinite(values)]
    if not len(values):
        return [np.nan] * len(qs)
    return [float(v) for v in np.percentile(values, qs)]


def ratio(num: float, den: float) -> float:
    """``num / den``, NaN when the denominator is 0."""
    return float(num) / den if den else np.nan


def request_stats(req: Requests, mask: np.ndarray | slice, duration_s: float,
                  timeout_s: float | None = None) -> dict[str, Any]:
    """Counts, rates, rps and latency quantiles of the requests selected by ``mask``.

    Rates are over the requests that finished (``outcome`` known); ``unfinished`` counts the rest.
    Latency is the raw ``latency_ms`` of ``ok`` rows. The ``co_`` keys repeat the latency and the
    timeout rate measured from ``t_intended`` (coordinated-omission corrected) for the rows that
    have one (open model); they are None in the closed model.
    """
    outcome = req.outcome[mask]
    n = len(outcome)
    finished = int(np.count_nonzero(outcome >= 0))
    ok_mask = outcome == OK
    ok = int(np.count_nonzero(ok_mask))
    timeouts = int(np.count_nonzero(outcome == TIMEOUT))
    p50, p95, p99 = quantiles(req.latency_ms[mask][ok_mask])
    stats: dict[str, Any] = {
        "requests": n, "duration_s": duration_s, "rps": ratio(n, duration_s),
        "ok": ok, "timeouts": timeouts, "errors": finished - ok, "unfinished": n - finished,
        "timeout_rate": ratio(timeouts, finished), "error_rate": ratio(finished - ok, finished),
        "availability": ratio(ok, finished),
        "latency_p50_ms": p50, "latency_p95_ms": p95, "latency_p99_ms": p99,
    }
    stats.update(_co_stats(req, mask, outcome, timeout_s))
    return stats


def _co_stats(req: Requests, mask: np.ndarray | slice, outcome: np.ndarray,
              timeout_s: float | None) -> dict[str, Any]:
    intended = req.t_intended[mask]
    has = ~np.isnan(intended)
    keys = ("co_requests", "co_latency_p50_ms", "co_latency_p95_ms", "co_latency_p99_ms",
            "co_timeouts", "co_timeout_rate")
    if not has.any():
        return dict.fromkeys(keys)
    latency = (req.t_end[mask][has] - intended[has]) * 1000.0
    outcome = outcome[has]
    finished = outcome >= 0
    p50, p95, p99 = quantiles(latency[outcome == OK])
    late = outcome == TIMEOUT
    if timeout_s is not None and np.isfinite(timeout_s):
        late |= finished & (latency >= timeout_s * 1000.0)
    n_late = int(np.count_nonzero(late))
    return dict(zip(keys, (int(has.sum()), p50, p95, p99, n_late,
                           ratio(n_late, int(finished.sum())))))


def infer_timeout_s(req: Requests, meta: dict[str, Any] | None = None) -> float | None:
    """The client timeout: run.json ``load.request_timeout_s`` or the scenario's ``timeout_s`` /
    ``request_timeout_s``, else the shortest latency recorded for a ``timeout`` row, else None."""
    meta = meta or {}
    for section, key in (("load", "request_timeout_s"), ("scenario", "timeout_s"),
                         ("scenario", "request_timeout_s")):
        value = (meta.get(section) or {}).get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    lat = req.latency_ms[req.outcome == TIMEOUT]
    lat = lat[np.isfinite(lat)]
    return float(lat.min()) / 1000.0 if len(lat) else None


def phase_table(req: Requests, windows: Windows, warmup_s: float = 0.0,
                timeout_s: float | None = None) -> tuple[dict[str, dict[str, Any]], np.ndarray, np.ndarray]:
    """Stats per phase (``warmup before windows between after``) plus the phase/restart arrays."""
    phase, pos = assign(req.t_start, windows, warmup_s)
    begin, end = req.span()
    durations = phase_durations(windows, begin, end, warmup_s)
    out = {}
    for code, name in ((WARMUP, "warmup"), (BEFORE, "before"), (WINDOW, "windows"),
                       (BETWEEN, "between"), (AFTER, "after")):
        out[name] = request_stats(req, phase == code, durations[PHASES[code]], timeout_s)
    return out, phase, pos


# -- per restart: requests --------------------------------------------------------------------

def window_stats(req: Requests, windows: Windows, phase: np.ndarray, pos: np.ndarray) -> pd.DataFrame:
    """Per restart window: ``n_requests unfinished timeouts errors timeout_rate error_rate
    rps recovered recovery_s outage_s window_truncated``.

    ``recovery_s`` (docs/metrics.md "Per restart") is from ``t_i`` to the earliest ``t_end`` of an
    ``ok`` request that started in the window. None started: the restart did not recover
    (``recovered`` False, ``recovery_s`` NaN). ``window_truncated`` marks a window
    cut short by the end of the load, where "not recovered" may only mean "not observed".
    """
    r = len(windows)
    in_win = phase == WINDOW
    idx = pos[in_win]
    outcome = req.outcome[in_win]
    n = np.bincount(idx, minlength=r)
    finished = np.bincount(idx, weights=outcome >= 0, minlength=r)
    ok = np.bincount(idx, weights=outcome == OK, minlength=r)
    timeouts = np.bincount(idx, weights=outcome == TIMEOUT, minlength=r)
    errors = finished - ok
    with np.errstate(invalid="ignore", divide="ignore"):
        timeout_rate = np.where(finished > 0, timeouts / finished, np.nan)
        error_rate = np.where(finished > 0, errors / finished, np.nan)
        begin, end = req.span()
        lengths = window_durations(windows, begin, end)
        rps = np.where(lengths > 0, n / lengths, np.nan)
    first_end = _first_ok_end(req, in_win, idx, outcome, r)
    recovered = ~np.isnan(first_end)
    return pd.DataFrame({
        "window_start": windows.starts, "window_end": windows.ends,
        "window_truncated": ~(windows.ends <= end) if np.isfinite(end) else np.ones(r, bool),
        "n_requests": n, "unfinished": (n - finished).astype(np.int64),
        "timeouts": timeouts.astype(np.int64), "errors": errors.astype(np.int64),
        "timeout_rate": timeout_rate, "error_rate": error_rate, "rps": rps,
        "recovered": recovered, "recovery_s": first_end - windows.starts,
        "outage_s": _outages(req, in_win, idx, outcome, r),
    })


def _outages(req: Requests, in_win: np.ndarray, idx: np.ndarray, outcome: np.ndarray, r: int) -> np.ndarray:
    """Per window, how long the app was out: from the start of its first failed request (any outcome but
    ok) to the end of the first ok request that started after its last failed one; 0 without a failed
    request, NaN when none succeeded after (a daemon restart's downtime; a restart's, seen by its clients)."""
    out = np.zeros(r)
    t0, t1 = req.t_start[in_win], req.t_end[in_win]
    bad = (outcome != OK) & (outcome >= -1)
    for p in np.unique(idx[bad]):
        mine = idx == p
        starts = t0[mine & bad]
        ok_after = mine & (outcome == OK) & (t0 > starts.max()) & ~np.isnan(t1)
        out[p] = (t1[ok_after].min() - starts.min()) if ok_after.any() else np.nan
    return out


def _first_ok_end(req: Requests, in_win: np.ndarray, idx: np.ndarray, outcome: np.ndarray,
                  r: int) -> np.ndarray:
    """Per window, the earliest ``t_end`` of an ok request that started in it (NaN if none): when the
    app first answered again. (By earliest *end*, so a request held open on purpose — /sleep — that
    happens to start first cannot stretch recovery by its hold time.)"""
    out = np.full(r, np.nan)
    good = (outcome == OK) & ~np.isnan(req.t_end[in_win])
    if not r or not good.any():
        return out
    first_end = np.full(r, np.inf)
    _group_min(first_end, idx[good], req.t_end[in_win][good])
    out[np.isfinite(first_end)] = first_end[np.isfinite(first_end)]
    return out


def _group_min(into: np.ndarray, groups: np.ndarray, values: np.ndarray) -> None:
    """``into[g] = min(into[g], values[groups == g])`` for every group, in O(n)."""
    if not len(groups):
        return
    mins = pd.Series(values).groupby(groups, sort=False).min()
    keys = mins.index.to_numpy()
    into[keys] = np.minimum(into[keys], mins.to_numpy())


# -- per restart: the census ------------------------------------------------------------------

@dataclass(frozen=True)
class Census:
    """processes.parquet sorted by sample time, with the offsets of each sample's rows."""

    times: np.ndarray         # one entry per sample, ascending
    offsets: np.ndarray       # rows of sample k are offsets[k]:offsets[k+1]
    role: np.ndarray          # codes into role_names
    born: np.ndarray          # s since t0, NaN if unknown
    generation: np.ndarray    # float (NaN if unknown)
    totals: pd.DataFrame      # per sample: processes + TREE_METRICS summed over the tree
    role_names: tuple[str, ...] = ()     # the roles the run's host gave its processes

    def __len__(self) -> int:
        return len(self.times)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> "Census":
        frame = frame[frame["t"].notna()]
        t = frame["t"].to_numpy(dtype="float64")
        order = np.argsort(t, kind="stable")
        t = t[order]
        times, offsets, sample = np.unique(t, return_index=True, return_inverse=True)
        offsets = np.append(offsets, len(t))
        role = pd.Series(pd.Categorical(frame["role"].astype("object")))
        names = tuple(str(r) for r in role.cat.categories)
        role = role.cat.codes.to_numpy()[order] if len(frame) else np.zeros(0, np.int8)

        def col(name: str) -> np.ndarray:
            if name not in frame.columns:                 # a run from before the column existed
                return np.full(len(t), np.nan)
            return frame[name].to_numpy(dtype="float64", na_value=np.nan)[order]

        totals = {"t": times, "processes": np.bincount(sample, minlength=len(times))}
        for name in TREE_METRICS:
            values = col(name)
            missing = np.bincount(sample, weights=np.isnan(values), minlength=len(times))
            sums = np.bincount(sample, weights=np.nan_to_num(values), minlength=len(times))
            totals[name] = np.where(missing > 0, np.nan, sums)  # a partial sample is no total
        totals["fds_held"] = totals["num_fds"] - totals["tcp_fds"]
        return cls(times=times, offsets=offsets, role=role, role_names=names, born=col("born"),
                   generation=col("generation"), totals=pd.DataFrame(totals))

    def role_mask(self, roles: Sequence[str]) -> np.ndarray:
        return np.isin(self.role, [self.role_names.index(r) for r in roles if r in self.role_names])

    def born_of(self, position: int, windows: "Windows") -> np.ndarray:
        """Rows of processes born of restart ``position``: after it and before the next one (by
        ``generation`` == position + 1, else by ``born``)."""
        t_i = windows.starts[position]
        t_next = windows.starts[position + 1] if position + 1 < len(windows.starts) else np.inf
        by_born = (self.born >= t_i) & (self.born < t_next)
        return np.where(np.isnan(self.generation), by_born, self.generation == position + 1)

    def old(self, t_i: float, position: int) -> np.ndarray:
        """Rows of processes born before restart ``position`` (at ``t_i``): by ``generation``
        (< position + 1; the census makes it exact, see restartbench.census), else by ``born``."""
        return np.where(np.isnan(self.generation), self.born < t_i, self.generation < position + 1)

    def sample_at_or_after(self, t: float) -> int | None:
        k = int(np.searchsorted(self.times, t, side="left"))
        return k if k < len(self.times) else None

    def sample_before(self, t: float) -> int | None:
        k = int(np.searchsorted(self.times, t, side="left")) - 1
        return k if k >= 0 else None


def default_app_roles(census: Census) -> tuple[str, ...]:
    """``("app",)`` when the census saw any ``app`` process, else ``("main",)`` (wasmtime)."""
    return ("app",) if "app" in census.role_names and census.role_mask(("app",)).any() else ("main",)


def idle_count(census: Census, windows: Windows, roles: Sequence[str]) -> float:
    """App processes in the last sample before the first restart (NaN without one)."""
    k = census.sample_before(windows.first) if len(windows) else None
    if k is None:
        return np.nan
    rows = slice(census.offsets[k], census.offsets[k + 1])
    return float(np.count_nonzero(census.role_mask(roles)[rows]))


def configured_counts(scenario: dict[str, Any] | None, kinds: Sequence[Any],
                      fallback: float) -> tuple[np.ndarray, str]:
    """The app process count each restart should settle at, and where it came from.

    The scenario's ``processes`` (an int) is the count; restarts of kind ``processes`` change it
    as restartbench.scenarios plans them: the n-th such action (from 0) sets ``processes + 1``
    when n is even and ``processes`` when odd, and the count holds until the next one. A list
    gives one count per restart (the last repeated). Without either, the idle count is used.
    """
    n_restarts = len(kinds)
    value = (scenario or {}).get("processes")
    if isinstance(value, bool):
        value = None
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        counts = [float(value[min(i, len(value) - 1)]) for i in range(n_restarts)]
        return np.asarray(counts, dtype="float64"), "scenario"
    if not isinstance(value, (int, float)):
        return np.full(n_restarts, fallback), "idle"
    counts, current, nth = [], float(value), 0
    for kind in kinds:
        if isinstance(kind, str) and kind == "processes":
            current = float(value) + (1.0 if nth % 2 == 0 else 0.0)
            nth += 1
        counts.append(current)
    return np.asarray(counts, dtype="float64"), "scenario"


def census_stats(census: Census, windows: Windows, app_roles: Sequence[str], grace_s: float,
                 counts: np.ndarray) -> pd.DataFrame:
    """Per restart: ``lingering``, ``lingering_prototype``, ``settle_s`` and the tree totals
    sampled just before the restart (``tree_<metric>_before``).

    ``lingering``: processes of ``app_roles`` born before ``t_i`` present in the first sample at
    or after ``t_i + grace_s`` (NaN if the census ended before then); ``fresh_app``: the app processes born
    of this restart (after it, before the next) in that sample. ``settle_s``: from ``t_i``
    to the first sample at or after it with exactly ``counts[i]`` app processes and none born
    before ``t_i`` (NaN if never).
    """
    r = len(windows)
    app = census.role_mask(app_roles)
    proto = census.role_mask(("prototype",))
    lingering = np.full(r, np.nan)
    lingering_proto = np.full(r, np.nan)
    fresh = np.full(r, np.nan)
    settle = np.full(r, np.nan)
    n_app, min_born, min_gen = _app_sample_stats(census, app)
    for p, t_i in enumerate(windows.starts):
        k = census.sample_at_or_after(t_i + grace_s)
        if k is not None:
            rows = slice(census.offsets[k], census.offsets[k + 1])
            old = census.old(t_i, p)[rows]
            lingering[p] = np.count_nonzero(old & app[rows])
            lingering_proto[p] = np.count_nonzero(old & proto[rows])
            fresh[p] = np.count_nonzero(census.born_of(p, windows)[rows] & app[rows])
        k0 = census.sample_at_or_after(t_i)
        if k0 is not None and np.isfinite(counts[p]):
            ok = (n_app[k0:] == counts[p]) & (min_born[k0:] >= t_i) & (min_gen[k0:] >= p + 1)
            hit = np.flatnonzero(ok)
            if len(hit):
                settle[p] = census.times[k0 + hit[0]] - t_i
    out = pd.DataFrame({"lingering": pd.array(lingering, dtype="Float64").astype("Int64"),
                        "lingering_prototype": pd.array(lingering_proto, dtype="Float64").astype("Int64"),
                        "fresh_app": pd.array(fresh, dtype="Float64").astype("Int64"),
                        "settle_s": settle})
    for name in ("processes", *TREE_METRICS, *DERIVED_METRICS):
        out[f"tree_{name}_before"] = values_before(census, name, windows.starts)
    return out


def _app_sample_stats(census: Census, app: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample: app process count, earliest ``born`` of the app processes whose ``generation``
    is unknown, and lowest known ``generation`` (+inf where there are none)."""
    k = len(census)
    sample = np.repeat(np.arange(k), np.diff(census.offsets))[app]
    n_app = np.bincount(sample, minlength=k).astype("float64")
    born = census.born[app]
    gen = census.generation[app]
    min_born = np.full(k, np.inf)
    min_gen = np.full(k, np.inf)
    known = ~np.isnan(gen)
    _group_min(min_gen, sample[known], gen[known])
    by_born = ~known & ~np.isnan(born)
    _group_min(min_born, sample[by_born], born[by_born])
    return n_app, min_born, min_gen


def full_samples(census: Census, name: str) -> pd.DataFrame:
    """``t`` and the tree total ``name`` of the samples that have it, restricted to the census's
    full samples (those with ``tcp_fds``: one taken at each restart mark, just before the restart
    is sent, and every ``full_every`` rounds) when the run has them. A round of the census thread
    can straddle a restart on a busy machine (its rows carry the round's start time), so only the
    mark's own sample is sure to show the tree as it was before the restart."""
    cols = census.totals[list(dict.fromkeys(["t", name, "tcp_fds"]))].dropna(subset=[name])
    full = cols[cols["tcp_fds"].notna()]
    return (full if len(full) else cols)[["t", name]]


def values_before(census: Census, name: str, times: np.ndarray) -> np.ndarray:
    """The tree total ``name`` in the last full sample (``full_samples``) strictly before each time."""
    series = full_samples(census, name)
    t = series["t"].to_numpy()
    k = np.searchsorted(t, times, side="left") - 1
    out = np.full(len(times), np.nan)
    found = k >= 0
    out[found] = series[name].to_numpy(dtype="float64")[k[found]]
    return out


# -- retention --------------------------------------------------------------------------------

def slope(y: np.ndarray) -> float:
    """Least-squares slope of ``y`` against its position (per restart); NaN with < 2 points."""
    x = np.arange(len(y), dtype="float64")
    keep = np.isfinite(y)
    if np.count_nonzero(keep) < 2:
        return np.nan
    x, y = x[keep], y[keep]
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / (x * x).sum())


def retention(census: Census, windows: Windows, before: pd.DataFrame,
              load_end: float = np.inf) -> dict[str, Any]:
    """Tree totals at idle (last sample before the first restart; with no restarts, the last
    sample), at the end (last sample of the run) and their slope per restart.

    The slope fits the value just before each restart plus one value at the end, against
    0, 1, ..., n (bytes/restart, fds/restart); NaN with fewer than two points. That end value is
    the last sample while the load still ran (``end_loaded``, at or before ``load_end``), so that
    every point of the fit is taken under load: connections hold fds and memory, and a sample
    after the load stopped would read as a drop.
    """
    idle_t = windows.first if len(windows) else np.inf
    if not np.isfinite(load_end):
        load_end = np.inf
    out: dict[str, Any] = {"idle": {}, "end": {}, "end_loaded": {}, "slope_per_restart": {},
                           "points": {}}
    for name in ("processes", *TREE_METRICS, *DERIVED_METRICS):
        series = full_samples(census, name)
        t = series["t"].to_numpy()
        v = series[name].to_numpy(dtype="float64")
        k = int(np.searchsorted(t, idle_t, side="left")) - 1
        out["idle"][name] = float(v[k]) if k >= 0 else np.nan
        out["end"][name] = float(v[-1]) if len(v) else np.nan
        k = int(np.searchsorted(t, load_end, side="right")) - 1
        out["end_loaded"][name] = float(v[k]) if k >= 0 and t[k] >= idle_t else np.nan
        points = np.append(before[f"tree_{name}_before"].to_numpy(dtype="float64"),
                           out["end_loaded"][name]) if len(windows) else np.array([])
        out["slope_per_restart"][name] = slope(points)
        out["points"][name] = int(np.isfinite(points).sum())
    out["idle"]["t"] = _sample_time(census, idle_t)
    out["end"]["t"] = float(census.times[-1]) if len(census) else np.nan
    k = int(np.searchsorted(census.times, load_end, side="right")) - 1
    out["end_loaded"]["t"] = float(census.times[k]) if k >= 0 else np.nan
    return out


def _sample_time(census: Census, before: float) -> float:
    k = int(np.searchsorted(census.times, before, side="left")) - 1
    return float(census.times[k]) if k >= 0 else np.nan


# -- per role and per app ------------------------------------------------------------------------

#: the route of a second app beside the one under test (the load's ``/other`` requests)
OTHER_ROUTE = "/other"


def role_retention(processes: pd.DataFrame, windows: Windows, load_end: float = np.inf,
                   names: Sequence[str] = ("rss", "num_fds")) -> dict[str, dict[str, float]]:
    """Growth per restart of each role's totals (``names``: rss, num_fds), as ``retention`` fits the
    tree's: the role's sum in the last sample before each restart, plus the last sample under load,
    against 0..n. A role with no process in a sample counts 0 there. ``{name: {role: slope}}``; empty
    without restarts. A role's growth shows a leak a tree total hides among replaced processes, and
    one in a process that every action keeps (a router leaking on each reconfiguration)."""
    out: dict[str, dict[str, float]] = {name: {} for name in names}
    frame = processes[processes["t"].notna()]
    if not len(windows) or frame.empty:
        return out
    totals = frame.groupby(["t", frame["role"].astype(str)])[list(names)].sum(min_count=1).astype("float64").unstack().fillna(0.0)
    times = totals.index.to_numpy(dtype="float64")
    at = [int(np.searchsorted(times, t, side="left")) - 1 for t in windows.starts]
    end = int(np.searchsorted(times, load_end if np.isfinite(load_end) else np.inf, side="right")) - 1
    rows = [k for k in at] + ([end] if end >= 0 and times[end] >= windows.first else [-1])
    for name in names:
        for role in totals[name].columns:
            values = totals[name][role].to_numpy(dtype="float64")
            points = np.array([values[k] if k >= 0 else np.nan for k in rows])
            out[name][str(role)] = slope(points)
    return out


def isolation(frame: pd.DataFrame, restarts: pd.DataFrame, window_s: float) -> dict[str, Any] | None:
    """The second app's requests (route ``/other``) around the actions on the app under test: how many
    started in each action's window (cut at the next action) and how many of those were not ok. Daemon
    restarts stop every app: their windows are left out, and so are requests still in flight when one
    began. None when the load sent no ``/other`` request."""
    other = frame[frame["name"] == OTHER_ROUTE]
    if other.empty:
        return None
    ok = (other["outcome"].astype(str) == "ok").to_numpy()
    t = other["t_start"].to_numpy(dtype="float64")
    t_end = other["t_end"].to_numpy(dtype="float64")
    per, hit = [], []
    acts = restarts.sort_values("t_sent")
    sent = acts["t_sent"].to_numpy(dtype="float64")
    kinds = acts["kind"].astype(str).to_numpy()
    for n, r in enumerate(acts.itertuples()):
        if str(r.kind) == "daemon" or not np.isfinite(r.t_sent):
            continue
        end = min(r.t_sent + window_s, sent[n + 1]) if n + 1 < len(sent) else r.t_sent + window_s
        inside = (t >= r.t_sent) & (t < end)
        daemons = sent[n + 1:][kinds[n + 1:] == "daemon"]
        if len(daemons):                            # in flight when a later daemon restart stopped every app
            inside &= ~(np.nan_to_num(t_end, nan=np.inf) >= daemons[0])
        bad = int((inside & ~ok).sum())
        per.append({"index": int(r.index), "kind": str(r.kind), "requests": int(inside.sum()), "not_ok": bad})
        if bad:
            hit.append(int(r.index))
    return {"requests": int(len(other)), "not_ok": int((~ok).sum()),
            "window_not_ok": int(sum(p["not_ok"] for p in per)), "disturbed_restarts": hit, "per_restart": per}
