"""``restartbench run``: one run, then its tables, its gate verdict and its report."""

from __future__ import annotations

import argparse
from typing import Sequence

from .. import results
from ..run import RunOutcome, run
from .common import (EXIT_OK, EXIT_RUN_FAILED, add_run_arguments, check_aim, console, gate_limits, ids,
                     run_config, signal_exit)
from .live import LiveProgress

def register(sub) -> None:
    """Add ``run`` to the subcommands."""
    p = sub.add_parser("run", help="one run: load + scripted restarts + census -> results/runs/<id>/")
    add_run_arguments(p)
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    check_aim(args)
    config = run_config(args)
    limits = gate_limits(args.gate) if args.gate else None
    inst = config.installation
    console.print(f"[bold]restartbench[/] {inst.label} {inst.version} ({inst.arch}"
                  f"{', emulated' if inst.emulated else ''}) · app {config.app} · scenario "
                  f"{config.scenario.name}: {config.scenario.restart_count} restarts "
                  f"every {config.scenario.restart_every_s:g}s over {config.scenario.duration_s:g}s")
    from ..controls import run_controls

    with LiveProgress(console, enabled=not args.quiet) as live:
        outcome = run(config, report=live.update)
        controls = [] if args.no_control else run_controls(
            config, outcome, report=live.update, say=lambda s: console.print(s, markup=False, highlight=False))
    return after_run(outcome, limits, args.report, ids(args.bug), ids(args.allow), controls)


def after_run(outcome: RunOutcome, limits, report: bool, bugs: Sequence[str] = (), allow: Sequence[str] = (),
               controls: Sequence[RunOutcome] = ()) -> int:
    from restartbench import analysis
    from restartbench.analysis import views

    run = results.read_run(outcome.path)
    done = analysis.analyze(run)                 # once: the tables, summary.json, the gate and the report
    summary = done.summary()
    analysis.write_summary(done)
    for table in views.run_tables(summary, run.meta):
        console.print(table)
    ctrl = [analysis.analyze(results.read_run(c.path)) for c in controls if c.status == "complete"]
    for c in ctrl:
        analysis.write_summary(c)
        console.print(f"control ({c.run.meta['control']['kind']}): {c.run.path}")
    code = EXIT_OK
    if outcome.status != "complete":
        console.print(f"[red]run {outcome.status}[/]: {outcome.meta.get('reason', '')}")
        code = signal_exit(outcome.signal, EXIT_RUN_FAILED) if outcome.status == "interrupted" else EXIT_RUN_FAILED
    verdict = None
    if limits is not None and outcome.status != "interrupted":
        verdict = analysis.gate.judge(done, limits, bugs=bugs, allow=allow, controls=ctrl, incomplete=True).result
        console.print(analysis.gate.render(verdict))
        if code == EXIT_OK:
            code = verdict.exit_code
    if report:
        path = analysis.write_report([done, *ctrl], outcome.path / "report.html", gate=verdict)
        console.print(f"report: {path}")
    console.print(f"summary: {outcome.path / 'summary.json'}")
    console.print(f"run directory: [bold]{outcome.path}[/]")
    return code
