"""The keys of run.json and summary.json, typed: one registry each, and the views code reads them through.

docs/results.md defines every key; ``RUN_KEYS`` and ``SUMMARY_RUN_KEYS`` are those tables in code (as
pyperf's metadata registry gives each key a type and a check). ``RunInfo.of(run.json)`` and
``SummaryInfo.of(summary.json)`` are what the rest of the suite reads instead of nested ``.get`` chains;
``problems`` checks a document against its registry. Like ``results``, this module imports nothing of
restartbench.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

#: run.json: key -> (type, required). See docs/results.md#runjson.
RUN_KEYS: dict[str, tuple[type | tuple[type, ...], bool]] = {
    "format": (int, True), "run_id": (str, True), "status": (str, False), "reason": ((str, type(None)), False),
    "orchestrator": (dict, False), "target": (dict, False), "app": (str, False), "host": (dict, False),
    "scenario": (dict, False), "load": (dict, False), "census_interval_s": ((int, float), False),
    "census": (dict, False), "t0_wall": ((int, float), False), "duration_s": ((int, float), False),
    "suite": (dict, False), "tools": (dict, False), "findings": (list, False), "survivors": (list, False),
    "control": ((dict, type(None)), False), "stop": (dict, False),
}
#: run.json's ``target`` table: key -> type (what every host writes; a host adds its own keys).
TARGET_KEYS: dict[str, type | tuple[type, ...]] = {
    "kind": str, "name": str, "version": str, "arch": str, "emulated": bool, "runner": list,
    "executable": str, "modules": (str, type(None)), "flavor": str, "commit": str, "build": (dict, type(None)),
}
#: summary.json's ``run`` table (a copy of run.json's identity): key -> type.
SUMMARY_RUN_KEYS: dict[str, type | tuple[type, ...]] = {
    "run_id": str, "status": str, "reason": (str, type(None)), "target": dict, "scenario": (str, dict),
    "t0_wall": (int, float, type(None)), "duration_s": (int, float, type(None)),
}
#: the signals that stop a run; a run stopped by one records it first in ``reason`` ("SIGINT", "SIGTERM: …")
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "KeyboardInterrupt")


def problems(doc: Mapping[str, Any], keys: Mapping[str, Any]) -> list[str]:
    """What in ``doc`` does not fit the registry ``keys``: a required key missing, a value of another type."""
    out = []
    for key, spec in keys.items():
        typ, required = spec if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], bool) \
            else (spec, False)
        if key not in doc:
            if required:
                out.append(f"{key!r} missing")
        elif not isinstance(doc[key], typ) or (typ is int and isinstance(doc[key], bool)):
            out.append(f"{key!r} is {type(doc[key]).__name__}, not {_names(typ)}")
    return out


def _names(typ) -> str:
    return " or ".join(t.__name__ for t in (typ if isinstance(typ, tuple) else (typ,)))


def signal_of(reason: str | None) -> str:
    """The stop signal a run's ``reason`` names first ("" when it was not stopped by one)."""
    head = (reason or "").split(":")[0].strip()
    return head if head in STOP_SIGNALS else ""


@dataclass(frozen=True)
class TargetInfo:
    """The build a run used: run.json's ``target`` (or summary.json's copy of it)."""

    kind: str = ""
    name: str = ""
    version: str = ""
    arch: str = ""
    emulated: bool = False
    flavor: str = ""
    commit: str = ""

    @classmethod
    def of(cls, target: Mapping[str, Any] | None) -> "TargetInfo":
        t = target or {}
        return cls(kind=str(t.get("kind") or ""), name=str(t.get("name") or ""),
                   version=str(t.get("version") or ""), arch=str(t.get("arch") or ""),
                   emulated=bool(t.get("emulated")), flavor=str(t.get("flavor") or ""),
                   commit=str(t.get("commit") or ""))

    @property
    def label(self) -> str:
        """``kind@name`` as users type it (``kind`` alone for a host with one build)."""
        return self.kind if not self.name or self.name == self.kind else f"{self.kind}@{self.name}"


@dataclass(frozen=True)
class ControlInfo:
    """A control run's link to the foreign-arch run it controls: ``kind`` native | emulated."""

    of: str
    kind: str

    @classmethod
    def of_meta(cls, control: Mapping[str, Any] | None) -> "ControlInfo | None":
        if not control:
            return None
        return cls(of=str(control.get("of", "")), kind=str(control.get("kind") or "emulated"))


@dataclass(frozen=True)
class RunInfo:
    """run.json, typed (the keys the suite decides on; ``raw`` keeps the rest)."""

    run_id: str
    status: str
    reason: str = ""
    app: str = ""
    target: TargetInfo = field(default_factory=TargetInfo)
    scenario: str = ""
    control: ControlInfo | None = None
    findings: tuple[Mapping[str, Any], ...] = ()       # the orchestrator's: stop_hang, survivors, host_fault, ...
    survivors: tuple[Mapping[str, Any], ...] = ()      # processes left after the host's stop
    stop_grace_s: float | None = None                  # the grace the host's stop gave
    restart_count: int | None = None                   # the restarts the scenario planned
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, meta: Mapping[str, Any]) -> "RunInfo":
        return cls(run_id=str(meta.get("run_id", "")), status=str(meta.get("status", "failed")),
                   reason=str(meta.get("reason") or ""), app=str(meta.get("app") or ""),
                   target=TargetInfo.of(meta.get("target")),
                   scenario=str((meta.get("scenario") or {}).get("name") or ""),
                   control=ControlInfo.of_meta(meta.get("control")),
                   findings=tuple(meta.get("findings") or ()), survivors=tuple(meta.get("survivors") or ()),
                   stop_grace_s=(meta.get("stop") or {}).get("grace_s"),
                   restart_count=(meta.get("scenario") or {}).get("restart_count"), raw=meta)

    def findings_of(self, kind: str) -> list[Mapping[str, Any]]:
        """The orchestrator's findings of ``kind`` (``stop_hang``, ``host_fault``, ...)."""
        return [f for f in self.findings if f.get("kind") == kind]

    @property
    def signal(self) -> str:
        """The signal that stopped the run ("" when none did)."""
        return signal_of(self.reason) if self.status == "interrupted" else ""


@dataclass(frozen=True)
class SummaryInfo:
    """summary.json's ``run`` table, typed."""

    run_id: str
    status: str
    reason: str
    target: TargetInfo
    scenario: str

    @classmethod
    def of(cls, summary: Mapping[str, Any]) -> "SummaryInfo":
        r = summary.get("run") or {}
        scen = r.get("scenario")
        return cls(run_id=str(r.get("run_id", "")), status=str(r.get("status", "")),
                   reason=str(r.get("reason") or ""), target=TargetInfo.of(r.get("target")),
                   scenario=str(scen.get("name", "") if isinstance(scen, dict) else scen or ""))
