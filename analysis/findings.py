"""Findings: what a run shows, one bug at a time (docs/metrics.md "Findings").

A *site* is an anomaly the run's files show, located where it happened: ``crash@router`` (Unit's log
says the router died on a signal, after restart 3), ``crash-leaving@app`` (a replaced app process
crashed on its way out), ``lingering@app``, ``unrecovered``, ``shutdown-hang@main``,
``survivors@prototype``, ``stuck-requests``, ... (``SITES``: the gate check each one feeds, and
whether it is located per restart).

A *finding* is either a known bug the catalogue matches (its id, e.g. ``unit-1179-restart-crash``) or
a failing gate check that no matched entry explains (an *unnamed* finding, named by its site:
``crash@router``). Each carries its evidence, the restarts it was seen at, a rate (``k`` of ``n``
restarts, or of runs for what happens once per run) and the gate checks it explains; a failing gate
row is *attributed* to the findings that explain it. That is what lets a question be asked about one
bug: the aimed gate judges only the rows attributed to the asked findings (``--bug``), passes rows
attributed to allowed ones (``--allow``), and a bisect votes on one finding.

Pure: a run's summary and run.json in, findings out (the catalogue file is read, nothing else).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

#: gate check -> (the stem of its sites' ids, located per restart)
SITES: dict[str, tuple[str, bool]] = {
    "run completed": ("run-incomplete", False),
    "restarts performed": ("restarts-missing", False),
    "lingering": ("lingering", True),
    "window timeout rate": ("window-timeouts", True),
    "every restart recovers": ("unrecovered", True),
    "recovery p95": ("slow-recovery", False),
    "RSS growth per restart": ("rss-growth", False),
    "fd growth per restart": ("fd-growth", False),
    "crashes while serving": ("crash", True),
    "restarts whose old processes crashed": ("crash-leaving", True),
    "shutdown hang": ("shutdown-hang", False),
    "processes outliving the stop": ("survivors", False),
    "requests stuck at idle": ("stuck-requests", False),
    "other app disturbed": ("isolation", True),
}
STEMS = {stem: (check, per_restart) for check, (stem, per_restart) in SITES.items()}
#: rows every aimed question still judges: a run that did not complete answers nothing
ALWAYS_JUDGED = ("run completed",)
_SITE = re.compile(r"^(?P<stem>[a-z-]+)(?:@(?P<where>[a-z0-9_+-]+))?$")


def check_site(site: str) -> str:
    """What is wrong with a site id (``crash@router``), "" when nothing."""
    m = _SITE.match(site)
    if not m or m.group("stem") not in STEMS:
        return f"not a site: write STEM[@WHERE] with STEM one of {', '.join(STEMS)}"
    return ""


@dataclass(frozen=True)
class Site:
    """One anomaly of a run, located: its id, the check it feeds, the restarts it was seen at."""

    id: str
    check: str
    restarts: tuple[int, ...] = ()


def _site(stem: str, where: str = "", restarts: Iterable[int] = ()) -> Site:
    return Site(f"{stem}@{where}" if where else stem, STEMS[stem][0], tuple(sorted(set(restarts))))


def sites(summary: dict[str, Any], meta: dict[str, Any]) -> list[Site]:
    """Every anomaly the run shows, whatever the limits: lingering, unrecovered restarts, window
    timeouts, crashes by role (leaving or serving), the shutdown hang, survivors by role, stuck
    requests. Run-level numbers over a limit (growth, recovery p95) have no site of their own."""
    restarts = summary.get("restarts") or []
    role = ((summary.get("params") or {}).get("app_roles") or ["app"])[0]
    out: list[Site] = []

    def located(stem: str, where: str, hit) -> None:
        idx = [int(r["index"]) for r in restarts if r.get("index") is not None and hit(r)]
        if idx:
            out.append(_site(stem, where, idx))

    located("lingering", role, lambda r: (r.get("lingering") or 0) > 0)
    located("unrecovered", "", lambda r: r.get("recovered") is False)
    located("window-timeouts", "", lambda r: (r.get("timeouts") or 0) > 0)
    crashes = (summary.get("host_checks") or {}).get("crashes") or {}
    by: dict[tuple[str, str], set[int]] = {}
    for e in crashes.get("events") or []:
        key = ("crash-leaving" if e.get("leaving") else "crash", str(e.get("role") or "other"))
        by.setdefault(key, set())
        if e.get("restart") is not None:
            by[key].add(int(e["restart"]))
    for (stem, where), idx in sorted(by.items()):
        out.append(_site(stem, where, idx))
    if any(f.get("kind") == "stop_hang" for f in meta.get("findings") or []):
        out.append(_site("shutdown-hang", "main"))
    for where in sorted({str(p.get("role") or "other") for p in meta.get("survivors") or []}):
        out.append(_site("survivors", where))
    if ((summary.get("host_checks") or {}).get("idle") or {}).get("stuck"):
        out.append(_site("stuck-requests"))
    o = summary.get("overall") or {}
    for stem, key in (("rss-growth", "rss_slope_by_role"), ("fd-growth", "fd_slope_by_role")):
        grows = {r: v for r, v in (o.get(key) or {}).items() if isinstance(v, (int, float)) and v > 0}
        if grows:                                   # located at the role growing most
            out.append(_site(stem, max(grows, key=grows.get)))
    iso = o.get("isolation") or {}
    if iso.get("disturbed_restarts"):
        out.append(_site("isolation", "other", iso["disturbed_restarts"]))
    return out


@dataclass
class Finding:
    """One finding of one run (see the module docstring)."""

    id: str
    kind: str                                  # known | unnamed
    title: str
    bug: str                                   # the bug it is a face of (known: the entry's ``bug``)
    checks: list[str]                          # the gate checks it explains
    failing: list[str] = field(default_factory=list)   # of those, the ones failing in this run
    restarts: list[int] = field(default_factory=list)  # restarts it was seen at
    per: str = "run"                           # restart | run: what k and n count
    k: int = 1
    n: int = 1
    evidence: list[str] = field(default_factory=list)
    upstream: list[str] = field(default_factory=list)
    advice: str = ""
    version_note: str = ""
    sites: list[str] = field(default_factory=list)     # the sites it was seen at (crash@router, ...)

    @property
    def rate(self) -> float:
        return self.k / self.n if self.n else math.nan

    def describe(self) -> dict[str, Any]:
        return {**asdict(self), "rate": round(self.rate, 4) if self.n else None}


def per_of(fid: str) -> str:
    """What a finding's rate counts (``restart`` or ``run``), from its id alone: a known bug located
    by sites (``at``) is per restart; an unnamed one as its site's check."""
    from .catalogue import load

    bug = next((b for b in load() if b.id == fid), None)
    if bug is not None:
        return "restart" if bug.at else "run"
    m = _SITE.match(fid)
    return "restart" if m and STEMS.get(m.group("stem"), ("", False))[1] else "run"


def n_of(fid: str, summary: dict[str, Any]) -> int:
    """A run's denominator for ``fid``: its restarts (per restart), else 1."""
    return max(1, len(summary.get("restarts") or [])) if per_of(fid) == "restart" else 1


def attribute(check: str, known: Sequence[dict[str, Any]], present: Sequence[Site]) -> list[str]:
    """The findings a failing row of ``check`` belongs to: the matched entries (summary.json
    ``known_bugs``) that explain it, else its own sites (unnamed), else its check's stem."""
    ids = [b["id"] for b in known if check in (b.get("explains") or [])]
    if ids or check not in SITES:
        return ids
    return [s.id for s in present if s.check == check] or [SITES[check][0]]


def _counted(f: Finding, n: int) -> Finding:
    """``f`` with its k/n: the restarts it was seen at of the run's ``n`` (per restart), else 1/1."""
    if f.per == "restart":
        f.k, f.n = max(1, len(f.restarts)), n
    return f


def findings(summary: dict[str, Any], meta: dict[str, Any], failing: dict[str, list[str]]) -> list[Finding]:
    """A run's findings: every catalogue entry it matched (summary.json ``known_bugs``), then every
    unnamed one; ``failing`` maps each failing gate check to its findings (``attribute``)."""
    from .catalogue import load

    entries = {b.id: b for b in load()}
    present = sites(summary, meta)
    by_id = {s.id: s for s in present}
    n = max(1, len(summary.get("restarts") or []))
    out: list[Finding] = []
    for m in summary.get("known_bugs") or []:
        b = entries.get(m["id"])
        at = b.at if b else ()
        explains = list(m.get("explains") or [])
        located = [by_id[s] for s in at if s in by_id] if at else [s for s in present if s.check in explains]
        restarts = sorted({r for s in located for r in s.restarts})
        f = Finding(m["id"], "known", m["title"], m.get("bug") or m["id"], explains,
                    [c for c, ids in failing.items() if m["id"] in ids], restarts,
                    "restart" if at else "run", evidence=list(m.get("evidence") or []),
                    upstream=list(m.get("upstream") or []), advice=m.get("advice", ""),
                    version_note=m.get("version_note", ""), sites=[s.id for s in located])
        out.append(_counted(f, n))
    have = {f.id for f in out}
    for fid in dict.fromkeys(fid for ids in failing.values() for fid in ids if fid not in have):
        check, per_restart = STEMS[_SITE.match(fid).group("stem")]
        site = by_id.get(fid)
        restarts = list(site.restarts) if site else []
        f = Finding(fid, "unnamed", f"{check} ({fid}), explained by no known bug", fid, [check],
                    [c for c, ids in failing.items() if fid in ids], restarts,
                    "restart" if per_restart else "run",
                    evidence=[f"seen at restart(s) {', '.join(map(str, restarts))}"] if restarts else [],
                    sites=[fid])
        out.append(_counted(f, n))
    return out


# -- asking about one bug -----------------------------------------------------------------------

def known_ids() -> list[str]:
    """Every id --bug/--allow take by name: catalogue ids and the bugs their faces share."""
    from .catalogue import load

    bugs = load()
    return list(dict.fromkeys([b.id for b in bugs] + [b.bug for b in bugs if b.bug]))


def check_ids(ids: Iterable[str], flag: str = "--bug") -> None:
    """Raise ValueError (one line) for an id that is neither known nor an unnamed finding's form."""
    known = known_ids()
    for fid in ids:
        if fid in known or not check_site(fid):
            continue
        raise ValueError(f"{flag} {fid}: unknown finding; known bugs: {', '.join(known)}; unnamed findings "
                         f"are STEM[@WHERE] with STEM one of {', '.join(STEMS)} (e.g. crash@router)")


def family(fid: str) -> str:
    """The bug a finding id is a face of (the catalogue's ``bug``), else the id itself."""
    from .catalogue import load

    return next((b.family for b in load() if b.id == fid), fid)


def asks(asked: Iterable[str], finding: Finding | dict[str, Any]) -> bool:
    """Whether a finding answers to any of ``asked``: its id, the bug it is a face of, a site it was
    seen at (``crash@router`` asks about the router crash a known bug explains too), or (a stem
    without ``@``) any site of that stem."""
    d = finding if isinstance(finding, dict) else asdict(finding)
    names = {d["id"], d.get("bug"), *(d.get("sites") or [])}
    for a in asked:
        if a in names or ("@" not in a and any(str(n).startswith(a + "@") for n in names)):
            return True
    return False


def checks_of(fid: str) -> list[str]:
    """The gate checks a finding id (or a bug's faces) can fail."""
    from .catalogue import load

    faces = [b for b in load() if fid in (b.id, b.bug)]
    if faces:
        return list(dict.fromkeys(c for b in faces for c in b.explains))
    m = _SITE.match(fid)
    return [STEMS[m.group("stem")][0]] if m and m.group("stem") in STEMS else []


def hosts_of(fid: str) -> set[str]:
    """The host kinds a finding id can be seen on ("any" for unnamed ones)."""
    from .catalogue import load

    faces = [b for b in load() if fid in (b.id, b.bug)]
    return {b.host for b in faces} if faces else {"any"}


# -- rates over runs -----------------------------------------------------------------------------

def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion k/n (NaN without trials)."""
    if not n:
        return math.nan, math.nan
    from scipy.stats import norm

    z = float(norm.ppf(1 - (1 - level) / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def counts(runs: Iterable[tuple[dict[str, Any], Sequence[Finding | dict[str, Any]]]], fid: str) -> tuple[int, int]:
    """``fid`` pooled over runs, each (its summary, its findings): (restarts or runs it was seen at,
    restarts or runs in all); a run without it adds to the second only."""
    k = n = 0
    for summary, found in runs:
        n += n_of(fid, summary)
        f = next((x for x in found if (x["id"] if isinstance(x, dict) else x.id) == fid), None)
        k += int(f["k"] if isinstance(f, dict) else f.k) if f is not None else 0
    return k, n


def fisher_greater(k1: int, n1: int, k0: int, n0: int) -> float:
    """One-sided Fisher's exact test: is k1/n1 higher than k0/n0? (p; 1.0 without trials)."""
    if not n1 or not n0:
        return 1.0
    from scipy.stats import fisher_exact

    return float(fisher_exact([[k1, n1 - k1], [k0, n0 - k0]], alternative="greater")[1])
