"""Bisect: the build (or commit) where one finding appears or goes away.

    result = find(base_config, good="1.32.1", bad="1.32.0", limits=limits, bugs=["unit-1179"])
    result = find(base_config, good="1.35.0", bad="1.32.0", source="nginx-unit.bundle")   # auto
    result.first_bad, result.last_good, result.target      # where it changed, and on what

A bisect answers one question: *where did this finding change?* With ``bugs`` (finding ids, or the bug
their faces share: ``unit-1179``) or ``checks`` (gate check names) each probed run is judged on those
alone (the aimed gate, ``analysis.gate.Aim``), so another bug at either end does not stop it. Without
them it first runs both ends, takes the findings that fail the gate in every run of the bad end and in
none of the good end's, says so, and bisects on those. Each probed build runs until one verdict holds
a majority of ``repeat`` runs (one noisy run cannot steer it); a build that cannot be prepared (a commit
that does not build) or judged is skipped, as ``git bisect skip``.

Two sequences: the installed builds of one kind ordered by version (``version_plan``), or the
first-parent commits of a Unit source between two revisions, each built when probed (``commit_plan``).
``search`` is the search itself over any ordered sequence with a run and a judge (tests give stand-ins).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from . import results
from .hosts.base import Installation
from .versions import version_key
from .events import Event, Watcher, ignore, running
from .run import Interrupted, RunConfig, run

#: a judge's answer for one run: an ``analysis.gate.Judged`` (its verdict, failing checks and findings),
#: or for a plain judge passes (True) / fails (False) / cannot tell (None)
Vote = Any


class BisectInputError(ValueError):
    """Ends or a sequence that cannot be bisected (the message says what to give instead)."""


@dataclass
class BisectStep:
    version: str
    verdict: str                        # pass | fail | skip (the run could not be judged)
    path: Path | None = None
    reason: str = ""
    votes: list[str] = field(default_factory=list)     # each run's verdict, in order
    paths: list[Path] = field(default_factory=list)    # each run's directory
    failed_checks: list[str] = field(default_factory=list)
    findings: list[list[str]] = field(default_factory=list)   # each run's failing findings (unaimed)
    prepare_s: float = 0.0              # building the revision (commit bisect), 0 for installed ones
    run_s: float = 0.0

    def line(self) -> str:
        """The step in one line: version, verdict, each run's vote, why, the findings seen."""
        seen = "; ".join(", ".join(f) or "none" for f in self.findings)
        return (f"  {self.version}: {self.verdict} ({' '.join(self.votes) or 'no run'}) {self.reason}"
                + (f" findings: {seen}" if self.findings else ""))


@dataclass
class BisectResult:
    """``first_bad``: the failing version next to the boundary, counted from ``good`` toward ``bad``
    (good older than bad: the first release that regressed; good newer: the last release before the
    fix). ``last_good``: the passing version on the other side. ``candidates``: when runs that could
    not be judged leave the boundary open, the versions that may be ``first_bad``. ``target``: the
    findings (or checks) it bisected on; ``chosen``: why (asked, or what differed between the ends)."""

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
    target: list[str] = field(default_factory=list)
    chosen: str = ""

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
                "repeat": self.repeat, "target": self.target, "chosen": self.chosen,
                "steps": [{**dataclasses.asdict(s), "path": str(s.path) if s.path else None,
                           "paths": [str(p) for p in s.paths]} for s in self.steps],
                "runs": {k: str(v) if v else None for k, v in self.runs.items()}}


def _item_version(item: Any) -> str:
    return str(getattr(item, "version", item))


def _item_names(item: Any) -> set[str]:
    """What a user may call an item: its name and its version (``unit@1.32.0`` -> ``1.32.0`` too)."""
    if isinstance(item, Installation):
        return {item.name, item.version, item.label}
    return {str(item)}


def order_versions(items: Iterable[Any]) -> list[Any]:
    """``items`` (Installations or version strings) in version order; two of one version: an error."""
    items = sorted(items, key=lambda i: version_key(_item_version(i)))
    versions = [_item_version(i) for i in items]
    dup = sorted({v for v in versions if versions.count(v) > 1})
    if dup:
        raise BisectInputError(f"several builds of version {', '.join(dup)}: bisect one arch/flavor at a time")
    return items


def between(good: str, bad: str, versions: Sequence[Any]) -> list[Any]:
    """The items from ``good`` to ``bad`` (either may be the older) of ``versions``, in version order."""
    items = order_versions(versions)

    def find_(name: str) -> int:
        for n, item in enumerate(items):
            if name in _item_names(item):
                return n
        have = ", ".join(_item_version(i) for i in items) or "none"
        raise BisectInputError(f"version {name!r} is not installed (have: {have})")

    gi, bi = find_(good), find_(bad)
    if gi == bi:
        raise BisectInputError(f"--good and --bad name the same build ({_item_version(items[gi])})")
    return items[gi:bi + 1] if gi < bi else items[bi:gi + 1][::-1]


def bisect(good: str, bad: str, versions: Sequence[Any], run_cell: Callable[[Any], Any],
           judge: Callable[[Any], Any], **options: Any) -> BisectResult:
    """Binary search between ``good`` and ``bad`` over ``versions`` (Installations or version
    strings; sorted here by version) for the first version that fails (see ``search``)."""
    return search(good, bad, between(good, bad, versions), run_cell, judge, **options)


# -- the search -----------------------------------------------------------------------------------

class _Prober:
    """Runs items of a sequence until a verdict holds a majority, recording each as a BisectStep."""

    def __init__(self, res: BisectResult, seq: Sequence[Any], run_cell, prepare, watch: Watcher, repeat: int,
                 describe: Callable[[Any], str] = str):
        self.res, self.seq, self.run_cell, self.prepare, self.watch = res, seq, run_cell, prepare, watch
        self.describe = describe
        self.repeat, self.need = repeat, repeat // 2 + 1
        self.outcomes: dict[int, list[Any]] = {}

    def probe(self, i: int, judge: Callable[[Any], Any]) -> str:
        item = self.seq[i]
        self.watch(Event("bisect", "start", f"bisect: {self.describe(item)}", item=item))
        step = BisectStep(_item_version(item), "skip")
        t0 = time.monotonic()
        try:
            runnable = self.prepare(item) if self.prepare is not None else item
        except (Interrupted, KeyboardInterrupt):
            raise
        except Exception as exc:                 # e.g. a revision that does not build: skip it
            runnable, step.reason = None, f"{type(exc).__name__}: {exc}"
        step.prepare_s = round(time.monotonic() - t0, 1)
        t1 = time.monotonic()
        self.outcomes[i] = []
        while runnable is not None and len(step.votes) < self.repeat:
            try:
                outcome = self.run_cell(runnable)
            except (Interrupted, KeyboardInterrupt):
                raise
            except Exception as exc:             # a run that could not even start
                outcome = exc
            self.outcomes[i].append(outcome)
            self._vote(step, outcome, judge)
            if step.votes.count("pass") >= self.need or step.votes.count("fail") >= self.need:
                break
            if step.votes.count("skip") > self.repeat - self.need:        # a majority is out of reach
                break
        step.run_s = round(time.monotonic() - t1, 1)
        self._settle(step)
        self.res.steps.append(step)
        self.watch(Event("bisect", "done", step.line(), ok={"pass": True, "fail": False}.get(step.verdict),
                         item=item, result=step))
        return step.verdict

    def revote(self, i: int, judge: Callable[[Any], Any]) -> str:
        """Judge item ``i``'s runs again with another judge (no new run): its step's verdict."""
        step = next(s for s in reversed(self.res.steps) if s.version == _item_version(self.seq[i]))
        step.votes, step.paths, step.failed_checks, step.findings, step.reason = [], [], [], [], ""
        for outcome in self.outcomes.get(i, []):
            self._vote(step, outcome, judge)
        step.verdict = "skip"
        self._settle(step)
        return step.verdict

    def _vote(self, step: BisectStep, outcome: Any, judge: Callable[[Any], Any]) -> None:
        path, reason, checks, found = None, "", [], []
        if isinstance(outcome, Exception):
            verdict, reason = None, f"{type(outcome).__name__}: {outcome}"
        else:
            path = getattr(outcome, "path", None)
            try:
                verdict = judge(outcome)
            except (Interrupted, KeyboardInterrupt):
                raise
            except Exception as exc:
                if type(exc).__name__ == "GateInputError":       # the question itself is wrong: say so
                    raise
                verdict, reason = None, f"{type(exc).__name__}: {exc}"
            if hasattr(verdict, "verdict"):               # a Judged: its checks and findings go in the table
                checks, found, reason = verdict.checks, verdict.findings, verdict.reason
                verdict = verdict.passed
            if verdict is None and not reason:
                reason = (getattr(outcome, "meta", {}) or {}).get("reason", "") or "could not be judged"
        step.votes.append("skip" if verdict is None else ("pass" if verdict else "fail"))
        if path:
            step.paths.append(Path(path))
        step.failed_checks += [c for c in checks if c not in step.failed_checks]
        step.findings.append(found)
        step.reason = step.reason or reason

    def _settle(self, step: BisectStep) -> None:
        for v in ("pass", "fail"):
            if step.votes.count(v) >= self.need:
                step.verdict = v
        if step.verdict != "skip":                    # the run that shows the verdict (judged runs have paths)
            judged = [v for v in step.votes if v != "skip"]
            step.path = next((p for p, v in zip(step.paths, judged) if v == step.verdict),
                             step.paths[0] if step.paths else None)
            step.reason = "" if len(set(step.votes)) == 1 else step.reason


def search(good: str, bad: str, seq: Sequence[Any], run_cell: Callable[[Any], Any],
           judge: Callable[[Any], Any], *, verify_endpoints: bool = True,
           watch: Watcher | None = None, repeat: int = 1, describe: Callable[[Any], str] = str,
           prepare: Callable[[Any], Any] | None = None, observe: Callable[[Any], Any] | None = None,
           choose: Callable[[list[list[str]], list[list[str]]], tuple[list[str], str]] | None = None) -> BisectResult:
    """Binary search along ``seq`` (ordered from the good end to the bad end) for the boundary.

    ``prepare(item)`` (optional) makes an item runnable (builds a commit) and returns what
    ``run_cell`` takes; ``run_cell(x)`` performs a run (e.g. returns a RunOutcome); ``judge(outcome)``
    says True (passes), False (fails) or None (cannot tell: the run itself failed), or a tuple (that,
    [failed checks], [failing findings]). The endpoints are run too unless ``verify_endpoints`` is
    False; if good fails or bad passes, ``error`` says so.

    Auto mode (``observe`` and ``choose`` given): the ends are run and judged by ``observe`` (the
    unaimed gate); ``choose(findings at good, findings at bad)`` (each run's failing findings) returns
    what to bisect on and why — an empty choice is the error — and ``judge`` then re-judges the ends'
    runs and judges every probe. ``watch`` sees a ``start`` and a ``done`` event per probed item
    (``describe(item)`` names it) and a ``note`` saying what auto mode chose."""
    watch = watch or ignore
    res = BisectResult(good, bad, [_item_version(i) for i in seq], repeat=repeat)
    prober = _Prober(res, seq, run_cell, prepare, watch, repeat, describe)
    lo, hi = 0, len(seq) - 1
    if observe is not None and choose is not None:
        for i in (lo, hi):
            prober.probe(i, observe)
        ends = [next(s for s in reversed(res.steps) if s.version == res.order[i]) for i in (lo, hi)]
        if any(s.verdict == "skip" and not any(v != "skip" for v in s.votes) for s in ends):
            bad_end = next(s for s in ends if not any(v != "skip" for v in s.votes))
            res.runs_failed = True
            res.error = f"the {'good' if bad_end is ends[0] else 'bad'} version {bad_end.version} could not be " \
                        f"judged ({bad_end.reason}): nothing to bisect"
            return res
        res.target, res.chosen = choose(ends[0].findings, ends[1].findings)
        if not res.target:
            res.error = res.chosen
            return res
        verify_endpoints = False
        for i, which, expect in ((lo, "good", "pass"), (hi, "bad", "fail")):
            if prober.revote(i, judge) != expect:        # cannot happen for what choose() picks; said if it does
                res.error = f"the {which} version {res.order[i]} does not {expect} on {', '.join(res.target)}"
                return res
    if verify_endpoints:
        for i, which, expect, wrong in ((lo, "good", "pass", "fails the gate"),
                                        (hi, "bad", "fail", "passes the gate")):
            v = prober.probe(i, judge)
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
        v = prober.probe(i, judge)
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


# -- judging runs with the gate ---------------------------------------------------------------------

def gate_judge(limits: dict | None, bugs: Sequence[str] = (), checks: Sequence[str] = ()):
    """The gate as bisect's judge of RunOutcomes (``analysis.gate.judge``): aimed at ``bugs`` (findings)
    or ``checks`` (check names), else the whole gate; its ``findings`` are every finding that fails a
    check in that run (the asked ones and the others, for the table)."""
    from restartbench.analysis import gate

    def judge(outcome) -> "gate.Judged":
        if outcome.status == "interrupted":
            raise Interrupted(outcome.signal or "SIGINT")
        return gate.judge(outcome.path, limits, bugs=bugs, checks=checks)
    return judge


def choose_by_findings(good_runs: list[list[str]], bad_runs: list[list[str]]) -> tuple[list[str], str]:
    """The bugs failing in every judged run of the bad end and in no run of the good end (their
    findings' bugs: faces of one bug count as one), and a sentence saying so."""
    from restartbench.analysis.findings import family

    bad = [set(map(family, r)) for r in bad_runs]
    good = set().union(*map(lambda r: set(map(family, r)), good_runs)) if good_runs else set()
    always = set.intersection(*bad) if bad else set()
    target = sorted(always - good)
    if not target:
        return [], (f"the bad end shows no finding the good end does not (bad: "
                    f"{', '.join(sorted(always)) or 'none'}; good: {', '.join(sorted(good)) or 'none'}): "
                    f"nothing to bisect; ask about one with --bug ID or --check NAME")
    also = sorted(good)
    return target, (f"bisecting on {', '.join(target)}: failing in every run at the bad end and in none at "
                    f"the good end" + (f" (the good end's own findings, {', '.join(also)}, are left out)"
                                       if also else ""))


# -- what is bisected: installed builds, or commits of a source ----------------------------------------

class VersionPlan:
    """Bisect over the installed builds of one kind, ordered by version."""

    what, unit, prepare = "installed builds", "versions", None

    def __init__(self, items: list[Installation]):
        self.items = items
        self.first_label = items[0].label

    def sequence(self, good: str, bad: str) -> list[Any]:
        return between(good, bad, self.items)

    def describe(self, item) -> str:
        return item if isinstance(item, str) else f"{item.label} {item.version}"

    def record(self, found: BisectResult) -> dict:
        return {}

    def conclusion(self, found: BisectResult) -> str:
        return (f"first version failing: {found.first_bad} ({found.runs.get(found.first_bad)}); last "
                f"passing: {found.last_good} ({found.runs.get(found.last_good)})")


def version_plan(kind: str, arch: str) -> VersionPlan:
    """The installed builds of ``kind`` for ``arch`` (two or more, else BisectInputError)."""
    from . import installations

    builds = [i for i in installations.usable() if i.kind == kind and i.arch == arch]
    if len(builds) < 2:
        have = ", ".join(f"{i.label} ({i.version})" for i in builds) or "none"
        raise BisectInputError(f"bisect needs two or more installed {kind} builds for {arch} (have: {have}): "
                               f"list them in units.toml (see `restartbench targets`), or bisect commits "
                               f"with --source")
    return VersionPlan(order_versions(builds))


class CommitPlan:
    """Bisect over commits of a Unit source along first-parent history, building each probed one."""

    unit = "commits"

    def __init__(self, src, sequence: list[str], flavor: str, arch: str, good_is_older: bool,
                 say: Callable[[str], None]):
        from .hosts.unit import build as unitbuild

        self.src, self.flavor, self.arch, self.good_is_older, self.say = src, flavor, arch, good_is_older, say
        self.what = f"{flavor} commits of {src.spec}"
        self.commits = {c[:10]: c for c in sequence}
        self.seq = [c[:10] for c in sequence]
        self.subjects = {c[:10]: unitbuild.subject(src, c) for c in sequence}
        self.first_label = "unit"

    def sequence(self, good: str, bad: str) -> list[str]:
        return self.seq

    def prepare(self, short: str):
        from .hosts.unit import build as unitbuild, discovery as units

        built = unitbuild.build(self.commits[short], source=self.src.spec, flavor=self.flavor, arch=self.arch,
                                say=self.say)
        return units.installation_of(built)

    def describe(self, short: str) -> str:
        return f"{short} {self.subjects.get(short, '')[:56]}"

    def changed_at(self, found: BisectResult) -> tuple[str, str]:
        """The commit whose verdict differs from its first parent's, and that verdict."""
        # ``order`` runs from good to bad; history runs oldest first: when good is the older end, the
        # change is the first bad commit (a regression), otherwise the last good one (a fix)
        return (found.first_bad, "fail") if self.good_is_older else (found.last_good, "pass")

    def record(self, found: BisectResult) -> dict:
        rec = {"source": self.src.spec, "flavor": self.flavor, "direction": "regression" if self.good_is_older
               else "fix", "commits": {k: {"commit": v, "subject": self.subjects[k]} for k, v in self.commits.items()}}
        if found.found:
            short, verdict = self.changed_at(found)
            rec["changed_at"] = {"commit": self.commits[short], "subject": self.subjects[short], "verdict": verdict}
        return rec

    def conclusion(self, found: BisectResult) -> str:
        short, verdict = self.changed_at(found)
        kind = "first commit failing (regression)" if verdict == "fail" else "first commit passing (the fix)"
        return f"{kind}: {self.commits[short]} {self.subjects[short]}"


def commit_plan(source: str, flavor: str, arch: str, good: str, bad: str,
                say: Callable[[str], None] = lambda s: None) -> CommitPlan:
    """The first-parent commits of ``source`` between ``good`` and ``bad`` (either may be the older)."""
    from .hosts.unit import build as unitbuild

    src = unitbuild.open_source(source, flavor, log=say)
    g, b = unitbuild.resolve_rev(src, good), unitbuild.resolve_rev(src, bad)
    if g == b:
        raise BisectInputError(f"--good {good} and --bad {bad} are the same commit ({g[:10]})")
    if unitbuild.is_ancestor(src, g, b):
        seq, good_is_older = unitbuild.first_parent(src, g, b), True
    elif unitbuild.is_ancestor(src, b, g):
        seq, good_is_older = unitbuild.first_parent(src, b, g)[::-1], False
    else:
        raise BisectInputError(f"--good {good} and --bad {bad} are not on one line of history (neither "
                               f"is an ancestor of the other): bisect between a commit and a later one")
    return CommitPlan(src, seq, flavor, arch, good_is_older, say)


# -- the library call -------------------------------------------------------------------------------

@dataclass
class Bisection:
    """A finished bisect: the result, the plan it walked and where its record is."""

    result: BisectResult
    plan: Any
    arch: str
    path: Path

    @property
    def exit_code(self) -> int:
        return self.result.exit_code


def find(base: RunConfig, good: str, bad: str, *, arch: str, kind: str = "unit", source: str | None = None,
         flavor: str = "unit", limits: dict | None = None, bugs: Sequence[str] = (), checks: Sequence[str] = (),
         repeat: int = 3, verify_endpoints: bool = True,
         watch: Watcher | None = None, say: Callable[[str], None] = lambda s: None) -> Bisection:
    """Bisect ``good``..``bad`` (installed builds of ``kind`` by version, or with ``source`` its
    commits) on ``bugs``/``checks``, else on what differs between the ends (module docstring); every
    probe is an ordinary ``run()`` of ``base`` with that build; ``watch`` sees the events of the search
    and each probe's run. Writes ``bisect.json`` into
    ``<results_root>/bisect-<time>-<id>/``. Raises BisectInputError on ends that cannot be bisected."""
    from restartbench.analysis.findings import SITES, check_ids, checks_of

    try:
        check_ids(bugs, "--bug")
    except ValueError as exc:
        raise BisectInputError(str(exc)) from None
    for fid in bugs:
        if not checks_of(fid):
            raise BisectInputError(f"--bug {fid} explains no gate check (it is listed, never judged): "
                                   f"bisect on a finding that fails a check")
    for name in checks:
        if name not in SITES:
            raise BisectInputError(f"--check {name!r}: not a gate check; known: {', '.join(SITES)}")
    plan = commit_plan(source, flavor, arch, good, bad, say) if source is not None else version_plan(kind, arch)
    seq = plan.sequence(good, bad)
    out = Path(base.results_root) / f"bisect-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"

    def run_cell(inst: Installation):
        cfg = dataclasses.replace(base, target=inst.label, arch=inst.arch, installation=inst,
                                  run_id=None, target_options=dict(base.target_options))
        return run(cfg, report=running("bisect", watch, item=inst))

    watch = watch or ignore
    describe = lambda item: f"{plan.describe(item)} ({arch})"           # noqa: E731
    aimed = bool(bugs or checks)
    if aimed or not verify_endpoints:            # --no-verify without a question: the whole gate
        found = search(good, bad, seq, run_cell, gate_judge(limits, bugs, checks), watch=watch,
                       repeat=repeat, prepare=plan.prepare, verify_endpoints=verify_endpoints,
                       describe=describe)
    else:
        found = _auto(good, bad, seq, run_cell, limits, watch, repeat, plan.prepare, describe)
    if aimed:
        found.target = list(bugs) + list(checks)
        found.chosen = f"asked: {', '.join(found.target)}"
    out.mkdir(parents=True, exist_ok=True)
    results.write_json(out / "bisect.json", {**found.describe(), "kind": kind, "arch": arch, **plan.record(found)})
    return Bisection(found, plan, arch, out)


def _auto(good, bad, seq, run_cell, limits, watch, repeat, prepare, describe=str) -> BisectResult:
    """The unaimed bisect: observe the ends, choose what differs, then bisect aimed at it."""
    chosen: dict[str, Any] = {}

    def judge(outcome):
        return chosen["judge"](outcome)

    def choose(at_good, at_bad):
        target, why = choose_by_findings(at_good, at_bad)
        chosen["judge"] = gate_judge(limits, target)
        if target:
            watch(Event("bisect", "note", why))            # said before the search goes on
        return target, why

    return search(good, bad, seq, run_cell, judge, watch=watch, repeat=repeat, prepare=prepare,
                  observe=gate_judge(limits), choose=choose, describe=describe)
