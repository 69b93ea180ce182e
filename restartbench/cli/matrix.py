"""``restartbench matrix``: every selected version x arch x scenario, one comparison, one verdict."""

from __future__ import annotations

import argparse

from rich.table import Table

from .. import hosts, installations
from ..run import validate
from .common import (UsageError, add_run_arguments, base_config, check_aim, console, gate_limits, ids,
                     scenarios_from, signal_exit, target_options)
from .live import Watch

def register(sub) -> None:
    """Add ``matrix`` to the subcommands."""
    p = sub.add_parser("matrix", help="every selected version x arch x scenario, one run each, then one "
                       "comparison and one gate verdict; exit 0 pass / 1 gate failed / 3 a cell failed")
    add_run_arguments(p, several=True)
    p.set_defaults(func=cmd_matrix)


def cmd_matrix(args: argparse.Namespace) -> int:
    from .. import matrix as matrixing

    check_aim(args)
    limits = gate_limits(args.gate or "default")
    targets = matrixing.split_list(args.target)
    names = matrixing.split_list(args.scenario) or ["periodic-restart"]
    if not targets:
        raise UsageError("--targets is empty: pass e.g. --targets wasmtime,unit@1.32.0")
    try:
        kinds = [hosts.split(t)[0] for t in targets]
    except installations.InstallationError as exc:
        raise UsageError(str(exc)) from None
    for name in target_options(args):              # an option no selected host takes is a typo
        if not any(name in h.option_names() for h in kinds):
            owner = hosts.owner_of_option(name)
            raise UsageError(f"{owner.option_flag(name)} is for the {owner.kind} target; none is selected")
    scens = scenarios_from(args, names)
    try:
        cell_list = matrixing.cells(targets, matrixing.split_list(args.arch), scens)
    except matrixing.MatrixInputError as exc:
        raise UsageError(str(exc)) from None
    if all(c.error for c in cell_list):
        raise UsageError("nothing to run: " + "; ".join(f"{c.target} {c.arch}: {c.error.splitlines()[0]}"
                                                        for c in cell_list))
    if not args.no_control:                      # a foreign-arch cell's controls, in the plan
        cell_list = matrixing.with_controls(cell_list, say=lambda s: console.print(s, markup=False, highlight=False))
    base = base_config(args, cell_list[0].target, None, names[0], check=False)
    for cell in cell_list:       # each cell is checked as its run will be; one its host cannot do fails alone
        if not cell.error and not cell.host.problems(cell.scenario):
            validate(matrixing.cell_config(cell, base)[0])
    plan = Table(title=f"matrix: {len(cell_list)} runs, one after another", title_justify="left")
    for col in ("#", "target", "version", "arch", "runs as", "scenario", "note"):
        plan.add_column(col)
    for n, c in enumerate(cell_list, 1):
        plan.add_row(str(n), c.target, c.version or "-", c.arch, "emulated" if c.emulated else
                     ("native" if c.installation else "-"), c.scenario.name,
                     f"[red]cannot run:[/] {c.error}" if c.error else
                     f"control ({c.control}) of the run before it" if c.control else "")
    console.print(plan)

    with Watch(console, enabled=not args.quiet) as watch:
        result = matrixing.run_matrix(cell_list, base, watch=watch, limits=limits, html=args.report,
                                      controls=False, bugs=ids(args.bug), allow=ids(args.allow))
    return after_matrix(result)



def after_matrix(result) -> int:
    from restartbench import analysis
    if result.table is not None:
        from restartbench.analysis import compare

        console.print(analysis.render_compare(result.table))
        found = result.table.attrs.get("findings")
        if found is not None and len(found):
            console.print(compare.render_findings(found))
        console.print(analysis.render_gate(result.verdict))
    cells = Table(title="cells: the gate's verdict on each", title_justify="left")
    for col in ("#", "cell", "status", "gate", "failed checks", "wall", "run directory / reason"):
        cells.add_column(col, overflow="fold")
    failures = result.verdict.failures() if result.verdict else []
    for n, r in enumerate(result.results, 1):
        style = "green" if r.ok else "red"
        failed = [row.check for row in failures if r.path and row.scope == r.path.name]
        gate = "-" if not r.ok or result.verdict is None else "control" if r.cell.control else \
            ("[red]FAIL[/]" if failed else "[green]pass[/]")
        cells.add_row(str(n), r.cell.label, f"[{style}]{r.status}[/]", gate, ", ".join(failed),
                      f"{r.wall_s:.0f} s", str(r.path or "") + (f"\n{r.reason}" if r.reason else ""))
    console.print(cells)
    if result.path and (result.path / "report.html").exists():
        console.print(f"report: {result.path / 'report.html'}")
    if result.path and (result.path / "compare.csv").exists():
        console.print(f"comparison csv: {result.path / 'compare.csv'}")
    console.print(f"matrix directory: [bold]{result.path}[/] · {len(result.results)} cells in "
                  f"{result.wall_s:.0f} s · {len(result.failed)} failed")
    if result.interrupted:
        return signal_exit(result.interrupted, 130)
    return result.exit_code
