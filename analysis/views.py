"""Rich tables of one run's summary (summary.json): the view printed at the end of ``restartbench run``."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from restartbench.metadata import TargetInfo

PHASES = (("before", "before first restart"), ("windows", "restart windows"),
          ("between", "between windows"), ("after", "after last window"))


def _n(value: Any, fmt: str = ",.0f", none: str = "-") -> str:
    return none if value is None else format(value, fmt)


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _ms(seconds: Any) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f} ms"


def phase_table(summary: dict[str, Any]) -> Table:
    """Requests, rps, timeouts and errors before / during restart windows / after."""
    t = Table(title="requests by phase", title_justify="left")
    for col in ("phase", "requests", "rps", "timeouts", "errors", "error rate", "p50", "p99"):
        t.add_column(col, justify="left" if col == "phase" else "right")
    for key, label in PHASES:
        p = summary["phases"].get(key) or {}
        if not p.get("requests"):
            continue
        t.add_row(label, _n(p["requests"]), _n(p["rps"]), _n(p["timeouts"]), _n(p["errors"]),
                  _pct(p["error_rate"]), _n(p["latency_p50_ms"], ".1f") + " ms",
                  _n(p["latency_p99_ms"], ".1f") + " ms")
    o = summary["overall"]
    t.add_row("[bold]whole run[/]", _n(o["requests"]), _n(o["rps"]), _n(o["timeouts"]), _n(o["errors"]),
              _pct(o["error_rate"]), _n(o["latency_p50_ms"], ".1f") + " ms",
              _n(o["latency_p99_ms"], ".1f") + " ms")
    return t


def restart_table(summary: dict[str, Any]) -> Table:
    """One row per restart: its call, its window's requests, recovery, lingering, settle, processes."""
    t = Table(title="restarts", title_justify="left")
    crashes = any("crashes" in r for r in summary["restarts"])      # hosts that report process exits
    for col in ("#", "kind", "at", "call", "status", "requests", "timeouts", "errors", "recovery", "outage",
                "lingering") + (("crashes",) if crashes else ()) + ("settle", "procs before"):
        t.add_column(col, justify="right")
    for r in summary["restarts"]:
        recovery = _ms(r["recovery_s"]) if r.get("recovered") else "[red]never[/]"
        kind = str(r["kind"]) + (f" {r['name']}" if r.get("name") else "")
        outage = _ms(r.get("outage_s")) if r.get("outage_s") is not None else "[red]never back[/]"
        cells = [str(r["index"]), kind, f"{r['t_sent']:.1f}s", _ms(r["restart_api_s"]),
                 str(r["http_status"] or "-"), _n(r["n_requests"]), _n(r["timeouts"]), _n(r["errors"]),
                 recovery, outage, _count(r.get("lingering"))]
        if crashes:
            cells.append(_count(r.get("crashes")))
        t.add_row(*cells, _ms(r.get("settle_s")), _n(r.get("tree_processes_before")))
    return t


def _count(value: Any) -> str:
    """A count that should be 0: red when it is not, ``-`` when unknown."""
    return "-" if value is None else (f"[red]{value:.0f}[/]" if value else "0")


def run_tables(summary: dict[str, Any], meta: dict[str, Any]) -> list[Table]:
    """The end-of-run view: phases, restarts, and a one-table headline."""
    o = summary["overall"]
    head = Table(title=f"run {meta['run_id']} — {summary['run']['status']}", title_justify="left", show_header=False)
    head.add_column("what")
    head.add_column("value")
    t = TargetInfo.of(meta.get("target"))
    head.add_row("target", f"{t.kind} {t.version} {t.arch}"
                 + (" (emulated: timings not comparable with native)" if t.emulated else ""))
    head.add_row("restarts", f"{o.get('restarts', 0)} ({o.get('recovered', 0)} recovered, "
                 f"{o.get('unrecovered', 0)} never)")
    head.add_row("recovery p50 / p95 / max", " / ".join(_ms(o.get(k)) for k in
                 ("recovery_p50_s", "recovery_p95_s", "recovery_max_s")))
    head.add_row("lingering old processes (max)", _n(o.get("lingering_max")))
    if o.get("crashes") is not None:
        head.add_row("process crashes", _count(o["crashes"]))
    head.add_row("availability", _pct(o.get("availability")))
    head.add_row("RSS / fds per restart", f"{_n(o.get('rss_slope'), ',.0f')} B / {_n(o.get('fd_slope'), '.2f')}")
    findings = meta.get("findings") or []
    if findings:
        head.add_row("findings", "; ".join(f"{f.get('kind')}: {f.get('detail', '')}" for f in findings))
    if meta.get("survivors"):
        head.add_row("survivors", f"[red]{len(meta['survivors'])} process(es) killed at teardown[/]")
    census = meta.get("census") or {}
    if census.get("rounds"):
        cpu = census.get("cpu_s", census["busy_s"])       # CPU time (older runs: wall time)
        cost = cpu / max(meta.get("duration_s") or 1e-9, 1e-9)
        head.add_row("census", f"{census['rounds']} samples every {census['interval_s'] * 1000:.0f} ms, "
                     f"{cost * 100:.1f}% of a core")
    own = summary.get("host_checks") or {}
    if own.get("applicable"):
        found = own.get("findings") or []
        head.add_row(f"{own.get('host', 'host')} checks", "ok" if not found else "[red]" + "; ".join(
            str(f.get("detail", f)) if isinstance(f, dict) else str(f) for f in found[:6]) + "[/]")
    out = [phase_table(summary)]
    if summary["restarts"]:
        out.append(restart_table(summary))
    out.append(head)
    return out
