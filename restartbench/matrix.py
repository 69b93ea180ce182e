"""Many runs from one request: every selected host version x architecture x scenario, one after
another, then one comparison and one gate verdict over the set; and a bisect over installed versions.

    cs = cells(["wasmtime", "unit@1.32.0"], ["x86_64", "arm64"], ["periodic-restart"])
    result = run_matrix(cs, RunConfig(load=LoadSpec(users=10)), report=print)
    result.table          # analysis.compare_table over the cells' runs (one row per version/arch)
    result.verdict        # analysis.evaluate over the same runs
    result.exit_code      # 0 all pass, 1 a gate check failed, 3 a cell failed

    found = bisect("1.32.1", "1.32.0", unit_builds, run_cell, judge)
    found.first_bad, found.last_good, found.runs

Each cell is an ordinary ``restartbench.run.run`` with its own results directory. A cell that cannot
run (its build is missing for that arch, the host cannot do the scenario, the host never came up)
is recorded with its reason and the matrix goes on. Cells are ordered by host kind, then version
(``hosts.base.version_key``; 1.32.0 < 1.32.1 < 1.33.0), then arch and scenario in the order given.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from . import hosts, installations, results, scenarios, tools
from .arches import host_arch, normalize_arch
from .installations import InstallationError
from .run import ConfigError, Interrupted, Progress, RunConfig, RunOutcome, interruptible, run
from .scenarios import Scenario
from .hosts.base import Installation, version_key

ALL = "*"                          # unit@* : every usable build of that kind


class MatrixInputError(ValueError):
    """A selection that cannot be a matrix (unknown host kind, no cells, unknown version)."""


def _item_version(item: Any) -> str:
    return str(getattr(item, "version", item))


def _item_names(item: Any) -> set[str]:
    """What a user may call an item: its name and its version (``unit@1.32.0`` -> ``1.32.0`` too)."""
    if isinstance(item, Installation):
        return {item.name, item.version, item.label}
    return {str(item)}


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
                f"{self.scenario.name}")

    def describe(self) -> dict[str, Any]:
        return {"target": self.target, "arch": self.arch, "scenario": self.scenario.name,
                "version": self.version, "emulated": self.emulated, "error": self.error,
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


@dataclass
class MatrixEvent:
    """What a progress callback sees: which cell (1-based ``index`` of ``total``), how many are left
    after it, and either the run's own progress (``run``) or the cell's end (``result``)."""

    index: int
    total: int
    cell: Cell
    state: str                          # "start" | "running" | "done"
    run: Progress | None = None
    result: CellResult | None = None

    @property
    def remaining(self) -> int:
        """Cells still to run after this one."""
        return self.total - self.index

    def headline(self) -> str:
        if self.state == "done" and self.result is not None:
            r = self.result
            why = f": {r.reason}" if r.reason and not r.ok else ""
            return (f"[{self.index}/{self.total}] {self.cell.label}: {r.status} in {r.wall_s:.0f} s{why}"
                    f" ({self.remaining} left)")
        return f"[{self.index}/{self.total}] running {self.cell.label} ({self.remaining} left after it)"


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
               report: Callable[[MatrixEvent], None] | None = None, *, limits: dict | None = None,
               out_dir: Path | None = None, html: bool = False) -> MatrixResult:
    """Run every cell one after another (each its own run dir under ``base_config.results_root``),
    then compare the complete runs and gate them together (``limits``: analysis.load_limits(); None =
    the defaults). Writes ``matrix.json`` and ``compare.csv`` (and ``report.html`` if ``html``) into
    ``out_dir`` (default ``<results_root>/matrix-<time>-<id>/``). A failing cell is recorded and the
    others still run; a signal (Ctrl-C, SIGTERM) stops the matrix after the current run's teardown."""
    import analysis

    report = report or (lambda e: None)
    t_start = time.monotonic()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(out_dir) if out_dir else Path(base_config.results_root) / f"matrix-{stamp}-{uuid.uuid4().hex[:4]}"
    result = MatrixResult(results=[], path=out)
    total = len(cell_list)
    with interruptible():                          # a signal between two cells stops the matrix too
        for n, cell in enumerate(cell_list, 1):
            if result.interrupted:
                result.results.append(CellResult(cell, "not run",
                                                 reason=f"matrix interrupted ({result.interrupted})"))
                continue
            t = time.monotonic()
            try:
                report(MatrixEvent(n, total, cell, "start"))
                run_id = f"{base_config.run_id}-{n:02d}" if base_config.run_id else None
                res = _run_cell(cell, base_config, run_id, lambda p, n=n, cell=cell: report(
                    MatrixEvent(n, total, cell, "running", run=p)))
            except (Interrupted, KeyboardInterrupt) as exc:
                res = CellResult(cell, "interrupted", reason=getattr(exc, "reason", "KeyboardInterrupt"))
            res.wall_s = time.monotonic() - t
            if res.status == "interrupted":
                result.interrupted = res.reason.split(":")[0] or "interrupted"
            result.results.append(res)
            report(MatrixEvent(n, total, cell, "done", result=res))

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
        result.verdict = analysis.evaluate(done, limits)
    result.wall_s = time.monotonic() - t_start
    _save(result, done, html)
    return result


def _run_cell(cell: Cell, base: RunConfig, run_id: str | None, progress) -> CellResult:
    try:
        cfg, dropped = cell_config(cell, base, run_id)
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
        import analysis

        analysis.write_csv(result.table, out / "compare.csv")
        if html:
            analysis.write_report(opened, out / "report.html", gate=result.verdict)
    results.write_json(out / "matrix.json", result.describe())


# -- bisect -------------------------------------------------------------------------------------

@dataclass
class BisectStep:
    version: str
    verdict: str                        # pass | fail | skip (the run could not be judged)
    path: Path | None = None
    reason: str = ""
    votes: list[str] = field(default_factory=list)     # each run's verdict, in order
    paths: list[Path] = field(default_factory=list)    # each run's directory
    failed_checks: list[str] = field(default_factory=list)
    prepare_s: float = 0.0              # building the revision (commit bisect), 0 for installed ones
    run_s: float = 0.0


@dataclass
class BisectResult:
    """``first_bad``: the failing version next to the boundary, counted from ``good`` toward ``bad``
    (good older than bad: the first release that regressed; good newer: the last release before the
    fix). ``last_good``: the passing version on the other side. ``candidates``: when runs that could
    not be judged leave the boundary open, the versions that may be ``first_bad``."""

    good: str
    bad: str
    order: list[str]                                   # versions from good to bad
    steps: list[BisectStep] = field(default_factory=list)
    first_bad: str | None = None
    last_good: str | None = None
    candidates: list[str] = field(default_factory=list)
    error: str = ""                                    # the endpoints do not hold as stated
    runs_failed: bool = False                          # ...because a run could not be judged
    repeat: int = 1

    @property
    def found(self) -> bool:
        return self.first_bad is not None and not self.error

    def step(self, version: str) -> BisectStep | None:
        return next((s for s in reversed(self.steps) if s.version == version and s.verdict != "skip"), None)

    @property
    def runs(self) -> dict[str, Path | None]:
        """The run dirs that show the boundary: last good and first bad."""
        out = {}
        for v in (self.last_good, self.first_bad):
            s = self.step(v) if v else None
            if s is not None:
                out[v] = s.path
        return out

    @property
    def exit_code(self) -> int:
        """0 boundary found, 1 the endpoints' verdicts contradict good/bad, 3 runs failed so it is open."""
        if self.error:
            return 3 if self.runs_failed else 1
        return 0 if self.found else 3

    def describe(self) -> dict[str, Any]:
        return {"good": self.good, "bad": self.bad, "order": self.order, "first_bad": self.first_bad,
                "last_good": self.last_good, "candidates": self.candidates, "error": self.error,
                "repeat": self.repeat,
                "steps": [{**dataclasses.asdict(s), "path": str(s.path) if s.path else None,
                           "paths": [str(p) for p in s.paths]} for s in self.steps],
                "runs": {k: str(v) if v else None for k, v in self.runs.items()}}


def order_versions(items: Iterable[Any]) -> list[Any]:
    """``items`` (Installations or version strings) in version order; two of one version: an error."""
    items = sorted(items, key=lambda i: version_key(_item_version(i)))
    versions = [_item_version(i) for i in items]
    dup = sorted({v for v in versions if versions.count(v) > 1})
    if dup:
        raise MatrixInputError(f"several builds of version {', '.join(dup)}: bisect one arch/flavor at a time")
    return items


def bisect(good: str, bad: str, versions: Sequence[Any], run_cell: Callable[[Any], Any],
           judge: Callable[[Any], Any], *, verify_endpoints: bool = True,
           report: Callable[[str, Any, BisectStep | None], None] | None = None,
           repeat: int = 1) -> BisectResult:
    """Binary search between ``good`` and ``bad`` over ``versions`` (Installations or version
    strings; sorted here by version) for the first version that fails (see ``search``)."""
    items = order_versions(versions)

    def find(name: str) -> int:
        for n, item in enumerate(items):
            if name in _item_names(item):
                return n
        have = ", ".join(_item_version(i) for i in items) or "none"
        raise MatrixInputError(f"version {name!r} is not installed (have: {have})")

    gi, bi = find(good), find(bad)
    if gi == bi:
        raise MatrixInputError(f"--good and --bad name the same build ({_item_version(items[gi])})")
    seq = items[gi:bi + 1] if gi < bi else items[bi:gi + 1][::-1]         # from good to bad
    return search(good, bad, seq, run_cell, judge, verify_endpoints=verify_endpoints, report=report,
                  repeat=repeat)


def search(good: str, bad: str, seq: Sequence[Any], run_cell: Callable[[Any], Any],
           judge: Callable[[Any], Any], *, verify_endpoints: bool = True,
           report: Callable[[str, Any, BisectStep | None], None] | None = None, repeat: int = 1,
           prepare: Callable[[Any], Any] | None = None) -> BisectResult:
    """Binary search along ``seq`` (ordered from the good end to the bad end) for the boundary.

    ``prepare(item)`` (optional) makes an item runnable (builds a commit) and returns what
    ``run_cell`` takes; ``run_cell(x)`` performs a run (e.g. returns a RunOutcome);
    ``judge(outcome)`` says True (passes the gate), False (fails) or None (cannot tell: the run
    itself failed), or a pair (that, [failed check names]). Each item is run until one verdict holds
    a majority of ``repeat`` runs, so one noisy run cannot steer the search; an item without a
    majority of judged runs (or that cannot be prepared) is skipped, as ``git bisect skip``. The
    endpoints are run too unless ``verify_endpoints`` is False; if good fails or bad passes,
    ``error`` says so. ``report(what, item, step)`` is called before (``step`` None) and after each item."""
    report = report or (lambda what, item, step: None)
    need = repeat // 2 + 1
    res = BisectResult(good, bad, [_item_version(i) for i in seq], repeat=repeat)

    def probe(i: int) -> str:
        item = seq[i]
        report("run", item, None)
        step = BisectStep(_item_version(item), "skip")
        t0 = time.monotonic()
        try:
            runnable = prepare(item) if prepare is not None else item
        except (Interrupted, KeyboardInterrupt):
            raise
        except Exception as exc:                 # e.g. a revision that does not build: skip it
            runnable, step.reason = None, f"{type(exc).__name__}: {exc}"
        step.prepare_s = round(time.monotonic() - t0, 1)
        t1 = time.monotonic()
        while runnable is not None and len(step.votes) < repeat:
            path, reason, checks = None, "", []
            try:
                outcome = run_cell(runnable)
                path = getattr(outcome, "path", None)
                verdict = judge(outcome)
                if isinstance(verdict, tuple):
                    verdict, checks = verdict
                if verdict is None:
                    reason = (getattr(outcome, "meta", {}) or {}).get("reason", "") or "could not be judged"
            except (Interrupted, KeyboardInterrupt):
                raise
            except Exception as exc:             # a run that could not even start
                verdict, reason = None, f"{type(exc).__name__}: {exc}"
            vote = "skip" if verdict is None else ("pass" if verdict else "fail")
            step.votes.append(vote)
            if path:
                step.paths.append(Path(path))
            step.failed_checks += [c for c in checks if c not in step.failed_checks]
            step.reason = step.reason or reason
            if step.votes.count("pass") >= need or step.votes.count("fail") >= need:
                break
            if step.votes.count("skip") > repeat - need:         # a majority is out of reach
                break
        step.run_s = round(time.monotonic() - t1, 1)
        for v in ("pass", "fail"):
            if step.votes.count(v) >= need:
                step.verdict = v
        if step.verdict != "skip":
            step.path = next((p for p, v in zip(step.paths, [x for x in step.votes if x != "skip"])
                              if v == step.verdict), step.paths[0] if step.paths else None)
            step.reason = "" if len(set(step.votes)) == 1 else step.reason
        res.steps.append(step)
        report("done", item, step)
        return step.verdict

    lo, hi = 0, len(seq) - 1
    if verify_endpoints:
        for i, which, expect, wrong in ((lo, "good", "pass", "fails the gate"),
                                        (hi, "bad", "fail", "passes the gate")):
            v = probe(i)
            res.runs_failed = v == "skip"
            if v != expect:
                res.error = (f"the {which} version {res.order[i]} " + (wrong if v != "skip" else
                             f"could not be judged ({res.steps[-1].reason})") + ": nothing to bisect")
                return res
    skipped: set[int] = set()
    while True:
        open_ = [i for i in range(lo + 1, hi) if i not in skipped]
        if not open_:
            break
        mid = (lo + hi) / 2
        i = min(open_, key=lambda k: (abs(k - mid), k))
        v = probe(i)
        if v == "pass":
            lo = i
        elif v == "fail":
            hi = i
        else:
            skipped.add(i)
    if any(lo < i < hi for i in skipped):
        res.candidates = [res.order[i] for i in range(lo + 1, hi + 1)]
        res.last_good = res.order[lo]
    else:
        res.first_bad, res.last_good = res.order[hi], res.order[lo]
    return res
