"""``restartbench explore``: randomized restart plans judged by the gate, a failing one shrunk."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import installations
from ..run import DEFAULT_RESULTS, check_writable
from .common import (EXIT_GATE_FAILED, EXIT_OK, UsageError, check_aim, console, duration, gate_limits, ids,
                     signal_exit)
from .live import Watch

def register(sub) -> None:
    """Add ``explore`` to the subcommands."""
    p = sub.add_parser("explore", help="look for restart bugs: randomized restart plans judged by the gate; "
                       "a failing one is shrunk to a minimal plan (a scenario file); exit 0 nothing "
                       "found / 1 found / 130 interrupted")
    p.add_argument("--target", default="wasmtime", help="wasmtime, unit or unit@NAME")
    p.add_argument("--arch", default=None, help="x86_64 or aarch64 (arm64)")
    p.add_argument("--budget", type=duration("budget"), default=300.0,
                   help="time for runs, e.g. 5m or 20m (default 5m)")
    p.add_argument("--seed", type=int, default=0, help="seed of the plan generator (default 0): same seed, "
                   "same plans")
    p.add_argument("--gate", default=None, help="limits TOML (default gates/default.toml)")
    p.add_argument("--bug", action="append", default=None, metavar="ID[,ID]",
                   help="look for these findings only: a plan fails when they fail the gate")
    p.add_argument("--allow", action="append", default=None, metavar="ID[,ID]",
                   help="findings that do not make a plan fail (known ones you are not hunting)")
    p.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS, help="where the explore dir goes")
    p.set_defaults(func=cmd_explore)


def cmd_explore(args: argparse.Namespace) -> int:
    import time

    from .. import explore as exploring

    limits = gate_limits(args.gate or "default")
    check_aim(args)
    try:
        inst = installations.resolve(args.target, args.arch)
    except installations.InstallationError as exc:
        raise UsageError(str(exc)) from None
    if args.budget < 30:
        raise UsageError(f"--budget {args.budget:g}s is too short for even one plan: give 30s or more")
    root = check_writable(args.results_dir)
    out = root / f"explore-{time.strftime('%Y%m%d-%H%M%S')}-{inst.label.replace('@', '-')}-seed{args.seed}"
    console.print(f"[bold]explore[/] {inst.label} {inst.version} ({inst.arch}) for {args.budget:g} s, seed "
                  f"{args.seed} -> {out}", highlight=False)
    with Watch(console) as watch:
        found = exploring.explore(inst.label, args.budget, out, seed=args.seed, arch=inst.arch, limits=limits,
                                  installation=inst, bugs=tuple(ids(args.bug)), allow=tuple(ids(args.allow)),
                                  watch=watch)
    console.print((out / "report.md").read_text().split("| # |")[0].strip(), markup=False, highlight=False)
    console.print(f"explore record: {out / 'explore.json'}")
    console.print(f"account: {out / 'report.md'}")
    if (out / "minimal.toml").exists():
        console.print(f"minimal failing scenario: {out / 'minimal.toml'}")
    if found.stopped:
        return signal_exit(found.stopped, 130)
    return EXIT_GATE_FAILED if found.found else EXIT_OK
