"""restartbench.hosts.unit.discovery: Unit discovery, the units.toml registry, and its parsing of real unitd output."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from restartbench import arches
from restartbench import installations, tools
from restartbench.hosts.unit import discovery as units
from restartbench.versions import version_key
from restartbench.installations import InstallationError

DATA = Path(__file__).parent / "data" / "unit"
AARCH64_ELF = Path("/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1")


@pytest.fixture
def no_unit(tmp_path, monkeypatch):
    """A machine with no Unit at all: no UNITD, no registry, no unitd on PATH or in /usr/sbin, no
    builds of restartbench's (an empty build cache)."""
    for var in ("UNITD", "UNIT_MODULES", units.REGISTRY_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RESTARTBENCH_CACHE", str(tmp_path / "empty-cache"))
    path = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "unitd").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(path))
    monkeypatch.setattr(units, "PACKAGED_UNITD", tmp_path / "no-such-unitd")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def registry(where: Path, text: str) -> Path:
    path = where / "units.toml"
    path.write_text(text)
    return path


# -- real unitd output ------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["1.32.0", "1.35.0"])
def test_parse_version_of_reference_builds(version):
    info = units.parse_version((DATA / f"unitd-version-{version}.txt").read_text())
    assert info.version == version
    assert info.configure == "./configure [options elided]"
    assert info.modulesdir is None             # elided: the --help default is used instead
    assert units.flavor_of((DATA / f"unitd-version-{version}.txt").read_text()) == "unit"


def test_configure_line_of_a_packaged_build_names_its_modules_dir():
    info = units.parse_version((DATA / "unitd-version-deb-1.27.0.txt").read_text())
    assert info.version == "1.27.0"
    assert info.modulesdir == "/usr/lib/unit/modules"


@pytest.mark.parametrize("version", ["1.32.0", "1.35.0"])
def test_help_default_modules_dir(version):
    assert units.help_modulesdir((DATA / f"unitd-help-{version}.txt").read_text()) == "$PREFIX/modules"


def test_other_programs_version_output_is_not_unit():
    out = subprocess.run(["/bin/true", "--version"], capture_output=True, text=True).stdout
    with pytest.raises(ValueError):
        units.parse_version(out)


def test_version_ordering():
    assert sorted(["1.35.0", "1.32.0", "1.32.1", "1.4.0"], key=version_key) == \
        ["1.4.0", "1.32.0", "1.32.1", "1.35.0"]


# -- the units.toml registry ------------------------------------------------------------------

def test_registry_entries(tmp_path):
    path = registry(tmp_path, """
# two builds
[[unit]]
name = "1.32.0"
unitd = "unit-1.32.0/sbin/unitd"
modules = "/opt/unit-1.32.0/modules"

[[unit]]
name = "free-1.35.4"
unitd = "/opt/freeunit/sbin/unitd"
arch = "arm64"
runner = "qemu-aarch64-static -L /opt/rootfs"
flavor = "freeunit"
""")
    a, b = units.load_registry(path)
    assert (a.name, a.unitd, a.modules, a.source) == ("1.32.0", tmp_path / "unit-1.32.0/sbin/unitd",
                                                      Path("/opt/unit-1.32.0/modules"), "units.toml")
    assert a.where == f"{path}:3" and a.arch is None and a.runner is None
    assert (b.arch, b.runner, b.flavor, b.modules) == ("aarch64", ("qemu-aarch64-static", "-L", "/opt/rootfs"),
                                                       "freeunit", None)
    assert b.where == f"{path}:8"


def test_example_registry_parses(monkeypatch):
    example = Path(__file__).parent.parent / "units.example.toml"
    entries = units.load_registry(example)
    assert entries and all(e.source == "units.toml" for e in entries)


@pytest.mark.parametrize("text, line, words", [
    ('[[unit]]\nname = "a"\nunitd = \n', 3, "not valid TOML"),
    ('[[unit]]\nname = "a"\n', 1, "without 'unitd'"),
    ('[[unit]]\nname = "a"\nunitd = "/x"\n\n[[unit]]\nname = "b"\nunitd = "/y"\nmodulesdir = "/m"\n', 8,
     "unknown key 'modulesdir'"),
    ('[[unit]]\nname = "a"\nunitd = "/x"\n[[unit]]\nname = "a"\nunitd = "/y"\n', 4, "duplicate name 'a'"),
    ('[[unit]]\nname = "a"\nunitd = "/x"\nflavor = "nginx"\n', 4, "flavor 'nginx'"),
    ('[[unit]]\nname = "a"\nunitd = "/x"\narch = "mips"\n', 4, "unknown architecture"),
    ('[[unit]]\nname = "a b"\nunitd = "/x"\n', 2, "letters, digits"),
    ('[[unit]]\nname = "a"\nunitd = 3\n', 3, "non-empty string"),
    ('[[unit]]\nname = "a"\nunitd = "/x"\nrunner = [1]\n', 4, "'runner' must be"),
    ('name = "a"\n', 1, "unknown table or key 'name'"),
])
def test_malformed_registry_says_file_and_line(tmp_path, text, line, words):
    path = registry(tmp_path, text)
    with pytest.raises(InstallationError) as exc:
        units.load_registry(path)
    assert str(exc.value).startswith(f"{path}:{line}: "), str(exc.value)
    assert words in str(exc.value)


def test_unreadable_registry(tmp_path):
    (tmp_path / "units.toml").mkdir()
    with pytest.raises(InstallationError, match=r"units.toml: cannot read"):
        units.load_registry(tmp_path / "units.toml")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[[unit]]\nname = "\xe9"\n')
    with pytest.raises(InstallationError, match=r"latin1.toml: cannot read"):
        units.load_registry(bad)


def test_registry_env_must_exist(no_unit, monkeypatch):
    monkeypatch.setenv(units.REGISTRY_ENV, str(no_unit / "missing.toml"))
    with pytest.raises(InstallationError, match=r"RESTARTBENCH_UNITS=.*missing.toml: no such file"):
        units.resolve()


# -- discovery and resolve --------------------------------------------------------------------

def test_no_unit_says_what_to_install(no_unit):
    with pytest.raises(InstallationError) as exc:
        units.resolve()
    msg = str(exc.value)
    assert "packages unit + unit-wasm" in msg and "unit:<ver>-wasm" in msg
    assert "UNITD=/path/to/unitd" in msg and "units.toml" in msg
    found = units.discover()
    assert len(found) == 1 and found[0].installation is None and found[0].reason == msg
    with pytest.raises(InstallationError, match="unit-wasm"):
        installations.resolve("unit@1.32.0")
    assert any(c.spec == "unit" and c.installation is None for c in installations.discover())


def test_unitd_nonexistent_is_a_clear_error(no_unit, monkeypatch):
    monkeypatch.setenv("UNITD", "/nonexistent")
    with pytest.raises(InstallationError, match=r"^UNITD=/nonexistent: no such file; install NGINX Unit"):
        units.resolve()
    with pytest.raises(InstallationError, match=r"UNITD=/nonexistent: no such file"):
        installations.resolve("unit")


def test_unitd_not_executable(no_unit, monkeypatch):
    plain = no_unit / "unitd"
    plain.write_text("")
    monkeypatch.setenv("UNITD", str(plain))
    with pytest.raises(InstallationError, match="not an executable file"):
        units.resolve()


def test_registry_pointing_at_a_non_unit_executable_is_rejected(no_unit):
    registry(no_unit, '[[unit]]\nname = "fake"\nunitd = "/bin/true"\nmodules = "/tmp"\n')
    found = units.discover()
    assert [c.spec for c in found] == ["unit@fake"]
    assert found[0].installation is None and found[0].source == "units.toml"
    assert "not NGINX Unit" in found[0].reason and "unit version: X.Y.Z" in found[0].reason
    with pytest.raises(InstallationError, match=r"units.toml:1: not NGINX Unit"):
        units.resolve("fake")
    with pytest.raises(InstallationError, match=r"no usable NGINX Unit build matches unit@9.9"):
        units.resolve("9.9")


def test_malformed_registry_fails_resolve_and_shows_in_discover(no_unit):
    path = registry(no_unit, '[[unit]\nname = "x"\n')
    with pytest.raises(InstallationError, match=rf"^{re.escape(str(path))}:1: not valid TOML"):
        units.resolve()
    (cand,) = units.discover()
    assert cand.installation is None and cand.reason.startswith(f"{path}:1:")


def test_declared_arch_must_match_the_elf_header(no_unit):
    exe = tools.wasmtime()               # a real ELF executable (not Unit): arch is read before running it
    other = "aarch64" if arches.elf_arch(exe) == "x86_64" else "x86_64"
    registry(no_unit, f'[[unit]]\nname = "w"\nunitd = "{exe}"\narch = "{other}"\n')
    (cand,) = units.discover()
    assert f"declared arch {other} but" in cand.reason and "ELF header" in cand.reason


def test_script_is_not_an_elf_executable(no_unit):
    script = no_unit / "unitd"
    script.write_text("#!/bin/sh\necho 'unit version: 1.32.0'\n")
    script.chmod(0o755)
    registry(no_unit, f'[[unit]]\nname = "s"\nunitd = "{script}"\n')
    (cand,) = units.discover()
    assert "not an ELF executable" in cand.reason


def test_modules_dir_check(tmp_path):
    with pytest.raises(InstallationError, match="does not exist"):
        units.check_modules(tmp_path / "nope")
    shutil.copy(DATA / "unitd-help-1.32.0.txt", tmp_path / "python3.unit.so")   # any file: only names count
    with pytest.raises(InstallationError) as exc:
        units.check_modules(tmp_path, "units.toml:3")
    msg = str(exc.value)
    assert msg.startswith("units.toml:3: modules dir") and "no wasm_wasi_component.unit.so" in msg
    assert "has: python3.unit.so" in msg and "unit-wasm package" in msg
    (tmp_path / units.WASM_MODULE).write_bytes(b"")
    assert units.check_modules(tmp_path) == tmp_path
    with pytest.raises(InstallationError, match="cannot tell its modules dir"):
        units.check_modules(None)


# -- ELF architecture of real executables -----------------------------------------------------

def test_elf_arch_native_wasmtime():
    assert arches.elf_arch(tools.wasmtime()) == arches.host_arch()


@pytest.mark.skipif(not AARCH64_ELF.exists(), reason=f"{AARCH64_ELF} not installed (apt-get install "
                    f"libc6-arm64-cross)")
def test_elf_arch_aarch64():
    assert arches.elf_arch(AARCH64_ELF) == "aarch64"


@pytest.mark.skipif(not AARCH64_ELF.exists() or arches.host_arch() == "aarch64",
                    reason=f"needs a foreign aarch64 ELF ({AARCH64_ELF}: apt-get install libc6-arm64-cross)")
def test_foreign_arch_without_qemu_says_what_to_install(no_unit, monkeypatch):
    monkeypatch.setattr(arches.shutil, "which", lambda name: None)          # a machine without qemu-user
    registry(no_unit, f'[[unit]]\nname = "arm"\nunitd = "{AARCH64_ELF}"\n')
    (cand,) = units.discover()
    assert "qemu-user-static" in cand.reason


@pytest.mark.skipif(not AARCH64_ELF.exists() or arches.host_arch() == "aarch64"
                    or not (shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")),
                    reason="needs a foreign aarch64 ELF and qemu-user (apt-get install qemu-user-static)")
def test_foreign_arch_runs_under_qemu_and_is_still_checked(no_unit):
    registry(no_unit, f'[[unit]]\nname = "arm"\nunitd = "{AARCH64_ELF}"\n')
    (cand,) = units.discover()
    assert "not NGINX Unit" in cand.reason and "ld.so" in cand.reason     # it ran (emulated): not Unit


# -- a real Unit, when one is installed -------------------------------------------------------

@pytest.mark.unit
def test_real_unit_resolves():
    try:
        inst = units.resolve()
    except InstallationError as exc:
        pytest.skip(f"no NGINX Unit here (set UNITD=/path/to/unitd or RESTARTBENCH_UNITS): {exc}")
    assert inst.kind == "unit" and re.fullmatch(r"\d+\.\d+\.\d+\S*", inst.version)
    assert (inst.modules / units.WASM_MODULE).is_file()
    assert inst.arch == arches.elf_arch(inst.executable)
    assert installations.resolve(f"unit@{inst.name}").executable == inst.executable
    assert os.access(inst.executable, os.X_OK)


def test_a_relative_registry_path_gives_absolute_executables(tmp_path, monkeypatch):
    """RESTARTBENCH_UNITS=../x/units.toml with relative paths inside: the host runs from its own
    work dir, so every path must come out absolute."""
    (tmp_path / "reg").mkdir()
    (tmp_path / "reg" / "units.toml").write_text('[[unit]]\nname = "a"\nunitd = "builds/a/sbin/unitd"\n'
                                                 'modules = "builds/a/modules"\n')
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv(units.REGISTRY_ENV, "../reg/units.toml")
    (entry,) = units.load_registry(units.registry_path())
    assert entry.unitd.is_absolute() and entry.unitd == tmp_path / "reg" / "builds" / "a" / "sbin" / "unitd"
    assert entry.modules.is_absolute()
