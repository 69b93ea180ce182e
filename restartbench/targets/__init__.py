"""Host targets: one module per host. ``make_target`` builds the right one for an installation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import Installation, RestartReply, StopReport, Target, TargetError


def make_target(installation: Installation, component: Path, workdir: Path, **options: Any) -> Target:
    """The target for ``installation`` serving ``component``; ``options`` are the target's keywords."""
    if installation.kind == "wasmtime":
        from .wasmtime import WasmtimeTarget

        return WasmtimeTarget(installation, component, workdir, **options)
    if installation.kind == "unit":
        from .unit import UnitTarget

        return UnitTarget(installation, component, workdir, **options)
    raise TargetError(f"no target for host kind {installation.kind!r}")


__all__ = ["Installation", "RestartReply", "StopReport", "Target", "TargetError", "make_target"]
