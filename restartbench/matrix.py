"""Many runs from one request: every selected host version x architecture x scenario, one after
another, then one comparison and one gate verdict over the set (bisect is ``restartbench.bisect``).

    cs = cells(["wasmtime", "unit@1.32.0"], ["x86_64", "arm64"], ["periodic-restart"])
    result = run_matrix(cs, RunConfig(load=LoadSpec(users=10)), watch=print)
    result.table          # analysis.compare_table over the cells' runs (one row per version/arch)
    result.verdict        # analysis.evaluate over the same runs
    result.exit_code      # 0 all pass, 1 a gate check failed, 3 a cell failed

Each cell is an ordinary ``restartbench.run.run`` with its own results directory. A cell that cannot
run (its build is missing for that arch, the host cannot do the scenario, the host never came up)
is recorded with its reason and the matrix goes on. Cells are ordered by host kind, then version
(``hosts.base.version_key``; 1.32.0 < 1.32.1 < 1.33.0), then arch and scenario in the order given.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from . import hosts, installations, results, scenarios, tools
from .arches import host_arch, normalize_arch
from .installations import InstallationError
from .run import ConfigError, Interrupted, RunConfig, RunOutcome, interruptible, run
from .scenarios import Scenario
from .hosts.base import Installation
from .events import Event, Watcher, ignore, running
from .metadata import signal_of
from .versions import version_key

ALL = "*"                          # unit@* : every usable build of that kind


class MatrixInputError(ValueError):
    """A selection that cannot be a matrix (unknown host kind, no cells, unknown version)."""


# -- cells --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """One run of the matrix: a target spec on an arch with a scenario. ``installation`` is the
    resolved build; when it could not be resolved, ``error`` says why (the cell then fails)."""

    target: str
    arch: str
    scenario: Scenario
    installation: Installation | None = None
    error: str = ""
    control: str = ""                   # a control of the foreign-arch cell before it: native | emulated

    @property
    def kind(self) -> str:
        return self.installation.kind if self.installation else self.target.partition("@")[0]

    @property
    def host(self) -> hosts.Host:
        return hosts.of(self.installation) if self.installation else hosts.split(self.target)[0]

    @property
    def version(self) -> str:
        if self.installation is not None:
            return self.installation.version
        name = self.target.partition("@")[2]
        return name if name and name != ALL else ""

    @property
    def emulated(self) -> bool:
        return bool(self.installation and self.installation.emulated)

    @property
    def label(self) -> str:
        """``unit@1.32.0 1.32.0 aarch64 (emulated) · periodic-restart``."""
        name = self.installation.label if self.installation else self.target
        version = f" {self.version}" if self.version and self.version not in name else ""
        return (f"{name}{version} {self.arch}{' (emulated)' if self.emulated else ''} · "
                f"{self.scenario.name}" + (f" · control ({self.control})" if self.control else ""))

    def describe(self) -> dict[str, Any]:
        return {"target": self.target, "arch": self.arch, "scenario": self.scenario.name,
                "version": self.version, "emulated": self.emulated, "error": self.error, "control": self.control,
                "installation": self.installation.describe() if self.installation else None}


def split_list(text: str | Sequence[str] | None) -> list[str]:
    """``"a,b, c"`` (or a list of such) -> ``["a", "b", "c"]``; empty items dropped."""
    if text is None:
        return []
    parts = [text] if isinstance(text, str) else list(text)
    return [p.strip() for part in parts for p in str(part).split(",") if p.strip()]


def _check_spec(spec: str) -> str:
    try:
        hosts.split(spec)
    except InstallationError as exc:
        raise MatrixInputError(f"{exc}; KIND@{ALL} selects every build of a kind") from None
    return spec


def _lookup(registry: Sequence[Installation], spec: str, arch: str) -> Installation:
    """``spec`` on ``arch`` among ``registry`` (by name, then version; newest when several)."""
    host, name = hosts.split(spec)
    kind = host.kind
    same = [i for i in registry if i.kind == kind and i.arch == arch]
    if name:
        same = [i for i in same if i.answers_to(name)] or [i for i in same if i.version == name]
    if not same:
        have = ", ".join(sorted({f"{i.label} ({i.version}, {i.arch})" for i in registry if i.kind == kind}))
        raise InstallationError(f"no {spec} build for {arch}" + (f"; available: {have}" if have else
                                f"; none of kind {kind} is installed"))
    return max(same, key=lambda i: version_key(i.version))


def usable_installations() -> list[Installation]:
    """Every usable host build ``installations.discover()`` finds here."""
    return installations.usable()


def cells(targets: Sequence[str | Installation] | str, arches: Sequence[str] | str | None = None,
          scenario_list: Sequence[str | Scenario] | str | None = None, *,
          registry: Sequence[Installation] | None = None,
          resolve: Callable[[str, str], Installation] | None = None) -> list[Cell]:
    """Every selected (target x arch x scenario), ordered by kind, version, arch, scenario.

    ``targets``: specs as users type them (``wasmtime``, ``unit``, ``unit@1.32.0``, ``unit@*`` for
    every installed Unit) or Installations. ``arches``: aliases allowed (arm64 = aarch64); default
    this machine's. ``scenario_list``: names/paths or Scenario objects; default periodic-restart.
    Specs resolve against ``registry`` when given (a list of Installations), else through
    ``installations.resolve`` (which fetches the foreign-arch wasmtime on first use). A spec that
    cannot be resolved for an arch still yields a cell, with ``error`` set.
    Raises MatrixInputError / InstallationError / ScenarioError on input that is wrong as typed."""
    target_items = split_list(targets) if isinstance(targets, str) else list(targets)
    arch_list = [normalize_arch(a) for a in split_list(arches)] or [host_arch()]
    scen_items = split_list(scenario_list) if isinstance(scenario_list, str) else list(scenario_list or [])
    scen_objs = [s if isinstance(s, Scenario) else scenarios.load(s) for s in scen_items] or [scenarios.load(
        "periodic-restart")]
    if not target_items:
        raise MatrixInputError("no targets selected: pass e.g. --targets wasmtime,unit@1.32.0")
    arch_list = list(dict.fromkeys(arch_list))

    if resolve is None:
        if registry is not None:
            reg = list(registry)
            resolve = lambda spec, arch: _lookup(reg, spec, arch)        # noqa: E731
        else:
            resolve = installations.resolve

    pairs: list[tuple[str, str, Installation | None, str]] = []      # spec, arch, installation, error
    for item in target_items:
        if isinstance(item, Installation):
            if item.arch in arch_list:
                pairs.append((item.label, item.arch, item, ""))
            continue
        spec = _check_spec(str(item).strip())
        kind, _, name = spec.partition("@")
        for arch in arch_list:
            if name == ALL:
                reg = list(registry) if registry is not None else usable_installations()
                found = [i for i in reg if i.kind == kind and i.arch == arch]
                if not found:
                    pairs.append((spec, arch, None, f"no {kind} build for {arch} is installed"))
                for inst in found:
                    pairs.append((inst.label, arch, inst, ""))
                continue
            try:
                pairs.append((spec, arch, resolve(spec, arch), ""))
            except (InstallationError, tools.ToolMissing, ConfigError) as exc:
                pairs.append((spec, arch, None, str(exc)))

    kind_order = {k: n for n, k in enumerate(dict.fromkeys(p[0].partition("@")[0] for p in pairs))}
    out, seen = [], set()
    for spec, arch, inst, error in pairs:
        for scen in scen_objs:
            cell = Cell(spec, arch, scen, inst, error)
            key = (inst.executable if inst else spec, inst.name if inst else "", arch, scen.name,
                   repr(scen))
            if key not in seen:
                seen.add(key)
                out.append(cell)
    arch_order = {a: n for n, a in enumerate(arch_list)}
    scen_order = {id(s): n for n, s in enumerate(scen_objs)}
    out.sort(key=lambda c: (kind_order.get(c.kind, 99), version_key(c.version), arch_order.get(c.arch, 99),
                            scen_order.get(id(c.scenario), 99)))
    return out


# -- running a matrix ---------------------------------------------------------------------------

@dataclass
class CellResult:
    """What became of one cell: ``status`` complete | failed | interrupted | not run."""

    cell: Cell
    status: str
    path: Path | None = None
    reason: str = ""
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "complete"

    def describe(self) -> dict[str, Any]:
        return {**self.cell.describe(), "status": self.status, "run_dir": str(self.path) if self.path else None,
                "reason": self.reason, "wall_s": round(self.wall_s, 3)}


def _headline(index: int, total: int, cell: Cell, res: "CellResult | None" = None) -> str:
    """A cell's line: ``[i/n] running LABEL (k left after it)``, or how it ended."""
    left = total - index
    if res is None:
        return f"[{index}/{total}] running {cell.label} ({left} left after it)"
    why = f": {res.reason}" if res.reason and not res.ok else ""
    return f"[{index}/{total}] {cell.label}: {res.status} in {res.wall_s:.0f} s{why} ({left} left)"


@dataclass
class MatrixResult:
    results: list[CellResult]
    table: Any = None                   # pandas DataFrame from analysis.compare_table (None: no run)
    verdict: Any = None                 # analysis GateResult over the complete runs (None: no run)
    wall_s: float = 0.0
    path: Path | None = None            # the matrix dir: matrix.json, compare.csv (report.html)
    interrupted: str = ""               # the signal that stopped the matrix, if one did

    @property
    def failed(self) -> list[CellResult]:
        return [r for r in self.results if not r.ok]

    @property
    def runs(self) -> list[Path]:
        return [r.path for r in self.results if r.path is not None and r.ok]

    @property
    def exit_code(self) -> int:
        """3 when a cell failed (or none ran), else the gate's: 1 a check failed, 0 all passed."""
        if self.failed or self.verdict is None:
            return 3
        return self.verdict.exit_code

    def describe(self) -> dict[str, Any]:
        return {"format": 1, "kind": "matrix", "wall_s": round(self.wall_s, 3), "interrupted": self.interrupted,
                "cells": [r.describe() for r in self.results],
                "verdict": None if self.verdict is None else
                {"passed": self.verdict.passed, "exit_code": self.verdict.exit_code,
                 "aim": self.verdict.aim.describe(), "effects": self.verdict.effects,
                 "failures": [dataclasses.asdict(f) for f in self.verdict.failures()]},
                "exit_code": self.exit_code}


def cell_config(cell: Cell, base: RunConfig, run_id: str | None = None) -> tuple[RunConfig, list[str]]:
    """``base`` with the cell's target, arch, build and scenario; target options the cell's host
    does not take are left out (named in the second value)."""
    if cell.installation is None:
        raise ConfigError(cell.error or f"{cell.target} has no build for {cell.arch}")
    accepted = set(hosts.of(cell.installation).option_names())
    options = {k: v for k, v in base.target_options.items() if k in accepted}
    dropped = sorted(set(base.target_options) - set(options))
    cfg = dataclasses.replace(base, target=cell.target, arch=cell.arch, scenario=cell.scenario,
                              installation=cell.installation, run_id=run_id, target_options=options)
    return cfg, dropped


def run_matrix(cell_list: Sequence[Cell], base_config: RunConfig,
               watch: Watcher | None = None, *, limits: dict | None = None,
               out_dir: Path | None = None, html: bool = False, controls: bool = True,
               bugs: Sequence[str] = (), allow: Sequence[str] = (),
               say: Callable[[str], None] = lambda s: None) -> MatrixResult:
    """Run every cell one after another (each its own run dir under ``base_config.results_root``),
    then compare the complete runs and gate them together (``limits``: analysis.load_limits(); None =
    the defaults). Writes ``matrix.json`` and ``compare.csv`` (and ``report.html`` if ``html``) into
    ``out_dir`` (default ``<results_root>/matrix-<time>-<id>/``). A failing cell is recorded and the
    others still run; a signal (Ctrl-C, SIGTERM) stops the matrix after the current run's teardown.
    A foreign-arch cell is followed by its ``controls`` (``restartbench.controls``: the same revision for
    this machine, native and emulated), which the verdict uses to tell arch effects from the emulator's;
    ``bugs``/``allow`` aim the verdict (``analysis.gate.Aim``)."""
    from restartbench import analysis
    watch = watch or ignore
    t_start = time.monotonic()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(out_dir) if out_dir else Path(base_config.results_root) / f"matrix-{stamp}-{uuid.uuid4().hex[:4]}"
    result = MatrixResult(results=[], path=out)
    cell_list = with_controls(cell_list, say) if controls else list(cell_list)
    total = len(cell_list)
    controlled: CellResult | None = None           # the foreign-arch cell the next control cells control
    with interruptible():                          # a signal between two cells stops the matrix too
        for n, cell in enumerate(cell_list, 1):
            if result.interrupted:
                result.results.append(CellResult(cell, "not run",
                                                 reason=f"matrix interrupted ({result.interrupted})"))
                continue
            if cell.control and (controlled is None or not controlled.ok):
                result.results.append(CellResult(cell, "not run", reason="the run it controls did not complete"))
                continue
            t = time.monotonic()
            try:
                watch(Event("matrix", "start", _headline(n, total, cell), n, total, item=cell))
                run_id = f"{base_config.run_id}-{n:02d}" if base_config.run_id else None
                of = controlled.path.name if cell.control and controlled is not None else None
                res = _run_cell(cell, base_config, run_id, running(
                    "matrix", watch, index=n, total=total, item=cell), of=of)
            except (Interrupted, KeyboardInterrupt) as exc:
                res = CellResult(cell, "interrupted", reason=getattr(exc, "reason", "KeyboardInterrupt"))
            res.wall_s = time.monotonic() - t
            if res.status == "interrupted":
                result.interrupted = signal_of(res.reason) or "interrupted"
            result.results.append(res)
            if not cell.control:
                controlled = res
            watch(Event("matrix", "done", _headline(n, total, cell, res), n, total, ok=res.ok, item=cell,
                         result=res))

    done = [r for r in result.results if r.ok]
    opened = []
    for r in done:
        try:
            opened.append(results.read_run(r.path))
        except results.FormatError as exc:
            r.status, r.reason = "failed", f"results unreadable: {exc}"
    done = [analysis.analyze(run) for run in opened]      # once: the table, the verdict and the report
    if done:
        result.table = analysis.compare_table(done)
        result.verdict = analysis.evaluate(done, limits, bugs=bugs, allow=allow)   # controls pair by run.json
    result.wall_s = time.monotonic() - t_start
    _save(result, done, html)
    return result


def with_controls(cell_list: Sequence[Cell], say: Callable[[str], None] = lambda s: None) -> list[Cell]:
    """``cell_list`` with each foreign-arch cell followed by its controls (``restartbench.controls``:
    the same revision for this machine, ``native`` and ``emulated``); a list that has control cells
    already is returned as it is. A control that cannot be had is said (``say``) and left out."""
    from . import controls

    if any(c.control for c in cell_list):
        return list(cell_list)
    out: list[Cell] = []
    for cell in cell_list:
        out.append(cell)
        if cell.installation is None or not controls.needs_control(cell.installation):
            continue
        try:
            builds = controls.control_installations(cell.installation, say)
        except InstallationError as exc:
            say(f"no emulation control for {cell.label}: {exc}")
            continue
        out += [Cell(inst.label, inst.arch, cell.scenario, inst, control=kind) for kind, inst in builds]
    return out


def _run_cell(cell: Cell, base: RunConfig, run_id: str | None, progress, of: str | None = None) -> CellResult:
    try:
        cfg, dropped = cell_config(cell, base, run_id)
        if cell.control:                           # a control of run ``of``
            cfg = dataclasses.replace(cfg, control={"of": of, "kind": cell.control},
                                      run_id=f"{of}-control-{cell.control}")
        outcome: RunOutcome = run(cfg, report=progress)
    except (ConfigError, scenarios.ScenarioError, InstallationError, tools.ToolMissing) as exc:
        return CellResult(cell, "failed", reason=f"cannot run: {exc}")
    except KeyboardInterrupt:
        return CellResult(cell, "interrupted", reason="KeyboardInterrupt")
    except Exception as exc:                       # an app build error, a bug: this cell only
        return CellResult(cell, "failed", reason=f"{type(exc).__name__}: {exc}")
    reason = outcome.meta.get("reason", "") if outcome.status != "complete" else ""
    if dropped and outcome.status == "complete":
        reason = f"options not used by {cell.kind}: {', '.join(dropped)}"
    return CellResult(cell, outcome.status, outcome.path, reason)


def _save(result: MatrixResult, opened: list, html: bool) -> None:
    out = result.path
    out.mkdir(parents=True, exist_ok=True)
    if result.table is not None:
        from restartbench import analysis
        analysis.write_csv(result.table, out / "compare.csv")
        if html:
            analysis.write_report(opened, out / "report.html", gate=result.verdict)
    results.write_json(out / "matrix.json", result.describe())
