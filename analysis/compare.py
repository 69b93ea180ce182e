"""Compare many runs: one row per (host, target, version, arch, emulated, scenario), repeated runs
aggregated as a mean with a 95% bootstrap confidence interval.

Runs under emulation (run.json ``target.emulated``) are labelled so. Their process counts and
lingering compare with native runs; their timings (rates of timeouts, recovery, throughput) do
not, and every such cell says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from rich.table import Table

from restartbench.results import Run, open_runs, write_atomic

from .summary import Analysis, cached_summary

KEYS = ("host", "target", "version", "arch", "emulated", "scenario")


@dataclass(frozen=True)
class Metric:
    key: str          # column name, and the key in summary["overall"]
    title: str
    unit: str         # "rate" | "s" | "bytes" | "count" | "fds" | "rps"
    timing: bool      # depends on speed: not comparable between emulated and native


HEADLINE = (
    Metric("window_timeout_rate", "window timeouts", "rate", True),
    Metric("recovery_p95_s", "recovery p95", "s", True),
    Metric("lingering_max", "lingering max", "count", False),
    Metric("rss_slope", "RSS/restart", "bytes", False),
    Metric("fd_slope", "fds/restart", "fds", False),
    Metric("rps", "req/s", "rps", True),
)
TIMING_NOTE = ("emulated: timing columns ({}) are not comparable with native runs; "
               "process counts and lingering are")


def bootstrap_ci(values: np.ndarray, n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float, float]:
    """Mean and percentile bootstrap CI of the finite ``values`` (NaN CI for fewer than two)."""
    values = np.asarray(values, dtype="float64")
    values = values[np.isfinite(values)]
    if not len(values):
        return np.nan, np.nan, np.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, np.nan, np.nan
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return mean, float(lo), float(hi)


def run_row(run: Run, summary: dict[str, Any]) -> dict[str, Any]:
    """A run's key columns and headline metrics (NaN where the summary has None)."""
    info = run.info
    t = info.target
    row = {"host": t.kind, "target": t.name, "version": t.version, "arch": t.arch, "emulated": t.emulated,
           "scenario": info.scenario, "run_id": run.run_id, "status": run.status}
    overall = summary.get("overall") or {}
    for m in HEADLINE:
        value = overall.get(m.key)
        row[m.key] = np.nan if value is None else float(value)
    row["unrecovered"] = overall.get("unrecovered") or 0
    row["known_bugs"] = ", ".join(b["id"] for b in summary.get("known_bugs") or [])
    return row


def runs_frame(pairs: Iterable[tuple[Run, dict[str, Any]]]) -> pd.DataFrame:
    """One row per (run, summary) with its key columns and headline metrics."""
    rows = [run_row(run, summary) for run, summary in pairs]
    columns = [*KEYS, "run_id", "status", *(m.key for m in HEADLINE), "unrecovered", "known_bugs"]
    return pd.DataFrame(rows, columns=columns)


def compare_table(runs: Sequence[Run | Analysis | Path | str], window_s: float | None = None,
                  grace_s: float | None = None, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per (host, target, version, arch, emulated, scenario): ``runs``, ``incomplete``,
    ``unrecovered`` (summed), and for each headline metric its mean and ``<metric>_lo``/``_hi``
    (95% bootstrap CI of the mean over the group's runs; NaN with one run). ``label`` names the
    group, ``note`` flags emulated rows; ``df.attrs["notes"]`` holds the table's notes. An Analysis
    made with these W and grace is used as it is; a run's summary.json when it is current."""
    pairs = []
    for item in runs:
        if isinstance(item, Analysis) and item.matches(window_s, grace_s):
            pairs.append((item.run, item.summary()))
            continue
        run = item.run if isinstance(item, Analysis) else open_runs([item])[0]
        pairs.append((run, cached_summary(run, window_s, grace_s)))
    return compare_summaries(pairs, n_boot=n_boot, seed=seed)


def compare_summaries(pairs: Iterable[tuple[Run, dict[str, Any]]], n_boot: int = 2000,
                      seed: int = 0) -> pd.DataFrame:
    """compare_table from runs already summarised; ``df.attrs["findings"]`` is ``finding_table``."""
    pairs = list(pairs)
    per_run = runs_frame(pairs)
    out = []
    for key, group in per_run.groupby(list(KEYS), sort=True, dropna=False):
        row: dict[str, Any] = dict(zip(KEYS, key))
        row["label"] = label(row)
        row["runs"] = len(group)
        row["incomplete"] = int((group["status"] != "complete").sum())
        row["unrecovered"] = int(group["unrecovered"].sum())
        for m in HEADLINE:
            row[m.key], row[f"{m.key}_lo"], row[f"{m.key}_hi"] = bootstrap_ci(
                group[m.key].to_numpy(), n_boot=n_boot, seed=seed)
        row["known_bugs"] = _known(group["known_bugs"])
        row["note"] = TIMING_NOTE.format(timing_titles()) if row["emulated"] else ""
        out.append(row)
    columns = ["label", *KEYS, "runs", "incomplete", "unrecovered",
               *(c for m in HEADLINE for c in (m.key, f"{m.key}_lo", f"{m.key}_hi")), "known_bugs", "note"]
    df = pd.DataFrame(out, columns=columns)
    df.attrs["notes"] = table_notes(df)
    df.attrs["findings"] = finding_table(pairs)
    return df


FINDING_COLUMNS = ["label", "id", "kind", "per", "k", "n", "rate", "lo", "hi", "runs", "runs_seen"]


def finding_table(pairs: Iterable[tuple[Run, dict[str, Any]]]) -> pd.DataFrame:
    """The release-health view: one row per (build group, finding) over every finding any run shows:
    its rate pooled over the group's runs (``k`` of ``n`` restarts, or of runs) with a 95% Wilson
    interval (``lo``, ``hi``); a group that never showed it has k = 0 (docs/metrics.md "Findings")."""
    from .findings import counts, wilson

    groups: dict[str, list[dict[str, Any]]] = {}
    kinds: dict[str, str] = {}
    for run, summary in pairs:
        groups.setdefault(label(run_row(run, summary)), []).append(summary)
        for f in summary.get("findings") or []:
            kinds.setdefault(f["id"], f["kind"])
    rows = []
    for name, summaries in groups.items():
        for fid, kind in kinds.items():
            k, n = counts([(s, s.get("findings") or []) for s in summaries], fid)
            lo, hi = wilson(k, n)
            seen = sum(any(f["id"] == fid for f in s.get("findings") or []) for s in summaries)
            per = next((f["per"] for s in summaries for f in s.get("findings") or [] if f["id"] == fid), None)
            rows.append({"label": name, "id": fid, "kind": kind, "per": per or ("restart" if n > len(summaries)
                                                                              else "run"),
                         "k": k, "n": n, "rate": k / n if n else np.nan, "lo": lo, "hi": hi,
                         "runs": len(summaries), "runs_seen": seen})
    return pd.DataFrame(rows, columns=FINDING_COLUMNS)


def render_findings(df: pd.DataFrame) -> Table:
    """The build × finding table: each cell ``rate [lo, hi]`` and ``k/n``."""
    table = Table(title="findings by build: rate per restart (or per run) [95% interval], k/n",
                  caption="known bugs by catalogue id, unnamed findings by where they failed (e.g. crash@router)")
    table.add_column("build")
    ids = list(dict.fromkeys(df["id"]))
    for fid in ids:
        table.add_column(fid, justify="right", overflow="fold")
    for name, group in df.groupby("label", sort=False):
        cells = []
        for fid in ids:
            r = group[group["id"] == fid].iloc[0]
            cells.append("–" if not r["n"] else f"{r['rate']:.0%} [{r['lo']:.0%}, {r['hi']:.0%}]\n{r['k']}/{r['n']}"
                         + ("" if r["per"] == "restart" else " runs"))
        table.add_row(str(name), *cells)
    return table


def _known(values: pd.Series) -> str:
    """The known bugs a group's runs matched: ``id (k/n runs)`` each."""
    counts: dict[str, int] = {}
    for text in values:
        for bug in filter(None, str(text or "").split(", ")):
            counts[bug] = counts.get(bug, 0) + 1
    return ", ".join(f"{b} ({k}/{len(values)})" for b, k in counts.items())


def timing_titles() -> str:
    return ", ".join(m.title for m in HEADLINE if m.timing)


def table_notes(df: pd.DataFrame) -> list[str]:
    """What a reader must know before comparing rows of ``df``."""
    notes = ["mean over repeated runs, [95% bootstrap CI]; one run: no CI"]
    if len(df) and df["emulated"].any() and not df["emulated"].all():
        notes.append("† " + TIMING_NOTE.format(timing_titles()))
    elif len(df) and df["emulated"].all():
        notes.append("all runs emulated: timings are emulator timings")
    return notes


def label(row: dict[str, Any]) -> str:
    """``unit@1.32.0 x86_64 (emulated)``."""
    name = row["target"] or row["host"]
    text = f"{row['host']}@{name}" if row["host"] and name != row["host"] else (name or "?")
    if row["version"] and row["version"] not in text:
        text += f" {row['version']}"
    if row["arch"]:
        text += f" {row['arch']}"
    return text + (" (emulated)" if row["emulated"] else "")


def write_csv(df: pd.DataFrame, path: Path | str) -> Path:
    """Write the comparison as CSV, atomically (the findings table, when it has rows, beside it as
    ``<name>-findings.csv``)."""
    path = Path(path)
    write_atomic(path, df.to_csv(index=False))
    found = df.attrs.get("findings")
    if found is not None and len(found):
        write_atomic(findings_csv(path), found.to_csv(index=False))
    return path


def findings_csv(path: Path | str) -> Path:
    """Where ``write_csv`` puts the findings table of a comparison written to ``path``."""
    path = Path(path)
    return path.with_name(f"{path.stem}-findings.csv")


# -- presentation -----------------------------------------------------------------------------

def fmt(value: Any, unit: str) -> str:
    """A metric value for people: 0.5% / 1.23 s / 1.5 MiB / 0.10 / 123.4."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    value = float(value)
    if unit == "rate":
        return f"{value * 100:.2f}%"
    if unit == "s":
        return f"{value:.3f} s" if abs(value) < 10 else f"{value:.1f} s"
    if unit == "ms":
        return f"{value:.2f} ms" if abs(value) < 100 else f"{value:.0f} ms"
    if unit == "bytes":
        for scale, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if abs(value) >= scale:
                return f"{value / scale:.2f} {name}"
        return f"{value:.0f} B"
    if unit == "count":
        return f"{value:g}"
    if unit == "rps":
        return f"{value:.1f}"
    return f"{value:.2f}"


def cell(row: pd.Series, m: Metric, mark: bool = False) -> str:
    """``mean [lo, hi]`` of a metric in a compare row; ``mark`` adds † to a timing cell."""
    text = fmt(row[m.key], m.unit)
    if np.isfinite(row[f"{m.key}_lo"]):
        text += f" [{fmt(row[f'{m.key}_lo'], m.unit)}, {fmt(row[f'{m.key}_hi'], m.unit)}]"
    return text + (" †" if mark and m.timing else "")


def render(df: pd.DataFrame) -> Table:
    """The comparison as a rich Table (notes in the caption)."""
    mixed = bool(len(df)) and df["emulated"].any() and not df["emulated"].all()
    table = Table(title="restart behaviour by host", caption="\n".join(df.attrs.get("notes")
                                                                        or table_notes(df)))
    for title in ("target", "scenario", "runs"):
        table.add_column(title, justify="right" if title == "runs" else "left")
    for m in HEADLINE:
        table.add_column(m.title, justify="right")
    known = "known_bugs" in df and df["known_bugs"].astype(bool).any()
    if known:
        table.add_column("known bugs (runs)", overflow="fold")
    for _, row in df.iterrows():
        runs = str(row["runs"]) + (f" ({row['incomplete']} incomplete)" if row["incomplete"] else "")
        table.add_row(row["label"], row["scenario"], runs,
                      *(cell(row, m, mark=mixed and row["emulated"]) for m in HEADLINE),
                      *([row["known_bugs"] or "–"] if known else []))
    return table
