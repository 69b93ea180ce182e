"""What every command shares: the consoles, exit codes, bad-input errors, the run flags and their RunConfig.

Exit codes: the constants below; what each means for each command is README's "Exit codes" table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console

from .. import apps, results, scenarios
from ..load import LoadSpec
from ..run import DEFAULT_RESULTS, RunConfig, validate

from ..run import SECOND_APP_SHARE

EXIT_OK, EXIT_GATE_FAILED, EXIT_USAGE, EXIT_RUN_FAILED = 0, 1, 2, 3
SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129, "KeyboardInterrupt": 130}

console = Console() if sys.stdout.isatty() else Console(width=132)
errors = Console(stderr=True)


class UsageError(Exception):
    """Bad input: printed as one line, exit code 2."""


def say(text: str) -> None:
    """A line of the suite's own on stderr (what a build or a bisect is at), printed as it is."""
    errors.print(text, markup=False, highlight=False)


def append_job_summary(text: str) -> None:
    """Append Markdown to GitHub's job summary when ``$GITHUB_STEP_SUMMARY`` names it, as steps do."""
    import os

    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a") as f:
            f.write(text + "\n")
        console.print(f"job summary: appended to {path}")


def signal_exit(name: str, default: int = 130) -> int:
    """The exit code of a run or job stopped by signal ``name``."""
    return SIGNAL_EXIT.get(name, default)


# -- argument types ------------------------------------------------------------------------------

def positive(kind, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{what} must be greater than 0, got {text!r}")
        return value
    return parse


def duration(what: str):
    def parse(text: str) -> float:
        try:
            value = scenarios.parse_duration(text, what)
        except scenarios.ScenarioError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{what} must not be negative")
        return value
    return parse


def share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"share must be a number between 0 and 1, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"share must be between 0 and 1, got {text!r}")
    return value


class Parser(argparse.ArgumentParser):
    def error(self, message: str):           # one line, exit 2 (argparse prints usage + 2 lines)
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


# -- the run flags -------------------------------------------------------------------------------

def add_run_arguments(p: argparse.ArgumentParser, several: bool = False, probes: bool = False) -> None:
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
                   f"a name in scenarios/ ({', '.join(scenario_names())}) or a .toml path")
    g.add_argument("--duration", type=duration("duration"), help="total load time, e.g. 40s")
    g.add_argument("--warmup", type=duration("warmup"), help="steady state before the first restart")
    g.add_argument("--cooldown", type=duration("cooldown"), help="load after the last restart")
    g.add_argument("--restart-every", type=duration("restart-every"), help="restart interval, e.g. 5s")
    g.add_argument("--restarts", type=int, help="number of restarts (default: as many as fit)")
    g.add_argument("--actions", help="actions used in turn: restart, config, swap, processes, daemon, or a "
                   "change the scenario names ([changes.NAME])")
    g.add_argument("--processes", type=int, help="app processes (Unit)")
    g.add_argument("--upgrade-to", metavar="NAME", help="Unit: daemon actions start this build (a name from "
                   "`restartbench targets`) instead of the one under test, as a package upgrade does")
    g.add_argument("--window", type=duration("window"), help="restart window W for the metrics (5s)")
    g.add_argument("--grace", type=duration("grace"), help="lingering grace (5s)")
    g = p.add_argument_group("load")
    g.add_argument("--users", type=positive(int, "users"), default=None,
                   help="Locust users (default: the scenario's [load], else 20)")
    g.add_argument("--spawn-rate", type=positive(float, "spawn-rate"), default=None,
                   help="users started per second (default: all at once)")
    g.add_argument("--request-timeout", type=duration("request-timeout"), default=None,
                   help="a request slower than this is a timeout (default 2s)")
    g.add_argument("--sleep-share", type=share, default=None,
                   help="share of users holding /sleep requests in flight (default 0.1)")
    g.add_argument("--sleep-ms", type=positive(int, "sleep-ms"), default=None, help="held request time (500)")
    g.add_argument("--fresh-connections", action="store_true", default=None,
                   help="a new connection per request (Connection: close) instead of keep-alive")
    g.add_argument("--rate", type=positive(float, "rate"), default=None,
                   help="open model: requests/s in total (default: closed model)")
    g.add_argument("--load-processes", type=positive(int, "load-processes"), default=1,
                   help="Locust processes (default 1)")
    g.add_argument("--expect-workers", type=positive(int, "expect-workers"), default=0, metavar="N",
                   help="distributed load: run only the Locust master here and wait for N workers, each "
                   "started elsewhere with: locust -f locustfiles/restart_load.py --worker --master-host "
                   "<this host> --master-port PORT")
    g.add_argument("--master-bind", default="127.0.0.1:5557", metavar="HOST:PORT",
                   help="where that master listens for workers (default 127.0.0.1:5557; 0.0.0.0:5557 for "
                   "other machines)")
    g = p.add_argument_group("output")
    g.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS, help="where run dirs go")
    g.add_argument("--run-id", default=None, help="name of the run dir (default: time-target-arch-scenario)")
    g.add_argument("--census-interval", type=duration("census-interval"), default=0.1,
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


def scenario_names() -> list[str]:
    return sorted(p.stem for p in scenarios.SCENARIO_DIR.glob("*.toml"))


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
                    other_share=pick("other_share", "other_share", SECOND_APP_SHARE if scenario.second_app else 0.0),
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


def scenarios_from(args: argparse.Namespace, names: Sequence[str]) -> list[scenarios.Scenario]:
    """The named scenarios with the run flags' overrides (as ``run_config`` applies them)."""
    return [scenarios.load(name, duration=args.duration, warmup=args.warmup, cooldown=args.cooldown,
                           restart_every=args.restart_every, restarts=args.restarts, actions=args.actions,
                           processes=args.processes, window=args.window, grace=args.grace,
                           upgrade_to=getattr(args, "upgrade_to", None))
            for name in names]


def run_config(args: argparse.Namespace, resolve: bool = True, check: bool = True) -> RunConfig:
    """Turn ``run`` arguments into a RunConfig checked by ``run.validate`` (``check``; what ``run()``
    checks too); ``resolve``: the target as well (a build made later, as a commit bisect does, is
    resolved then)."""
    scenario = scenarios_from(args, [args.scenario])[0]
    try:
        load = load_spec(args, scenario)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    config = RunConfig(target=args.target, arch=args.arch, app=args.app, scenario=scenario, load=load,
                       results_root=args.results_dir, run_id=args.run_id, census_interval_s=args.census_interval,
                       address=args.host, port=args.port, allow_remote=args.allow_remote, keep=args.keep,
                       target_options=target_options(args))
    if check:
        validate(config, resolve=resolve)
    return config


def base_config(args: argparse.Namespace, target: str, arch: str | None, scenario: str,
                 resolve: bool = True, check: bool = True) -> RunConfig:
    """The run flags as a RunConfig (checked by ``run_config`` unless ``check`` is off); matrix/bisect
    then set each run's target, arch, build and scenario."""
    base = argparse.Namespace(**vars(args))
    base.target, base.arch, base.scenario = target, arch, scenario
    config = run_config(base, resolve=resolve, check=check)
    config.installation = None
    return config


# -- aims, limits, runs ------------------------------------------------------------------------

def ids(values: Sequence[str] | None) -> list[str]:
    """``--bug a,b --bug c`` -> ``["a", "b", "c"]``."""
    from ..matrix import split_list

    return split_list(values or [])


def check_aim(args: argparse.Namespace) -> None:
    """Unknown ids of --bug/--allow (and a --bug that explains no check) stop a command before it runs."""
    from restartbench.analysis.findings import check_ids, checks_of

    try:
        check_ids(ids(getattr(args, "bug", None)), "--bug")
        check_ids(ids(getattr(args, "allow", None)), "--allow")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for fid in ids(getattr(args, "bug", None)):
        if not checks_of(fid):
            raise UsageError(f"--bug {fid} explains no gate check (it is listed with its rate, never judged): "
                             f"ask about a finding that fails a check")


def gate_limits(spec: str):
    from restartbench import analysis
    return analysis.load_limits(None if spec == "default" else spec)


def runs(specs: Sequence[str]) -> list[results.Run]:
    """Run dirs from arguments: paths, or ``latest`` (the newest run under results/runs)."""
    return results.open_runs(specs, DEFAULT_RESULTS)
