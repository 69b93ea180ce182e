"""Known restart bugs: match a run against the catalogue (``catalogue/restart-bugs.toml``).

Each entry describes one bug by its signature in this suite's terms — conditions on a run's facts
(``facts``), and patterns in the host's log — plus its upstream references, the versions affected and
fixed, the gate checks it explains, and what to do. ``match(run, summary)`` returns the entries whose
signature holds, most specific first (an entry that ``supersedes`` others drops them); summaries
(``known_bugs``), the gate, the report and comparisons all call it.

Conditions read ``<fact> <op> <value>`` with op one of ``>= <= > < == !=``; a fact that a run does not
have (``stuck_requests`` of a wasmtime run) makes its condition false. Facts:

``host version flavor emulated``         the target (kind, ``unitd --version``, unit|freeunit, 0/1)
``restarts unrecovered restart_http_errors restart_api_max_s``   the restarts (summary ``overall``)
``window_timeout_rate window_error_rate lingering_max recovery_p95_s rss_slope fd_slope``
``crashes_serving crashes_leaving leaving_restarts leaving_share``  Unit's log: crashes, and the
                                         share of restarts whose replaced process crashed
``crashed_<role>``                       crashes by role (app, prototype, router, controller, main)
``stop_hang survivors``                  teardown: main ignored SIGTERM (0/1); processes left
``resizes``                              1 when a restart changed the app's process count
``stuck_requests stuck_share``           /status requests/connections active after the load, and
                                         as a share of the requests sent in restart windows
``users sleep_share rate``               the load (Locust users, /sleep share, open-model rate)
"""

from __future__ import annotations

import functools
import operator
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from restartbench.results import Run

CATALOGUE = Path(__file__).resolve().parent.parent / "catalogue" / "restart-bugs.toml"
NO_MATCH = "no known signature"
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq,
        "!=": operator.ne}
_COND = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*$")
_KEYS = {"id", "title", "host", "upstream", "affected", "fixed_in", "fix_commits", "when", "when_any", "log",
         "log_any", "explains", "supersedes", "advice", "seen", "bug", "at"}


class CatalogueError(ValueError):
    """A catalogue file that cannot be used; the message names the entry and what is wrong."""


@dataclass(frozen=True)
class Bug:
    """One catalogue entry."""

    id: str
    title: str
    host: str
    advice: str
    upstream: tuple[str, ...] = ()
    affected: tuple[str, ...] = ()
    fixed_in: tuple[str, ...] = ()
    fix_commits: tuple[str, ...] = ()      # the commits that fixed it (judged against a build's commit)
    when: tuple[str, ...] = ()
    when_any: tuple[str, ...] = ()
    log: tuple[str, ...] = ()
    log_any: tuple[str, ...] = ()
    explains: tuple[str, ...] = ()
    supersedes: tuple[str, ...] = ()
    seen: str = ""
    bug: str = ""                          # the underlying bug its faces share (e.g. unit-1179): --bug takes it
    at: tuple[str, ...] = ()               # the sites that locate it per restart (findings.SITES), e.g.
                                           # crash-leaving@app; none: counted once per run

    @property
    def family(self) -> str:
        """The bug this entry is a face of (its ``bug``, else its own id)."""
        return self.bug or self.id


@dataclass
class Match:
    """A bug whose signature a run shows: which conditions held (with the run's values) and how its
    version relates to the versions the bug is known in."""

    bug: Bug
    evidence: list[str] = field(default_factory=list)
    version_note: str = ""

    def describe(self) -> dict[str, Any]:
        b = self.bug
        return {"id": b.id, "bug": b.family, "title": b.title, "upstream": list(b.upstream), "affected": list(b.affected),
                "fixed_in": list(b.fixed_in), "advice": b.advice, "explains": list(b.explains),
                "evidence": self.evidence, "version_note": self.version_note}

    def line(self) -> str:
        """``id: title (upstream) — advice``, for tables."""
        ref = f" ({', '.join(r.split(' (')[0] for r in self.bug.upstream)})" if self.bug.upstream else ""
        note = f" [{self.version_note}]" if self.version_note else ""
        return f"{self.bug.id}: {self.bug.title}{ref}{note} — {self.bug.advice}"


# -- the catalogue --------------------------------------------------------------------------------

@functools.cache
def load(path: Path | str = CATALOGUE) -> tuple[Bug, ...]:
    """Every entry of the catalogue file, checked (conditions parse, regexes compile, ids unique)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogueError(f"{path}: {exc}") from exc
    bugs, seen = [], set()
    for n, item in enumerate(data.get("bug", []), 1):
        where = f"{path}: [[bug]] #{n} ({item.get('id', '?')})"
        unknown = set(item) - _KEYS
        if unknown:
            raise CatalogueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        for key in ("id", "title", "host", "advice"):
            if not isinstance(item.get(key), str) or not item[key]:
                raise CatalogueError(f"{where}: needs {key} = \"...\"")
        if item["id"] in seen:
            raise CatalogueError(f"{where}: duplicate id")
        seen.add(item["id"])
        if not item.get("when") and not item.get("when_any") and not item.get("log") and not item.get("log_any"):
            raise CatalogueError(f"{where}: no signature (when, when_any, log or log_any)")
        for cond in [*item.get("when", []), *item.get("when_any", [])]:
            _parse(cond, where)
        for pattern in [*item.get("log", []), *item.get("log_any", [])]:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise CatalogueError(f"{where}: log pattern {pattern!r}: {exc}") from None
        from .findings import check_site

        for site in item.get("at", []):
            problem = check_site(site)
            if problem:
                raise CatalogueError(f"{where}: at = {site!r}: {problem}")
        bugs.append(Bug(**{k: tuple(v) if isinstance(v, list) else v for k, v in item.items()}))
    ids = {b.id for b in bugs}
    for b in bugs:
        missing = set(b.supersedes) - ids
        if missing:
            raise CatalogueError(f"{path}: {b.id} supersedes unknown id(s) {', '.join(sorted(missing))}")
    return tuple(bugs)


def _parse(cond: str, where: str = "") -> tuple[str, Any, Any]:
    m = _COND.match(cond)
    if not m:
        raise CatalogueError(f"{where}: condition {cond!r}: write <fact> <op> <value>, e.g. lingering_max >= 1")
    name, op, raw = m.groups()
    try:
        value: Any = float(raw)
    except ValueError:
        value = raw.strip("\"'")
    return name, _OPS[op], value


# -- facts ----------------------------------------------------------------------------------------

def facts(run: Run, summary: dict[str, Any]) -> dict[str, Any]:
    """The run's facts the conditions read (see the module docstring)."""
    info = run.info
    target = summary.get("run", {}).get("target") or run.meta.get("target") or {}
    o = summary.get("overall", {})
    load = run.meta.get("load") or {}
    out: dict[str, Any] = {
        "host": target.get("kind"), "version": target.get("version"), "flavor": target.get("flavor"),
        "emulated": 1.0 if info.target.emulated else 0.0,
        "commit": info.target.commit or None,
        "fixes": ((run.meta.get("target") or {}).get("build") or {}).get("fixes"),
        "users": load.get("users"), "sleep_share": load.get("sleep_share"), "rate": load.get("rate"),
    }
    for key in ("restarts", "unrecovered", "restart_http_errors", "restart_api_max_s", "window_timeout_rate",
                "window_error_rate", "lingering_max", "recovery_p95_s", "rss_slope", "fd_slope"):
        out[key] = o.get(key)
    out["resizes"] = 1.0 if any(r.get("kind") == "processes" for r in summary.get("restarts", [])) else 0.0
    hangs = info.findings_of("stop_hang")
    out["stop_hang"] = float(len(hangs))
    out["survivors"] = float(len(info.survivors))
    crashes = (summary.get("host_checks") or {}).get("crashes") or {}
    if crashes.get("measured"):
        n = o.get("restarts") or 0
        out["crashes_serving"] = crashes.get("serving")
        out["crashes_leaving"] = crashes.get("leaving")
        out["leaving_restarts"] = float(len(crashes.get("leaving_restarts") or []))
        out["leaving_share"] = out["leaving_restarts"] / n if n else None
        for role in ("app", "prototype", "router", "controller", "main"):
            out[f"crashed_{role}"] = float(sum(v for k, v in (crashes.get("by_kind") or {}).items()
                                               if k.split(" ")[0] == role))
    idle = (summary.get("host_checks") or {}).get("idle") or {}
    if idle.get("measured") and idle.get("status_samples"):
        status = idle.get("status") or {}
        stuck = max([v for k, v in status.items() if k.endswith("requests.active")] or [0.0])
        out["stuck_requests"] = float(stuck)
        sent = sum(r.get("n_requests") or 0 for r in summary.get("restarts", []))
        out["stuck_share"] = stuck / sent if sent else None
    return out


def _holds(cond: str, f: dict[str, Any]) -> tuple[bool, str]:
    name, op, want = _parse(cond)
    have = f.get(name)
    if have is None:
        return False, f"{name} unknown"
    try:
        ok = bool(op(float(have), want)) if isinstance(want, float) else bool(op(str(have), want))
    except (TypeError, ValueError):
        return False, f"{name} = {have!r}"
    shown = f"{have:.3g}" if isinstance(have, float) else str(have)
    return ok, f"{name} = {shown} ({cond})"


def _host_log(run: Run) -> str:
    try:
        return (Path(run.path) / "host.log").read_text(errors="replace")
    except OSError:
        return ""


# -- matching -------------------------------------------------------------------------------------

def match(run: Run, summary: dict[str, Any], bugs: tuple[Bug, ...] | None = None) -> list[Match]:
    """The catalogue entries whose signature ``run`` shows, superseded ones dropped."""
    bugs = load() if bugs is None else bugs
    f = facts(run, summary)
    log: str | None = None
    found: list[Match] = []
    for bug in bugs:
        if bug.host not in ("any", f.get("host")):
            continue
        evidence, ok = [], True
        for cond in bug.when:
            held, why = _holds(cond, f)
            ok &= held
            evidence.append(why)
        if ok and bug.when_any:
            results = [_holds(c, f) for c in bug.when_any]
            ok = any(h for h, _ in results)
            evidence += [why for h, why in results if h]
        if ok and (bug.log or bug.log_any):
            log = _host_log(run) if log is None else log
            for pattern in bug.log:
                m = re.search(pattern, log, re.M)
                ok &= m is not None
                if m:
                    evidence.append(f"log: {_line_of(log, m.start())}")
            if ok and bug.log_any:
                m = next((m for m in (re.search(p, log, re.M) for p in bug.log_any) if m), None)
                ok = m is not None
                if m:
                    evidence.append(f"log: {_line_of(log, m.start())}")
        if ok:
            found.append(Match(bug, evidence, _version_note(bug, f.get("version"), f.get("fixes"), f.get("commit"))))
    dropped = {s for m in found for s in m.bug.supersedes}
    return [m for m in found if m.bug.id not in dropped]


def _line_of(text: str, pos: int) -> str:
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    return text[start:end if end >= 0 else None].strip()[:200]


def _version_note(bug: Bug, version: str | None, fixes: dict[str, Any] | None = None,
                  commit: str | None = None) -> str:
    """Where the run's build stands: for a build of ours (run.json ``target.build.fixes``: recorded when
    it was built), before or after the fix commits; else a known affected version, or at/after a fixed
    one (a regression, or a look-alike). Nothing but the run's own files is asked."""
    if commit and bug.fix_commits and fixes:
        has = [fixes.get(c) for c in bug.fix_commits]
        if True in has:
            return f"commit {commit[:10]} contains the fix: a regression, or another bug that looks alike"
        if has and all(h is False for h in has if h is not None) and any(h is False for h in has):
            return f"commit {commit[:10]} comes before the fix ({', '.join(c[:10] for c in bug.fix_commits)})"
    if not version:
        return ""
    if version in bug.affected:
        return f"{version} is a known affected version"
    from restartbench.versions import version_key

    fixed = [v for v in bug.fixed_in if version_key(v) <= version_key(version)]
    if fixed:
        return f"{version} is at or after the fix ({', '.join(fixed)}): a regression, or another bug that looks alike"
    return ""


def fix_commits(bugs: tuple[Bug, ...] | None = None) -> list[str]:
    """Every fixing commit the catalogue names (a build records which of them it contains)."""
    bugs = load() if bugs is None else bugs
    return list(dict.fromkeys(c for b in bugs for c in b.fix_commits))


def by_check(matches: list[Match]) -> dict[str, list[str]]:
    """Gate check name -> the ids of the matched bugs that explain it."""
    out: dict[str, list[str]] = {}
    for m in matches:
        for check in m.bug.explains:
            out.setdefault(check, []).append(m.bug.id)
    return out
