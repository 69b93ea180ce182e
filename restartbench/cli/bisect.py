"""``restartbench bisect``: the build where one finding changes."""

from __future__ import annotations

import argparse

from rich.table import Table

from .. import arches
from ..run import Interrupted
from .common import (UsageError, add_run_arguments, base_config, console, errors, gate_limits, ids,
                     positive, say, signal_exit)
from .live import Watch

def register(sub) -> None:
    """Add ``bisect`` to the subcommands."""
    p = sub.add_parser("bisect", help="binary search for the build (installed builds by version, or with "
                       "--source the commits of a Unit source) where one finding changes: --bug/--check, else "
                       "what fails at every run of the bad end and at none of the good end; exit 0 found / 1 "
                       "the ends do not differ / 3 left open by failed runs")
    g = p.add_argument_group("bisect")
    g.add_argument("--check", action="append", default=None, metavar="NAME",
                   help="bisect on a gate check (e.g. 'shutdown hang') instead of a finding")
    g.add_argument("--good", required=True, help="a version (or units.toml name) without the finding (with "
                   "--bug/--check: that one; else it may fail for others); with --source a tag, branch or commit")
    g.add_argument("--bad", required=True, help="a version with it (older or newer than --good)")
    g.add_argument("--source", default=None, help="bisect commits of this Unit source (git URL, checkout "
                   "or bundle) along first-parent history, building each probed commit")
    g.add_argument("--flavor", choices=["unit", "freeunit"], default="unit", help="with --source: the "
                   "flavor of its default repository and of the builds")
    g.add_argument("--repeat", type=positive(int, "--repeat"), default=3, help="runs per probed build; "
                   "the majority verdict counts (default 3: one noisy run cannot steer the search)")
    g.add_argument("--no-verify", action="store_true", help="trust --good/--bad instead of running them")
    add_run_arguments(p, probes=True)
    p.set_defaults(func=cmd_bisect, target="unit")


def cmd_bisect(args: argparse.Namespace) -> int:
    from .. import bisect as bisecting

    limits = gate_limits(args.gate or "default")
    kind = args.target.partition("@")[0]
    arch = arches.normalize_arch(args.arch)
    base = base_config(args, kind if args.source is not None else args.target, arch, args.scenario,
                       resolve=False)
    try:
        with Watch(console, enabled=not args.quiet) as watch:
            done = bisecting.find(base, args.good, args.bad, arch=arch, kind=kind, source=args.source,
                                  flavor=args.flavor, limits=limits, bugs=ids(args.bug), checks=ids(args.check),
                                  repeat=args.repeat, verify_endpoints=not args.no_verify, watch=watch, say=say)
    except bisecting.BisectInputError as exc:
        raise UsageError(str(exc)) from None
    except Interrupted as exc:
        errors.print(f"bisect interrupted ({exc.reason})")
        return signal_exit(exc.reason, 130)
    found, plan = done.result, done.plan
    if found.chosen:
        console.print(found.chosen, highlight=False, soft_wrap=True)
    console.print(bisect_table(found, plan, arch))
    if found.error:
        console.print(f"[red]{found.error}[/]")
    elif found.found:
        console.print(f"[bold]{plan.conclusion(found)}[/]" + (f" — on {', '.join(found.target)}"
                                                               if found.target else ""), highlight=False)
    else:
        console.print(f"[yellow]undecided[/]: runs that failed leave the first failing version among "
                      f"{', '.join(found.candidates)}")
    console.print(f"bisect record: {done.path / 'bisect.json'}")
    return done.exit_code


def bisect_table(found, plan, arch: str) -> Table:
    on = f" on {', '.join(found.target)}" if found.target else ""
    steps = Table(title=f"bisect {plan.what}{on} ({arch}): good {found.good} → bad {found.bad} "
                  f"({len(found.order)} {plan.unit}, {found.repeat} run(s) per step)", title_justify="left")
    for col in (plan.unit[:-1] if plan.unit.endswith("s") else plan.unit, "verdict", "runs", "failing checks",
                "findings (each run)", "build / run time", "run directory / reason"):
        steps.add_column(col, overflow="fold")
    for st in found.steps:
        steps.add_row(plan.describe(st.version), st.verdict, " ".join(st.votes) or "-",
                      ", ".join(st.failed_checks) or "-",
                      " | ".join(", ".join(f) or "none" for f in st.findings) or "-",
                      f"{st.prepare_s:.0f} s / {st.run_s:.0f} s",
                      str(st.path or "") + (f"\n{st.reason}" if st.reason else ""))
    return steps
