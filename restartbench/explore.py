"""Go looking for restart bugs: randomized restart plans, judged by the gate, a failure shrunk to a
minimal plan that still fails.

``explore(target, budget_s, seed=...)`` draws plans (``Plan``: a sequence of actions — the host's
restart kinds, its daemon restart, and the control-API changes its ``vocabulary`` offers for the build's
version (listeners, routes, settings, apps, limits, the access log) —, their spacing, the load — idle to
saturation, closed or open model, keep-alive or fresh connections —, the app's process count and whether
a second app runs beside it) from a seeded generator, runs each (``run()``) and judges it with the gate.
The first failing plan is re-run to confirm it, then shrunk: fewer restarts, simpler kinds, fewer
users, no held requests, closed model, keep-alive, one process, longer spacing — each candidate run
once and kept only if it still fails, the final one run once more to confirm. The result is written
to ``<out>/``:

``explore.json``      seed, budget, every plan tried (verdict, failed checks, known bugs, run dir)
``minimal.toml``      the minimal failing plan as a scenario (with its [load]): replay it with
                      ``restartbench run --target T --scenario minimal.toml``
``report.md``         a short account: what was tried, what failed, the shrink steps

A plan that fails only once (not on its confirmation run) is recorded as flaky and exploring goes on.
Ctrl-C (Interrupted) stops it: everything found so far is written.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from . import hosts, results, scenarios
from .events import Event, Watcher, ignore
from .load import LoadSpec
from .run import ConfigError, Interrupted, RunConfig, RunOutcome, run

SPACINGS_S = (1.0, 2.0, 3.0, 5.0)
USERS = (1, 2, 5, 10, 20, 40)
WARMUP_S, COOLDOWN_S = 2.0, 4.0
#: a run's wall time beyond its scenario (host start, Locust start, teardown, analysis)
OVERHEAD_S = 12.0


@dataclass(frozen=True)
class Plan:
    """One restart plan: what to do to the host, under which load."""

    kinds: tuple[str, ...]              # the actions, in order
    spacing_s: float                    # seconds between actions
    users: int
    sleep_share: float = 0.0            # share of users holding /sleep requests
    rate: float = 0.0                   # open model requests/s (0: closed model)
    fresh_connections: bool = False
    processes: int = 1
    changes: tuple[tuple[str, str], ...] = ()   # (name, JSON of the change) for the change kinds it uses
    second_app: bool = False

    def change_tables(self) -> dict[str, dict[str, Any]]:
        """The [changes.NAME] tables of the change kinds this plan uses."""
        used = set(self.kinds)
        return {name: json.loads(text) for name, text in self.changes if name in used}

    def scenario(self, name: str = "explore") -> scenarios.Scenario:
        """The plan as a scenario: a short warm-up, the actions ``spacing_s`` apart, a cool-down
        long enough to judge the last one; grace and window fit the spacing."""
        grace = min(2.0, self.spacing_s)
        span = (len(self.kinds) - 1) * self.spacing_s
        return scenarios.from_dict({
            "name": name, "description": f"explore: {self.label()}", "warmup": WARMUP_S,
            "cooldown": max(COOLDOWN_S, grace + 1.0), "duration": WARMUP_S + span + max(COOLDOWN_S, grace + 1.0)
            + 0.5, "restart_every": self.spacing_s, "restarts": len(self.kinds), "actions": list(self.kinds),
            "processes": self.processes, "grace": grace, "window": min(3.0, max(self.spacing_s, 1.0)),
            "load": self.load_table(), "changes": self.change_tables(), "second_app": self.second_app})

    def load_table(self) -> dict[str, Any]:
        return {"users": self.users, "sleep_share": self.sleep_share, "rate": self.rate,
                "fresh_connections": self.fresh_connections,
                "request_timeout": min(2.0, max(0.5, self.spacing_s * 0.8)),
                **({"other_share": 0.2} if self.second_app and self.users >= 3 else {})}

    def load(self) -> LoadSpec:
        t = self.load_table()
        return LoadSpec(users=self.users, sleep_share=self.sleep_share, rate=self.rate,
                        fresh_connections=self.fresh_connections, request_timeout_s=t["request_timeout"],
                        other_share=t.get("other_share", 0.0))

    def label(self) -> str:
        model = f"open {self.rate:g}/s" if self.rate else "closed"
        return (f"{len(self.kinds)}× {'/'.join(dict.fromkeys(self.kinds))} every {self.spacing_s:g}s, "
                f"{self.users} user(s) {model}, {'fresh' if self.fresh_connections else 'keep-alive'}"
                + (f", {self.sleep_share:.0%} held" if self.sleep_share else "")
                + (f", {self.processes} processes" if self.processes > 1 else "")
                + (", beside a second app" if self.second_app else ""))

    def cost_s(self) -> float:
        return WARMUP_S + (len(self.kinds) - 1) * self.spacing_s + COOLDOWN_S + OVERHEAD_S

    def describe(self) -> dict[str, Any]:
        d = {**dataclasses.asdict(self), "kinds": list(self.kinds), "label": self.label()}
        d["changes"] = self.change_tables()
        return d

    def to_toml(self, comment: str = "") -> str:
        """The plan as a scenario file ``restartbench run --scenario FILE`` replays."""
        sc = self.scenario()
        lines = [f"# {line}" for line in comment.splitlines()] + [
            f'description = "{sc.description}"', f"actions = {json.dumps(list(self.kinds))}",
            f"restarts = {len(self.kinds)}", f'restart_every = "{self.spacing_s:g}s"',
            f'warmup = "{sc.warmup_s:g}s"', f'cooldown = "{sc.cooldown_s:g}s"', f'duration = "{sc.duration_s:g}s"',
            f'grace = "{sc.grace_s:g}s"', f'window = "{sc.window_s:g}s"', f"processes = {self.processes}"]
        if self.second_app:
            lines.append("second_app = true")
        lines += ["", "[load]"]
        for key, value in self.load_table().items():
            lines.append(f"{key} = {json.dumps(value) if not isinstance(value, bool) else str(value).lower()}"
                         if key != "request_timeout" else f'request_timeout = "{value:g}s"')
        for name, change in self.change_tables().items():
            lines += ["", f"[changes.{_toml_key(name)}]", f"description = {_toml(change.get('description', ''))}",
                      "steps = ["] + [f"  {_toml(step)}," for step in change["steps"]] + ["]"]
        return "\n".join(lines) + "\n"


def _toml_key(key: str) -> str:
    import re

    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml(value: Any) -> str:
    """A JSON value as a TOML inline value (tables inline, strings as basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


#: the host capabilities that are not actions a plan can name
NOT_ACTIONS = ("change", "second-app")


def random_plan(rng: random.Random, host: hosts.Host | str, vocabulary: dict[str, dict[str, Any]] | None = None) -> Plan:
    """A plan drawn from the space: 1-6 actions — the host's restart kinds and the changes of its
    ``vocabulary`` (half of the draws, when it has one) —, spacing, load shape, (a host that runs
    several) 1-3 app processes, and sometimes a second app beside the one under test."""
    host = hosts.get(host) if isinstance(host, str) else host
    vocabulary = host.vocabulary() if vocabulary is None else vocabulary
    kinds = [k for k in host.restart_kinds if k not in NOT_ACTIONS]
    names = sorted(vocabulary)
    n = rng.choice((1, 2, 3, 4, 6))

    def draw() -> str:
        if names and rng.random() < 0.5:
            return rng.choice(names)
        return rng.choice(kinds) if rng.random() < 0.5 else "restart"

    mix = tuple(draw() for _ in range(n))
    users = rng.choice(USERS)
    open_model = rng.random() < 0.3
    used = sorted(set(mix) & set(names))
    return Plan(kinds=mix, spacing_s=rng.choice(SPACINGS_S), users=users,
                sleep_share=rng.choice((0.0, 0.0, 0.1, 0.5)) if users >= 2 else 0.0,
                rate=float(rng.choice((20, 100, 400))) if open_model else 0.0,
                fresh_connections=rng.random() < 0.3,
                processes=rng.choice((1, 1, 2, 3)) if (host.max_processes or 3) >= 3 else 1,
                changes=tuple((name, json.dumps(vocabulary[name], sort_keys=True)) for name in used),
                second_app="second-app" in host.restart_kinds and users >= 3 and rng.random() < 0.2)


def simpler(plan: Plan) -> Iterator[Plan]:
    """Candidates one step simpler than ``plan``, most reducing first."""
    k = plan.kinds
    if len(k) > 1:
        for kind in dict.fromkeys(k):                        # one action alone, each kind once
            yield dataclasses.replace(plan, kinds=(kind,))
        if len(k) > 3:
            yield dataclasses.replace(plan, kinds=k[:len(k) // 2])
            yield dataclasses.replace(plan, kinds=k[len(k) // 2:])
        for i in range(len(k)):                              # one action fewer
            yield dataclasses.replace(plan, kinds=k[:i] + k[i + 1:])
    for i, kind in enumerate(k):
        if kind != "restart":
            yield dataclasses.replace(plan, kinds=k[:i] + ("restart",) + k[i + 1:])
    if plan.users > 1:
        yield dataclasses.replace(plan, users=1, sleep_share=0.0)
        yield dataclasses.replace(plan, users=max(1, plan.users // 2))
    if plan.sleep_share:
        yield dataclasses.replace(plan, sleep_share=0.0)
    if plan.rate:
        yield dataclasses.replace(plan, rate=0.0)
    if plan.fresh_connections:
        yield dataclasses.replace(plan, fresh_connections=False)
    if plan.processes > 1:
        yield dataclasses.replace(plan, processes=1)
    if plan.second_app:
        yield dataclasses.replace(plan, second_app=False)
    longer = [s for s in SPACINGS_S if s > plan.spacing_s]
    if longer and len(k) > 1:
        yield dataclasses.replace(plan, spacing_s=longer[-1])


def complexity(plan: Plan) -> tuple:
    """What shrinking minimises, in order of importance."""
    return (len(plan.kinds), sum(k != "restart" for k in plan.kinds), plan.users, plan.sleep_share > 0,
            plan.rate > 0, plan.fresh_connections, plan.processes, plan.second_app, -plan.spacing_s)


@dataclass
class Trial:
    """One run of a plan and its verdict."""

    plan: Plan
    purpose: str                          # explore | confirm | shrink | final
    verdict: str                          # pass | fail | skip (the run could not be judged)
    failed_checks: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    path: str = ""
    reason: str = ""
    wall_s: float = 0.0

    def describe(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "plan": self.plan.describe()}


@dataclass
class Exploration:
    """What an exploration tried and found."""

    target: str
    seed: int
    budget_s: float
    trials: list[Trial] = field(default_factory=list)
    failing: Plan | None = None          # the first confirmed failing plan
    minimal: Plan | None = None          # it, shrunk
    flaky: list[Plan] = field(default_factory=list)
    stopped: str = ""                    # why it ended early ("SIGINT", ...)
    elapsed_s: float = 0.0

    @property
    def found(self) -> bool:
        return self.minimal is not None

    def coverage(self) -> dict[str, list]:
        """What the explored plans covered: kinds, spacings, users, models, connections, processes."""
        plans = [t.plan for t in self.trials if t.purpose == "explore"]
        return {"plans": [len(plans)],
                "kinds": sorted({k for p in plans for k in p.kinds}),
                "spacing_s": sorted({p.spacing_s for p in plans}),
                "users": sorted({p.users for p in plans}),
                "models": sorted({"open" if p.rate else "closed" for p in plans}),
                "connections": sorted({"fresh" if p.fresh_connections else "keep-alive" for p in plans}),
                "processes": sorted({p.processes for p in plans}),
                "second_app": sorted({p.second_app for p in plans})}

    def describe(self) -> dict[str, Any]:
        last = next((t for t in reversed(self.trials) if t.plan == self.minimal and t.verdict == "fail"), None)
        return {"target": self.target, "seed": self.seed, "budget_s": self.budget_s,
                "elapsed_s": round(self.elapsed_s, 1), "stopped": self.stopped, "found": self.found,
                "failing": self.failing.describe() if self.failing else None,
                "minimal": self.minimal.describe() if self.minimal else None,
                "minimal_failed_checks": last.failed_checks if last else [],
                "minimal_findings": last.findings if last else [],
                "flaky": [p.describe() for p in self.flaky], "coverage": self.coverage(),
                "trials": [t.describe() for t in self.trials]}


def explore(target: str, budget_s: float, out: Path, *, seed: int = 0, arch: str | None = None,
            limits: dict | None = None, installation=None, bugs: tuple[str, ...] = (),
            allow: tuple[str, ...] = (),
            watch: Watcher = ignore,
            judge: "Callable[[RunOutcome], Any] | None" = None,
            runner: Callable[[RunConfig], RunOutcome] = run,
            clock: Callable[[], float] = time.monotonic) -> Exploration:
    """Explore ``target`` for up to ``budget_s`` seconds of runs; write the results into ``out``.
    ``runner``, ``judge`` and ``clock`` stand for run(), the gate and time.monotonic (tests)."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    found = Exploration(target, seed, budget_s)
    t0 = clock()
    judge = judge or gate_judge(limits, bugs, allow)
    host = hosts.of(installation) if installation is not None else hosts.split(target)[0]
    vocabulary = host.vocabulary(installation.version if installation is not None else "")
    left = lambda: budget_s - (clock() - t0)                   # noqa: E731

    def trial(plan: Plan, purpose: str) -> Trial:
        n = len(found.trials) + 1
        watch(Event("explore", "start", f"{purpose:>7}: {plan.label()}", n, item=plan))
        t = clock()
        config = RunConfig(target=target, arch=arch, scenario=plan.scenario(), load=plan.load(),
                           results_root=out / "runs", installation=installation)
        try:
            outcome = runner(config)
        except ConfigError as exc:                   # this host cannot do this plan (e.g. a kind)
            tr = Trial(plan, purpose, "skip", reason=str(exc))
        else:
            if outcome.status == "interrupted":
                raise Interrupted(outcome.signal or "SIGINT")
            j = judge(outcome)
            tr = Trial(plan, purpose, j.verdict, j.checks, j.seen, str(outcome.path), j.reason)
        tr.wall_s = round(clock() - t, 1)
        found.trials.append(tr)
        watch(Event("explore", "done", f"         {tr.verdict}"
                    + (f": {', '.join(tr.failed_checks)}" if tr.failed_checks else "")
                    + (f" — findings: {', '.join(tr.findings)}" if tr.findings else "")
                    + (f" ({tr.reason})" if tr.reason and tr.verdict == "skip" else "") + f" [{tr.wall_s:.0f} s]",
                    n, ok={"pass": True, "fail": False}.get(tr.verdict), item=plan, result=tr))
        return tr

    try:
        while found.failing is None and left() > 0:
            plan = random_plan(rng, host, vocabulary)
            if plan.cost_s() > left():
                plan = dataclasses.replace(plan, kinds=plan.kinds[:1])
                if plan.cost_s() > left():
                    break
            if trial(plan, "explore").verdict != "fail":
                continue
            if trial(plan, "confirm").verdict == "fail":
                found.failing = plan
            else:
                found.flaky.append(plan)
        if found.failing is not None:
            found.minimal = shrink(found.failing, trial, left)
    except (Interrupted, KeyboardInterrupt) as exc:
        found.stopped = getattr(exc, "reason", "") or "SIGINT"
    finally:
        found.elapsed_s = clock() - t0
        write(found, out)
    return found


def shrink(plan: Plan, trial: Callable[[Plan, str], Trial], left: Callable[[], float]) -> Plan:
    """The simplest plan reachable from ``plan`` by one-step simplifications that still fail."""
    best = plan
    progress = True
    while progress:
        progress = False
        for cand in simpler(best):
            if complexity(cand) >= complexity(best) or cand.cost_s() > left():
                continue
            if trial(cand, "shrink").verdict == "fail":
                best, progress = cand, True
                break
    if best != plan and left() > best.cost_s():
        if trial(best, "final").verdict != "fail":      # not reproducible: keep the confirmed one
            return plan
    return best


def gate_judge(limits: dict | None, bugs: tuple[str, ...] = (), allow: tuple[str, ...] = ()):
    """The gate as explore's judge (``analysis.gate.judge``, aimed at ``bugs``, ``allow`` passing); a
    question this plan cannot show is a skip."""
    from restartbench.analysis import gate

    def judge(outcome: RunOutcome) -> "gate.Judged":
        try:
            return gate.judge(outcome.path, limits, bugs=bugs, allow=allow)
        except gate.GateInputError as exc:               # this plan cannot show the asked finding
            return gate.Judged("skip", reason=str(exc))
    return judge


def write(found: Exploration, out: Path) -> None:
    """explore.json, minimal.toml (when something failed) and report.md."""
    results.write_json(out / "explore.json", found.describe())
    if found.minimal is not None:
        d = found.describe()
        comment = (f"found by `restartbench explore --target {found.target} --seed {found.seed}`\n"
                   f"fails the gate: {', '.join(d['minimal_failed_checks']) or '?'}\n"
                   f"findings: {', '.join(d['minimal_findings']) or 'none'}\n"
                   f"replay: restartbench run --target {found.target} --scenario {out / 'minimal.toml'} --gate")
        results.write_atomic(out / "minimal.toml", found.minimal.to_toml(comment))
    results.write_atomic(out / "report.md", report_text(found, out))


def report_text(found: Exploration, out: Path) -> str:
    """A short account of the exploration, in Markdown."""
    d = found.describe()
    cov = d["coverage"]
    lines = [f"# restartbench explore: {found.target}", "",
             f"seed {found.seed}, budget {found.budget_s:g} s, used {found.elapsed_s:.0f} s"
             + (f", stopped early ({found.stopped})" if found.stopped else ""), "",
             f"explored {cov['plans'][0]} random plan(s) — kinds {', '.join(cov['kinds']) or '–'}; spacing "
             f"{', '.join(f'{s:g}' for s in cov['spacing_s']) or '–'} s; users "
             f"{', '.join(map(str, cov['users'])) or '–'}; {', '.join(cov['models']) or '–'} model; "
             f"{', '.join(cov['connections']) or '–'} connections; processes "
             f"{', '.join(map(str, cov['processes'])) or '–'}", ""]
    if found.minimal is not None:
        lines += [f"**failing plan**: {found.failing.label()}", f"**minimal failing plan**: {found.minimal.label()}",
                  f"fails: {', '.join(d['minimal_failed_checks'])}",
                  f"findings: {', '.join(d['minimal_findings']) or 'none'}",
                  f"replay: `restartbench run --target {found.target} --scenario {out / 'minimal.toml'} --gate`", ""]
    else:
        lines += ["nothing failed the gate within the budget" + (" (stopped early)" if found.stopped else ""), ""]
    if found.flaky:
        lines += ["failed once, passed on the re-run (flaky, not pursued):"] + [f"- {p.label()}" for p in found.flaky] + [""]
    lines += ["| # | purpose | plan | verdict | failed checks | findings | s | run |", "|---|---|---|---|---|---|---|---|"]
    for n, t in enumerate(found.trials, 1):
        lines.append(f"| {n} | {t.purpose} | {t.plan.label()} | {t.verdict} | {', '.join(t.failed_checks) or t.reason} "
                     f"| {', '.join(t.findings)} | {t.wall_s:.0f} | {Path(t.path).name if t.path else ''} |")
    return "\n".join(lines) + "\n"
