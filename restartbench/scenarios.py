"""Restart plans: when to restart the host, how, and for how long to load it.

A scenario is a set of parameters (from CLI flags, a TOML file in ``scenarios/``, or both; flags win)
that expands to a timed list of actions. Action kinds (what each host does is in its target):

``restart``    the host's own restart (Unit: GET /control/applications/<app>/restart;
               wasmtime: process replacement)
``config``     a change of the app's configuration (an environment value); Unit replaces the app
               processes on any change of the app object
``swap``       a component swap: the other build of the app, then the host picks it up
``processes``  a change of the app's process count (Unit), alternating ``processes`` / +1
``daemon``     the host's daemon stopped (SIGTERM, bounded) and started again on the same state, as
               ``systemctl restart unit`` or a package upgrade does (Unit; ``upgrade_to``: the restart
               starts that other build)
NAME           a control-API change of the scenario's ``[changes.NAME]`` table: its ``steps`` (each a
               ``method``, a ``/config/...`` path and a JSON ``body``) are sent one per action in turn,
               so a change and its undo alternate (A, B, A, B, ...); ``values = [A, B]`` is short for
               PUT steps of those bodies to ``path``. Paths and bodies may name ``{app}`` (the app under
               test), ``{address}``, ``{port}`` (its listener), ``{port2}`` (a second free port),
               ``{component}`` (the app's component file) and ``{dir}`` (a private dir, e.g. for a log)

``actions`` lists kinds used in turn (``["restart", "config"]`` alternates them). Times are seconds
from the moment the load is flowing: ``warmup_s`` of steady state, a restart every
``restart_every_s`` (``restarts`` of them, default as many as fit), then ``cooldown_s`` with none.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"
ACTION_KINDS = ("restart", "config", "swap", "processes", "daemon")
CHANGE_METHODS = ("PUT", "POST", "DELETE")
PLACEHOLDERS = ("app", "address", "port", "port2", "port4", "component", "dir")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class ScenarioError(ValueError):
    """A scenario that cannot run; the message says what is wrong and how to fix it."""


def parse_duration(text: str | float | int, what: str = "duration") -> float:
    """``"5s"``, ``"500ms"``, ``"2m"``, ``"1m30s"`` or a number of seconds -> seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    s = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", s)
    if not parts or "".join(n + u for n, u in parts) != s:
        raise ScenarioError(f"{what} {text!r} is not a duration: write e.g. 30s, 500ms, 2m or 1m30s")
    return sum(float(n) * _UNITS[u] for n, u in parts)


@dataclass
class Scenario:
    """All parameters of one restart plan (recorded whole in run.json)."""

    name: str = "periodic-restart"
    description: str = "the host's own restart, at a fixed interval, under closed-model load"
    duration_s: float = 40.0
    warmup_s: float = 5.0
    cooldown_s: float = 5.0
    restart_every_s: float = 5.0
    restarts: int | None = None
    actions: list[str] = field(default_factory=lambda: ["restart"])
    processes: int = 1               # app processes the host runs (Unit); census expects this many
    window_s: float = 5.0            # analysis: restart window W
    grace_s: float = 5.0             # analysis: lingering grace
    load: dict[str, Any] = field(default_factory=dict)   # the load it was written for ([load] table:
                                     # users, sleep_share, sleep_ms, rate, request_timeout,
                                     # fresh_connections, other_share); flags of the run command win
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)   # [changes.NAME]: control-API changes
    second_app: bool = False         # a second app (``other``, behind the route /other) beside the one
                                     # under test: its requests are judged by the isolation check
    upgrade_to: str | None = None    # daemon actions start this build (a target name) instead

    def validate(self) -> "Scenario":
        """Raise ScenarioError unless the plan can run as given."""
        for name in ("duration_s", "restart_every_s"):
            if not 0 < getattr(self, name) <= 24 * 3600:
                raise ScenarioError(f"{name.removesuffix('_s')} must be > 0 and at most 24h")
        for name in ("warmup_s", "cooldown_s", "window_s", "grace_s"):
            if getattr(self, name) < 0:
                raise ScenarioError(f"{name.removesuffix('_s')} must not be negative")
        for name, change in self.changes.items():
            self.changes[name] = _change(name, change)
        bad = [a for a in self.actions if a not in ACTION_KINDS and a not in self.changes]
        if bad or not self.actions:
            raise ScenarioError(f"unknown restart action {bad or self.actions}: use {', '.join(ACTION_KINDS)}"
                                + (f" or a change of this scenario ({', '.join(self.changes)})" if self.changes
                                   else " or a [changes.NAME] table of the scenario"))
        if not 1 <= self.processes <= 256:
            raise ScenarioError("processes must be between 1 and 256")
        if self.restarts is not None and self.restarts < 0:
            raise ScenarioError("restarts must be 0 or more")
        if self.restart_count > 1 and self.restart_every_s < self.grace_s:
            raise ScenarioError(f"restart-every {self.restart_every_s:g}s is shorter than the lingering "
                                f"grace {self.grace_s:g}s: old processes could not be judged; restart "
                                f"less often or pass a shorter --grace")
        if self.warmup_s + self.cooldown_s >= self.duration_s:
            raise ScenarioError(f"duration {self.duration_s:g}s leaves no time for restarts after warm-up "
                                f"{self.warmup_s:g}s and cool-down {self.cooldown_s:g}s: make it longer")
        if self.restarts is not None and self.restarts > self.fitting_restarts():
            need = self.warmup_s + self.cooldown_s + (self.restarts - 1) * self.restart_every_s
            raise ScenarioError(f"{self.restarts} restarts every {self.restart_every_s:g}s need a duration "
                                f"of at least {need:g}s (with warm-up and cool-down); got {self.duration_s:g}s")
        return self

    def fitting_restarts(self) -> int:
        """How many restarts fit between warm-up and cool-down."""
        span = self.duration_s - self.warmup_s - self.cooldown_s
        return int(span // self.restart_every_s) + 1 if span >= 0 else 0

    @property
    def restart_count(self) -> int:
        return self.fitting_restarts() if self.restarts is None else self.restarts

    def kinds(self) -> list[str]:
        """The action kinds a host must do for this plan: the built-in ones named, ``change`` for the
        scenario's control-API changes, ``second-app`` when it serves a second app."""
        out = list(dict.fromkeys("change" if a in self.changes else a for a in self.actions))
        return out + (["second-app"] if self.second_app else [])

    def plan(self) -> list[tuple[float, dict[str, Any]]]:
        """(seconds after the load starts, action) for every restart, in order."""
        out, seen = [], {kind: 0 for kind in [*ACTION_KINDS, *self.changes]}
        for i in range(self.restart_count):
            kind = self.actions[i % len(self.actions)]
            out.append((self.warmup_s + i * self.restart_every_s, action(kind, seen[kind], self)))
            seen[kind] += 1
        return out

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        d["restart_count"] = self.restart_count
        return d


def action(kind: str, nth: int, scenario: Scenario) -> dict[str, Any]:
    """The action dict a target's ``restart`` receives for the ``nth`` action of this kind (from 0)."""
    if kind == "config":
        return {"kind": "config", "env": {"RESTARTBENCH_CONFIG": str(nth + 1)}}
    if kind == "swap":
        return {"kind": "swap", "variant": "b" if nth % 2 == 0 else "a"}
    if kind == "processes":
        return {"kind": "processes", "processes": scenario.processes + (1 if nth % 2 == 0 else 0)}
    if kind == "daemon":
        return {"kind": "daemon", **({"upgrade_to": scenario.upgrade_to} if scenario.upgrade_to else {})}
    if kind in scenario.changes:
        steps = scenario.changes[kind]["steps"]
        return {"kind": "change", "name": kind, **steps[nth % len(steps)]}
    return {"kind": "restart"}


def _change(name: str, change: Any) -> dict[str, Any]:
    """A [changes.NAME] table, checked and normalised to ``{"description", "steps": [{method, path, body}]}``."""
    if not isinstance(change, dict):
        raise ScenarioError(f"changes.{name} must be a table: [changes.{name}] path = \"/config/...\", values = [...]")
    unknown = sorted(set(change) - {"description", "steps", "path", "values", "method", "body"})
    if unknown:
        raise ScenarioError(f"changes.{name}: unknown key {unknown[0]!r}; use steps = [...], or path with "
                            f"values = [...] (or method and body)")
    if "steps" in change:
        steps = change["steps"]
    elif "values" in change:
        if "path" not in change or not isinstance(change["values"], list) or not change["values"]:
            raise ScenarioError(f"changes.{name}: values needs a path and a non-empty list of bodies")
        steps = [{"method": "PUT", "path": change["path"], "body": v} for v in change["values"]]
    elif "path" in change:
        steps = [{k: change[k] for k in ("method", "path", "body") if k in change}]
    else:
        raise ScenarioError(f"changes.{name}: give steps = [...], or path with values = [...]")
    if not isinstance(steps, list) or not steps:
        raise ScenarioError(f"changes.{name}: steps must be a non-empty list of {{method, path, body}}")
    out = []
    for n, step in enumerate(steps, 1):
        where = f"changes.{name} step {n}"
        if not isinstance(step, dict) or not set(step) <= {"method", "path", "body"} or "path" not in step:
            raise ScenarioError(f"{where}: write {{ method = \"PUT\", path = \"/config/...\", body = ... }}")
        method = str(step.get("method", "PUT")).upper()
        if method not in CHANGE_METHODS:
            raise ScenarioError(f"{where}: method {step.get('method')!r}: use {', '.join(CHANGE_METHODS)}")
        path = str(step["path"])
        if not (path == "/config" or path.startswith("/config/")):
            raise ScenarioError(f"{where}: path {path!r} is not under /config: a change reconfigures")
        if method == "DELETE" and "body" in step:
            raise ScenarioError(f"{where}: a DELETE takes no body")
        if method != "DELETE" and "body" not in step:
            raise ScenarioError(f"{where}: {method} {path} needs a body (the JSON value to set)")
        for text in (path, repr(step.get("body"))):
            for word in re.findall(r"\{(\w+)\}", text):
                if word not in PLACEHOLDERS:
                    raise ScenarioError(f"{where}: unknown placeholder {{{word}}}: use "
                                        + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS))
        out.append({"method": method, "path": path, **({"body": step["body"]} if "body" in step else {})})
    return {"description": str(change.get("description", "")), "steps": out}


def load(name_or_path: str | Path, **overrides: Any) -> Scenario:
    """A scenario from ``scenarios/<name>.toml`` or a TOML path, with ``overrides`` (None = not given)."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.toml")))
        raise ScenarioError(f"scenario {name_or_path!r} not found: use one of {known} or a .toml path")
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"scenario file {path}: {exc}; fix the TOML") from exc
    data.setdefault("name", path.stem)
    return from_dict(data, **overrides)


LOAD_KEYS = {"users": int, "sleep_share": float, "sleep_ms": int, "rate": float, "request_timeout": float,
             "fresh_connections": bool, "other_share": float}


def _load_table(value: Any) -> dict[str, Any]:
    """A scenario's [load] table, checked: only LOAD_KEYS, each of its type (durations as for
    request_timeout: "2s")."""
    if not isinstance(value, dict):
        raise ScenarioError("load must be a table: [load] users = 10, sleep_share = 0.1, ...")
    out = {}
    for key, v in value.items():
        kind = LOAD_KEYS.get(key)
        if kind is None:
            raise ScenarioError(f"unknown [load] setting {key!r}: known are {', '.join(sorted(LOAD_KEYS))}")
        if key == "request_timeout":
            v = parse_duration(v, "request_timeout")
        elif kind is bool:
            if not isinstance(v, bool):
                raise ScenarioError(f"[load] {key} must be true or false, got {v!r}")
        elif kind is int and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ScenarioError(f"[load] {key} must be a whole number >= 1, got {v!r}")
        elif kind is float and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
            raise ScenarioError(f"[load] {key} must be a number >= 0, got {v!r}")
        out[key] = kind(v) if kind is not bool else v
    for key in ("sleep_share", "other_share"):
        if key in out and out[key] > 1:
            raise ScenarioError(f"[load] {key} must be between 0 and 1, got {out[key]:g}")
    return out


def from_dict(data: dict[str, Any], **overrides: Any) -> Scenario:
    """Build and validate a Scenario from plain values (durations may be strings like "5s")."""
    known = {f.name: f for f in fields(Scenario)}
    aliases = {k.removesuffix("_s"): k for k in known if k.endswith("_s")}
    values: dict[str, Any] = {}
    for key, value in {**data, **{k: v for k, v in overrides.items() if v is not None}}.items():
        key = aliases.get(key.replace("-", "_"), key.replace("-", "_"))
        if key not in known:
            raise ScenarioError(f"unknown scenario setting {key!r}: known are {', '.join(sorted(known))}")
        if key.endswith("_s"):
            value = parse_duration(value, key.removesuffix("_s"))
        elif key == "actions" and isinstance(value, str):
            value = [a.strip() for a in value.split(",") if a.strip()]
        elif key == "load":
            value = _load_table(value)
        elif key == "changes":
            if not isinstance(value, dict):
                raise ScenarioError("changes must be tables: [changes.NAME] path = ..., values = [...]")
            value = {str(k): v for k, v in value.items()}
        elif key == "second_app" and not isinstance(value, bool):
            raise ScenarioError(f"second_app must be true or false, got {value!r}")
        elif key in ("restarts", "processes") and value is not None:
            if not isinstance(value, int) or isinstance(value, bool):
                raise ScenarioError(f"{key} must be a whole number, got {value!r}")
        values[key] = value
    return Scenario(**values).validate()
