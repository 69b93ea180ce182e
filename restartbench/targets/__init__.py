"""Host targets: one module per host. ``make_target`` builds the right one for an installation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import Installation, RestartReply, StopReport, Target, TargetError


def target_class(kind: str) -> type:
    """The Target class for a host kind."""
    if kind == "wasmtime":
        from .wasmtime import WasmtimeTarget

        return WasmtimeTarget
    if kind == "unit":
        from .unit import UnitTarget

        return UnitTarget
    raise TargetError(f"no target for host kind {kind!r}")


def make_target(installation: Installation, component: Path, workdir: Path, **options: Any) -> Target:
    """The target for ``installation`` serving ``component``; ``options`` are the target's keywords."""
    return target_class(installation.kind)(installation, component, workdir, **options)


__all__ = ["Installation", "RestartReply", "StopReport", "Target", "TargetError", "make_target", "target_class"]
