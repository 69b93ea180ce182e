"""Architectures: our names for them, an executable's own (its ELF header), and how this machine runs
a foreign one (qemu-user with a sysroot). Every host's discovery uses these; nothing here knows a host.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import struct
import subprocess
from pathlib import Path

from .errors import InstallationError

#: ELF e_machine -> our arch names
_ELF_MACHINES = {0x3E: "x86_64", 0xB7: "aarch64", 0x03: "i386", 0x28: "arm", 0xF3: "riscv64"}
_ARCH_ALIASES = {"x86_64": "x86_64", "amd64": "x86_64", "x64": "x86_64",
                 "aarch64": "aarch64", "arm64": "aarch64", "arm64v8": "aarch64"}


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


#: our arch names -> Debian's (for the cross packages that hold a foreign arch's shared libraries)
_DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm": "armhf", "i386": "i386", "riscv64": "riscv64"}
#: shared libraries a foreign binary may miss -> the Debian cross package (``{}`` = Debian arch) holding them
_LIB_PACKAGES = {"libgcc_s.so": "libgcc-s1-{}-cross", "libstdc++.so": "libstdc++6-{}-cross",
                 "libatomic.so": "libatomic1-{}-cross"}


def sysroot(arch: str) -> Path:
    """Where Debian's cross packages put ``arch``'s libraries (qemu-user's ``-L`` prefix)."""
    return Path(f"/usr/{arch}-linux-gnu")


def emulator_packages(arch: str) -> list[str]:
    """The Debian packages that let this machine run dynamically linked ``arch`` binaries."""
    deb = _DEBIAN_ARCH.get(arch, arch)
    return ["qemu-user-static", f"libc6-{deb}-cross", f"libgcc-s1-{deb}-cross"]


def _apt_hint(arch: str, *packages: str) -> str:
    return (f"apt-get install {' '.join(packages)} (or `make emulator ARCH={arch}`, which installs "
            f"{' '.join(emulator_packages(arch))})")


def runner_for(arch: str) -> tuple[str, ...]:
    """The argv prefix that runs a binary of ``arch`` here: () natively, qemu-user for a foreign arch
    (``qemu-<arch>-static -L /usr/<arch>-linux-gnu``: the sysroot holds its dynamic loader and libc;
    with Debian's multiarch libraries present also ``-E LD_LIBRARY_PATH=`` the sysroot, then them)."""
    if arch == host_arch():
        return ()
    qemu = shutil.which(f"qemu-{arch}-static") or shutil.which(f"qemu-{arch}")
    if not qemu:
        raise InstallationError(f"{arch} binaries need user-mode emulation here (this machine is "
                                f"{host_arch()}): install Debian's qemu-user-static: "
                                + _apt_hint(arch, "qemu-user-static"))
    root = sysroot(arch)
    if not root.is_dir() or not any(root.glob("lib*/ld-linux*.so*")):
        deb = _DEBIAN_ARCH.get(arch, arch)
        raise InstallationError(f"{arch} binaries need {arch}'s C library under {root} (qemu-user's -L "
                                f"sysroot), which is missing: " + _apt_hint(arch, f"libc6-{deb}-cross"))
    multiarch = Path(f"/usr/lib/{arch}-linux-gnu")
    if multiarch.is_dir():
        # Debian's multiarch libraries (libssl3:arm64 ...) are installed too: keep the loader and the C
        # library both from the sysroot (-E LD_LIBRARY_PATH, sysroot first), else a libc.so.6 of the
        # multiarch package meets the sysroot's loader and every fork()ed child spins forever
        return (qemu, "-L", str(root), "-E", f"LD_LIBRARY_PATH={root}/lib:{multiarch}")
    return (qemu, "-L", str(root))


def emulated_here() -> tuple[str, ...]:
    """The runner that runs this machine's own binaries under qemu-user (``qemu-x86_64-static``): an
    emulation control runs a native build through it, so that only the arch differs from a foreign run."""
    arch = host_arch()
    qemu = shutil.which(f"qemu-{arch}-static") or shutil.which(f"qemu-{arch}")
    if not qemu:
        raise InstallationError(f"the emulation control runs {arch} binaries under qemu-user: install Debian's "
                                f"qemu-user-static (`make emulator ARCH=arm64` does), or pass --no-control")
    return (qemu,)


#: a foreign binary's shared libraries -> the Debian multiarch package (``{}`` = Debian arch) holding them
_MULTIARCH_PACKAGES = {"libssl.so": "libssl3:{}", "libcrypto.so": "libssl3:{}", "libpcre2-8.so": "libpcre2-8-0:{}",
                       "libc.so": "libc6:{}", "libm.so": "libc6:{}"}


def multiarch_packages(arch: str) -> list[str]:
    """Debian's multiarch runtime a foreign Unit build needs (its loader, libc, OpenSSL, PCRE2)."""
    deb = _DEBIAN_ARCH.get(arch, arch)
    return [f"libc6:{deb}", f"libssl3:{deb}", f"libpcre2-8-0:{deb}"]


def foreign_failure_hint(text: str, arch: str, runner: tuple[str, ...] = ()) -> str:
    """What to install when a foreign binary could not start under qemu-user (its loader or a shared
    library missing), from what it printed; "" when the output says neither."""
    deb = _DEBIAN_ARCH.get(arch, arch)
    install = (f"dpkg --add-architecture {deb} && apt-get update && apt-get install "
               f"{' '.join(multiarch_packages(arch))} (or `make emulator ARCH={deb}`)")
    how = f" under {Path(runner[0]).name}" if runner else ""
    m = re.search(r"Could not open '(/lib[^']*ld-linux[^']*)'", text)
    if m:
        return (f"{arch} binaries{how} need {arch}'s dynamic loader {m.group(1)}, which is missing: install "
                f"Debian's {deb} runtime: {install}")
    m = re.search(r"error while loading shared libraries: (\S+?):", text)
    if m:
        lib = m.group(1)
        pkg = next((p.format(deb) for prefix, p in {**_MULTIARCH_PACKAGES, **_LIB_PACKAGES}.items()
                    if lib.startswith(prefix)), f"the {deb} package holding {lib}")
        return f"{arch} binaries{how} need {lib}, which is missing: apt-get install {pkg} ({install})"
    return ""


def check_runs(exe: Path, runner: tuple[str, ...], arch: str, timeout_s: float = 60.0) -> str:
    """Run ``exe --version`` (under ``runner``) and return its first line; raise InstallationError
    saying what to install when it cannot run (a foreign binary's missing shared library, ...)."""
    try:
        out = subprocess.run([*runner, str(exe), "--version"], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=timeout_s,
                             env={**os.environ, "RUST_LOG": "off"})
    except subprocess.TimeoutExpired:
        raise InstallationError(f"`{exe.name} --version` did not finish in {timeout_s:g} s"
                                + (f" under {Path(runner[0]).name}" if runner else "")) from None
    except OSError as exc:
        raise InstallationError(f"cannot run {exe}: {exc.strerror}") from None
    text = (out.stdout or "") + (out.stderr or "")
    if out.returncode == 0:
        lines = text.strip().splitlines()
        return lines[0] if lines else ""
    if runner and "Could not open '/lib" in text:          # qemu-user found no loader of that arch
        raise InstallationError(f"{exe}: " + foreign_failure_hint(text, arch, runner))
    m = re.search(r"error while loading shared libraries: (\S+?):", text)
    if m and runner:
        lib = m.group(1)
        deb = _DEBIAN_ARCH.get(arch, arch)
        pkg = next((p.format(deb) for prefix, p in _LIB_PACKAGES.items() if lib.startswith(prefix)),
                   f"the {arch} package holding {lib}")
        raise InstallationError(f"{exe} ({arch}) cannot run under {Path(runner[0]).name}: {lib} is missing "
                                f"from {sysroot(arch)}: " + _apt_hint(arch, pkg))
    first = text.strip().splitlines()[0][:200] if text.strip() else "no output"
    raise InstallationError(f"`{exe} --version` failed (exit {out.returncode}"
                            + (f", run by {Path(runner[0]).name}" if runner else "") + f"): {first}")


def known() -> list[str]:
    """Every architecture name restartbench knows (normalised)."""
    return sorted(set(_ARCH_ALIASES.values()))
