"""Figures of one run (matplotlib, Agg canvas, no pyplot state), and their PNG data URIs.

Each function takes an ``Analysis`` (summary.analyze) and returns a Figure; an input with
nothing to draw gives a figure that says so rather than an error.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .metrics import OK, TIMEOUT, slope
from .summary import Analysis

MiB = float(1 << 20)
RESTART_STYLE = {"color": "tab:red", "linewidth": 0.8, "alpha": 0.6}


def new_figure(height: float = 3.2, rows: int = 1) -> Figure:
    fig = Figure(figsize=(10, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_data_uri(fig: Figure) -> str:
    """The figure as a ``data:image/png;base64,...`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _nothing(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])


def _restart_marks(ax, a: Analysis) -> None:
    if len(a.windows):
        ax.vlines(a.windows.starts, 0, 1, transform=ax.get_xaxis_transform(), label="restart",
                  **RESTART_STYLE)


def bin_width(span_s: float) -> float:
    """1 s bins, finer for runs short enough to show restarts in detail (<= 300 bins)."""
    for width in (0.1, 0.2, 0.5):
        if span_s <= 300 * width:
            return width
    return 1.0


def traffic(a: Analysis) -> Figure:
    """Requests started per second, and timeouts/errors per second, with restart markers."""
    fig = new_figure(4.2)
    top, bottom = fig.subplots(2, 1, sharex=True)
    t = a.requests.t_start
    keep = np.isfinite(t)
    if not keep.any():
        _nothing(top, "no requests recorded")
        bottom.set_visible(False)
        return fig
    t, outcome = t[keep], a.requests.outcome[keep]
    width = bin_width(float(t.max()))
    idx = np.floor(t / width).astype(np.int64)
    idx -= idx.min()
    x = (np.arange(idx.max() + 1) + np.floor(t.min() / width)) * width
    total = np.bincount(idx) / width
    timeouts = np.bincount(idx, weights=outcome == TIMEOUT, minlength=len(x)) / width
    errors = np.bincount(idx, weights=(outcome != OK) & (outcome != TIMEOUT) & (outcome >= 0),
                         minlength=len(x)) / width
    top.step(x, total, where="post", color="tab:blue", label="requests/s")
    top.set_ylabel("requests/s")
    bottom.step(x, timeouts, where="post", color="tab:orange", label="timeouts/s")
    bottom.step(x, errors, where="post", color="tab:purple", label="other errors/s")
    bottom.set_ylabel("failed/s")
    bottom.set_xlabel(f"seconds since t0 ({width:g} s bins, by request start)")
    for ax in (top, bottom):
        _restart_marks(ax, a)
        ax.grid(alpha=0.3)
    top.legend(loc="lower left", fontsize="small")
    bottom.legend(loc="upper left", fontsize="small")
    top.set_title("load and failures around restarts")
    return fig


def processes(a: Analysis, max_stacked: int = 20) -> Figure:
    """App process count over time by generation (stacked), with the configured count."""
    fig = new_figure(3.2)
    ax = fig.subplots()
    c = a.census
    roles = a.params["app_roles"]
    app = c.role_mask(roles)
    if not len(c) or not app.any():
        _nothing(ax, "no census samples" if not len(c) else f"no {'/'.join(roles)} processes seen")
        return fig
    sample = np.repeat(np.arange(len(c)), np.diff(c.offsets))[app]
    gen = np.nan_to_num(c.generation[app], nan=-1).astype(np.int64)
    gens = np.unique(gen)
    if len(gens) <= max_stacked:
        counts = np.zeros((len(gens), len(c)))
        np.add.at(counts, (np.searchsorted(gens, gen), sample), 1)
        ax.stackplot(c.times, counts, step="post",
                     labels=[f"gen {g}" if g >= 0 else "gen ?" for g in gens])
        if len(gens) <= 8:
            ax.legend(loc="upper left", fontsize="small", ncol=len(gens))
    else:
        newest = np.full(len(c), -1)
        np.maximum.at(newest, sample, gen)
        is_new = gen == newest[sample]
        ax.step(c.times, np.bincount(sample[is_new], minlength=len(c)), where="post",
                label="newest generation")
        ax.step(c.times, np.bincount(sample[~is_new], minlength=len(c)), where="post",
                label="older generations", color="tab:red")
        ax.legend(loc="upper left", fontsize="small")
    base = a.params.get("configured_processes")
    base = np.nan if base is None else float(base)
    x = np.r_[c.times[0], a.windows.starts, c.times[-1]]
    counts = a.restarts["configured_processes"].to_numpy(dtype="float64")
    y = np.r_[base, counts, counts[-1] if len(counts) else base]
    ax.step(x, y, where="post", color="black", linestyle="--", linewidth=0.8)
    _restart_marks(ax, a)
    ax.set_ylabel(f"{'/'.join(roles)} processes")
    ax.set_xlabel("seconds since t0")
    ax.set_title("app processes by generation (dashed: configured count)")
    ax.grid(alpha=0.3)
    return fig


def retention(a: Analysis) -> Figure:
    """Tree RSS and open fds just before each restart and at the end, with the fitted slope."""
    fig = new_figure(3.0)
    axes = fig.subplots(1, 2)
    if not len(a.windows):
        for ax in axes:
            _nothing(ax, "no restarts")
        return fig
    end = a.retention["end_loaded"]
    for ax, name, scale, unit in ((axes[0], "rss", MiB, "MiB"), (axes[1], "num_fds", 1.0, "fds")):
        y = np.append(a.restarts[f"tree_{name}_before"].to_numpy(dtype="float64"),
                      end[name] if end[name] is not None else np.nan) / scale
        x = np.arange(len(y))
        ok = np.isfinite(y)
        if ok.sum() == 0:
            _nothing(ax, "no census samples")
            continue
        ax.plot(x[ok], y[ok], "o", color="tab:blue", markersize=4)
        b = slope(y)
        if np.isfinite(b):
            intercept = y[ok].mean() - b * x[ok].mean()
            ax.plot(x, intercept + b * x, color="tab:red",
                    label=f"slope {b:+.3g} {unit}/restart")
            ax.legend(loc="upper left", fontsize="small")
        ax.set_xlabel("restart (last point: end of the load)")
        ax.set_ylabel(f"tree {'RSS' if name == 'rss' else 'open fds'} ({unit})")
        ax.grid(alpha=0.3)
    fig.suptitle("retention: process tree just before each restart")
    return fig


def timeline(a: Analysis, summary: dict) -> Figure:
    """What happened when, on the traffic's time axis: every action (by kind), every crash (by role, a
    leaving one hollow), the old processes still lingering ``grace`` after an action (their count), and
    the requests stuck once the load ended."""
    fig = new_figure(2.6)
    ax = fig.subplots()
    lanes = ["actions", "crashes", "lingering", "stuck requests"]
    restarts = summary.get("restarts") or []
    for r in restarts:
        ax.plot([r["t_sent"]], [0], marker="v", color="gray", markersize=7)
        ax.annotate(str(r.get("name") or r["kind"]), (r["t_sent"], 0), textcoords="offset points",
                    xytext=(0, 7), ha="center", fontsize=6, color="gray")
    crashes = ((summary.get("host_checks") or {}).get("crashes") or {}).get("events") or []
    roles = sorted({e["role"] for e in crashes})
    colors = dict(zip(roles, ["tab:red", "tab:purple", "tab:brown", "tab:olive", "tab:cyan", "tab:pink"]))
    by_t = {r["index"]: r["t_sent"] for r in restarts}
    for e in crashes:
        t = e.get("t") if e.get("t") is not None else by_t.get(e.get("restart"))
        if t is None:
            continue
        ax.plot([t], [1], marker="X", markersize=9, color=colors[e["role"]],
                markerfacecolor="none" if e.get("leaving") else colors[e["role"]])
    for role, color in colors.items():
        ax.plot([], [], marker="X", linestyle="", color=color, label=f"crash: {role}")
    grace = a.params["grace_s"]
    for r in restarts:
        n = r.get("lingering")
        if n:
            ax.plot([r["t_sent"] + grace], [2], marker="o", color="tab:orange", markersize=5 + 2 * min(n, 5))
            ax.annotate(str(n), (r["t_sent"] + grace, 2), textcoords="offset points", xytext=(6, -3), fontsize=7)
    idle = (summary.get("host_checks") or {}).get("idle") or {}
    stuck = max((v for v in (idle.get("status") or {}).values() if isinstance(v, (int, float))), default=0) \
        if idle.get("stuck") else 0
    if stuck:
        end = a.requests.span()[1]
        ax.plot([end], [3], marker="s", color="tab:red", markersize=8)
        ax.annotate(f"{stuck:g} stuck", (end, 3), textcoords="offset points", xytext=(6, -3), fontsize=7)
    _restart_marks(ax, a)
    ax.set_yticks(range(len(lanes)), lanes, fontsize=8)
    ax.set_ylim(-0.6, len(lanes) - 0.4)
    ax.set_xlabel("seconds since t0")
    ax.grid(alpha=0.3, axis="x")
    if colors:
        ax.legend(loc="upper right", fontsize="x-small", ncol=len(colors))
    ax.set_title("timeline: actions, crashes, lingering old processes, stuck requests")
    return fig


def run_figures(a: Analysis, summary: dict | None = None) -> dict[str, str]:
    """All figures of a run as data URIs, by name: the timeline first."""
    summary = a.summary() if summary is None else summary
    out = {"timeline": to_data_uri(timeline(a, summary))}
    out.update({name: to_data_uri(make(a)) for name, make in
                (("traffic", traffic), ("processes", processes), ("retention", retention))})
    return out


def findings_heatmap(df) -> Figure:
    """The build × finding table (compare.finding_table) as a heatmap of rates, each cell annotated
    ``rate`` and ``k/n``."""
    ids = list(dict.fromkeys(df["id"]))
    labels = list(dict.fromkeys(df["label"]))
    fig = new_figure(1.2 + 0.45 * len(labels))
    ax = fig.subplots()
    if not ids:
        _nothing(ax, "no findings")
        return fig
    grid = np.full((len(labels), len(ids)), np.nan)
    for r in df.itertuples():
        grid[labels.index(r.label), ids.index(r.id)] = r.rate
    im = ax.imshow(grid, cmap="Reds", vmin=0, vmax=1, aspect="auto")
    for r in df.itertuples():
        i, j = labels.index(r.label), ids.index(r.id)
        ax.text(j, i, f"{r.rate:.0%}\n{r.k}/{r.n}" if r.n else "–", ha="center", va="center", fontsize=7,
                color="white" if (r.rate or 0) > 0.6 else "black")
    ax.set_xticks(range(len(ids)), ids, rotation=30, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    fig.colorbar(im, ax=ax, label="rate (per restart, or per run)")
    ax.set_title("findings by build")
    return fig


def history(df, columns: int = 3) -> Figure:
    """The tracked values (tracked.history) build after build, as asv draws them commit after commit: one
    panel per value, each run a dot, the builds' medians joined by a line."""
    from .tracked import TRACKED

    metrics = [m for m in TRACKED if m in set(df["metric"])]
    labels = list(dict.fromkeys(df["label"]))
    rows = max(1, -(-len(metrics) // columns))
    fig = new_figure(2.3 * rows + 0.6)
    axes = np.atleast_1d(fig.subplots(rows, columns, sharex=True, squeeze=False)).ravel()
    if not metrics:
        _nothing(axes[0], "no runs")
    x = {label: i for i, label in enumerate(labels)}
    for ax, metric in zip(axes, metrics):
        part = df[df["metric"] == metric]
        ax.plot(part["label"].map(x), part["value"], "o", color="tab:blue", alpha=0.45, markersize=4)
        med = part.groupby("label", sort=False)["value"].median().reindex(labels)
        ax.plot(range(len(labels)), med.to_numpy(), "-", color="tab:blue", linewidth=1)
        name, unit = TRACKED[metric]
        ax.set_title(name, fontsize=9)
        ax.set_ylabel(unit, fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    for ax in axes[max(0, len(metrics) - columns):len(metrics)]:
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
        ax.tick_params(labelbottom=True)
    return fig


__all__ = ["timeline", "traffic", "processes", "retention", "run_figures", "to_data_uri", "findings_heatmap",
           "history"]
