"""``restartbench health``: every release of Unit and FreeUnit from a version on, built, run alike, one page."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from .. import arches
from ..matrix import split_list
from .common import (EXIT_OK, UsageError, add_run_arguments, append_job_summary, base_config, console, gate_limits, positive, say,
                     signal_exit)
from .live import Watch


def register(sub) -> None:
    """Add ``health``."""
    p = sub.add_parser("health", help="the health of every release: each release of each flavor from --since on "
                       "built, run --runs times with the same plan, and one page of a release x finding table "
                       "(rates with 95%% intervals) beside each release's verdict (the majority of its runs); exit 0 every "
                       "release passes / 1 one fails or splits / 130 interrupted")
    g = p.add_argument_group("releases")
    g.add_argument("--flavor", default="unit,freeunit", help="unit, freeunit or both (default both)")
    g.add_argument("--unit-source", default=None, help="NGINX Unit's history: a git URL, checkout or bundle "
                   "(default: the public repository)")
    g.add_argument("--freeunit-source", default=None, help="FreeUnit's history (default: its public repository)")
    g.add_argument("--since", default="1.32.0", help="the oldest release (default 1.32.0: the first with the "
                   "wasm module)")
    g.add_argument("--until", default=None, help="the newest release (default: the newest tag)")
    g.add_argument("--releases", default=None, help="comma-separated tags instead of all from --since on: "
                   "TAG (with one --flavor) or FLAVOR:TAG, e.g. unit:1.32.0,unit:1.32.1,freeunit:1.36.0")
    g.add_argument("--runs", type=positive(int, "--runs"), default=3, help="runs per release (default 3)")
    g.add_argument("-j", "--jobs", type=positive(int, "--jobs"), default=None, help="build jobs")
    g.add_argument("--page", type=Path, default=None, metavar="DIR",
                   help="build and run nothing: judge the runs of an earlier health directory again (with "
                   "--gate's limits) and write its page, Markdown and record again")
    add_run_arguments(p, probes=True)
    p.set_defaults(func=cmd_health, target="unit")


def cmd_health(args: argparse.Namespace) -> int:
    from .. import health

    flavors = split_list(args.flavor)
    bad = [f for f in flavors if f not in ("unit", "freeunit")]
    if bad or not flavors:
        raise UsageError(f"--flavor {args.flavor!r}: use unit, freeunit or unit,freeunit")
    named = split_list(args.releases) if args.releases else []
    if any(":" in r for r in named):
        bad = [r for r in named if r.partition(":")[0] not in ("unit", "freeunit") or not r.partition(":")[2]]
        if bad:
            raise UsageError(f"--releases {bad[0]!r}: write FLAVOR:TAG with FLAVOR unit or freeunit")
        flavors = list(dict.fromkeys(r.partition(":")[0] for r in named))
    elif named and len(flavors) != 1:
        raise UsageError("--releases names tags of one flavor: pass --flavor unit or --flavor freeunit with it, "
                         "or write FLAVOR:TAG")
    limits = gate_limits(args.gate or "default")
    if args.page is not None:
        try:
            done = health.load(args.page)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        for rel in done.releases:
            health.judge(rel, limits)
        health.write(done, limits)
        return show(done)
    arch = arches.normalize_arch(args.arch)
    plan = []
    for flavor in flavors:
        source = args.unit_source if flavor == "unit" else args.freeunit_source
        try:
            tags = ([r.partition(":")[2] if ":" in r else r for r in named if ":" not in r or
                     r.partition(":")[0] == flavor] if named else health.releases(flavor, source, args.since,
                                                                                  args.until))
        except ValueError as exc:
            raise UsageError(str(exc).splitlines()[0]) from None
        plan.append((flavor, source, tags))
    console.print(f"[bold]health[/]: {sum(len(t) for _, _, t in plan)} release(s) × {args.runs} run(s) of "
                  f"{args.scenario} ({arch}): " + "; ".join(f"{f} {', '.join(t)}" for f, _, t in plan),
                  highlight=False)
    base = base_config(args, "unit", arch, args.scenario, resolve=False)
    with Watch(console, enabled=not args.quiet) as watch:
        done = health.check(plan, base, runs=args.runs, limits=limits, watch=watch, jobs=args.jobs, say=say)
    return show(done)


def show(done) -> int:
    """The release table, the files written, the job summary; the exit code."""
    t = Table(title=f"release health ({done.wall_s / 60:.0f} min)", title_justify="left")
    for col in ("release", "commit", "verdict", "failed checks / why", "runs", "build", "runs time"):
        t.add_column(col, overflow="fold")
    for rel in done.releases:
        style = {"PASS": "green", "FAIL": "red"}.get(rel.verdict, "yellow")
        t.add_row(rel.label, rel.commit[:10], f"[{style}]{rel.verdict_text}[/]", rel.why, str(len(rel.runs)),
                  f"{rel.build_s:.0f} s",
                  f"{rel.run_s:.0f} s")
    console.print(t)
    console.print(f"health page: {done.path / 'health.html'}")
    console.print(f"health table (Markdown): {done.path / 'health.md'}")
    console.print(f"health record: {done.path / 'health.json'}")
    append_job_summary("## Release health\n\n" + (done.path / "health.md").read_text())
    if done.stopped:
        return signal_exit(done.stopped)
    return 1 if any(r.verdict in ("FAIL", "SPLIT") for r in done.releases) else EXIT_OK
