"""NGINX Unit and FreeUnit (the fork that continues it), with the wasm-wasi-component module.

Everything restartbench knows about Unit lives in this package:

``discovery``  which unitd builds exist here (UNITD=, units.toml, PATH, the packaged layout, our builds)
``target``     a private unitd per run, driven through its control API (``UnitTarget``)
``processes``  Unit's process titles and log start lines: the census roles of its processes
``checks``     Unit's own checks of a finished run (crashes from its log, old generations, /status at idle)
``build``      building any Unit/FreeUnit revision from source with Unit's configure/make
``asv``        the asv environment that benchmarks Unit's history (asv.unit.conf.json)

``HOST`` (a ``UnitHost``) is what the rest of restartbench asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base import Candidate, Host, Installation, option


@dataclass(frozen=True)
class UnitOptions:
    """What a user may set on the Unit target."""

    app_object: Path | None = option(None, "--unit-app", "your own Unit application object (JSON file) "
                                     "instead of the built app")
    user: str | None = option(None, "", "the user Unit runs its router and apps as (default: the caller)")
    group: str | None = option(None, "", "their group")
    swap_restart: bool | None = option(None, "", "a component swap also calls …/restart")
    ready_timeout_s: float | None = option(None, "", "how long unitd and the app may take to answer")
    stop_timeout_s: float | None = option(None, "", "how long unitd may take to exit after SIGTERM")


class UnitHost(Host):
    """NGINX Unit / FreeUnit: restarts through the control API, any number of app processes."""

    kind = "unit"
    title = "NGINX Unit / FreeUnit (wasm-wasi-component)"
    order = 10
    restart_kinds = ("restart", "config", "swap", "processes", "change", "daemon", "second-app")
    max_processes = None
    roles = ("main", "controller", "router", "prototype", "app", "bystander")
    Options = UnitOptions

    def discover(self) -> list[Candidate]:
        from . import discovery

        return discovery.discover()

    def resolve(self, name: str, arch: str | None) -> Installation:
        from . import discovery

        return discovery.resolve(name, arch)

    def missing_hint(self) -> str:
        from .discovery import NO_UNIT

        return f"{NO_UNIT[0].upper()}{NO_UNIT[1:]}; see README 'Testing your Unit'."

    def target_class(self) -> type:
        from .target import UnitTarget

        return UnitTarget

    def check_options(self, options: UnitOptions) -> str:
        obj = options.app_object
        if obj is not None and not isinstance(obj, dict) and not Path(obj).is_file():
            return f"--unit-app {obj}: no such file; pass a JSON Unit application object"
        return ""

    def role(self, title: str) -> str:
        from .processes import unit_role

        return unit_role(title)

    def control_of(self, installation: Installation, say=lambda s: None) -> Installation:
        """A build of ours: the same commit for this machine (built now when missing, from the source
        its build.json names); another build: one of the same version and flavor for this machine."""
        import json

        from ...arches import host_arch
        from ...errors import InstallationError
        from . import build, discovery

        native = host_arch()
        if installation.commit:
            flavor = installation.flavor or "unit"
            built = build.find_built(flavor, installation.commit, native)
            if built is None:
                record = json.loads(Path(installation.build_record).read_text()) if installation.build_record else {}
                say(f"emulation control: building {flavor} {installation.commit[:10]} for {native}")
                built = build.build(installation.commit, source=record.get("source"), flavor=flavor, arch=native,
                                    say=say)
            return discovery.installation_of(built)
        same = [c.installation for c in discovery.discover() if c.installation is not None and not c.reason
                and c.installation.arch == native and c.installation.version == installation.version
                and (c.installation.flavor or "unit") == (installation.flavor or "unit")]
        if not same:
            raise InstallationError(f"no {native} build of unit {installation.version} here for the emulation "
                                    f"control: list one in units.toml, build it (`restartbench build unit --rev "
                                    f"{installation.version}`), or pass --no-control")
        stem = installation.name.split("-")[0]
        return next((i for i in same if i.name == stem), same[0])

    def vocabulary(self, version: str = "") -> dict[str, dict[str, Any]]:
        from .vocabulary import changes_for

        return changes_for(version)

    def check_plan(self, installation: Installation, scenario, component: Path, workdir: Path) -> str:
        """Every step of the plan's control-API changes, in plan order, sent to an idle unitd of this
        build (each change's steps once): the first Unit rejects, in Unit's words."""
        from .target import UnitTarget

        steps = [a for _, a in scenario.plan() if a["kind"] == "change"]
        cycle = max((len(c["steps"]) for c in scenario.changes.values()), default=0)
        steps = steps[: 2 * cycle * max(1, len(scenario.changes))]     # every step once and its repeat
        if not steps:
            return ""
        target = UnitTarget(installation, component, workdir, processes=scenario.processes,
                            second_app=scenario.second_app)
        try:
            target.start()
            n, why = target.check_changes(steps)
            if n < 0:
                return ""
            step = steps[n]
            return (f"Unit {installation.version} rejects change {step['name']!r} "
                    f"({step['method']} {target.fill(step['path'])}): {why}")
        finally:
            target.stop()

    def run_checks(self, run, grace_s: float | None = None) -> dict[str, Any] | None:
        from .checks import check_run

        return check_run(run, grace_s=grace_s)


HOST = UnitHost()
