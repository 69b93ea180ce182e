"""asv benchmarks: how each discovered host version behaves across restarts, per scenario.

Every ``track_*`` value is a restart metric as docs/metrics.md defines it (the same number the summary
and the gate use), read from one real run; bigger is worse. Parameters: ``target`` (every usable host build of the selected architecture, as "label
version", e.g. ``wasmtime 49.0.3``, ``unit@1.32.0 1.32.0``) x ``scenario`` (scenario names, default
``periodic-restart``). ``setup_cache`` performs each combination's run once — one after another, never
side by side — and every ``track_*`` of that combination reads that run's summary. A combination a host
cannot perform (e.g. Unit's ``process-count`` on wasmtime) is skipped; a run that fails shows as failed.

Environment (``make asv`` sets them from ARCH=, TARGET=/UNIT=, SCENARIO= and DURATION=)::

    RESTARTBENCH_ASV_ARCH=aarch64          architecture of the hosts (default this machine's; a foreign
                                           one runs under qemu-user, see `make emulator`)
    RESTARTBENCH_ASV_TARGETS=wasmtime,unit@1.32.0
                                           only these host kinds or builds (default every usable one)
    RESTARTBENCH_ASV_SCENARIOS=a,b         scenario names or TOML paths (default periodic-restart)
    RESTARTBENCH_ASV_DURATION=20s          shorter runs than the scenario files' (40 s)
    RESTARTBENCH_ASV_OVERRIDES=warmup=2s,cooldown=2s,restart_every=2s,grace=2s
                                           any other scenario setting (for very short runs)
    RESTARTBENCH_ASV_USERS=20              Locust users (default 20, 10 for an emulated host: as make bench)
    RESTARTBENCH_ASV_RUNS=DIR              where the run dirs go (default results/runs/asv/<combination>/)
    RESTARTBENCH_ASV_UNIT_BUILD=DIR        set by asv.unit.conf.json's environment (hosts.unit.asv):
                                           the one target is that Unit build, labelled "unit (the
                                           commit under test)" at every commit

A scenario with overrides is its own parameter value (``periodic-restart duration=20s``), so runs of
different lengths never share a graph. The run dirs stay: ``restartbench report|gate`` read them.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from restartbench import analysis
from restartbench.analysis import tracked
from restartbench import arches, hosts, installations, read_run, scenarios
from restartbench.versions import version_key
from restartbench.load import LoadSpec
from restartbench.run import REPO, ConfigError, Interrupted, RunConfig, run

ENV = "RESTARTBENCH_ASV_"
DEFAULT_SCENARIOS = "periodic-restart"
#: end-to-end seconds of one run beyond its scenario duration (host start, Locust start, cool-down
#: drain, teardown, analysis); an emulated host is slower at all of it
OVERHEAD_S, EMULATED_OVERHEAD_S = 60.0, 180.0


def _env(name: str, default: str = "") -> str:
    return os.environ.get(ENV + name, "").strip() or default


def _arch() -> str:
    return arches.normalize_arch(_env("ARCH") or None)


def _targets(arch: str) -> tuple[dict[str, installations.Installation], list[str]]:
    """Usable host builds for ``arch`` by parameter label, in kind/version order; the rejections."""
    found, rejected = {}, []
    candidates = installations.discover()
    for host in hosts.all_hosts():               # a single-build host with none for arch: fetch it (the
        if not host.named and not any(           # foreign wasmtime wheel, on first use)
                c.installation and c.installation.kind == host.kind and c.installation.arch == arch
                for c in candidates):
            try:
                candidates.append(installations.Candidate(host.kind, host.resolve("", arch), "default"))
            except Exception as exc:             # noqa: BLE001 - reported as the reason for no target
                rejected.append(f"{host.kind} ({arch}): {exc}")
    wanted = [s.strip() for s in _env("TARGETS").split(",") if s.strip()]
    for cand in candidates:
        inst = cand.installation
        if inst is None or cand.reason:
            rejected.append(f"{cand.spec}: {cand.reason}")
        elif wanted and inst.kind not in wanted and inst.label not in wanted:
            rejected.append(f"{inst.label} ({inst.arch}): not in {ENV}TARGETS")
        elif inst.arch == arch:
            found.setdefault(f"{inst.label} {inst.version}", inst)
    order = sorted(found, key=lambda k: (hosts.of(found[k]).order, found[k].kind,
                                         version_key(found[k].version), k))
    return {k: found[k] for k in order}, rejected


def _overrides() -> dict[str, str]:
    out = {}
    for item in filter(None, (s.strip() for s in _env("OVERRIDES").split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise scenarios.ScenarioError(f"{ENV}OVERRIDES item {item!r}: write key=value, e.g. warmup=2s")
        out[key.strip()] = value.strip()
    if _env("DURATION"):
        out["duration"] = _env("DURATION")
    return out


def _scenarios() -> dict[str, scenarios.Scenario]:
    """Scenario by parameter label; a bad name or setting fails the import with its message."""
    overrides = _overrides()
    suffix = " ".join(f"{k}={v}" for k, v in sorted(overrides.items()))
    out = {}
    for name in filter(None, (s.strip() for s in _env("SCENARIOS", DEFAULT_SCENARIOS).split(","))):
        sc = scenarios.load(name, **overrides)
        out[f"{sc.name} {suffix}".strip()] = sc
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.@_-]+", "-", text).strip("-")


def _users(inst: installations.Installation) -> int:
    return int(_env("USERS", "10" if inst.emulated else "20"))


def _budget_s(inst: installations.Installation, sc: scenarios.Scenario) -> float:
    return sc.duration_s * (2 if inst.emulated else 1) + (EMULATED_OVERHEAD_S if inst.emulated else OVERHEAD_S)


def _history_target() -> dict[str, installations.Installation] | None:
    """Under ``asv.unit.conf.json`` (asv along Unit's history): the build of the commit asv installed,
    under one label for every commit, so that one graph follows the history."""
    built_dir = os.environ.get("RESTARTBENCH_ASV_UNIT_BUILD")
    if not built_dir:
        return None
    from restartbench.hosts.unit import build as unitbuild, discovery as units

    built = unitbuild.Built(Path(built_dir), json.loads((Path(built_dir) / unitbuild.RECORD).read_text()))
    return {HISTORY_LABEL: units.installation_of(built)}


HISTORY_LABEL = "unit (the commit under test)"
ARCH = _arch()
TARGETS, REJECTED = (_history_target(), []) if os.environ.get("RESTARTBENCH_ASV_UNIT_BUILD") else _targets(ARCH)
SCENARIOS = _scenarios()
NO_TARGET = f"(no usable host for {ARCH})"


def measure(inst: installations.Installation, sc: scenarios.Scenario, root: Path) -> dict:
    """One run of ``sc`` on ``inst`` under ``root``; its metrics, or why it was skipped or failed."""
    config = RunConfig(target=inst.label, arch=inst.arch, installation=inst, scenario=sc,
                       load=LoadSpec(users=_users(inst)), results_root=root)
    try:
        outcome = run(config)
    except ConfigError as exc:                  # the host cannot do this scenario: asv skips it
        return {"skip": str(exc)}
    if outcome.status == "interrupted":         # asv's timeout or Ctrl-C: stop, run nothing more
        raise Interrupted(outcome.meta.get("reason") or "interrupted")
    if outcome.status != "complete":
        return {"error": f"run {outcome.status}: {outcome.meta.get('reason', '')} ({outcome.path})"}
    try:
        done = analysis.analyze(read_run(outcome.path))         # once: summary.json and the gate
        analysis.write_summary(done)
        return {"path": str(outcome.path), "metrics": tracked.of(done)}
    except Exception as exc:                    # noqa: BLE001 - this combination fails, the others go on
        return {"error": f"analysis of {outcome.path} failed: {type(exc).__name__}: {exc}"}


def _runs_root() -> Path:
    return Path(_env("RUNS") or REPO / "results" / "runs" / "asv").resolve()


class Restarts:
    """Restart metrics of one run per host version x scenario (bigger is worse)."""

    params = [list(TARGETS) or [NO_TARGET], list(SCENARIOS)]
    param_names = ["target", "scenario"]
    rounds = 1
    repeat = 1
    number = 1
    timeout = 120                      # one track_: reads the cached summary

    def setup_cache(self) -> dict:
        """Every combination's run, once, one after another: {(target, scenario): result}."""
        out = {}
        for tlabel, inst in TARGETS.items():
            for slabel, sc in SCENARIOS.items():
                t = time.monotonic()
                res = measure(inst, sc, _runs_root() / _slug(f"{tlabel}-{inst.arch}-{slabel}"))
                out[(tlabel, slabel)] = res
                what = res.get("path") or res.get("skip") or res.get("error")
                print(f"{tlabel} x {slabel}: {time.monotonic() - t:.1f} s: {what}", flush=True)
        return out

    # asv kills setup_cache once it has printed nothing for this long (it prints a line per combination);
    # the budget of every combination back to back, so it holds as a wall-clock limit too
    setup_cache.timeout = max(120.0, sum(_budget_s(i, s) for i in TARGETS.values() for s in SCENARIOS.values()))

    def setup(self, cache: dict, target: str, scenario: str) -> None:
        if target == NO_TARGET:
            raise NotImplementedError(f"no usable host for {ARCH}: " + "; ".join(REJECTED))
        res = cache[(target, scenario)]
        if "skip" in res:
            raise NotImplementedError(res["skip"])
        if "error" in res:
            raise RuntimeError(res["error"])
        self.metrics = res["metrics"]

    def track_window_timeout_rate(self, cache, target, scenario) -> float:
        """Share of the requests started in restart windows that timed out."""
        return self.metrics["window_timeout_rate"]
    track_window_timeout_rate.pretty_name, track_window_timeout_rate.unit = tracked.TRACKED["window_timeout_rate"]

    def track_lingering_max(self, cache, target, scenario) -> float:
        """Most old app processes still alive past the grace after any one restart."""
        return self.metrics["lingering_max"]
    track_lingering_max.pretty_name, track_lingering_max.unit = tracked.TRACKED["lingering_max"]

    def track_recovery_p95(self, cache, target, scenario) -> float:
        """recovery p95 as docs/metrics.md defines it (the summary's and the gate's): over the restarts
        that recovered; those that never did are ``track_unrecovered``'s (NaN when none recovered)."""
        return self.metrics["recovery_p95_s"]
    track_recovery_p95.pretty_name, track_recovery_p95.unit = tracked.TRACKED["recovery_p95_s"]

    def track_unrecovered(self, cache, target, scenario) -> float:
        """Share of restarts after which no request was answered within the window (docs/metrics.md)."""
        return self.metrics["unrecovered_share"]
    track_unrecovered.pretty_name, track_unrecovered.unit = tracked.TRACKED["unrecovered_share"]

    def track_rss_slope(self, cache, target, scenario) -> float:
        """Least-squares slope of the host tree's RSS per restart."""
        return self.metrics["rss_slope"]
    track_rss_slope.pretty_name, track_rss_slope.unit = tracked.TRACKED["rss_slope"]

    def track_gate_failed_checks(self, cache, target, scenario) -> float:
        """How many of the gate's checks (default limits) the run fails: 0 is a passing build."""
        return self.metrics["gate_failed_checks"]
    track_gate_failed_checks.pretty_name, track_gate_failed_checks.unit = tracked.TRACKED["gate_failed_checks"]

    def track_failing_findings(self, cache, target, scenario) -> float:
        """How many findings (known bugs, unnamed failures; summary.json ``findings``) fail the gate."""
        return self.metrics["failing_findings"]
    track_failing_findings.pretty_name, track_failing_findings.unit = tracked.TRACKED["failing_findings"]

    def track_crashed_restarts(self, cache, target, scenario) -> float:
        """Share of restarts after which a Unit process crashed (Unit's log); NaN for other hosts."""
        return self.metrics["crashed_restarts"]
    track_crashed_restarts.pretty_name, track_crashed_restarts.unit = tracked.TRACKED["crashed_restarts"]

    def track_fd_slope(self, cache, target, scenario) -> float:
        """Least-squares slope of the host tree's open fds per restart."""
        return self.metrics["fd_slope"]
    track_fd_slope.pretty_name, track_fd_slope.unit = tracked.TRACKED["fd_slope"]
