"""The restart gate: absolute limits per run, and a baseline comparison over per-restart samples.
Every row judges a number defined in docs/metrics.md (its table "The gate's checks" maps rows to keys).

``evaluate`` returns a GateResult whose ``exit_code`` is the verdict (0 pass, 1 fail). Input that
cannot be judged (a missing or malformed limits file, no candidate runs, an unreadable run)
raises GateInputError, which the CLI maps to exit code 2.

The baseline comparison follows asv's rule for its own samples: a difference counts only when it
is both significant (Mann–Whitney U, one-sided "candidate worse", p < alpha) and large enough
(relative effect >= min_effect). Timing samples of emulated runs are never compared with native.
"""

from __future__ import annotations

import copy
import functools
import math
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from rich.table import Table
from rich.text import Text
from scipy.stats import binomtest, mannwhitneyu

from restartbench.metadata import SummaryInfo
from restartbench.results import FormatError, Run, open_runs

from .catalogue import NO_MATCH
from .compare import fmt
from .findings import (ALWAYS_JUDGED, Finding, asks, attribute, check_ids, checks_of, counts, family,
                       fisher_greater, findings, hosts_of, sites)
from .summary import Analysis, analyses

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "gates" / "default.toml"

#: the sections and keys a limits file may set; their values when a file leaves them out are
#: gates/default.toml's (read by ``defaults``); [analysis] keys left unset there mean the run's own
KEYS: dict[str, tuple[str, ...]] = {
    "limits": ("run_completed", "lingering_max", "window_timeout_rate_max", "all_recover",
               "recovery_p95_s_max", "rss_slope_max", "fd_slope_max", "crashes_max",
               "crashed_restarts_rate_max", "stop_hangs_max", "survivors_max", "stuck_at_idle_share_max",
               "isolation_errors_max"),
    # an emulated run (qemu-user) is judged with these in place of [limits]: its timings and its RSS
    "emulated": ("recovery_p95_s_max", "rss_slope_max"),
    "baseline": ("alpha", "min_effect", "samples"),
    "findings": ("alpha",),
    "analysis": ("window_s", "grace_s"),
}
OPTIONAL = {"analysis": ("window_s", "grace_s")}       # may be left unset (None)
SWITCHES = ("run_completed", "all_recover")          # true/false
#: per-restart samples the baseline comparison may use: how the effect is measured
SAMPLES = {"recovery_s": "median", "timeout_rate": "mean", "restart_api_s": "median"}
VERDICTS = ("pass", "fail", "skip")
#: significance for "replaced processes crash more often than the tolerated rate" (as the baseline's)
CRASH_ALPHA = 0.002


class GateInputError(ValueError):
    """Input the gate cannot judge; the message is one line saying what to fix."""


# -- limits -----------------------------------------------------------------------------------

@functools.cache
def _shipped() -> dict[str, dict[str, Any]]:
    """gates/default.toml, checked: every key of ``KEYS`` set (but the optional ones)."""
    try:
        data = tomllib.loads(DEFAULT_PATH.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise GateInputError(f"{DEFAULT_PATH}: the shipped limits cannot be read ({exc}); restore it "
                             f"with git checkout gates/default.toml") from None
    out: dict[str, dict[str, Any]] = {section: dict.fromkeys(OPTIONAL.get(section, ())) for section in KEYS}
    merged = _merge(out, data, str(DEFAULT_PATH))
    missing = [f"[{sec}] {key}" for sec, keys in KEYS.items() for key in keys
               if key not in merged[sec] and key not in OPTIONAL.get(sec, ()) and sec != "emulated"]
    if missing:
        raise GateInputError(f"{DEFAULT_PATH}: the shipped limits lack {', '.join(missing)}; restore it "
                             f"with git checkout gates/default.toml")
    return merged


def defaults() -> dict[str, dict[str, Any]]:
    """The shipped limits (gates/default.toml), a fresh copy."""
    return copy.deepcopy(_shipped())


def load_limits(path: Path | str | None = None) -> dict[str, dict[str, Any]]:
    """Read a limits TOML file over the defaults (``None``: the defaults, gates/default.toml). Unknown
    sections or keys and values of the wrong type raise GateInputError."""
    if path is None:
        return defaults()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise GateInputError(f"limits file {path} not found; pass an existing TOML file "
                             f"(see gates/default.toml)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GateInputError(f"limits file {path}: cannot read it ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise GateInputError(f"limits file {path}: not valid TOML ({exc})") from None
    return validate_limits(data, str(path))


def validate_limits(data: dict[str, Any], where: str = "limits") -> dict[str, dict[str, Any]]:
    """``data`` merged over the defaults, checked key by key."""
    return _merge(defaults(), data, where)


def _merge(out: dict[str, dict[str, Any]], data: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    for section, values in data.items():
        if section not in KEYS:
            raise GateInputError(f"{where}: unknown section [{section}]; known: "
                                 f"{', '.join(f'[{s}]' for s in KEYS)}")
        if not isinstance(values, dict):
            raise GateInputError(f"{where}: {section} must be a table ([{section}])")
        for key, value in values.items():
            if key not in KEYS[section]:
                raise GateInputError(f"{where}: unknown key {key!r} in [{section}]; known: "
                                     f"{', '.join(KEYS[section])}")
            out[section][key] = _check_value(section, key, value, where)
    return out


def _check_value(section: str, key: str, value: Any, where: str) -> Any:
    def bad(expected: str) -> GateInputError:
        return GateInputError(f"{where}: [{section}] {key} = {value!r}: expected {expected}")

    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if section in ("limits", "emulated"):
        if key in SWITCHES:
            if not isinstance(value, bool):
                raise bad("true or false")
            return value
        if value is False:
            return False
        if not number or value < 0 or not math.isfinite(value):
            raise bad("a number >= 0, or false to skip the check")
        return value
    if section == "baseline":
        if key == "samples":
            if not isinstance(value, list) or any(v not in SAMPLES for v in value):
                raise bad(f"a list of {', '.join(map(repr, SAMPLES))}")
            return value
        if not number or (key == "alpha" and not 0 < value < 1) or value < 0:
            raise bad("0 < alpha < 1" if key == "alpha" else "a number >= 0")
        return float(value)
    if section == "findings":
        if not number or not 0 < value < 1:
            raise bad("0 < alpha < 1")
        return float(value)
    if not number or value <= 0:
        raise bad("a number of seconds > 0")
    return float(value)


# -- result -----------------------------------------------------------------------------------

@dataclass
class GateRow:
    check: str
    scope: str          # a run id, or "candidates vs baseline"
    value: str
    limit: str
    verdict: str        # pass | fail | skip
    note: str = ""
    findings: list[str] = field(default_factory=list)   # a failing row: the findings it is attributed to


@dataclass
class Aim:
    """The question a gate answers. ``bugs``: judge only rows attributed to these findings (ids, bugs
    their faces share, unnamed stems); ``allow``: rows attributed only to these pass, listed."""

    bugs: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {"bugs": list(self.bugs), "allow": list(self.allow)}


@dataclass
class GateResult:
    rows: list[GateRow] = field(default_factory=list)
    known: dict[str, list[dict[str, Any]]] = field(default_factory=dict)   # run id -> known bugs matched
    findings: dict[str, list[Finding]] = field(default_factory=dict)      # run id -> its findings
    aim: Aim = field(default_factory=Aim)
    #: run id -> finding id -> "build" | "arch effect" | "emulation effect" (a foreign-arch run with controls)
    effects: dict[str, dict[str, str]] = field(default_factory=dict)
    controls: dict[str, list[str]] = field(default_factory=dict)          # run id -> its control runs
    baseline_known: list[str] = field(default_factory=list)   # only_new: the findings the baseline showed

    def outcome(self, row: GateRow) -> str:
        """The row's verdict for the question asked: a failing row attributed to none of the asked
        findings is ``not asked``; one whose findings are all allowed is ``allowed``; one whose
        findings are all emulation effects (its control shows them as often) ``emulation effect``."""
        if row.verdict != "fail" or row.check in ALWAYS_JUDGED:
            return row.verdict
        ids = row.findings
        mine = {f.id: f for f in self.findings.get(row.scope, [])}
        found = [mine.get(i) or {"id": i, "bug": family(i)} for i in ids]    # baseline rows: by id alone
        if self.aim.bugs and not any(asks(self.aim.bugs, f) for f in found):
            return "not asked"
        if ids and self.aim.allow and all(asks(self.aim.allow, f) for f in found):
            return "allowed"
        effects = self.effects.get(row.scope) or {}
        if ids and effects and all(effects.get(i) == "emulation effect" for i in ids):
            return "emulation effect"
        return "fail"

    def explained(self, row: GateRow) -> str:
        """The known bugs that explain a failing row, "no known signature" when none does (its
        findings are unnamed), "" when it passed."""
        if row.verdict != "fail" or row.scope not in self.known:
            return ""
        known = {b["id"] for b in self.known[row.scope]}
        return ", ".join(i for i in row.findings if i in known) or NO_MATCH

    def known_lines(self) -> list[str]:
        """One line per (run, finding) (``finding_lines``): what the CLI and the report print under the table."""
        return finding_lines(self)

    @property
    def passed(self) -> bool:
        return not self.failures()

    @property
    def exit_code(self) -> int:
        """0 when no check failed (under the question asked), 1 otherwise."""
        return 0 if self.passed else 1

    def failures(self) -> list[GateRow]:
        """The rows that fail the question asked (``outcome`` fail)."""
        return [r for r in self.rows if self.outcome(r) == "fail"]

    def failing_findings(self, scope: str) -> list[str]:
        """The ids of a run's findings that fail the question asked."""
        return list(dict.fromkeys(i for r in self.failures() if r.scope == scope for i in r.findings))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([{**asdict(r), "findings": ", ".join(r.findings), "outcome": self.outcome(r),
                              "known_bug": self.explained(r)} for r in self.rows],
                            columns=["check", "scope", "value", "limit", "verdict", "note", "findings",
                                     "outcome", "known_bug"])

    def findings_frame(self) -> pd.DataFrame:
        """One row per (run, finding): kind, rate, where, the checks it fails, and what it is to the
        question asked (asked / not asked / allowed / emulation effect / arch effect / build)."""
        rows = []
        for scope, found in self.findings.items():
            effects = self.effects.get(scope) or {}
            failing = set(self.failing_findings(scope))
            for f in found:
                role = ("fails" if f.id in failing else
                        "allowed" if f.failing and self.aim.allow and asks(self.aim.allow, f) else
                        "not asked" if f.failing and self.aim.bugs and not asks(self.aim.bugs, f) else
                        "emulation effect" if effects.get(f.id) == "emulation effect" else
                        "fails no check" if not f.failing else "listed")
                rows.append({"scope": scope, "id": f.id, "kind": f.kind, "k": f.k, "n": f.n, "per": f.per,
                             "restarts": f.restarts, "failing": f.failing, "effect": effects.get(f.id, ""),
                             "verdict": role, "title": f.title})
        return pd.DataFrame(rows, columns=["scope", "id", "kind", "k", "n", "per", "restarts", "failing",
                                           "effect", "verdict", "title"])

    def add(self, check: str, scope: str, value: str, limit: str, verdict: str, note: str = "",
            findings: Sequence[str] = ()) -> None:
        assert verdict in VERDICTS
        self.rows.append(GateRow(check, scope, value, limit, verdict, note, list(findings)))


# -- evaluation -------------------------------------------------------------------------------

@dataclass
class Judged:
    """One run judged by the gate (``judge``): what explore, bisect and the run command act on."""

    verdict: str                                           # pass | fail | skip (could not be judged)
    checks: list[str] = field(default_factory=list)        # the failing checks it judged
    findings: list[str] = field(default_factory=list)      # the findings that fail a check (asked or not)
    seen: list[str] = field(default_factory=list)          # every finding of the run
    reason: str = ""                                       # why it was skipped
    result: "GateResult | None" = None

    @property
    def passed(self) -> bool | None:
        return None if self.verdict == "skip" else self.verdict == "pass"


def judge(run: "Run | Analysis | Path | str", limits: dict[str, dict[str, Any]] | None = None, *,
          bugs: Sequence[str] = (), allow: Sequence[str] = (), checks: Sequence[str] = (),
          controls: Sequence[Run | Analysis] = (), incomplete: bool = False) -> Judged:
    """The one way a run is judged: the gate (``evaluate``) on one run, aimed at ``bugs`` (findings) or
    ``checks`` (check names; else the whole gate), ``allow`` passing. A run that did not complete is
    skipped (``incomplete``: judged too, failing ``run_completed``). GateInputError when the question
    does not fit the run."""
    if not isinstance(run, (Run, Analysis)):
        run = open_runs([run])[0]
    plain = run.run if isinstance(run, Analysis) else run
    if plain.status != "complete" and not incomplete:
        return Judged("skip", reason=plain.info.reason or plain.status)
    result = evaluate([run], limits, bugs=bugs, allow=allow, controls=controls)
    failing = [r for r in result.rows if r.verdict == "fail" and r.check in checks] if checks \
        else result.failures()
    return Judged("pass" if not failing else "fail", checks=list(dict.fromkeys(r.check for r in failing)),
                  findings=list(dict.fromkeys(i for r in result.rows if r.verdict == "fail" for i in r.findings)),
                  seen=[f.id for fs in result.findings.values() for f in fs], result=result)


def evaluate(candidates: Sequence[Run | Analysis], limits: dict[str, dict[str, Any]] | None = None,
             baseline: Sequence[Run | Analysis] | None = None, alpha: float | None = None,
             min_effect: float | None = None, *, bugs: Sequence[str] = (), allow: Sequence[str] = (),
             controls: Sequence[Run | Analysis] = (), only_new: bool = False) -> GateResult:
    """Judge ``candidates`` against ``limits`` (from load_limits; None = defaults) and, if given,
    against ``baseline`` runs. ``alpha``/``min_effect`` default to the limits' [baseline]
    (0.002 and 0.10 as shipped). Runs are analysed afresh (never a stale summary.json); an Analysis
    made with the limits' W and grace is used as it is.

    ``bugs``/``allow``: the question (``Aim``): judge only the rows attributed to these findings / pass
    rows attributed only to those. ``controls``: runs whose run.json names a candidate as the run they
    control (``control.of``): a foreign-arch run's native and emulated controls, which decide whether
    each of its findings is the build's, the arch's or the emulator's (``classify``). Candidates that
    are themselves controls of another candidate are moved to ``controls``.

    ``only_new`` (with a baseline; a pull request against its base): a finding the baseline shows too is
    known — listed, allowed — unless its rate is significantly higher (its Fisher row fails); new ones fail."""
    if not candidates:
        raise GateInputError("no candidate runs to judge; pass at least one results directory")
    limits = defaults() if limits is None else limits
    analysis = limits.get("analysis", {})
    window_s, grace_s = analysis.get("window_s"), analysis.get("grace_s")
    try:
        check_ids(bugs, "--bug")
        check_ids(allow, "--allow")
    except ValueError as exc:
        raise GateInputError(str(exc)) from None
    result = GateResult(aim=Aim(tuple(bugs), tuple(allow)))
    pairs = _summaries(list(candidates) + list(controls), window_s, grace_s)
    ids = {run.run_id for run, _ in pairs}
    is_control = lambda run: run.info.control is not None and run.info.control.of in ids   # noqa: E731
    cand = [(r, s) for r, s in pairs if not is_control(r)]
    ctrl = [(r, s) for r, s in pairs if is_control(r)]
    if not cand:
        raise GateInputError("every run given is a control of another: pass the run they control too")
    for run, summary in cand:
        judge_run(result, run, summary, limits_for(summary, limits))
    _check_aim(result, cand)
    if ctrl:
        classify(result, cand, ctrl, limits)
    if baseline:
        base = _summaries(baseline, window_s, grace_s)
        kinds = {s["run"]["target"].get("kind") for _, s in cand}
        other = {s["run"]["target"].get("kind") for _, s in base} - kinds
        if other:
            raise GateInputError(f"the baseline runs are of host {', '.join(sorted(map(str, other)))}, the candidates "
                                 f"of {', '.join(sorted(map(str, kinds)))}: a baseline must be runs of the same "
                                 f"host (e.g. the base branch's build of it)")
        b = limits.get("baseline", {})
        compare_baseline(result, cand, base,
                         alpha=b.get("alpha", 0.002) if alpha is None else alpha,
                         min_effect=b.get("min_effect", 0.10) if min_effect is None else min_effect,
                         samples=b.get("samples", list(SAMPLES)))
        scratch = GateResult()
        for run, summary in base:
            judge_run(scratch, run, summary, limits_for(summary, limits))
        compare_findings(result, cand, [(s, scratch.findings[r.run_id]) for r, s in base],
                         limits["findings"]["alpha"])
        if only_new:
            known = sorted({f.id for fs in scratch.findings.values() for f in fs})
            result.aim = Aim(result.aim.bugs, tuple(dict.fromkeys([*result.aim.allow, *known])))
            result.baseline_known = known
    elif only_new:
        raise GateInputError("--only-new needs --baseline: the runs whose findings are already known")
    return result


def limits_for(summary: dict[str, Any], limits: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The [limits] a run is judged with: [emulated] over them for an emulated run."""
    emulated = SummaryInfo.of(summary).target.emulated
    return {**limits["limits"], **(limits["emulated"] if emulated else {})}


def judge_run(result: GateResult, run: Run, summary: dict[str, Any], limits: dict[str, Any]) -> None:
    """The absolute checks of one run, each failing row attributed to its findings, and the run's
    findings (known bugs matched, unnamed ones) in ``result.findings``."""
    first = len(result.rows)
    check_run(result, run, summary, limits)
    present = sites(summary, run.meta)
    known = summary.get("known_bugs") or []
    failing: dict[str, list[str]] = {}
    for row in result.rows[first:]:
        if row.verdict == "fail":
            row.findings = attribute(row.check, known, present)
            failing.setdefault(row.check, []).extend(row.findings)
    result.known[run.run_id] = known
    result.findings[run.run_id] = findings(summary, run.meta, failing)


def run_findings(run: Run, summary: dict[str, Any], limits: dict[str, dict[str, Any]] | None = None) -> list[Finding]:
    """A run's findings with ``limits`` (None: gates/default.toml): what summary.json carries."""
    limits = load_limits() if limits is None else limits
    scratch = GateResult()
    judge_run(scratch, run, summary, limits_for(summary, limits))
    return scratch.findings[run.run_id]


def _check_aim(result: GateResult, cand: list[tuple[Run, dict[str, Any]]]) -> None:
    """Every asked finding must be one these runs can show: it explains a gate check, that check was
    judged (not skipped) in a run, and a run is of a host it concerns. Else GateInputError."""
    kinds = {str(s["run"]["target"].get("kind")) for _, s in cand}
    for fid in result.aim.bugs:
        checks = checks_of(fid)
        if not checks:
            raise GateInputError(f"--bug {fid} explains no gate check (it is listed with its rate, never "
                                 f"judged): ask about a finding that fails a check")
        hosts = hosts_of(fid)
        if "any" not in hosts and not hosts & kinds:
            raise GateInputError(f"--bug {fid} is a bug of {', '.join(sorted(hosts))}; these runs are of "
                                 f"{', '.join(sorted(kinds))}: give runs of a {'/'.join(sorted(hosts))} target")
        judged = [r for r in result.rows if r.check in checks and r.verdict in ("pass", "fail")]
        if not judged:
            why = sorted({f"{r.check}: {r.note}" for r in result.rows if r.check in checks and r.note})
            raise GateInputError(f"--bug {fid}: no run given can show it: its checks ({', '.join(checks)}) "
                                 f"were judged in none of them" + (f" ({'; '.join(why)[:200]})" if why else "")
                                 + "; give runs that can (e.g. 3+ restarts, the host's log)")


def classify(result: GateResult, cand: list[tuple[Run, dict[str, Any]]],
             ctrl: list[tuple[Run, dict[str, Any]]], limits: dict[str, dict[str, Any]]) -> None:
    """Each finding of a foreign-arch run with controls: ``build`` when its bug fails the native
    control too (the build has it without emulation), else ``arch effect`` when its rate is
    significantly above the emulated control's (one-sided Fisher, p < [findings] alpha), else
    ``emulation effect`` (shown, never failing: the emulator, not the arch)."""
    alpha = limits["findings"]["alpha"]
    for run, summary in cand:
        mine = [(r, s) for r, s in ctrl if r.info.control.of == run.run_id]
        if not mine:
            continue
        result.controls[run.run_id] = [r.run_id for r, _ in mine]
        scratch = GateResult()
        judged: dict[str, list[Finding]] = {}
        for r, s in mine:
            judge_run(scratch, r, s, limits_for(s, limits))
            judged[r.info.control.kind] = scratch.findings[r.run_id]
            result.findings[r.run_id] = scratch.findings[r.run_id]
        emulated = [(s, scratch.findings[r.run_id]) for r, s in mine
                    if r.info.control.kind == "emulated"]
        native_bugs = {f.bug for f in judged.get("native", []) if f.failing}
        effects = {}
        for f in result.findings[run.run_id]:
            if "native" in judged and f.bug in native_bugs:
                effects[f.id] = "build"
            elif emulated:
                k0, n0 = counts(emulated, f.id)
                effects[f.id] = "arch effect" if fisher_greater(f.k, f.n, k0, n0) < alpha else "emulation effect"
        result.effects[run.run_id] = effects


def compare_findings(result: GateResult, cand: list[tuple[Run, dict[str, Any]]],
                     base: list[tuple[dict[str, Any], list[Finding]]], alpha: float) -> None:
    """One row per finding of the candidates: its rate against the baseline's (one-sided Fisher's
    exact test on the counts); a regression when p < ``alpha``; a finding the baseline never showed
    is called new."""
    scope = "candidates vs baseline"
    mine = [(s, result.findings[r.run_id]) for r, s in cand]
    for fid in dict.fromkeys(f.id for _, found in mine for f in found):
        kc, nc = counts(mine, fid)
        kb, nb = counts(base, fid)
        p = fisher_greater(kc, nc, kb, nb)
        worse = p < alpha
        unit = "restarts" if nc > len(mine) else "runs"
        note = ("new: the baseline never showed it" if not kb else "") + \
               ("; significantly more often" if worse and kb else " and significantly often" if worse else "")
        result.add(f"finding {fid}", scope, f"{kc}/{nc} vs {kb}/{nb} {unit} (p={p:.2g})", f"Fisher p ≥ {alpha:g}",
                   "fail" if worse else "pass", note.strip("; "), findings=[fid] if worse else [])


def _summaries(items: Sequence[Run | Analysis], window_s: float | None,
               grace_s: float | None) -> list[tuple[Run, dict[str, Any]]]:
    try:
        return [(a.run, a.summary()) for a in analyses(items, window_s, grace_s)]
    except FormatError as exc:
        raise GateInputError(str(exc).splitlines()[0]) from exc


MIN_TREND_RESTARTS = 3


def check_run(result: GateResult, run: Run, s: dict[str, Any], limits: dict[str, Any]) -> None:
    """The absolute checks of one run."""
    scope = run.run_id
    o = s["overall"]
    restarts = s["restarts"]
    emulated = SummaryInfo.of(s).target.emulated
    timing_note = "emulated run: timings are the emulator's" if emulated else ""

    def upper(check: str, key: str, value: Any, unit: str, skip_note: str, note: str = "", fail_note: str = "") -> None:
        upper_limit(result, scope, check, limits.get(key), value, unit, skip_note, note=note, fail_note=fail_note)

    if limits.get("run_completed"):
        status = s["run"]["status"]
        result.add("run completed", scope, status, "complete",
                   "pass" if status == "complete" else "fail", s["run"].get("reason") or "")
        planned = run.info.restart_count
        if isinstance(planned, int):
            done = o["restarts"]
            result.add("restarts performed", scope, str(done), f"= {planned}",
                       "pass" if done >= planned else "fail",
                       "" if done >= planned else "fewer restarts were sent than planned")
    if not restarts:
        result.add("restart checks", scope, "0 restarts", "–", "skip",
                   "no restart in this run: nothing to judge")
        return

    judged = [r["lingering"] for r in restarts if r["lingering"] is not None]
    worst = max(judged) if judged else None
    unjudged = len(restarts) - len(judged)
    grace = s.get("params", {}).get("grace_s")
    what = "old app processes" if "app" in (s.get("params", {}).get("app_roles") or []) else "old host processes"
    late = _which(restarts, lambda r: (r["lingering"] or 0) > (limits.get("lingering_max") or 0),
                  "after restart")
    upper("lingering", "lingering_max", worst, "count",
          "the census ended before grace after every restart",
          f"{unjudged} restart(s) not judged (census ended before grace)" if unjudged else
          (f"{what} still running {grace:g} s {late}: they did not exit when they were replaced"
           if late and grace else late))
    upper("window timeout rate", "window_timeout_rate_max", o["window_timeout_rate"], "rate",
          "no requests in restart windows", timing_note)
    if limits.get("all_recover"):
        lost = [r for r in restarts if not r["recovered"]]
        truncated = sum(1 for r in lost if r["window_truncated"])
        note = _which(restarts, lambda r: not r["recovered"], "no request was answered after restart")
        note += " (requests hang or fail)" if note else ""
        if truncated:
            note += f"; {truncated} of them cut short by the end of the load"
        result.add("every restart recovers", scope, f"{len(lost)}/{len(restarts)} unrecovered",
                   "0 unrecovered", "fail" if lost else "pass", note)
    upper("recovery p95", "recovery_p95_s_max", o["recovery_p95_s"], "s",
          "no restart recovered", timing_note + (", [emulated] limit" if emulated else ""))
    # a growth per restart needs a trend (3+ restarts) over trees of one shape (a process-count change
    # grows the tree by design)
    kinds = {r.get("kind") for r in restarts}
    # a plan with scripted changes may add and remove apps: its growth is judged only over one tree shape
    shapes = {r.get("tree_processes_before") for r in restarts} | {
        ((s.get("retention") or {}).get("end_loaded") or {}).get("processes")} if "change" in kinds else set()
    no_trend = (f"{len(restarts)} restart(s): a growth trend needs {MIN_TREND_RESTARTS}"
                if len(restarts) < MIN_TREND_RESTARTS else
                "process-count changes resize the tree" if "processes" in kinds else
                "the plan's changes resize the tree (apps added and removed)" if len(shapes) > 1 else "")
    upper("RSS growth per restart", "rss_slope_max", None if no_trend else o["rss_slope"], "bytes",
          no_trend or "fewer than two census points",
          "emulated run: RSS is qemu's, [emulated] limit" if emulated else "",
          fail_note=grows_most(o.get("rss_slope_by_role"), "bytes"))
    upper("fd growth per restart", "fd_slope_max", None if no_trend else o["fd_slope"], "fds",
          no_trend or "fewer than two census points", fail_note=grows_most(o.get("fd_slope_by_role"), "fds"))
    iso = o.get("isolation")
    upper("other app disturbed", "isolation_errors_max", None if not iso else iso["window_not_ok"], "count",
          "no second app in this run (scenario second_app)",
          f"{iso['requests']} /other requests" if iso else "",
          fail_note=_which(iso["per_restart"], lambda r: r["not_ok"] > 0,
                           "; /other requests failed after action") if iso else "")
    host_checks(result, run, s, limits)


def host_checks(result: GateResult, run: Run, s: dict[str, Any], limits: dict[str, Any]) -> None:
    """Crashes, the shutdown and what the host still holds at idle, each its own limit. Crashes
    and stuck counters come from the host's own reports (Unit's log and /status); a host that has
    none (wasmtime: one process, whose crash ends the run) is skipped there.

    Two are not counts, because on sound Unit builds (1.32.1, 1.35.0) the events are rare races
    that a limit of 0 would turn into a coin toss: a replaced app process that crashes on its way
    out (SIGSEGV with requests active: 1.32.1 ~8%, 1.35.0 ~3% of restarts under load; 1.32.0:
    every restart) is judged as a rate (``crash_rate_check``), and the few requests dispatched at
    the instant of a restart that are never answered (``requests.active`` > 0 for good: every
    build, in ~1 of 4 runs under load; 1.32.0 at low load: all of them) as a share of the requests
    sent in restart windows."""
    scope = run.run_id
    own = s.get("host_checks") or {}
    kind = s["run"]["target"].get("kind") or "the host"
    alpha = CRASH_ALPHA

    def check(name: str, key: str, value: float | None, shown: str, note: str, skip_note: str = "",
              unit_: str = "count") -> None:
        upper_limit(result, scope, name, limits.get(key), value, unit_, skip_note, fail_note=note, shown=shown)

    crashes = own.get("crashes") if own.get("applicable") else None
    measured = bool(crashes and crashes.get("measured"))
    no_log = "no host.log in the run" if crashes else f"{kind} does not report its processes' exits"
    serving = crashes.get("serving", crashes.get("total")) if measured else None
    check("crashes while serving", "crashes_max", serving, str(serving),
          _crash_note(crashes or {}, leaving=False), no_log)
    n = len(s["restarts"])
    left = len(crashes.get("leaving_restarts", [])) if measured else None
    crash_rate_check(result, scope, left, n, limits.get("crashed_restarts_rate_max"), alpha,
                     _crash_note(crashes or {}, leaving=True), no_log if left is None else "no restarts")
    hangs = run.info.findings_of("stop_hang")
    grace = run.info.stop_grace_s
    check("shutdown hang", "stop_hangs_max", len(hangs), str(len(hangs)),
          f"the {kind} main process did not exit {f'within {grace:g} s ' if grace else ''}after SIGTERM "
          f"(it waits for processes that do not exit); the suite killed it")
    survivors = list(run.info.survivors)
    roles = sorted({str(p.get("role") or "?") for p in survivors})
    check("processes outliving the stop", "survivors_max", len(survivors), str(len(survivors)),
          f"{len(survivors)} {kind} process(es) ({', '.join(roles)}) still alive after the stop; killed")
    idle = own.get("idle") or {}
    held = {k: v for k, v in (idle.get("status") or {}).items() if v > 0}
    stuck = int(max(held.values(), default=0))
    sent = (s.get("phases", {}).get("windows") or {}).get("requests") or 0
    measured = own.get("applicable") and idle.get("stuck") is not None
    check("requests stuck at idle", "stuck_at_idle_share_max", stuck / sent if measured and sent else None,
          f"{stuck} ({stuck / sent:.3%} of window requests)" if measured and sent else "–",
          f"{kind}'s status counters after the load ended still count " +
          ", ".join(f"{k} = {v:g}" for k, v in held.items()) +
          ": requests never answered, connections never closed",
          f"{kind} reports no request/connection counters" if not own.get("applicable")
          else "no /status sample after the load ended" if not measured else "no requests in restart windows",
          "rate")


def crash_rate_check(result: GateResult, scope: str, k: int | None, n: int, rate: float | bool | None,
                     alpha: float, note: str, skip_note: str) -> None:
    """``k`` of ``n`` restarts saw a replaced process crash: fail when that is significantly more
    than the tolerated ``rate`` (one-sided binomial test, p < ``alpha``). A sound build's rare race
    (1.32.1: ~8% of restarts under load) then never fails a run, while "at every restart" (1.32.0)
    fails from 3 restarts on; with fewer restarts no count can prove it, and the row says so."""
    check = "restarts whose old processes crashed"
    if rate is False:
        result.add(check, scope, "–" if k is None else f"{k}/{n}", "off", "skip", "disabled in the limits file")
        return
    limit = f"rate ≤ {rate:.0%} (binomial p ≥ {alpha:g})"
    if k is None or not n:
        result.add(check, scope, "–", limit, "skip", skip_note)
        return
    p = float(binomtest(k, n, rate, alternative="greater").pvalue) if k else 1.0
    value = f"{k}/{n}" + (f" (p={p:.2g})" if k else "")
    if rate ** n >= alpha and k:                   # even k = n could not be told from the rate
        result.add(check, scope, value, limit, "skip", f"too few restarts to tell ({n}): " + note)
        return
    result.add(check, scope, value, limit, "fail" if p < alpha else "pass", note if p < alpha else "")


def _crash_note(crashes: dict[str, Any], leaving: bool) -> str:
    """What crashed, where, and one line of the host's log, for the crashes that were ``leaving``
    (replaced at a restart) or not."""
    mine = [e for e in crashes.get("examples", []) if e.get("signal_name") and bool(e.get("leaving")) == leaving]
    if not mine:
        return ""
    kinds = ", ".join(f"{n}× {k}" for k, n in pd.Series([f"{e['role']} {e['signal_name']}" for e in mine])
                      .value_counts().items())
    if leaving:
        where = (f"old app processes crashed instead of exiting after restart "
                 f"{', '.join(map(str, crashes.get('leaving_restarts', [])))} ({kinds})")
    else:
        at = sorted({e["restart"] for e in mine if e.get("restart") is not None})
        where = f"processes crashed while serving ({kinds})" + (f" after restart {', '.join(map(str, at))}" if at else "")
        if any(e.get("phase") == "shutdown" for e in mine):
            where += ", during the shutdown"
    said = mine[0]["line"].split("] ", 1)[-1]
    return f'{where}; {crashes.get("host") or "the host"} logged "{said}"'



def upper_limit(result: GateResult, scope: str, check: str, limit: Any, value: Any, unit: str,
                skip_note: str, note: str = "", fail_note: str = "", shown: str | None = None) -> None:
    """One ``value ≤ limit`` row: skipped when the limit is ``False`` (off) or the value unknown.
    ``note`` goes on every judged row, ``fail_note`` only on a failing one; ``shown`` is the value
    as displayed (default: formatted in ``unit``)."""
    text = "–" if value is None else (shown if shown is not None else fmt(value, unit))
    if limit is False:
        result.add(check, scope, text, "off", "skip", "disabled in the limits file")
    elif value is None:
        result.add(check, scope, "–", f"≤ {fmt(limit, unit)}", "skip", skip_note)
    else:
        bad = value > limit
        result.add(check, scope, text, f"≤ {fmt(limit, unit)}", "fail" if bad else "pass",
                   note + (fail_note if bad else ""))


def grows_most(by_role: dict[str, float] | None, unit: str) -> str:
    """The role whose total grows most per restart, for a failing growth row ("" when none grows)."""
    grows = {r: v for r, v in (by_role or {}).items() if v is not None and np.isfinite(v) and v > 0}
    if not grows:
        return ""
    role = max(grows, key=grows.get)
    return f"; grows most in {role} (+{fmt(grows[role], unit)} per restart)"


def _which(restarts: list[dict[str, Any]], bad: Any, what: str) -> str:
    idx = [str(r["index"] if r["index"] is not None else n) for n, r in enumerate(restarts) if bad(r)]
    if not idx:
        return ""
    more = f" (+{len(idx) - 8} more)" if len(idx) > 8 else ""
    return f"{what} {', '.join(idx[:8])}{more}"


def restart_samples(summaries: Sequence[dict[str, Any]], name: str) -> np.ndarray:
    """Per-restart values of ``name`` pooled over runs. Unrecovered restarts count as +inf
    recovery (worse than any recovery; the rank test handles them exactly)."""
    values = []
    for s in summaries:
        for r in s["restarts"]:
            if name == "recovery_s" and not r["recovered"]:
                values.append(np.inf)
            elif r.get(name) is not None:
                values.append(float(r[name]))
    return np.asarray(values, dtype="float64")


def relative_effect(cand: np.ndarray, base: np.ndarray, how: str) -> float:
    """(candidate - baseline) / baseline of the medians or means; inf when only the candidate
    is worse than a zero baseline."""
    c = float(np.median(cand) if how == "median" else np.mean(cand))
    b = float(np.median(base) if how == "median" else np.mean(base))
    if math.isinf(c) or math.isinf(b):
        return np.inf if c > b else 0.0
    if b == 0:
        return np.inf if c > 0 else 0.0
    return (c - b) / abs(b)


def compare_baseline(result: GateResult, cand: list[tuple[Run, dict[str, Any]]],
                     base: list[tuple[Run, dict[str, Any]]], alpha: float, min_effect: float,
                     samples: Sequence[str]) -> None:
    """Mann–Whitney U over pooled per-restart samples, one row per sample kind."""
    scope = "candidates vs baseline"
    limit = f"p < {alpha:g} and ≥ +{min_effect:.0%}"
    emu = {SummaryInfo.of(s).target.emulated for _, s in cand + base}
    refuse = len(emu) > 1
    targets = {(s["run"]["target"].get("kind"), s["run"]["target"].get("arch")) for _, s in cand + base}
    for name in samples:
        check = f"baseline {name}"
        if refuse:
            result.add(check, scope, "–", limit, "skip",
                       "refused: emulated and native runs' timings are not comparable")
            continue
        c = restart_samples([s for _, s in cand], name)
        b = restart_samples([s for _, s in base], name)
        if len(c) < 2 or len(b) < 2:
            result.add(check, scope, f"n={len(c)}/{len(b)}", limit, "skip",
                       "too few restarts to compare (need 2 on each side)")
            continue
        p = float(mannwhitneyu(c, b, alternative="greater").pvalue)
        p = 1.0 if math.isnan(p) else p                      # all values tied
        effect = relative_effect(c, b, SAMPLES[name])
        value = f"p={p:.2g}, {_effect(effect)} ({SAMPLES[name]}, n={len(c)}/{len(b)})"
        worse = p < alpha and effect >= min_effect
        note = "candidate worse" if worse else ""
        if min_p(len(c), len(b)) >= alpha and not worse:
            result.add(check, scope, value, limit, "skip",
                       f"too few restarts: p cannot go below {alpha:g} with n={len(c)}/{len(b)}")
            continue
        if len(targets) > 1 and not note:
            note = "runs of different hosts/arches pooled"
        result.add(check, scope, value, limit, "fail" if worse else "pass", note)


def min_p(n1: int, n2: int) -> float:
    """The smallest one-sided p an exact Mann–Whitney test can give for these sample sizes."""
    if n1 + n2 > 60:
        return 0.0
    return 1.0 / math.comb(n1 + n2, n1)


def _effect(effect: float) -> str:
    return "+inf" if math.isinf(effect) else f"{effect:+.0%}"


# -- presentation -----------------------------------------------------------------------------

STYLE = {"pass": "green", "fail": "bold red", "skip": "yellow", "not asked": "dim", "allowed": "cyan",
         "emulation effect": "cyan"}


def _short(scope: str) -> str:
    """A run id without its timestamp (``unit-1.32.0-x86_64-periodic-restart-813a``), for the scope
    column of a table over several runs."""
    return re.sub(r"^\d{8}-\d{6}-", "", scope)


def verdict_line(result: GateResult) -> str:
    """``verdict: FAIL (2 check(s)) (exit 1)``, with the question when one was asked."""
    verdict = "PASS" if result.passed else f"FAIL ({len(result.failures())} check(s))"
    asked = ""
    if result.aim.bugs:
        asked += f" — asked about {', '.join(result.aim.bugs)} only"
    if result.baseline_known:
        asked += f"; known from the baseline (allowed unless more frequent): {', '.join(result.baseline_known)}"
    extra = [a for a in result.aim.allow if a not in result.baseline_known]
    if extra:
        asked += f"; allowed: {', '.join(extra)}"
    return f"verdict: {verdict} (exit {result.exit_code}){asked}"


def finding_lines(result: GateResult) -> list[str]:
    """One line per (run, finding): id, rate, where, what it fails, what it is to the question; a known
    bug's upstream, version note and advice."""
    lines = []
    frame = result.findings_frame()
    for scope, found in result.findings.items():
        rows = frame[frame["scope"] == scope].set_index("id")
        control = " (control)" if any(scope in c for c in result.controls.values()) else ""
        for f in found:
            row = rows.loc[f.id]
            where = f" at restart {', '.join(map(str, f.restarts[:8]))}" if f.restarts else ""
            rate = f"{f.k}/{f.n} {'restarts' if f.per == 'restart' else 'run'}"
            effect = f", {row['effect']}" if row["effect"] and row["effect"] != row["verdict"] else ""
            fails = f"; fails {', '.join(f.failing)}" if f.failing else ""
            head = f"{_short(scope)}{control}: {f.id} [{row['verdict']}{effect}] {rate}{where}{fails}"
            if f.kind == "known":
                ref = f" ({', '.join(u.split(' (')[0] for u in f.upstream)})" if f.upstream else ""
                note = f" [{f.version_note}]" if f.version_note else ""
                head += f" — {f.title}{ref}{note}. {f.advice}"
            else:
                head += " — no known signature: `restartbench explore` looks for the minimal plan that shows it"
            lines.append(" ".join(head.split()))
    return lines


def render(result: GateResult) -> Table:
    """The gate's rows as a rich Table, verdict coloured (the verdict under the question asked), each
    failing row's findings beside it; the caption states the outcome and lists every finding."""
    scopes = {r.scope for r in result.rows}
    single = len(scopes) == 1                    # one run: name it in the title, not on every row
    title = f"restart gate — {next(iter(scopes))}" if single else "restart gate"
    controls = [f"{_short(run)}: judged against its controls {', '.join(_short(c) for c in ctrl)} (each finding "
                f"the build's, an arch effect, or an emulation effect: shown, not failing)"
                for run, ctrl in result.controls.items()]
    caption = Text("\n".join([verdict_line(result), *controls, *finding_lines(result)]))
    table = Table(title=title, caption=caption, caption_justify="left")
    shown = any(r.findings for r in result.rows)
    for name in ("check",) + (() if single else ("scope",)) + ("value", "limit", "verdict", "note") + \
            (("finding",) if shown else ()):
        table.add_column(name, overflow="fold", no_wrap=name == "scope")
    for r in result.rows:
        outcome = result.outcome(r)
        cells = [r.check] + ([] if single else [_short(r.scope)]) + [r.value, r.limit,
                                                             Text(outcome, style=STYLE[outcome]), Text(r.note)]
        table.add_row(*cells, *([", ".join(r.findings)] if shown else []))
    return table
