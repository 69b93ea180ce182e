"""NGINX Unit (and FreeUnit) builds on this machine: where they are, what they are, which one to use.

Sources, in this order (the first is the user's most explicit wish):

``UNITD``        ``UNITD=/path/to/unitd`` (+ optional ``UNIT_MODULES=/path/to/modules``)
``units.toml``   a registry of builds: ``$RESTARTBENCH_UNITS`` or ``./units.toml`` (units.example.toml)
``PATH``         ``unitd`` on PATH, then the packaged layout (``/usr/sbin/unitd``, ``/usr/lib/unit/modules``)

Each build is checked before it is offered: an ELF executable (its arch from the header, run under
qemu-user when foreign), ``unitd --version`` printing ``unit version: X.Y.Z``, and a modules dir
holding ``wasm_wasi_component.unit.so``. The modules dir, when not given, is the one the build was
configured with (``--modulesdir=``/``--modules=`` in the configure line, else the default that
``unitd --help`` prints). ``discover()`` lists every build with the reason any was rejected;
``resolve(name, arch)`` picks one.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ...arches import elf_arch, normalize_arch, runner_for
from ...errors import InstallationError
from ...versions import version_key
from ..base import Candidate, Installation

WASM_MODULE = "wasm_wasi_component.unit.so"
PACKAGED_UNITD = Path("/usr/sbin/unitd")
PACKAGED_MODULES = Path("/usr/lib/unit/modules")
REGISTRY_ENV = "RESTARTBENCH_UNITS"
REGISTRY_NAME = "units.toml"
FLAVORS = ("unit", "freeunit")
ENTRY_KEYS = {"name", "unitd", "modules", "arch", "runner", "flavor"}
PROBE_TIMEOUT_S = 30.0            # `unitd --version` under qemu-user can take a while
_NAME_RE = re.compile(r"[A-Za-z0-9._+-]+")

INSTALL_HINT = ("install NGINX Unit with its wasm module (packages unit + unit-wasm, or image "
                "unit:<ver>-wasm) and set UNITD=/path/to/unitd or list builds in units.toml")
NO_UNIT = f"no NGINX Unit found: {INSTALL_HINT}"


@dataclass(frozen=True)
class Entry:
    """One build as declared by a source, before it is checked."""

    unitd: Path
    source: str                           # UNITD | units.toml | PATH | packaged
    name: str = ""                        # registry name; "" = use the version
    modules: Path | None = None
    arch: str | None = None
    runner: tuple[str, ...] | None = None
    flavor: str | None = None
    where: str = ""                       # "units.toml:12" or "UNITD=..." for messages
    commit: str = ""                      # a build of ours: its commit and build record
    record: Path | None = None


@dataclass(frozen=True)
class VersionInfo:
    """What ``unitd --version`` says."""

    version: str
    configure: str
    modulesdir: str | None


# -- parsing unitd's own output ---------------------------------------------------------------

def parse_version(text: str) -> VersionInfo:
    """Parse ``unitd --version``: ``unit version: X.Y.Z`` then ``configured as ./configure ...``."""
    m = re.search(r"^unit version:\s*(\S+)", text, re.M)
    if not m:
        raise ValueError("no 'unit version:' line")
    conf = re.search(r"^configured as (.*)$", text, re.M)
    configure = conf.group(1).strip() if conf else ""
    return VersionInfo(m.group(1), configure, configure_modulesdir(configure))


def configure_modulesdir(configure: str) -> str | None:
    """The modules dir a configure line sets (``--modulesdir=DIR`` or the old ``--modules=DIR``)."""
    try:
        words = shlex.split(configure)
    except ValueError:
        words = configure.split()
    for i, word in enumerate(words):
        for opt in ("--modulesdir", "--modules"):
            if word.startswith(opt + "="):
                return word.split("=", 1)[1] or None
            if word == opt and i + 1 < len(words):
                return words[i + 1]
    return None


def help_modulesdir(text: str) -> str | None:
    """The default modules dir ``unitd --help`` prints under ``--modulesdir`` (or ``--modules``)."""
    m = re.search(r'^\s*--modules(?:dir)?\s+DIR\w*\s.*\n\s*default:\s*"([^"]*)"', text, re.M)
    return m.group(1) if m else None


def flavor_of(text: str) -> str:
    """``freeunit`` when the version output names the fork, else ``unit``."""
    return "freeunit" if "freeunit" in text.lower() else "unit"


# -- the units.toml registry ------------------------------------------------------------------

def registry_path() -> Path | None:
    """``$RESTARTBENCH_UNITS`` (must exist) or ``./units.toml`` (if present)."""
    env = os.environ.get(REGISTRY_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise InstallationError(f"{REGISTRY_ENV}={env}: no such file; point it at a units.toml "
                                    f"(see units.example.toml) or unset it")
        return path
    local = Path.cwd() / REGISTRY_NAME
    return local if local.is_file() else None


def load_registry(path: Path) -> list[Entry]:
    """The builds a units.toml lists. Raises InstallationError naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise InstallationError(f"{path}: cannot read ({why})") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"at line (\d+)", str(exc))
        where = f"{path}:{m.group(1)}" if m else str(path)
        raise InstallationError(f"{where}: not valid TOML ({exc}); fix the file") from exc
    lines = text.splitlines()
    extra = sorted(set(data) - {"unit"})
    if extra:
        raise InstallationError(f"{path}:{_key_line(lines, extra[0], 0, len(lines))}: unknown table or key "
                                f"{extra[0]!r}: list builds as [[unit]] entries (see units.example.toml)")
    items = data.get("unit", [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise InstallationError(f"{path}:{_key_line(lines, 'unit', 0, len(lines))}: 'unit' must be an "
                                f"array of tables ([[unit]] entries)")
    starts = [i for i, line in enumerate(lines) if re.match(r"\s*\[\[\s*unit\s*\]\]", line)]
    if len(starts) != len(items):
        starts = [0] * len(items)
    entries, seen = [], {}
    for n, item in enumerate(items):
        begin = starts[n]
        end = starts[n + 1] if n + 1 < len(starts) and starts[n + 1] > begin else len(lines)
        entry = _entry(item, path, lines, begin, end)
        if entry.name in seen:
            raise InstallationError(f"{entry.where}: duplicate name {entry.name!r} (also at "
                                    f"{seen[entry.name]}): give each build its own name")
        seen[entry.name] = entry.where
        entries.append(entry)
    return entries


def _entry(item: dict, path: Path, lines: list[str], begin: int, end: int) -> Entry:
    where = f"{path}:{begin + 1}"

    def fail(key: str, msg: str) -> InstallationError:
        return InstallationError(f"{path}:{_key_line(lines, key, begin, end)}: {msg}")

    unknown = sorted(set(item) - ENTRY_KEYS)
    if unknown:
        raise fail(unknown[0], f"unknown key {unknown[0]!r} in a [[unit]] entry: use "
                               f"{', '.join(sorted(ENTRY_KEYS))}")
    for key in ("name", "unitd"):
        if key not in item:
            raise InstallationError(f"{where}: [[unit]] entry without {key!r}: every entry needs "
                                    f"name = \"...\" and unitd = \"/path/to/unitd\"")
    for key in ("name", "unitd", "modules", "arch", "flavor"):
        if key in item and (not isinstance(item[key], str) or not item[key]):
            raise fail(key, f"{key!r} must be a non-empty string")
    if not _NAME_RE.fullmatch(item["name"]):
        raise fail("name", f"name {item['name']!r}: use letters, digits and . _ + - only")
    flavor = item.get("flavor")
    if flavor is not None and flavor not in FLAVORS:
        raise fail("flavor", f"flavor {flavor!r}: use one of {', '.join(FLAVORS)}")
    arch = item.get("arch")
    if arch is not None:
        try:
            arch = normalize_arch(arch)
        except InstallationError as exc:
            raise fail("arch", str(exc)) from None
    runner = item.get("runner")
    if isinstance(runner, str):
        runner = tuple(shlex.split(runner))
    elif isinstance(runner, list) and all(isinstance(w, str) for w in runner):
        runner = tuple(runner)
    elif runner is not None:
        raise fail("runner", "'runner' must be a list of strings (an argv prefix) or a string")
    base = path.parent
    return Entry(unitd=_path(item["unitd"], base), source="units.toml", name=item["name"],
                 modules=_path(item["modules"], base) if "modules" in item else None,
                 arch=arch, runner=runner, flavor=flavor, where=where)


def _path(value: str, base: Path) -> Path:
    """``value`` as an absolute path, relative ones taken from ``base`` (the units.toml's dir):
    the host runs with its own work dir as cwd."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else Path(os.path.abspath(base / p))


def _key_line(lines: list[str], key: str, begin: int, end: int) -> int:
    """1-based line where ``key = ...`` appears in ``lines[begin:end]``; ``begin + 1`` if not found."""
    pattern = re.compile(rf"\s*{re.escape(key)}\s*=|\s*\[+\s*{re.escape(key)}\s*\]")
    for i in range(begin, min(end, len(lines))):
        if pattern.match(lines[i]):
            return i + 1
    return begin + 1


# -- declared builds --------------------------------------------------------------------------

def declared() -> tuple[list[Entry], list[Candidate]]:
    """Every build the sources name (unchecked), and the sources that are themselves broken."""
    entries: list[Entry] = []
    broken: list[Candidate] = []
    unitd = os.environ.get("UNITD")
    if unitd:
        modules = os.environ.get("UNIT_MODULES")
        entries.append(Entry(unitd=Path(unitd).expanduser(), source="UNITD",
                             modules=Path(modules).expanduser() if modules else None,
                             where=f"UNITD={unitd}"))
    try:
        path = registry_path()
        if path is not None:
            entries += load_registry(path)
    except InstallationError as exc:
        broken.append(Candidate("unit", None, "units.toml", str(exc)))
    on_path = shutil.which("unitd")
    if on_path:
        entries.append(Entry(unitd=Path(on_path), source="PATH", where=f"unitd on PATH ({on_path})"))
    if PACKAGED_UNITD.exists():
        entries.append(Entry(unitd=PACKAGED_UNITD, source="packaged", where=str(PACKAGED_UNITD)))
    entries += built_entries()
    return _dedupe(entries), broken


def built_entries() -> list[Entry]:
    """The builds ``restartbench build unit`` made (the build module's cache)."""
    from . import build as unitbuild

    return [_built_entry(b) for b in unitbuild.registered()]


def _built_entry(built) -> Entry:
    from . import build as unitbuild

    rec = built.record
    return Entry(unitd=built.unitd, source=unitbuild.BUILD_SOURCE, name=built.name, modules=built.modules,
                 arch=rec.get("arch"), flavor=rec.get("flavor"), commit=rec.get("commit", ""),
                 record=built.dir / unitbuild.RECORD, where=f"built in {built.dir}")


def installation_of(built) -> Installation:
    """The Installation of a build ``unitbuild`` made (checked like every other build)."""
    return inspect(_built_entry(built))


def _dedupe(entries: list[Entry]) -> list[Entry]:
    """Drop later entries naming the same executable + modules as an earlier one (PATH vs packaged)."""
    out, seen = [], set()
    for e in entries:
        key = (_real(e.unitd), _real(e.modules) if e.modules else None, e.name)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


def _real(p: Path) -> str:
    try:
        return str(p.resolve())
    except OSError:
        return str(p)


# -- checking a build -------------------------------------------------------------------------

def inspect(entry: Entry) -> Installation:
    """Check a declared build and describe it; raise InstallationError saying what is wrong."""
    exe = entry.unitd
    if not exe.exists():
        raise InstallationError(f"{entry.where}: no such file; {INSTALL_HINT}")
    if not exe.is_file() or not os.access(exe, os.X_OK):
        raise InstallationError(f"{entry.where}: not an executable file (point at the unitd binary, "
                                f"usually sbin/unitd)")
    arch = elf_arch(exe)
    if entry.arch and entry.arch != arch:
        raise InstallationError(f"{entry.where}: declared arch {entry.arch} but {exe} is an {arch} "
                                f"executable (ELF header): fix 'arch' or the path")
    runner = entry.runner if entry.runner is not None else runner_for(arch)
    text = _probe(runner, exe, "--version", where=entry.where)
    try:
        info = parse_version(text)
    except ValueError:
        got = text.strip().splitlines()[0][:120] if text.strip() else "nothing"
        raise InstallationError(f"{entry.where}: not NGINX Unit: `{exe.name} --version` printed "
                                f"{got!r}, not 'unit version: X.Y.Z'") from None
    modules = entry.modules or _default_modules(runner, exe, info, entry.where)
    check_modules(modules, entry.where)
    return Installation(kind="unit", name=entry.name or info.version, executable=exe,
                        version=info.version, arch=arch, runner=tuple(runner), modules=modules,
                        flavor=entry.flavor or flavor_of(text), commit=entry.commit,
                        build_record=entry.record)


def check_modules(modules: Path | None, where: str = "") -> Path:
    """Raise InstallationError unless ``modules`` is a dir holding the wasm-wasi-component module."""
    prefix = f"{where}: " if where else ""
    if modules is None:
        raise InstallationError(f"{prefix}cannot tell its modules dir: set UNIT_MODULES=/path/to/modules "
                                f"(or 'modules' in units.toml)")
    if not Path(modules).is_dir():
        raise InstallationError(f"{prefix}modules dir {modules} does not exist: set UNIT_MODULES "
                                f"(or 'modules' in units.toml) to the dir holding *.unit.so")
    if not (Path(modules) / WASM_MODULE).is_file():
        have = sorted(p.name for p in Path(modules).glob("*.unit.so"))
        raise InstallationError(f"{prefix}modules dir {modules} has no {WASM_MODULE} (has: "
                                f"{', '.join(have) or 'no modules'}): install the unit-wasm package "
                                f"(or use the unit:<ver>-wasm image's modules dir)")
    return Path(modules)


def _default_modules(runner, exe: Path, info: VersionInfo, where: str) -> Path | None:
    """The modules dir the build was configured with; else what --help prints; else the packaged one."""
    if info.modulesdir:
        return Path(info.modulesdir)
    default = help_modulesdir(_probe(runner, exe, "--help", where=where, check=False))
    if default:
        return Path(default)
    return PACKAGED_MODULES if exe == PACKAGED_UNITD else None


def _probe(runner, exe: Path, flag: str, *, where: str, check: bool = True) -> str:
    """stdout + stderr of ``unitd FLAG`` (a flag that prints and exits; unitd never starts with it)."""
    try:
        out = subprocess.run([*runner, str(exe), flag], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, timeout=PROBE_TIMEOUT_S, start_new_session=True)
    except subprocess.TimeoutExpired:
        raise InstallationError(f"{where}: `{exe.name} {flag}` did not finish in {PROBE_TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise InstallationError(f"{where}: cannot run {exe} ({exc.strerror})") from exc
    text = out.stdout.decode(errors="replace")
    if out.returncode != 0 and runner:
        from ...arches import elf_arch, foreign_failure_hint

        hint = foreign_failure_hint(text, elf_arch(exe), tuple(runner))
        if hint:
            raise InstallationError(f"{where}: {hint}")
    if check and out.returncode != 0 and "unit version:" not in text:
        raise InstallationError(f"{where}: not NGINX Unit: `{exe.name} {flag}` exited {out.returncode} "
                                f"({text.strip()[:120] or 'no output'})")
    return text


# -- the API UnitHost calls -----------------------------------------------------------

def discover() -> list[Candidate]:
    """Every Unit build declared here, usable or not (with the reason); a hint if there is none."""
    entries, found = declared()
    for entry in entries:
        label = f"unit@{entry.name}" if entry.name else "unit"
        try:
            inst = inspect(entry)
            found.append(Candidate(inst.label, inst, entry.source))
        except InstallationError as exc:
            found.append(Candidate(label, None, entry.source, str(exc)))
    if not found:
        found.append(Candidate("unit", None, "PATH", NO_UNIT))
    return found


def resolve(name: str = "", arch: str | None = None) -> Installation:
    """The Unit build called ``name`` (a units.toml name or a version; "" = the only or newest one),
    for ``arch`` if given. Raises InstallationError saying what to install or set."""
    _, broken = declared()
    if broken:                                   # a units.toml the user wrote but we cannot read
        raise InstallationError(broken[0].reason)
    found = discover()
    want_arch = normalize_arch(arch) if arch else None
    for c in found:                              # the build the user named explicitly is unusable
        if c.installation is None and (c.source == "UNITD" and not name or name and c.spec == f"unit@{name}"):
            raise InstallationError(c.reason)
    usable = [c.installation for c in found if c.installation is not None]
    if want_arch:
        usable = [i for i in usable if i.arch == want_arch]
    if name:
        named = [i for i in usable if i.answers_to(name)] or [i for i in usable if i.version == name]
        if not named:
            raise InstallationError(_not_found(f"unit@{name}", want_arch, found))
        usable = named
    if not usable:
        raise InstallationError(_not_found("unit", want_arch, found))
    native = normalize_arch(None)
    return max(usable, key=lambda i: (version_key(i.version), i.arch == native, -usable.index(i)))


def _not_found(spec: str, arch: str | None, found: list[Candidate]) -> str:
    usable = [c.installation for c in found if c.installation is not None]
    rejected = [c for c in found if c.installation is None and c.reason != NO_UNIT]
    what = f"{spec}" + (f" for {arch}" if arch else "")
    lines = [f"no usable NGINX Unit build matches {what}"]
    if usable:
        lines.append("available: " + ", ".join(f"{i.label} ({i.version}, {i.arch})" for i in usable))
    for c in rejected:
        lines.append(f"rejected {c.spec} [{c.source}]: {c.reason}")
    if not usable and not rejected:
        return NO_UNIT + (f" (for {arch})" if arch else "")
    lines.append(f"to add one: {INSTALL_HINT}")
    return "\n  ".join(lines)
