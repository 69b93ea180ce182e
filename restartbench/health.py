"""The health of every release: each release of each flavor a source has (or a list), built, run with the
same plan ``runs`` times, and one page of a release × finding table — each finding's rate with its 95%
interval — beside the gate's verdict over each release's runs.

    health.check([("unit", bundle), ("freeunit", other)], since="1.32.0", base=RunConfig(...), runs=3)

Writes ``health.json``, ``health.html`` and ``health.md`` (the table as Markdown, for a README or a CI job
summary) into ``<results_root>/health-<time>/``; every run is an ordinary run directory under it. A release
that does not build is a row saying why, never a stop. Beside the table, the page draws the values asv tracks
(analysis.tracked) release after release; the asv history of the same measurements (``make asv``, ``make
asv-unit``) is linked when it exists.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from . import results
from .events import Event, Watcher, ignore, running
from .run import Interrupted, RunConfig, run
from .versions import version_key


#: the last NGINX Unit release FreeUnit's history shares: FreeUnit's own releases come after it
FREEUNIT_FORK = "1.35.0"


@dataclass
class Release:
    """One release of one flavor: its build (or why there is none), its runs and its verdict."""

    flavor: str
    tag: str
    target: str = ""                    # unit@NAME once built
    commit: str = ""
    error: str = ""                     # why it was not built or not run
    runs: list[str] = field(default_factory=list)        # run directories
    build_s: float = 0.0
    run_s: float = 0.0
    verdict: str = ""                   # PASS | FAIL | SPLIT (no majority) | "" (not judged)
    failed_checks: list[str] = field(default_factory=list)
    votes: list[str] = field(default_factory=list)       # each run's verdict, pass | fail, in order
    failing_runs: dict[str, int] = field(default_factory=dict)    # check -> how many runs failed it
    failing_findings: dict[str, int] = field(default_factory=dict)  # finding id -> runs where it failed a check

    @property
    def why(self) -> str:
        """Why it was not run, or the checks its runs failed with how many runs failed each."""
        return self.error or ", ".join(f"{c} ({self.failing_runs.get(c, '?')}/{len(self.votes)} runs)"
                                       for c in self.failed_checks)

    @property
    def verdict_text(self) -> str:
        """The verdict with its votes when the runs disagree: ``PASS (2/3 runs passed)``."""
        if not self.verdict:
            return "not run"
        if len(set(self.votes)) <= 1:
            return self.verdict
        return f"{self.verdict} ({self.votes.count('pass')}/{len(self.votes)} runs passed)"

    @property
    def label(self) -> str:
        return f"{self.flavor} {self.tag}"


@dataclass
class Health:
    releases: list[Release]
    path: Path
    wall_s: float = 0.0
    stopped: str = ""
    plan: str = ""                      # the plan every release ran, in words


def plan_of(base: RunConfig, runs: int) -> str:
    """The plan in words: scenario, lengths, load, arch."""
    sc, load = base.scenario, base.load
    actions = "+".join(sc.actions)
    return (f"{sc.name} ({actions} every {sc.restart_every_s:g} s over {sc.duration_s:g} s, window "
            f"{sc.window_s:g} s, grace {sc.grace_s:g} s), {load.users} users, {base.arch or 'this machine'}, "
            f"{runs} run(s) per release")


def releases(flavor: str, source: str | None, since: str = "1.32.0", until: str | None = None) -> list[str]:
    """The release tags of ``source`` (default: the flavor's public repository) from ``since`` on, oldest
    first (FreeUnit's own tags only: the ones its history shares with NGINX Unit are NGINX Unit's)."""
    from .hosts.unit import build as unitbuild

    src = unitbuild.open_source(source, flavor)
    tags = unitbuild.release_tags(src)
    if flavor == "freeunit":                  # its history carries NGINX Unit's tags up to 1.35.0 too
        tags = [t for t in tags if version_key(t) > version_key(FREEUNIT_FORK)]
    tags = [t for t in tags if version_key(t) >= version_key(since) and (until is None or
                                                                        version_key(t) <= version_key(until))]
    return sorted(set(tags), key=version_key)


def check(plan: Sequence[tuple[str, str | None, Sequence[str]]], base: RunConfig, *, runs: int = 3,
          limits: dict | None = None, watch: Watcher = ignore, jobs: int | None = None,
          say=lambda s: None) -> Health:
    """Build and run every (flavor, source, tags) release ``runs`` times with ``base`` (its target, arch and
    build replaced by each release's), judge each release's runs with the gate, write the page."""
    from .hosts.unit import build as unitbuild, discovery

    t0 = time.monotonic()
    out = Path(base.results_root) / f"health-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    todo = [Release(flavor, tag) for flavor, _, tags in plan for tag in tags]
    sources = {flavor: source for flavor, source, _ in plan}
    health = Health(todo, out, plan=plan_of(base, runs))
    total = len(todo)
    try:
        for n, rel in enumerate(todo, 1):
            watch(Event("health", "start", f"[{n}/{total}] {rel.label}: building", n, total, item=rel))
            t = time.monotonic()
            try:
                built = unitbuild.build(rel.tag, source=sources[rel.flavor], flavor=rel.flavor, arch=base.arch,
                                        jobs=jobs, say=say)
                inst = discovery.installation_of(built)
                rel.target, rel.commit = inst.label, inst.commit
            except (Interrupted, KeyboardInterrupt):
                raise
            except Exception as exc:                  # a release that does not build is a row, not a stop
                rel.error = f"not built: {str(exc).splitlines()[0][:300]}"
            rel.build_s = round(time.monotonic() - t, 1)
            t = time.monotonic()
            for i in range(runs if not rel.error else 0):
                cfg = dataclasses.replace(base, target=inst.label, arch=inst.arch, installation=inst,
                                          results_root=out / "runs", target_options=dict(base.target_options),
                                          run_id=f"{rel.flavor}-{rel.tag}-{i + 1}")
                outcome = run(cfg, report=running("health", watch, index=n, total=total, item=rel))
                if outcome.status == "interrupted":
                    raise Interrupted(outcome.signal or "SIGINT")
                rel.runs.append(str(outcome.path))
            rel.run_s = round(time.monotonic() - t, 1)
            judge(rel, limits)
            watch(Event("health", "done", f"[{n}/{total}] {rel.label}: " + (rel.error or f"{rel.verdict_text} over "
                        f"{len(rel.runs)} run(s) (build {rel.build_s:.0f} s, runs {rel.run_s:.0f} s)"), n, total,
                        ok=None if rel.error else rel.verdict == "PASS", item=rel))
    except (Interrupted, KeyboardInterrupt) as exc:
        health.stopped = getattr(exc, "reason", "SIGINT")
    health.wall_s = round(time.monotonic() - t0, 1)
    write(health, limits)
    return health


def judge(rel: Release, limits: dict | None = None) -> None:
    """The release's verdict: the gate judges each run, the majority of the runs decides (as bisect's votes
    do: one unlucky run of a rare race does not flip a release); no majority is SPLIT. ``failed_checks``:
    every check a run failed, ``failing_runs`` how many runs failed it, ``failing_findings`` the same by
    finding. No runs: not judged."""
    from restartbench.analysis.gate import judge as judge_run

    rel.votes, rel.failing_runs, rel.failing_findings = [], {}, {}
    for path in rel.runs:
        judged = judge_run(path, limits, incomplete=True)      # a run that did not complete fails
        rel.votes.append(judged.verdict)
        for check in judged.checks:
            rel.failing_runs[check] = rel.failing_runs.get(check, 0) + 1
        for fid in judged.findings:
            rel.failing_findings[fid] = rel.failing_findings.get(fid, 0) + 1
    rel.failed_checks = list(rel.failing_runs)
    need = len(rel.votes) // 2 + 1
    rel.verdict = ("" if not rel.votes else "PASS" if rel.votes.count("pass") >= need else
                   "FAIL" if rel.votes.count("fail") >= need else "SPLIT")


def load(path: Path | str) -> Health:
    """A health directory written earlier (its health.json), to judge again or draw again; run dirs that
    moved with it are found under its ``runs/``."""
    path = Path(path)
    try:
        doc = json.loads((path / "health.json").read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: no readable health.json ({type(exc).__name__}): give a directory "
                         "`restartbench health` wrote (results/runs/health-*)") from None
    fields = {f.name for f in dataclasses.fields(Release)}
    rels = [Release(**{k: v for k, v in r.items() if k in fields}) for r in doc.get("releases") or []]
    for rel in rels:
        rel.runs = [p if Path(p).exists() else str(path / "runs" / Path(p).name) for p in rel.runs]
    return Health(rels, path, wall_s=doc.get("wall_s", 0.0), stopped=doc.get("stopped", ""),
                  plan=doc.get("plan", ""))


def analysed(health: Health) -> list[tuple[Release, Any]]:
    """Every run of every release with its Analysis, each run read and analysed once (summary.analyses)."""
    from restartbench.analysis.summary import analyses

    return [(rel, done) for rel in health.releases for done in analyses(rel.runs)]


def table(health: Health, done: list[tuple[Release, Any]] | None = None) -> Any:
    """The release × finding table: rate [interval] k/n per cell (compare.finding_table over each
    release's runs; ``done``: their analyses, made when not given)."""
    from restartbench.analysis import compare

    done = analysed(health) if done is None else done
    return compare.finding_table([(a.run, a.summary()) for _, a in done]) if done else None


def cells(health: Health, found: Any = None) -> tuple[list[str], list[tuple[Release, dict[str, Any]]]]:
    """The finding ids (columns) and, per release, its cells by id (rows of ``found``, the finding table;
    computed when not given)."""
    from restartbench.analysis import compare

    found = table(health) if found is None else found
    by_label: dict[str, dict[str, Any]] = {}
    if found is not None:
        for r in found.itertuples():
            by_label.setdefault(r.label, {})[r.id] = r
    ids = list(dict.fromkeys(found["id"])) if found is not None else []
    out = []
    for rel in health.releases:
        label = compare.label(compare.run_row(results.read_run(rel.runs[0]), {})) if rel.runs else ""
        out.append((rel, by_label.get(label, {})))
    return ids, out


def cell_parts(cell: Any) -> tuple[str, str]:
    """A cell's rate and its detail ``[lo, hi] k/n``; ("–", "") when the release has no count for it."""
    if cell is None or not cell.n:
        return "–", ""
    return f"{cell.rate:.0%}", f"[{cell.lo:.0%}, {cell.hi:.0%}] {cell.k}/{cell.n}"


def cell_text(cell: Any) -> str:
    """``rate [lo, hi] k/n``, or – when the release has no count for it."""
    return " ".join(p for p in cell_parts(cell) if p)


#: how to read a cell and a verdict (the page and the Markdown)
LEGEND = ("Each finding: its rate over the release's runs (per restart, or per run) [95% Wilson interval] k/n. "
          "Verdict: the gate judges each run, the majority of the release's runs decides (SPLIT: no majority); "
          "a finding seen in a passing release stayed within the limits of its checks (gates/default.toml, or "
          "--gate's file) in most runs. A finding that failed a check in a run is red on the page, bold in "
          "Markdown; one only seen is yellow.")


def intro(health: Health) -> str:
    """The sentence above the table: how many releases and runs, the wall time, the plan."""
    return (f"{len(health.releases)} release(s), {sum(len(r.runs) for r in health.releases)} run(s), "
            f"{health.wall_s / 60:.0f} min wall time" + (f" (stopped early: {health.stopped})" if health.stopped
                                                         else "") + (f"; plan: {health.plan}" if health.plan else ""))


def markdown(health: Health, found: Any = None) -> str:
    """The release × finding table as Markdown (GitHub's tables): one row per release."""
    ids, rows = cells(health, found)
    head = ["release", "commit", "verdict", "failed checks / why", "runs", *ids]
    lines = [f"{intro(health)}. {LEGEND}", "",
             "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for rel, by_id in rows:
        verdict = f"**{rel.verdict_text}**" if rel.verdict in ("FAIL", "SPLIT") else rel.verdict_text
        why = rel.why.replace("|", "\\|")
        lines.append("| " + " | ".join([rel.label, f"`{rel.commit[:10]}`" if rel.commit else "", verdict, why,
                                        str(len(rel.runs)),
                                        *(f"**{cell_text(by_id.get(i))}**" if i in rel.failing_findings else
                                          cell_text(by_id.get(i)) for i in ids)]) + " |")
    return "\n".join(lines) + "\n"


def history(done: list[tuple[Release, Any]], limits: dict | None = None):
    """The tracked values of every run, release by release (analysis.tracked.history)."""
    from restartbench.analysis import tracked

    return tracked.history(((rel.label, a) for rel, a in done), limits)


def write(health: Health, limits: dict | None = None) -> None:
    """health.json, health.md and health.html."""
    from html import escape

    from restartbench.analysis import plots

    done = analysed(health)
    found = table(health, done)
    ids, rows = cells(health, found)
    past = history(done, limits)
    doc = {"wall_s": health.wall_s, "stopped": health.stopped, "plan": health.plan,
           "releases": [dataclasses.asdict(r) for r in health.releases],
           "findings": found.to_dict(orient="records") if found is not None else [],
           "tracked": past.to_dict(orient="records")}
    results.write_json(health.path / "health.json", doc)
    results.write_atomic(health.path / "health.md", markdown(health, found))

    head = "".join(f"<th>{escape(i)}</th>" for i in ids)
    trs = []
    for rel, by_id in rows:
        tds = "".join(
            (f'<td class="{"fail" if i in rel.failing_findings else "seen" if by_id[i].k else ""}">'
             f'{rate} <span class="note">{detail}</span></td>') if detail else f"<td>{rate}</td>"
            for i in ids for rate, detail in [cell_parts(by_id.get(i))])
        why = escape(rel.why)
        trs.append(f'<tr><td class="l">{escape(rel.label)}</td><td class="l">{escape(rel.commit[:10])}</td>'
                   f'<td class="{rel.verdict or "none"}">{escape(rel.verdict_text)}</td><td class="l">{why}</td><td>{len(rel.runs)}</td>{tds}</tr>')
    asv = next((p for p in (health.path.parent.parent / "html" / "index.html",
                            health.path.parent.parent / "html-unit" / "index.html") if p.exists()), None)
    figure = plots.to_data_uri(plots.history(past)) if len(past) else ""
    html = ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>release health</title><style>"
            "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px}table{border-collapse:collapse}"
            "th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}td.l{text-align:left}.note{color:#555;"
            "font-size:11px}.fail{background:#fde2e2}.seen{background:#fff6d5}.FAIL,.SPLIT{background:#fde2e2;font-weight:bold}.PASS{background:#d8f3dc}"
            "img{max-width:100%}</style></head><body><h1>Release health</h1>"
            f"<p>{escape(intro(health))}. {escape(LEGEND)}</p>"
            f"<table><thead><tr><th>release</th><th>commit</th><th>verdict</th><th>failed checks / why</th>"
            f"<th>runs</th>{head}</tr></thead><tbody>{''.join(trs)}</tbody></table>"
            + (f'<h2>History, release after release</h2><p class="note">What asv tracks for each run (each run a '
               f'dot, the releases\' medians joined), drawn over the releases as asv draws commits.</p>'
               f'<img alt="tracked values by release" src="{figure}">' if figure else "")
            + (f'<p>History of the same measurements over commits: <a href="{escape(asv.as_uri())}">asv</a></p>'
               if asv else "<p class=\"note\">asv history over commits: `make asv` / `make asv-unit` publish it "
               "beside this page</p>")
            + "</body></html>\n")
    results.write_atomic(health.path / "health.html", html)
