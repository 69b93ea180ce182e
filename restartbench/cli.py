"""The command line: ``restartbench run|summary|report|compare|gate|targets|build|build-apps|matrix|bisect``.

Argument parsing and printing only: every command calls the same library functions a script, a
test or an asv benchmark would. Exit codes: 0 ok / gate passed, 1 gate failed, 2 bad input (one line
on stderr saying what is wrong and what to do), 3 the run failed (host never came up, ...),
130/143/129 interrupted by SIGINT/SIGTERM/SIGHUP (files are still complete and marked).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.live import Live
from rich.table import Table

from restartbench.analysis.gate import GateInputError

from . import apps, arches, hosts, installations, results, scenarios
from .run import DEFAULT_RESULTS, REPO, ConfigError, Interrupted, Progress, RunConfig, RunOutcome, run, check_writable, validate
from .load import LoadSpec

EXIT_OK, EXIT_GATE_FAILED, EXIT_USAGE, EXIT_RUN_FAILED = 0, 1, 2, 3
_SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129, "KeyboardInterrupt": 130}

console = Console() if sys.stdout.isatty() else Console(width=132)
errors = Console(stderr=True)


class UsageError(Exception):
    """Bad input: printed as one line, exit code 2."""


# -- argument parsing ---------------------------------------------------------------------------

def _positive(kind, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{what} must be greater than 0, got {text!r}")
        return value
    return parse


def _duration(what: str):
    def parse(text: str) -> float:
        try:
            value = scenarios.parse_duration(text, what)
        except scenarios.ScenarioError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{what} must not be negative")
        return value
    return parse


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"share must be a number between 0 and 1, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"share must be between 0 and 1, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):           # one line, exit 2 (argparse prints usage + 2 lines)
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="restartbench", description="Benchmark and load-test WebAssembly component "
                     "apps while their host restarts them.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("run", help="one run: load + scripted restarts + census -> results/runs/<id>/")
    _add_run_arguments(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("summary", help="print a run's summary table (and write summary.json)")
    p.add_argument("runs", nargs="+", help="run dirs, or 'latest'")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("report", help="one self-contained HTML report of runs")
    p.add_argument("runs", nargs="+", help="run dirs, or 'latest'")
    p.add_argument("-o", "--output", type=Path, default=None, help="HTML file (default: results/report.html)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="comparison table across runs (CSV too)")
    p.add_argument("runs", nargs="+", help="run dirs, or 'latest'")
    p.add_argument("--csv", type=Path, default=None, help="also write the table as CSV here")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("gate", help="judge runs against limits (and a baseline); exit 0 pass / 1 fail")
    p.add_argument("runs", nargs="+", help="candidate run dirs, or 'latest'")
    p.add_argument("--limits", default=None, help="limits TOML (default gates/default.toml)")
    p.add_argument("--baseline", nargs="+", default=None, help="baseline run dirs: timings compared per "
                   "restart (Mann-Whitney), each finding's rate compared (Fisher's exact test), new findings named")
    p.add_argument("--bug", action="append", default=None, metavar="ID[,ID]",
                   help="judge only the checks these findings explain (catalogue id, the bug its faces "
                   "share, or an unnamed finding such as crash@router)")
    p.add_argument("--allow", action="append", default=None, metavar="ID[,ID]",
                   help="pass a run whose only failures these findings explain (still listed)")
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser("offline-html", help="make asv's published HTML load nothing from the network "
                       "(local copies of its JavaScript and CSS; `make asv` does this after asv publish)")
    p.add_argument("html_dir", type=Path, help="asv's html_dir, e.g. results/html")
    p.set_defaults(func=cmd_offline_html)

    p = sub.add_parser("targets", help="list the host builds found here (and why any was rejected)")
    p.set_defaults(func=cmd_targets)

    p = sub.add_parser("build-apps", help="build the wasm component apps from source")
    p.add_argument("names", nargs="*", help=f"apps to build (default all: {', '.join(apps.APPS)})")
    p.add_argument("--force", action="store_true", help="rebuild even when up to date")
    p.set_defaults(func=cmd_build_apps)

    p = sub.add_parser("build", help="build NGINX Unit or FreeUnit from source (any tag, branch or commit) "
                       "with the wasm-wasi-component module, into the cache; `targets` then lists it")
    p.add_argument("what", choices=["unit"], help="what to build: unit (NGINX Unit or FreeUnit, see --flavor)")
    p.add_argument("--rev", required=True, help="tag, branch or commit; comma-separated for several")
    p.add_argument("--source", default=None, help="a git URL, a local checkout or a git bundle (default: "
                   "the flavor's public repository)")
    p.add_argument("--flavor", choices=["unit", "freeunit"], default="unit",
                   help="unit (NGINX Unit, default) or freeunit (the fork continuing it)")
    p.add_argument("--arch", default=None, help="x86_64 or aarch64 (arm64: cross-built on x86_64)")
    p.add_argument("--missing", action="store_true", help="only the revs no discovered build answers to "
                   "(what `make bench UNIT=...` uses)")
    p.add_argument("--rebuild", action="store_true", help="build again even when the cache has it")
    p.add_argument("-j", "--jobs", type=_positive(int, "--jobs"), default=None,
                   help="parallel make/cargo jobs (default: the CPU count)")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("build-deps", help="install (apt-get) what `build unit` needs here: compilers, "
                       "libclang, OpenSSL/PCRE2 headers; for --arch aarch64 the cross tools and qemu-user")
    p.add_argument("--arch", default=None, help="the arch to build for (default this machine's)")
    p.set_defaults(func=cmd_build_deps)

    p = sub.add_parser("matrix", help="every selected version x arch x scenario, one run each, then one "
                       "comparison and one gate verdict; exit 0 pass / 1 gate failed / 3 a cell failed")
    _add_run_arguments(p, several=True)
    p.set_defaults(func=cmd_matrix)

    p = sub.add_parser("explore", help="look for restart bugs: randomized restart plans judged by the gate; "
                       "a failing one is shrunk to a minimal plan (a scenario file); exit 0 nothing "
                       "found / 1 found / 130 interrupted")
    p.add_argument("--target", default="wasmtime", help="wasmtime, unit or unit@NAME")
    p.add_argument("--arch", default=None, help="x86_64 or aarch64 (arm64)")
    p.add_argument("--budget", type=_duration("budget"), default=300.0,
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
    g.add_argument("--repeat", type=_positive(int, "--repeat"), default=3, help="runs per probed build; "
                   "the majority verdict counts (default 3: one noisy run cannot steer the search)")
    g.add_argument("--no-verify", action="store_true", help="trust --good/--bad instead of running them")
    _add_run_arguments(p, probes=True)
    p.set_defaults(func=cmd_bisect, target="unit")
    return parser


def _add_run_arguments(p: argparse.ArgumentParser, several: bool = False, probes: bool = False) -> None:
    """The flags of one run (target, scenario, load, output), shared by run, matrix and bisect;
    ``several``: target, arch and scenario take comma-separated lists (matrix); ``probes``: bisect's
    runs, judged one question at a time (no --allow, no controls, no report)."""
    g = p.add_argument_group("target")
    if several:
        g.add_argument("--targets", "--target", dest="target", default="wasmtime", help="comma-separated: "
                       "wasmtime (default), unit, unit@NAME, unit@* (every installed Unit build)")
        g.add_argument("--arch", default=None, help="comma-separated: x86_64/amd64, aarch64/arm64 (default: "
                       "this machine's; a foreign arch runs under qemu-user)")
    else:
        g.add_argument("--target", default="wasmtime", help="wasmtime (default), unit or unit@NAME "
                       "(see `restartbench targets`)")
        g.add_argument("--arch", default=None, help="x86_64/amd64 or aarch64/arm64 (default: this machine's; "
                       "a foreign arch runs under qemu-user)")
    g.add_argument("--app", default="hello", help=f"app under test: {', '.join(apps.APPS)} (default hello)")
    g.add_argument("--unit-app", type=Path, default=None, metavar="FILE",
                   help="Unit only: your own Unit application object (JSON) instead of the built app")
    g.add_argument("--restart-mode", choices=("term", "drain"), default=None,
                   help="wasmtime only: how the process replacement stops the old server (default term)")
    g.add_argument("--host", default="127.0.0.1", help="loopback address the host listens on (default 127.0.0.1)")
    g.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    g.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    g = p.add_argument_group("scenario (flags override the scenario file)")
    g.add_argument("--scenario", default="periodic-restart",
                   help=("comma-separated: " if several else "") +
                   f"a name in scenarios/ ({', '.join(_scenario_names())}) or a .toml path")
    g.add_argument("--duration", type=_duration("duration"), help="total load time, e.g. 40s")
    g.add_argument("--warmup", type=_duration("warmup"), help="steady state before the first restart")
    g.add_argument("--cooldown", type=_duration("cooldown"), help="load after the last restart")
    g.add_argument("--restart-every", type=_duration("restart-every"), help="restart interval, e.g. 5s")
    g.add_argument("--restarts", type=int, help="number of restarts (default: as many as fit)")
    g.add_argument("--actions", help="restart kinds used in turn: restart,config,swap,processes")
    g.add_argument("--processes", type=int, help="app processes (Unit)")
    g.add_argument("--window", type=_duration("window"), help="restart window W for the metrics (5s)")
    g.add_argument("--grace", type=_duration("grace"), help="lingering grace (5s)")
    g = p.add_argument_group("load")
    g.add_argument("--users", type=_positive(int, "users"), default=None,
                   help="Locust users (default: the scenario's [load], else 20)")
    g.add_argument("--spawn-rate", type=_positive(float, "spawn-rate"), default=None,
                   help="users started per second (default: all at once)")
    g.add_argument("--request-timeout", type=_duration("request-timeout"), default=None,
                   help="a request slower than this is a timeout (default 2s)")
    g.add_argument("--sleep-share", type=_share, default=None,
                   help="share of users holding /sleep requests in flight (default 0.1)")
    g.add_argument("--sleep-ms", type=_positive(int, "sleep-ms"), default=None, help="held request time (500)")
    g.add_argument("--fresh-connections", action="store_true", default=None,
                   help="a new connection per request (Connection: close) instead of keep-alive")
    g.add_argument("--rate", type=_positive(float, "rate"), default=None,
                   help="open model: requests/s in total (default: closed model)")
    g.add_argument("--load-processes", type=_positive(int, "load-processes"), default=1,
                   help="Locust processes (default 1)")
    g.add_argument("--expect-workers", type=_positive(int, "expect-workers"), default=0, metavar="N",
                   help="distributed load: run only the Locust master here and wait for N workers, each "
                   "started elsewhere with: locust -f locustfiles/restart_load.py --worker --master-host "
                   "<this host> --master-port PORT")
    g.add_argument("--master-bind", default="127.0.0.1:5557", metavar="HOST:PORT",
                   help="where that master listens for workers (default 127.0.0.1:5557; 0.0.0.0:5557 for "
                   "other machines)")
    g = p.add_argument_group("output")
    g.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS, help="where run dirs go")
    g.add_argument("--run-id", default=None, help="name of the run dir (default: time-target-arch-scenario)")
    g.add_argument("--census-interval", type=_duration("census-interval"), default=0.1,
                   help="process census period (default 100ms)")
    g.add_argument("--keep", action="store_true", help="keep the host's temp dir (state, socket, logs)")
    g.add_argument("--gate", nargs="?", const="default", default=None, metavar="LIMITS",
                   help="judge the run with the gate (default limits, or a TOML file); exit 1 on failure")
    g.add_argument("--bug", action="append", default=None, metavar="ID[,ID]",
                   help="the gate judges only the checks these findings explain (a catalogue id such as "
                   "unit-1179-restart-crash, the bug its faces share (unit-1179), or an unnamed finding such "
                   "as crash@router); other failures are listed, not judged")
    if probes:
        p.set_defaults(allow=None, no_control=True, report=False)
    else:
        g.add_argument("--allow", action="append", default=None, metavar="ID[,ID]",
                       help="a run whose only failures these findings explain passes (they are still listed)")
        g.add_argument("--no-control", action="store_true",
                       help="a foreign-arch (emulated) run: skip its controls (the same revision for this "
                       "machine's arch, run natively and under qemu-user), which tell the arch's findings "
                       "from the emulator's and the build's")
        g.add_argument("--report", action="store_true", help="also write the HTML report into the run dir")
    g.add_argument("--quiet", action="store_true", help="no live progress")


def _scenario_names() -> list[str]:
    return sorted(p.stem for p in scenarios.SCENARIO_DIR.glob("*.toml"))


# -- commands -----------------------------------------------------------------------------------

def load_spec(args: argparse.Namespace, scenario: scenarios.Scenario) -> LoadSpec:
    """The load: each flag given, else the scenario's [load] value, else LoadSpec's default."""
    sl = scenario.load
    defaults = LoadSpec()

    def pick(flag, key, default):
        value = getattr(args, flag, None)
        return value if value is not None else sl.get(key, default)

    return LoadSpec(users=pick("users", "users", defaults.users), spawn_rate=args.spawn_rate or 0.0,
                    request_timeout_s=pick("request_timeout", "request_timeout", defaults.request_timeout_s),
                    sleep_share=pick("sleep_share", "sleep_share", defaults.sleep_share),
                    sleep_ms=pick("sleep_ms", "sleep_ms", defaults.sleep_ms),
                    rate=pick("rate", "rate", 0.0) or 0.0,
                    fresh_connections=bool(pick("fresh_connections", "fresh_connections", False)),
                    processes=args.load_processes, expect_workers=args.expect_workers,
                    master_bind=args.master_bind)


def target_options(args: argparse.Namespace) -> dict[str, Any]:
    """The target options the flags give (the hosts' Options fields, by name)."""
    options: dict[str, Any] = {}
    if args.restart_mode:
        options["restart_mode"] = args.restart_mode
    if args.unit_app is not None:
        options["app_object"] = args.unit_app
    return options


def run_config(args: argparse.Namespace, resolve: bool = True, check: bool = True) -> RunConfig:
    """Turn ``run`` arguments into a RunConfig checked by ``run.validate`` (``check``; what ``run()``
    checks too); ``resolve``: the target as well (a build made later, as a commit bisect does, is
    resolved then)."""
    scenario = scenarios.load(args.scenario, duration=args.duration, warmup=args.warmup,
                              cooldown=args.cooldown, restart_every=args.restart_every,
                              restarts=args.restarts, actions=args.actions, processes=args.processes,
                              window=args.window, grace=args.grace)
    try:
        load = load_spec(args, scenario)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    config = RunConfig(target=args.target, arch=args.arch, app=args.app, scenario=scenario, load=load,
                       results_root=args.results_dir, run_id=args.run_id, census_interval_s=args.census_interval,
                       host=args.host, port=args.port, allow_remote=args.allow_remote, keep=args.keep,
                       target_options=target_options(args))
    if check:
        validate(config, resolve=resolve)
    return config


def cmd_run(args: argparse.Namespace) -> int:
    _check_aim(args)
    config = run_config(args)
    limits = _gate_limits(args.gate) if args.gate else None
    inst = config.installation
    console.print(f"[bold]restartbench[/] {inst.label} {inst.version} ({inst.arch}"
                  f"{', emulated' if inst.emulated else ''}) · app {config.app} · scenario "
                  f"{config.scenario.name}: {config.scenario.restart_count} restarts "
                  f"every {config.scenario.restart_every_s:g}s over {config.scenario.duration_s:g}s")
    from .controls import run_controls

    with LiveProgress(console, enabled=not args.quiet) as live:
        outcome = run(config, report=live.update)
        controls = [] if args.no_control else run_controls(
            config, outcome, report=live.update, say=lambda s: console.print(s, markup=False, highlight=False))
    return _after_run(outcome, limits, args.report, _ids(args.bug), _ids(args.allow), controls)


def _after_run(outcome: RunOutcome, limits, report: bool, bugs: Sequence[str] = (), allow: Sequence[str] = (),
               controls: Sequence[RunOutcome] = ()) -> int:
    from restartbench import analysis
    from restartbench.analysis import console as views

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
        code = _SIGNAL_EXIT.get(outcome.signal, EXIT_RUN_FAILED) if outcome.status == "interrupted" else EXIT_RUN_FAILED
    verdict = None
    if limits is not None and outcome.status != "interrupted":
        verdict = analysis.gate.judge(done, limits, bugs=bugs, allow=allow, controls=ctrl, incomplete=True).result
        console.print(analysis.gate.render(verdict))
        if code == EXIT_OK:
            code = verdict.exit_code
    if report:
        path = analysis.write_report([done, *ctrl], outcome.path / "report.html", gate=verdict)
        console.print(f"report: {path}")
    console.print(f"run directory: [bold]{outcome.path}[/]")
    return code


def cmd_summary(args: argparse.Namespace) -> int:
    from restartbench import analysis
    from restartbench.analysis import console as views

    for run in _runs(args.runs):
        done = analysis.analyze(run)
        summary = done.summary()
        analysis.write_summary(done)
        for table in views.run_tables(summary, run.meta):
            console.print(table)
        console.print(f"run directory: {run.path}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from restartbench import analysis
    runs = _runs(args.runs)
    out = args.output or (REPO / "results" / "report.html")
    check_writable(out.parent)
    path = analysis.write_report(runs, out)
    console.print(f"report: {path}")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from restartbench.analysis import compare

    table = compare.compare_table(_runs(args.runs))
    console.print(compare.render(table))
    found = table.attrs.get("findings")
    if found is not None and len(found):
        console.print(compare.render_findings(found))
    if args.csv:
        check_writable(args.csv.parent)
        console.print(f"csv: {compare.write_csv(table, args.csv)}")
        if found is not None and len(found):
            console.print(f"findings csv: {compare.findings_csv(args.csv)}")
    return EXIT_OK


def cmd_gate(args: argparse.Namespace) -> int:
    from restartbench import analysis
    limits = _gate_limits(args.limits or "default")
    baseline = _runs(args.baseline) if args.baseline else None
    verdict = analysis.evaluate(_runs(args.runs), limits, baseline=baseline, bugs=_ids(args.bug),
                                allow=_ids(args.allow))
    console.print(analysis.gate.render(verdict))
    return verdict.exit_code


def cmd_offline_html(args: argparse.Namespace) -> int:
    from . import asvhtml

    try:
        pages = asvhtml.make_offline(args.html_dir)
    except asvhtml.OfflineError as exc:
        raise UsageError(str(exc)) from None
    console.print(f"asv HTML in {args.html_dir}: " + (f"{len(pages)} page(s) now load local copies from "
                                                       f"{args.html_dir / asvhtml.VENDOR_DIR}" if pages
                                                       else "already loads nothing from the network"))
    return EXIT_OK


def cmd_targets(args: argparse.Namespace) -> int:
    table = Table(title="host builds found", title_justify="left")
    for col in ("target", "version", "arch", "runs as", "source", "modules / note"):
        table.add_column(col)
    usable = 0
    found = installations.discover()            # runs every candidate's --version: once
    for cand in found:
        inst = cand.installation
        if inst is not None and not cand.reason:
            usable += 1
            table.add_row(inst.label, inst.version, inst.arch, "emulated" if inst.emulated else "native",
                          cand.source, str(inst.modules or inst.executable))
        else:
            table.add_row(cand.spec, "-", "-", "-", cand.source, f"[red]rejected:[/] {cand.reason}")
    console.print(table)
    for host in hosts.all_hosts():                 # a host with no usable build: how to get one
        mine = [c for c in found if c.spec.partition("@")[0] == host.kind]
        if not any(c.installation and not c.reason for c in mine) and host.missing_hint():
            console.print(host.missing_hint())
    return EXIT_OK if usable else EXIT_USAGE


def cmd_build_apps(args: argparse.Namespace) -> int:
    names = args.names or list(apps.APPS)
    for name in names:
        try:
            apps.app_spec(name)
        except apps.UnknownApp as exc:
            raise UsageError(str(exc)) from None
    for name in names:
        path = apps.build(name, force=args.force)
        console.print(f"{name}: {path} ({path.stat().st_size:,} bytes)")
    return EXIT_OK


def cmd_build(args: argparse.Namespace) -> int:
    from . import matrix
    from .hosts.unit import build as unitbuild, discovery as units

    revs = matrix.split_list(args.rev)
    if not revs:
        raise UsageError("--rev is empty: pass a tag, branch or commit, e.g. --rev 1.32.1")
    arch = arches.normalize_arch(args.arch)
    table = Table(title=f"{args.flavor} builds for {arch}", title_justify="left")
    for col in ("rev", "target", "commit", "toolchain", "build time", "where"):
        table.add_column(col, overflow="fold")
    for rev in revs:
        if args.missing and not args.rebuild:
            try:
                inst = units.resolve(unitbuild.flavored(rev, args.flavor), arch)
                table.add_row(rev, inst.label, inst.commit[:10] or "-", "-", "already there",
                              str(inst.executable))
                continue
            except installations.InstallationError:
                pass
        try:
            built = unitbuild.build(rev, source=args.source, flavor=args.flavor, arch=arch, jobs=args.jobs,
                                    rebuild=args.rebuild, say=lambda s: errors.print(s, markup=False,
                                                                                      highlight=False))
        except unitbuild.BuildFailed as exc:
            errors.print(f"error: building {args.flavor} {rev} for {arch} failed: {exc}", markup=False,
                         highlight=False, soft_wrap=True)
            return EXIT_RUN_FAILED
        rec = built.record
        table.add_row(rev, f"unit@{built.name}", rec["commit"][:10], rec["toolchain"]["rust"]["name"],
                      f"{rec['times_s']['total']:.0f} s", str(built.dir))
    console.print(table)
    return EXIT_OK


def cmd_build_deps(args: argparse.Namespace) -> int:
    from .hosts.unit import build as unitbuild

    arch = arches.normalize_arch(args.arch)
    done = unitbuild.install_prerequisites(arch, say=lambda s: errors.print(s, markup=False, highlight=False))
    unitbuild.check_prerequisites(arch)
    console.print(f"build prerequisites for {arch}: " + (f"installed {' '.join(done)}" if done else
                                                          "all present"))
    return EXIT_OK


def _scenarios_from(args: argparse.Namespace, names: Sequence[str]) -> list[scenarios.Scenario]:
    """The named scenarios with the run flags' overrides (as ``run_config`` applies them)."""
    return [scenarios.load(name, duration=args.duration, warmup=args.warmup, cooldown=args.cooldown,
                           restart_every=args.restart_every, restarts=args.restarts, actions=args.actions,
                           processes=args.processes, window=args.window, grace=args.grace)
            for name in names]


def _base_config(args: argparse.Namespace, target: str, arch: str | None, scenario: str,
                 resolve: bool = True, check: bool = True) -> RunConfig:
    """The run flags as a RunConfig (checked by ``run_config`` unless ``check`` is off); matrix/bisect
    then set each run's target, arch, build and scenario."""
    base = argparse.Namespace(**vars(args))
    base.target, base.arch, base.scenario = target, arch, scenario
    config = run_config(base, resolve=resolve, check=check)
    config.installation = None
    return config


def cmd_matrix(args: argparse.Namespace) -> int:
    from . import matrix

    _check_aim(args)
    limits = _gate_limits(args.gate or "default")
    targets = matrix.split_list(args.target)
    names = matrix.split_list(args.scenario) or ["periodic-restart"]
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
    scens = _scenarios_from(args, names)
    try:
        cell_list = matrix.cells(targets, matrix.split_list(args.arch), scens)
    except matrix.MatrixInputError as exc:
        raise UsageError(str(exc)) from None
    if all(c.error for c in cell_list):
        raise UsageError("nothing to run: " + "; ".join(f"{c.target} {c.arch}: {c.error.splitlines()[0]}"
                                                        for c in cell_list))
    if not args.no_control:                      # a foreign-arch cell's controls, in the plan
        cell_list = matrix.with_controls(cell_list, say=lambda s: console.print(s, markup=False, highlight=False))
    base = _base_config(args, cell_list[0].target, None, names[0], check=False)
    for cell in cell_list:       # each cell is checked as its run will be; one its host cannot do fails alone
        if not cell.error and not cell.host.problems(cell.scenario):
            validate(matrix.cell_config(cell, base)[0])
    plan = Table(title=f"matrix: {len(cell_list)} runs, one after another", title_justify="left")
    for col in ("#", "target", "version", "arch", "runs as", "scenario", "note"):
        plan.add_column(col)
    for n, c in enumerate(cell_list, 1):
        plan.add_row(str(n), c.target, c.version or "-", c.arch, "emulated" if c.emulated else
                     ("native" if c.installation else "-"), c.scenario.name,
                     f"[red]cannot run:[/] {c.error}" if c.error else
                     f"control ({c.control}) of the run before it" if c.control else "")
    console.print(plan)

    live: LiveProgress | None = None

    def progress(event) -> None:
        nonlocal live
        if event.state == "start":
            console.print(f"[bold]{event.headline()}[/]", highlight=False)
            live = LiveProgress(console, enabled=not args.quiet).__enter__()
        elif event.state == "running" and live is not None:
            live.update(event.run)
        elif event.state == "done":
            if live is not None:
                live.__exit__(None, None, None)
                live = None
            style = "green" if event.result.ok else "red"
            console.print(f"[{style}]{event.headline()}[/]", highlight=False)

    result = matrix.run_matrix(cell_list, base, report=progress, limits=limits, html=args.report,
                               controls=False, bugs=_ids(args.bug), allow=_ids(args.allow))
    return _after_matrix(result)


def _after_matrix(result) -> int:
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
    console.print(f"matrix directory: [bold]{result.path}[/] · {len(result.results)} cells in "
                  f"{result.wall_s:.0f} s · {len(result.failed)} failed")
    if result.interrupted:
        return _SIGNAL_EXIT.get(result.interrupted, 130)
    return result.exit_code


def cmd_bisect(args: argparse.Namespace) -> int:
    from . import bisect

    limits = _gate_limits(args.gate or "default")
    kind = args.target.partition("@")[0]
    arch = arches.normalize_arch(args.arch)
    say = lambda s: errors.print(s, markup=False, highlight=False)           # noqa: E731
    base = _base_config(args, kind if args.source is not None else args.target, arch, args.scenario,
                        resolve=False)
    plan_of: dict[str, Any] = {}

    def progress(what, item, step):
        if what == "chose":
            console.print(f"[bold]{item}[/]", highlight=False, soft_wrap=True)
            return
        label = plan_of["plan"].describe(item) if "plan" in plan_of else str(getattr(item, "label", item))
        if step is None:
            console.print(f"[bold]bisect: {label}[/] ({arch})", highlight=False)
        else:
            style = {"pass": "green", "fail": "red"}.get(step.verdict, "yellow")
            seen = "; ".join(", ".join(f) or "none" for f in step.findings)
            console.print(f"  {step.version}: [{style}]{step.verdict}[/] ({' '.join(step.votes) or 'no run'})"
                          f" {step.reason}" + (f" findings: {seen}" if step.findings else ""), highlight=False)

    try:
        if args.source is not None:                  # the plan first, to describe commits as they are probed
            plan_of["plan"] = bisect.commit_plan(args.source, args.flavor, arch, args.good, args.bad, say)
        with LiveProgress(console, enabled=not args.quiet) as live:
            done = bisect.find(base, args.good, args.bad, arch=arch, kind=kind, source=args.source,
                               flavor=args.flavor, limits=limits, bugs=_ids(args.bug), checks=_ids(args.check),
                               repeat=args.repeat, verify_endpoints=not args.no_verify, report=progress,
                               progress=live.update, say=say)
    except bisect.BisectInputError as exc:
        raise UsageError(str(exc)) from None
    except Interrupted as exc:
        errors.print(f"bisect interrupted ({exc.reason})")
        return _SIGNAL_EXIT.get(exc.reason, 130)
    found, plan = done.result, done.plan
    if found.chosen:
        console.print(found.chosen, highlight=False, soft_wrap=True)
    console.print(_bisect_table(found, plan, arch))
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


def _bisect_table(found, plan, arch: str) -> Table:
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


def _ids(values: Sequence[str] | None) -> list[str]:
    """``--bug a,b --bug c`` -> ``["a", "b", "c"]``."""
    from .matrix import split_list

    return split_list(values or [])


def _check_aim(args: argparse.Namespace) -> None:
    """Unknown ids of --bug/--allow (and a --bug that explains no check) stop a command before it runs."""
    from restartbench.analysis.findings import check_ids, checks_of

    try:
        check_ids(_ids(getattr(args, "bug", None)), "--bug")
        check_ids(_ids(getattr(args, "allow", None)), "--allow")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for fid in _ids(getattr(args, "bug", None)):
        if not checks_of(fid):
            raise UsageError(f"--bug {fid} explains no gate check (it is listed with its rate, never judged): "
                             f"ask about a finding that fails a check")


def cmd_explore(args: argparse.Namespace) -> int:
    import time

    from . import explore

    limits = _gate_limits(args.gate or "default")
    _check_aim(args)
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
    found = explore.explore(inst.label, args.budget, out, seed=args.seed, arch=inst.arch, limits=limits,
                            installation=inst, bugs=tuple(_ids(args.bug)), allow=tuple(_ids(args.allow)),
                            report=lambda line: console.print(line, markup=False,
                                                                                  highlight=False))
    console.print((out / "report.md").read_text().split("| # |")[0].strip(), markup=False, highlight=False)
    console.print(f"explore record: {out / 'explore.json'}")
    if found.stopped:
        return _SIGNAL_EXIT.get(found.stopped, 130)
    return EXIT_GATE_FAILED if found.found else EXIT_OK


# -- live progress ------------------------------------------------------------------------------

class LiveProgress:
    """A one-line live view of a run: phase, time, requests, rps, not-ok, restarts, processes."""

    def __init__(self, out: Console, enabled: bool = True):
        self.out, self.quiet, self.enabled = out, not enabled, enabled and out.is_terminal
        self.live = Live(console=out, refresh_per_second=4, transient=True) if self.enabled else None
        self._last = (0.0, 0)
        self._rps = 0.0
        self._phase = ""

    def __enter__(self) -> "LiveProgress":
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def update(self, p: Progress) -> None:
        if self.quiet:                                # --quiet: not even the phase lines
            return
        t, n = self._last
        if p.elapsed_s - t >= 1.0:
            self._rps = (p.requests - n) / (p.elapsed_s - t)
            self._last = (p.elapsed_s, p.requests)
        if self.live is None:
            if p.phase != self._phase:               # not a terminal: one line per phase change
                self._phase = p.phase
                self.out.print(f"[{p.elapsed_s:6.1f}s] {p.phase}", highlight=False)
            return
        done = min(1.0, p.elapsed_s / p.duration_s) if p.duration_s else 0.0
        bar = "━" * int(done * 30) + "╺" + " " * (30 - int(done * 30))
        last = ""
        if p.last_restart is not None:
            r = p.last_restart
            last = f" · last restart {r.kind} {(r.t_done - r.t_sent) * 1000:.0f} ms" + (
                f" HTTP {r.http_status}" if r.http_status else "")
        self.live.update(f"[cyan]{p.phase:>14}[/] {bar} {p.elapsed_s:5.1f}/{p.duration_s:.0f}s · "
                         f"{p.requests:,} req · {self._rps:,.0f} rps · [red]{p.not_ok:,} not ok[/] · "
                         f"restarts {p.restarts_done}/{p.restarts_total} · {p.processes} proc{last}")


# -- checks and helpers -------------------------------------------------------------------------

def _gate_limits(spec: str):
    from restartbench import analysis
    return analysis.load_limits(None if spec == "default" else spec)


def _runs(specs: Sequence[str]) -> list[results.Run]:
    """Run dirs from arguments: paths, or ``latest`` (the newest run under results/runs)."""
    return results.open_runs(specs, DEFAULT_RESULTS)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``restartbench`` command."""
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UsageError as exc:
        errors.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_USAGE
    except (ConfigError, scenarios.ScenarioError, installations.InstallationError,
            results.FormatError, apps.AppBuildError, GateInputError) as exc:
        errors.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_USAGE
    except Interrupted as exc:              # a stop signal before the run dir existed
        errors.print(f"interrupted ({exc.reason}) before the run started; nothing to keep")
        return _SIGNAL_EXIT.get(exc.reason, 130)
    except KeyboardInterrupt:
        errors.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
