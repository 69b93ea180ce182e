"""Restart windows and the phase of every request.

For restart i sent at ``t_i`` (restarts.csv ``t_sent``, sorted), its window is
``[t_i, min(t_i + W, t_{i+1}))``. Windows therefore never overlap: with restarts closer than W
each window is cut at the next restart. A request belongs to the phase its ``t_start`` falls in:

``warmup``   before the first restart and before ``warmup_s`` (excluded from the steady state)
``before``   the steady state before the first restart
``window``   restart i's window (``restart`` = i, the position in sort order)
``between``  after restart i's window, before restart i+1
``after``    from the end of the last window to the end of the run

With no restarts every request is ``before`` (or ``warmup``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

PHASES = ("warmup", "before", "window", "between", "after")
WARMUP, BEFORE, WINDOW, BETWEEN, AFTER = range(len(PHASES))
UNPLACED = -1  # a request without a t_start


@dataclass(frozen=True)
class Windows:
    """Restart windows of one run: one entry per restart with a known ``t_sent``, in time order."""

    starts: np.ndarray       # t_i
    ends: np.ndarray         # min(t_i + W, t_{i+1})
    order: np.ndarray        # row positions in the restarts frame, in time order
    window_s: float

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def first(self) -> float:
        """``t_0``, or +inf with no restarts."""
        return float(self.starts[0]) if len(self) else np.inf

    @property
    def last_end(self) -> float:
        """End of the last window, or +inf with no restarts."""
        return float(self.ends[-1]) if len(self) else np.inf

    def frame(self) -> pd.DataFrame:
        """One row per window: ``start``, ``end``, ``length`` (s)."""
        return pd.DataFrame({"start": self.starts, "end": self.ends,
                             "length": self.ends - self.starts})


def restart_windows(restarts: pd.DataFrame, window_s: float = 5.0) -> Windows:
    """Windows ``[t_i, min(t_i + W, t_{i+1}))`` from restarts.csv; rows without ``t_sent`` are left out."""
    if window_s <= 0:
        raise ValueError(f"window_s must be > 0, got {window_s}")
    t_sent = restarts["t_sent"].to_numpy(dtype="float64", na_value=np.nan)
    known = np.flatnonzero(~np.isnan(t_sent))
    order = known[np.argsort(t_sent[known], kind="stable")]
    starts = t_sent[order]
    ends = starts + window_s
    if len(starts) > 1:
        ends[:-1] = np.minimum(ends[:-1], starts[1:])
    return Windows(starts=starts, ends=ends, order=order, window_s=float(window_s))


def assign(t: np.ndarray, windows: Windows, warmup_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Phase code (see PHASES) and restart position of each time in ``t``.

    The restart position is the last restart at or before ``t`` (-1 before the first), so for
    ``between``/``after`` it names the window just left.
    """
    t = np.asarray(t, dtype="float64")
    pos = np.searchsorted(windows.starts, t, side="right").astype(np.int64) - 1
    phase = np.full(len(t), BEFORE, dtype=np.int8)
    phase[(pos < 0) & (t < warmup_s)] = WARMUP
    placed = pos >= 0
    if len(windows):
        safe = np.where(placed, pos, 0)
        inside = placed & (t < windows.ends[safe])
        phase[inside] = WINDOW
        later = placed & ~inside
        phase[later & (pos < len(windows) - 1)] = BETWEEN
        phase[later & (pos == len(windows) - 1)] = AFTER
    phase[np.isnan(t)] = UNPLACED
    pos[np.isnan(t)] = -1
    return phase, pos


def assign_phases(requests: pd.DataFrame, windows: Windows, warmup_s: float = 0.0) -> pd.DataFrame:
    """``requests`` with two more columns: ``phase`` (categorical of PHASES) and ``restart`` (int)."""
    phase, pos = assign(requests["t_start"].to_numpy(dtype="float64", na_value=np.nan),
                        windows, warmup_s)
    out = requests.copy(deep=False)
    out["phase"] = pd.Categorical.from_codes(phase, categories=list(PHASES))
    out["restart"] = pos
    return out


def phase_durations(windows: Windows, begin: float, end: float,
                    warmup_s: float = 0.0) -> dict[str, float]:
    """Seconds of ``[begin, end]`` (the load's span) spent in each phase; 0 for an empty span."""
    if not (np.isfinite(begin) and np.isfinite(end)) or end <= begin:
        return {name: 0.0 for name in PHASES}

    def span(a: float | np.ndarray, b: float | np.ndarray) -> np.ndarray:
        return np.clip(np.minimum(b, end) - np.maximum(a, begin), 0.0, None)

    t0 = windows.first
    out = {"warmup": float(span(-np.inf, min(warmup_s, t0))),
           "before": float(span(warmup_s, t0)),
           "window": float(span(windows.starts, windows.ends).sum()) if len(windows) else 0.0,
           "between": 0.0, "after": 0.0}
    if len(windows):
        out["between"] = float(span(windows.ends[:-1], windows.starts[1:]).sum())
        out["after"] = float(span(windows.last_end, np.inf))
    return out


def window_durations(windows: Windows, begin: float, end: float) -> np.ndarray:
    """Seconds of each window inside the load's span ``[begin, end]``."""
    if not len(windows) or not (np.isfinite(begin) and np.isfinite(end)):
        return np.zeros(len(windows))
    return np.clip(np.minimum(windows.ends, end) - np.maximum(windows.starts, begin), 0.0, None)
