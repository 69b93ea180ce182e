"""Which host builds exist here: their executable, version and architecture, and how to run them.

A target spec is what users type: ``wasmtime`` (the pinned wasmtime from PyPI) or ``unit``,
``unit@<name>`` (an installed NGINX Unit / FreeUnit). ``resolve(spec, arch)`` turns it into an
``Installation``; ``discover()`` lists every candidate with the reason any was rejected.

Architecture always comes from the executable's ELF header, never from the machine; a foreign-arch
executable runs under a user-mode emulator (``runner`` prefix), recorded as ``emulated``.
"""

from __future__ import annotations

import platform
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

from . import tools
from .targets.base import Installation

#: ELF e_machine -> our arch names
_ELF_MACHINES = {0x3E: "x86_64", 0xB7: "aarch64", 0x03: "i386", 0x28: "arm", 0xF3: "riscv64"}
_ARCH_ALIASES = {"x86_64": "x86_64", "amd64": "x86_64", "x64": "x86_64",
                 "aarch64": "aarch64", "arm64": "aarch64", "arm64v8": "aarch64"}


class InstallationError(ValueError):
    """A target that cannot be resolved; the message says what to install or set."""


@dataclass
class Candidate:
    """One host build found (or rejected) by discovery."""

    spec: str
    installation: Installation | None
    source: str                       # where it was found: pypi | UNITD | units.toml | PATH ...
    reason: str = ""                  # why it was rejected, if it was


def normalize_arch(arch: str | None) -> str:
    """``arm64``/``aarch64`` -> ``aarch64``, ``amd64``/``x86_64`` -> ``x86_64``; None -> this machine's."""
    if arch is None or arch == "":
        arch = platform.machine()
    try:
        return _ARCH_ALIASES[arch.lower()]
    except KeyError:
        raise InstallationError(f"unknown architecture {arch!r}: use x86_64 (amd64) or aarch64 (arm64)") from None


def host_arch() -> str:
    return normalize_arch(platform.machine())


def elf_arch(path: Path) -> str:
    """The architecture an ELF executable is built for, from its header."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError as exc:
        raise InstallationError(f"{path}: cannot read ({exc.strerror})") from exc
    if len(head) < 20 or head[:4] != b"\x7fELF":
        raise InstallationError(f"{path}: not an ELF executable (a script or wrapper? point at the binary)")
    endian = "<" if head[5] == 1 else ">"
    machine = struct.unpack(endian + "H", head[18:20])[0]
    return _ELF_MACHINES.get(machine, f"elf-machine-{machine:#x}")


def runner_for(arch: str) -> tuple[str, ...]:
    """The argv prefix that runs a binary of ``arch`` here: () natively, qemu-user for a foreign arch."""
    if arch == host_arch():
        return ()
    qemu = shutil.which(f"qemu-{arch}-static") or shutil.which(f"qemu-{arch}")
    if not qemu:
        raise InstallationError(f"{arch} binaries need user-mode emulation here: install Debian's "
                                f"qemu-user-static (apt-get install qemu-user-static)")
    sysroot = Path(f"/usr/{arch}-linux-gnu")
    return (qemu, "-L", str(sysroot)) if sysroot.is_dir() else (qemu,)


def wasmtime(arch: str | None = None) -> Installation:
    """The pinned wasmtime CLI for ``arch`` (the native one from the venv; a foreign one from its wheel)."""
    arch = normalize_arch(arch)
    if arch == host_arch():
        exe = tools.wasmtime()
    else:
        exe = tools.foreign_wasmtime(arch)
    runner = runner_for(elf_arch(exe))
    version = tools.version_of(str(exe), *runner).removeprefix("wasmtime ").split(" ")[0]
    return Installation(kind="wasmtime", name="wasmtime", executable=exe, version=version or "unknown",
                        arch=elf_arch(exe), runner=runner, flavor="wasmtime")


def resolve(spec: str, arch: str | None = None) -> Installation:
    """The installation a target spec names, for ``arch`` (default: this machine's)."""
    kind, _, name = spec.partition("@")
    if kind == "wasmtime":
        if name and name != "wasmtime":
            raise InstallationError(f"wasmtime@{name}: only the pinned wasmtime is available; use --target wasmtime")
        return wasmtime(arch)
    if kind == "unit":
        from . import units          # Unit discovery lives with the Unit registry code

        return units.resolve(name, arch)
    raise InstallationError(f"unknown target {spec!r}: use wasmtime, unit or unit@<name> "
                            f"(`restartbench targets` lists what is installed)")


def discover() -> list[Candidate]:
    """Every host build found here, usable or not (with the reason)."""
    found = []
    try:
        found.append(Candidate("wasmtime", wasmtime(), "pypi"))
    except (InstallationError, tools.ToolMissing) as exc:
        found.append(Candidate("wasmtime", None, "pypi", str(exc)))
    try:
        from . import units
    except ImportError:
        return found
    return found + units.discover()
