"""Emulation controls: what tells a foreign arch's findings from the emulator's and the build's.

A foreign-arch run (arm64 on this x86_64 machine) runs under qemu-user, which slows every request and
widens every race. Its controls are the same revision built for this machine's arch, run with the
same plan and load twice: ``native`` (as it is) and ``emulated`` (under qemu-user of this machine's
arch, ``qemu-x86_64-static``). The gate (``analysis.gate.classify``) then calls each finding of the
foreign run the **build**'s (its bug fails the native control too), an **arch effect** (its rate is
significantly above the emulated control's) or an **emulation effect** (shown, never failing).

    outcomes = run_controls(config, outcome)      # after a foreign-arch run: [native, emulated]

Each control is an ordinary run whose run.json says ``control: {of: <run id>, kind: native|emulated}``;
the gate pairs controls with the run they control by that alone.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from . import arches, hosts
from .errors import InstallationError
from .hosts.base import Installation
from .run import Progress, RunConfig, RunOutcome, run

def needs_control(installation: Installation) -> bool:
    """A foreign-arch build run under emulation (a control is for those only)."""
    return installation.emulated and installation.arch != arches.host_arch()


def control_installations(installation: Installation,
                          say: Callable[[str], None] = lambda s: None) -> list[tuple[str, Installation]]:
    """(kind, build) of the two controls of a foreign-arch build: the host's build of the same revision
    for this machine, as it is and under qemu-user. Raises InstallationError saying what is missing."""
    native = hosts.of(installation).control_of(installation, say)
    return [("native", native), ("emulated", dataclasses.replace(native, runner=arches.emulated_here()))]


def control_config(config: RunConfig, of: str, kind: str, installation: Installation) -> RunConfig:
    """``config`` (the foreign run's) for one control: same plan, load and options, that build."""
    return dataclasses.replace(config, target=installation.label, arch=installation.arch,
                               installation=installation, run_id=f"{of}-control-{kind}",
                               target_options=dict(config.target_options), control={"of": of, "kind": kind})


def run_controls(config: RunConfig, outcome: RunOutcome, report: Callable[[Progress], None] | None = None,
                 say: Callable[[str], None] = lambda s: None) -> list[RunOutcome]:
    """Run the controls of a finished foreign-arch run (``outcome``, made with ``config``); [] when it
    needs none or did not complete. A control that cannot be had is said (``say``) and left out: the
    run is then judged without it."""
    inst = config.installation
    if inst is None or not needs_control(inst) or outcome.status != "complete":
        return []
    try:
        builds = control_installations(inst, say)
    except InstallationError as exc:
        say(f"no emulation control: {exc}")
        return []
    out = []
    for kind, build in builds:
        say(f"control ({kind}): {build.label} {build.version} {build.arch}"
            + (" under " + " ".join(build.runner) if build.runner else ""))
        out.append(run(control_config(config, outcome.path.name, kind, build), report=report))
    return out
