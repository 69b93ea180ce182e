"""The HTML report: one self-contained file (inline CSS, PNGs as data URIs, no scripts, no network).

It leads with the verdict: PASS/FAIL per run with the failed checks and their reasons and the findings
with their rates (the gate given, else the default limits), then for several runs a build × scenario
(× arch) grid of verdicts linking to each run's section; then the comparison, the gate's full table and a
section per run, whose first figure is the run's timeline (actions, crashes by role, lingering old
processes, stuck requests)."""

from __future__ import annotations

import datetime as _dt
from html import escape
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from restartbench.metadata import TargetInfo
from restartbench.results import Run, write_atomic

from . import plots
from .compare import HEADLINE, compare_summaries, fmt
from .gate import GateResult
from .summary import Analysis, analyses

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; white-space: normal; }
tr.fail td, td.fail { background: #fde2e2; } td.pass { color: #17702a; } td.skip { color: #8a6d00; }
.meta { color: #555; } .note { color: #555; font-size: 12px; }
img { max-width: 100%; display: block; margin: .6em 0; }
.scroll { max-height: 480px; overflow: auto; }
.verdict { font-size: 1.25em; font-weight: bold; padding: .15em .5em; border-radius: 4px; }
.PASS { background: #d8f3dc; color: #17702a; } .FAIL { background: #fde2e2; color: #a4161a; }
.CONTROL, .UNJUDGED { background: #eee; color: #555; }
td.cell { text-align: left; white-space: normal; vertical-align: top; } a { color: inherit; }
"""

RESTART_COLUMNS: list[tuple[str, str, str]] = [   # (column, title, unit)
    ("index", "#", "int"), ("kind", "kind", "text"), ("name", "change", "text"), ("t_sent", "t sent", "t"),
    ("restart_api_s", "API", "s"), ("http_status", "HTTP", "int"),
    ("n_requests", "requests", "int"), ("timeout_rate", "timeouts", "rate"),
    ("error_rate", "errors", "rate"), ("recovery_s", "recovery", "s"),
    ("outage_s", "outage", "s"),
    ("lingering", "lingering", "int"), ("lingering_prototype", "lingering proto", "int"),
    ("crashes", "crashes", "int"),
    ("settle_s", "settle", "s"), ("tree_rss_before", "tree RSS", "bytes"),
    ("tree_num_fds_before", "tree fds", "int"),
]


def write_report(runs: Sequence[Run | Analysis | Path | str], out_path: Path | str,
                 gate: GateResult | None = None, window_s: float | None = None,
                 grace_s: float | None = None, title: str = "restartbench report") -> Path:
    """Write the report for ``runs`` to ``out_path`` (atomically) and return the path; an Analysis
    made with these W and grace is used as it is (no second analysis)."""
    done = analyses(runs, window_s, grace_s)
    summaries = [(a.run, a.summary()) for a in done]
    parts = [f"<h1>{escape(title)}</h1>",
             f'<p class="meta">{len(done)} run(s); generated '
             f'{_dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")}</p>']
    verdict, why = gate, "the gate given"
    if verdict is None and done:
        from .gate import GateInputError, evaluate

        try:
            verdict, why = evaluate(done), "the default limits (gates/default.toml)"
        except GateInputError as exc:
            verdict, why = None, f"not judged: {exc}"
    parts.append(verdicts_html(verdict, summaries, why))
    if len(summaries) > 1:
        parts.append(grid_html(verdict, summaries))
    if summaries:
        compared = compare_summaries(summaries)
        parts.append("<h2>Comparison</h2>" + compare_html(compared))
        found = compared.attrs.get("findings")
        if found is not None and len(found):
            parts.append("<h2>Findings by build</h2>" + findings_html(found))
    if gate is not None:
        parts.append("<h2>Gate</h2>" + gate_html(gate))
    for a, (_, summary) in zip(done, summaries):
        parts.append(run_html(a, summary))
    html = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out_path, html)
    return out_path


# -- sections ---------------------------------------------------------------------------------

def run_verdict(result: "GateResult | None", run_id: str) -> str:
    """PASS, FAIL, CONTROL (an emulation control: shown, not judged) or UNJUDGED."""
    if result is None:
        return "UNJUDGED"
    if any(run_id in ids for ids in result.controls.values()):
        return "CONTROL"
    if not any(r.scope == run_id for r in result.rows):
        return "UNJUDGED"
    return "FAIL" if any(r.scope == run_id for r in result.failures()) else "PASS"


def _finding_text(f: Any) -> str:
    unit = "restarts" if f.per == "restart" else "runs"
    return f"{f.id} {f.k}/{f.n} {unit}" + (f" ({f.rate:.0%})" if f.n else "") + (" — fails" if f.failing else "")


def verdicts_html(result: "GateResult | None", summaries: list[tuple[Run, dict[str, Any]]], why: str) -> str:
    """The page's first section: each run's verdict, its failed checks with their reasons, its findings."""
    rows = []
    for run, s in summaries:
        rid = run.run_id
        v = run_verdict(result, rid)
        failed = [r for r in result.failures() if r.scope == rid] if result is not None else []
        checks = "<br>".join(f"<strong>{escape(r.check)}</strong> {escape(r.value)} (limit {escape(r.limit)})"
                             + (f": {escape(r.note.lstrip('; '))}" if r.note else "") for r in failed) or "none"
        found = result.findings.get(rid, []) if result is not None else []
        names = "<br>".join(escape(_finding_text(f)) for f in found) or "none"
        t = TargetInfo.of(s["run"]["target"])
        rows.append([(f'<span class="verdict {v}">{v}</span>', "html"),
                     (f'<a href="#{escape(rid)}">{escape(rid)}</a>', "html"),
                     (f"{t.label} {t.version} {t.arch}" + (" (emulated)" if t.emulated else ""), "l"),
                     (str(s["run"].get("scenario") or "–"), "l"), (checks, "html"), (names, "html")])
    overall = ("FAIL" if any(run_verdict(result, r.run_id) == "FAIL" for r, _ in summaries) else
               "PASS" if result is not None else "UNJUDGED")
    return (f'<h2 id="verdict">Verdict: <span class="verdict {overall}">{overall}</span></h2>'
            f'<p class="meta">judged with {escape(why)}</p>'
            + table(["verdict", "run", "build", "scenario", "failed checks (why)", "findings (rate)"], rows,
                    row_class=lambda r: "fail" if "FAIL" in r[0][0] else ""))


def grid_html(result: "GateResult | None", summaries: list[tuple[Run, dict[str, Any]]]) -> str:
    """Several runs as one grid: a row per build (and arch), a column per scenario; each cell the verdict
    and the findings of every run in it, linking to the run's section."""
    cells: dict[tuple[str, str], list[str]] = {}
    builds, scens = [], []
    for run, s in summaries:
        t = TargetInfo.of(s["run"]["target"])
        build = f"{t.label} {t.version} ({t.arch}{', emulated' if t.emulated else ''})"
        scen = str(s["run"].get("scenario") or "–")
        builds += [build] if build not in builds else []
        scens += [scen] if scen not in scens else []
        v = run_verdict(result, run.run_id)
        found = ", ".join(f.id for f in (result.findings.get(run.run_id, []) if result else []) if f.failing)
        cells.setdefault((build, scen), []).append(
            f'<a href="#{escape(run.run_id)}"><span class="verdict {v}">{v}</span></a>'
            + (f'<br><span class="note">{escape(found)}</span>' if found else ""))
    rows = [[(b, "l"), *(('<br>'.join(cells.get((b, sc), ["–"])), "html") for sc in scens)] for b in builds]
    return "<h2>Builds × scenarios</h2>" + table(["build", *scens], rows)

def compare_html(df: pd.DataFrame) -> str:
    mixed = bool(len(df)) and df["emulated"].any() and not df["emulated"].all()
    head = ["target", "scenario", "runs", *(m.title for m in HEADLINE)]
    rows = []
    for _, row in df.iterrows():
        runs = f"{row['runs']}" + (f" ({row['incomplete']} incomplete)" if row["incomplete"] else "")
        rows.append([(row["label"], "l"), (row["scenario"], "l"), (runs, ""),
                     *((_mean_ci(row, m, mark=mixed and row["emulated"]), "html") for m in HEADLINE)])
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in df.attrs.get("notes", []))
    return table(head, rows) + notes


def _mean_ci(row: pd.Series, m: Any, mark: bool) -> str:
    """Mean, then the CI in small type below it (HTML)."""
    text = escape(fmt(row[m.key], m.unit) + (" †" if mark and m.timing else ""))
    if np.isfinite(row[f"{m.key}_lo"]):
        text += (f'<br><span class="note">[{escape(fmt(row[f"{m.key}_lo"], m.unit))}, '
                 f'{escape(fmt(row[f"{m.key}_hi"], m.unit))}]</span>')
    return text


def findings_html(df: pd.DataFrame) -> str:
    """The build × finding heatmap and its table (rates with 95% intervals)."""
    rows = [[(r.label, "l"), (r.id, "l"), (r.kind, "l"), (f"{r.k}/{r.n} {'restarts' if r.per == 'restart' else 'runs'}", ""),
             (fmt(r.rate, "rate"), "fail" if r.k else ""),
             (f"[{fmt(r.lo, 'rate')}, {fmt(r.hi, 'rate')}]", "")] for r in df.itertuples()]
    return (f'<img alt="findings by build" src="{plots.to_data_uri(plots.findings_heatmap(df))}">'
            + table(["build", "finding", "kind", "seen at", "rate", "95% interval"], rows))


def gate_html(result: GateResult) -> str:
    from .gate import verdict_line

    rows = [[(r.check, "l"), (r.scope, "l"), (r.value, ""), (r.limit, ""),
             (result.outcome(r), "fail" if result.outcome(r) == "fail" else r.verdict),
             (r.note, "l"), (", ".join(r.findings), "l")] for r in result.rows]
    lines = "".join(f"<li>{escape(line)}</li>" for line in result.known_lines())
    return (f"<p><strong>{escape(verdict_line(result))}</strong></p>"
            + table(["check", "scope", "value", "limit", "verdict", "note", "finding"], rows,
                    row_class=lambda r: "fail" if r[4][0] == "fail" else "")
            + (f'<ul class="known">{lines}</ul>' if lines else ""))


def run_findings_html(found: list[dict[str, Any]]) -> str:
    """A run's findings (default limits): id, kind, rate, where, the checks it fails."""
    if not found:
        return '<p class="note">findings: none</p>'
    rows = [[(f["id"], "l"), (f["kind"], "l"), (f"{f['k']}/{f['n']} {'restarts' if f['per'] == 'restart' else 'run'}", ""),
             (", ".join(map(str, f["restarts"])) or "–", "l"), (", ".join(f["failing"]) or "none", "l")]
            for f in found]
    return "<h3>Findings</h3>" + table(["finding", "kind", "seen at", "restarts", "fails"], rows,
                                       row_class=lambda r: "fail" if r[4][0] != "none" else "")


def known_html(bugs: list[dict[str, Any]]) -> str:
    """A run's matched known bugs: title, upstream, versions, the evidence, what to do."""
    if not bugs:
        return ""
    items = []
    for b in bugs:
        versions = "; ".join(x for x in (f"affected: {', '.join(b['affected'])}" if b["affected"] else "",
                                         f"fixed in: {', '.join(b['fixed_in'])}" if b["fixed_in"] else "") if x)
        items.append(f"<li><strong>{escape(b['id'])}</strong>: {escape(b['title'])}"
                     + (f" ({escape(', '.join(b['upstream']))})" if b["upstream"] else "")
                     + (f"<br>{escape(versions)}" if versions else "")
                     + (f"<br><em>{escape(b['version_note'])}</em>" if b.get("version_note") else "")
                     + f"<br>evidence: {escape('; '.join(b['evidence']))}"
                     + f"<br>what to do: {escape(b['advice'])}</li>")
    return "<h3>Known bugs matched</h3><ul class=\"known\">" + "".join(items) + "</ul>"


def run_html(a: Any, s: dict[str, Any]) -> str:
    info, o = s["run"], s["overall"]
    t = info["target"]
    target = " ".join(str(v) for v in (t.get("kind"), t.get("name"), t.get("version"), t.get("arch"))
                      if v)
    meta = (f"target {target}{' (emulated)' if t.get('emulated') else ''} · scenario "
            f"{info.get('scenario') or '–'} · status {info['status']}"
            + (f" ({info['reason']})" if info.get("reason") else "")
            + f" · W {s['params']['window_s']:g} s, grace {s['params']['grace_s']:g} s"
            + f" · app roles {'/'.join(s['params']['app_roles'])}")
    figures = plots.run_figures(a, s)
    images = "".join(f'<img alt="{escape(name)}" src="{uri}">' for name, uri in figures.items())
    return (f'<h2 id="{escape(info["run_id"])}">{escape(info["run_id"])}</h2>'
            f'<p class="meta">{escape(meta)}</p>'
            + key_numbers(o, s["phases"], emulated=TargetInfo.of(t).emulated)
            + run_findings_html(s.get("findings") or [])
            + known_html(s.get("known_bugs") or [])
            + images + "<h3>Restarts</h3>" + restart_html(s["restarts"]))


def key_numbers(o: dict[str, Any], phases: dict[str, Any], emulated: bool) -> str:
    """Run-level numbers, and per phase (steady state, windows, between, after)."""
    head = ["", "requests", "req/s", "availability", "timeouts", "errors", "p50", "p95", "p99"]
    rows = []
    for name, title in (("before", "steady state"), ("windows", "restart windows"),
                        ("between", "between"), ("after", "after"), (None, "whole run")):
        p = o if name is None else phases[name]
        if name and not p["requests"]:
            continue
        rows.append([(title, "l"), (str(p["requests"]), ""), (fmt(p["rps"], "rps"), ""),
                     (fmt(p["availability"], "rate"), ""), (fmt(p["timeout_rate"], "rate"), ""),
                     (fmt(p["error_rate"], "rate"), ""),
                     *((fmt(p[f"latency_p{q}_ms"], "ms"), "") for q in (50, 95, 99))])
        if p.get("co_requests"):
            rows.append([(f"{title}, from intended start", "l"), (str(p["co_requests"]), ""), ("", ""),
                         ("", ""), (fmt(p["co_timeout_rate"], "rate"), ""), ("", ""),
                         *((fmt(p[f"co_latency_p{q}_ms"], "ms"), "") for q in (50, 95, 99))])
    restarts = (f"{o['restarts']} restart(s): {o['recovered']} recovered (p50 "
                f"{fmt(o['recovery_p50_s'], 's')}, p95 {fmt(o['recovery_p95_s'], 's')}), "
                f"{o['unrecovered']} unrecovered; lingering max {fmt(o['lingering_max'], 'count')}; "
                f"RSS {fmt(o['rss_slope'], 'bytes')}/restart; fds {fmt(o['fd_slope'], 'fds')}/restart"
                + (f"; process crashes {o['crashes']}" if o.get("crashes") is not None else ""))
    note = ('<p class="note">emulated run: latencies and rates are the emulator\'s, not comparable '
            'with native runs</p>' if emulated else "")
    return table(head, rows) + f"<p>{escape(restarts)}</p>" + note


def restart_html(restarts: list[dict[str, Any]]) -> str:
    if not restarts:
        return '<p class="note">no restarts in this run</p>'
    rows = []
    for r in restarts:
        rows.append([(_restart_cell(r.get(col), unit), "l" if unit == "text" else "")
                     for col, _, unit in RESTART_COLUMNS])
        if not r["recovered"]:
            rows[-1][RESTART_COLUMNS.index(("recovery_s", "recovery", "s"))] = (
                "never" + (" (cut short)" if r["window_truncated"] else ""), "fail")
    return '<div class="scroll">' + table([t for _, t, _ in RESTART_COLUMNS], rows) + "</div>"


def _restart_cell(value: Any, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "int":
        return f"{value:.0f}" if isinstance(value, (int, float)) else str(value)
    if unit == "t":
        return f"{value:.2f}"
    if unit == "text":
        return str(value)
    return fmt(value, unit)


def table(head: Iterable[str], rows: Iterable[list[tuple[str, str]]],
          row_class: Callable[[list[tuple[str, str]]], str] | None = None) -> str:
    """An HTML table; each cell is (text, css class), class "html" for text that is already HTML."""
    out = ["<table><thead><tr>"]
    out += [f'<th class="l">{escape(h)}</th>' if i < 1 else f"<th>{escape(h)}</th>"
            for i, h in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for row in rows:
        cls = row_class(row) if row_class else ""
        out.append(f'<tr class="{cls}">' if cls else "<tr>")
        out += [f"<td>{text}</td>" if c == "html" else
                f'<td class="{c}">{escape(str(text))}</td>' if c else f"<td>{escape(str(text))}</td>"
                for text, c in row]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)
