"""Build any NGINX Unit or FreeUnit revision from source, with the wasm-wasi-component module.

``build(rev, source=..., flavor=..., arch=...)`` drives Unit's own ``./configure`` and ``make`` on a
tree exported from a git source (a URL, a local checkout or a bundle) and keeps the result in a cache
outside the project, where discovery finds it (``registered()``; ``restartbench targets`` lists it as
``unit@<tag or commit>``, source ``built``). Nothing is ever installed into the system.

Cache layout, under ``cache_root()`` (``$RESTARTBENCH_CACHE`` or ``~/.cache/restartbench``)/``unit``:

``sources/<flavor>-<key>.git``      a bare mirror of one source (fetched again only for an unknown rev)
``builds/<flavor>-<commit12>-<arch>/``  ``sbin/unitd``, ``modules/wasm_wasi_component.unit.so``,
                                    ``build.json`` (written last: its presence means "built") and
                                    ``build.log``; ``src/`` stays only after a failed build
``cargo-target/<arch>-<lock16>/``   the module's Rust target dir, shared by every revision whose
                                    ``Cargo.lock`` is the same: a sibling revision recompiles only the
                                    module itself
``toolchains/rustc-web-<ver>/``     a Debian rustc-web toolchain unpacked from its packages, for a lock
                                    the current Rust cannot compile (1.34.x: wasmtime 27)
``toolchain-for/<arch>-<lock16>``   the toolchain that last built that lock: tried first next time

The build record (``build.json``) holds the commit, the configure lines, the toolchain versions and
the time of each step; every run of such a build copies it into its run.json (``target.build``).
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ...arches import host_arch, normalize_arch
from ... import procs
from ...errors import InstallationError

FLAVORS = ("unit", "freeunit")
DEFAULT_SOURCES = {"unit": "https://github.com/nginx/unit.git",
                   "freeunit": "https://github.com/freeunitorg/freeunit.git"}
BUILD_SOURCE = "built"                      # Candidate.source of a build from this cache
RECORD = "build.json"
WASM_MODULE = "wasm_wasi_component.unit.so"
#: the configure line the shared builds and NGINX's packages use (paths are always overridden at run time)
CONFIGURE = ["--prefix=/usr", "--sbindir=/usr/sbin", "--modulesdir=/usr/lib/unit/modules",
             "--statedir=/var/lib/unit", "--logdir=/var/log/unit", "--runstatedir=/var/run/unit",
             "--tmpdir=/var/tmp", "--openssl"]
RUST_TARGETS = {"x86_64": "x86_64-unknown-linux-gnu", "aarch64": "aarch64-unknown-linux-gnu"}
DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
GIT_TIMEOUT_S = 1800.0
STEP_TIMEOUT_S = 3600.0
_RELEASE_TAG = re.compile(r"v?\d+\.\d+\.\d+")
_COMPILE_ERROR = re.compile(r"^error(\[E\d+\])?: ", re.M)
_OFFLINE = ("failed to download", "Couldn't resolve host", "failed to get", "spurious network error",
            "Could not resolve host", "failed to query replaced source registry")


class BuildError(InstallationError):
    """A build that cannot be done as asked (bad source or rev, missing prerequisites): the message
    says why and what to do."""


class BuildFailed(BuildError):
    """A build that was attempted and failed (a compile error, a step that exited non-zero)."""


# -- where things go --------------------------------------------------------------------------

def cache_root() -> Path:
    """``$RESTARTBENCH_CACHE`` or ``$XDG_CACHE_HOME/restartbench`` (``~/.cache/restartbench``)."""
    env = os.environ.get("RESTARTBENCH_CACHE")
    if env:
        return Path(env).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "restartbench"


def unit_cache() -> Path:
    return cache_root() / "unit"


def build_dir(flavor: str, commit: str, arch: str, configure_args: Sequence[str] = ()) -> Path:
    """A build's cache dir: flavor, commit and arch, and the configure options when there are any."""
    return unit_cache() / "builds" / (f"{flavor}-{commit[:12]}-{arch}" + options_suffix(configure_args))


#: configure options the builder sets itself (paths are the run's; the compiler is the arch's)
RESERVED_OPTIONS = ("--prefix", "--sbindir", "--modulesdir", "--statedir", "--logdir", "--runstatedir",
                    "--tmpdir", "--cc", "--control", "--pid", "--log")


def check_configure_args(args: Sequence[str]) -> list[str]:
    """``args`` for Unit's ``./configure``, checked: options only (``--name`` or ``--name=value``), none the
    builder sets itself. BuildError saying which and why."""
    out = []
    for arg in args:
        if not arg.startswith("--") or len(arg) < 3:
            raise BuildError(f"--configure-args: {arg!r} is not a configure option: pass options such as "
                             f"--zlib or --njs (one string, e.g. --configure-args \"--zlib --zstd\")")
        if arg.split("=", 1)[0] in RESERVED_OPTIONS:
            raise BuildError(f"--configure-args: {arg.split('=', 1)[0]} is set by the builder (every run passes "
                             f"its own paths); leave it out")
        out.append(arg)
    return out


def options_suffix(configure_args: Sequence[str]) -> str:
    """``+<options>-<hash>`` naming a build made with ``configure_args`` ("" without any): part of its
    name and cache key, so a build with options never stands in for one without."""
    if not configure_args:
        return ""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", " ".join(a.lstrip("-") for a in configure_args)).strip("-")[:24]
    return f"+{slug}-{hashlib.sha256(' '.join(configure_args).encode()).hexdigest()[:6]}"


# -- sources ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """A git source of Unit's history: what the user named, and our bare mirror of it."""

    spec: str                  # URL, checkout dir or bundle file, as given (absolute for paths)
    flavor: str
    mirror: Path

    def git(self, *args: str, timeout: float = GIT_TIMEOUT_S, check: bool = True) -> str:
        """``git --git-dir=<mirror> ARGS`` -> stdout; BuildError with git's own words on failure."""
        return _git(["--git-dir", str(self.mirror), *args], timeout=timeout, check=check)


def _git(args: list[str], *, timeout: float = GIT_TIMEOUT_S, check: bool = True) -> str:
    if shutil.which("git") is None:
        raise BuildError("git is not installed: apt-get install git")
    try:
        out = subprocess.run(["git", *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=timeout, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    except subprocess.TimeoutExpired:
        raise BuildError(f"git {args[-1]} did not finish in {timeout:g} s") from None
    if check and out.returncode != 0:
        why = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise BuildError(f"git {' '.join(a for a in args if not a.startswith('--git-dir'))[:80]}: {why}")
    return out.stdout


def source_spec(source: str | os.PathLike | None, flavor: str) -> str:
    """The source as a string: the flavor's public repository when None; paths made absolute.
    Raises BuildError for a path that is neither a checkout nor a bundle."""
    if flavor not in FLAVORS:
        raise BuildError(f"unknown flavor {flavor!r}: use {' or '.join(FLAVORS)}")
    if source is None or str(source) == "":
        return DEFAULT_SOURCES[flavor]
    text = str(source)
    if re.match(r"^[a-z][a-z0-9+.-]*://", text) or re.match(r"^[\w.-]+@[\w.-]+:", text):
        return text                                          # https://, ssh://, file://, git@host:path
    path = Path(text).expanduser().absolute()
    if path.is_dir():
        if not (path / ".git").exists() and not (path / "HEAD").is_file():
            raise BuildError(f"--source {text}: a directory but not a git checkout (no .git): give a "
                             f"checkout of Unit, a git bundle or a git URL")
        return str(path)
    if path.is_file():
        with open(path, "rb") as f:
            head = f.read(20)
        if not head.startswith(b"# v2 git bundle") and not head.startswith(b"# v3 git bundle"):
            raise BuildError(f"--source {text}: not a git bundle (no bundle header): give a bundle, a "
                             f"checkout of Unit or a git URL")
        return str(path)
    raise BuildError(f"--source {text}: no such file or directory: give a git URL, a checkout of Unit "
                     f"or a git bundle (e.g. ../shared/unit/src/nginx-unit.bundle)")


def open_source(source: str | os.PathLike | None = None, flavor: str = "unit",
                log: Callable[[str], None] = lambda s: None) -> Source:
    """Our bare mirror of ``source`` (cloned on first use, under a lock)."""
    spec = source_spec(source, flavor)
    sources = (unit_cache() / "sources").absolute()
    if Path(spec).parent == sources and (Path(spec) / "HEAD").is_file():
        return Source(spec, flavor, Path(spec))                 # one of our mirrors (asv's repo link)
    key = hashlib.sha1(spec.encode()).hexdigest()[:12]
    mirror = unit_cache() / "sources" / f"{flavor}-{key}.git"
    mirror.parent.mkdir(parents=True, exist_ok=True)
    with _locked(mirror.with_suffix(".lock")):
        if not (mirror / "HEAD").is_file():
            log(f"cloning {spec} (once; kept in {mirror.parent})")
            tmp = Path(tempfile.mkdtemp(prefix=mirror.name + ".", dir=mirror.parent))
            try:
                _git(["clone", "--quiet", "--mirror", spec, str(tmp / "m.git")])
                os.replace(tmp / "m.git", mirror)
            except BuildError as exc:
                raise BuildError(f"cannot clone {spec}: {str(exc).split(': ', 1)[-1]}"
                                 + ("" if os.path.exists(spec) else " (is the network reachable? "
                                    "give a local checkout or a git bundle of it instead)")) from None
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return Source(spec, flavor, mirror)


def resolve_rev(src: Source, rev: str) -> str:
    """The full commit ``rev`` (tag, branch, commit) names in ``src``; fetches once when unknown."""
    if not rev or rev.startswith("-") or any(c.isspace() for c in rev):
        raise BuildError(f"--rev {rev!r}: give a tag, branch or commit of the source")

    def lookup() -> str:
        for ref in (rev, f"refs/remotes/origin/{rev}"):
            out = src.git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False).strip()
            if out:
                return out
        return ""

    commit = lookup()
    if not commit:
        with _locked(src.mirror.with_suffix(".lock")):
            src.git("fetch", "--quiet", "--prune", "--tags", "origin", "+refs/*:refs/*", check=False)
        commit = lookup()
    if not commit:
        tags = sorted(release_tags(src), key=_tag_key)[-6:]
        raise BuildError(f"--rev {rev}: no such tag, branch or commit in {src.spec}"
                         + (f" (newest tags: {', '.join(tags)})" if tags else ""))
    return commit


def release_tags(src: Source, commit: str | None = None) -> list[str]:
    """The release tags of ``src`` (all, or those pointing at ``commit``)."""
    args = ["tag", "--list"] + (["--points-at", commit] if commit else [])
    return [t for t in src.git(*args).split() if _RELEASE_TAG.fullmatch(t)]


def _tag_key(tag: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", tag))


def build_name(src: Source, commit: str, flavor: str) -> str:
    """What users call a build: its release tag (``1.32.1``), else its short commit; FreeUnit's are
    prefixed (``freeunit-1.36.0``) so they never shadow NGINX's build of the same version."""
    tags = sorted(release_tags(src, commit), key=_tag_key)
    return flavored(tags[-1].removeprefix("v") if tags else commit[:10], flavor)


def flavored(name: str, flavor: str) -> str:
    """The target name of build ``name`` of ``flavor``: FreeUnit's carry a ``freeunit-`` prefix."""
    return f"freeunit-{name}" if flavor == "freeunit" else name


def is_ancestor(src: Source, old: str, new: str) -> bool:
    return subprocess.run(["git", "--git-dir", str(src.mirror), "merge-base", "--is-ancestor", old, new],
                          capture_output=True).returncode == 0


def first_parent(src: Source, old: str, new: str) -> list[str]:
    """The commits from ``old`` to ``new`` along ``new``'s first parents, oldest first, both ends
    included. Raises BuildError unless ``old`` is an ancestor of ``new``."""
    if not is_ancestor(src, old, new):
        raise BuildError(f"{old[:10]} is not an ancestor of {new[:10]}: bisect along one line of history "
                         f"(a tag and a later commit of the same branch)")
    inner = src.git("rev-list", "--first-parent", "--reverse", f"{old}..{new}").split()
    return [old] + inner


def subject(src: Source, commit: str) -> str:
    return src.git("log", "-1", "--format=%s", commit).strip()


# -- prerequisites ------------------------------------------------------------------------------

def missing_prerequisites(arch: str) -> list[tuple[str, str]]:
    """(what, Debian package) for every build prerequisite this machine lacks for ``arch``."""
    native = arch == host_arch()
    triplet = f"{arch}-linux-gnu"
    need: list[tuple[str, str]] = []
    if not native:
        if shutil.which(f"{triplet}-gcc") is None:
            need.append((f"an {arch} C cross compiler", f"gcc-{triplet.replace('_', '-')}"))
    elif not (shutil.which("cc") or shutil.which("gcc")):
        need.append(("a C compiler", "build-essential"))
    if shutil.which("make") is None:
        need.append(("make", "make"))
    if not _libclang():
        need.append(("libclang (the module's bindgen)", "libclang-dev"))
    incdir = Path("/usr/include") if native else Path(f"/usr/include/{triplet}")
    ssl_ok = (Path("/usr/include/openssl/ssl.h").is_file()
              and (native or (incdir / "openssl/opensslconf.h").is_file()))
    if not ssl_ok:
        need.append(("OpenSSL headers", "libssl-dev" + ("" if native else f":{DEB_ARCH[arch]}")))
    pcre_ok = Path("/usr/include/pcre2.h").is_file() and (
        native or any(Path(f"/usr/lib/{triplet}").glob("libpcre2-8.so")))
    if not pcre_ok:
        need.append(("PCRE2 headers", "libpcre2-dev" + ("" if native else f":{DEB_ARCH[arch]}")))
    if not native:
        if not Path(f"/usr/lib/{triplet}").joinpath("libc.so").exists() and not \
                Path(f"/usr/{triplet}/lib/libc.so").exists():
            need.append((f"the {arch} C library headers", f"libc6-dev-{DEB_ARCH[arch]}-cross"))
        if shutil.which(f"qemu-{arch}-static") is None:
            need.append((f"qemu-user for {arch} (configure runs its test programs)", "qemu-user-static"))
    return need


LIBCLANG_DIRS = ("/usr/lib/llvm-*/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64",
                 "/usr/lib")


def _libclang(dirs: Iterable[str] | None = None) -> bool:
    """Whether bindgen will find libclang (``libclang.so``, ``libclang-14.so.1``, ...). Not
    ``libclang-cpp.so.*``: clang's C++ library, which Debian's clang pulls in without libclang, matches
    bindgen's own glob but is no libclang ("couldn't find any valid shared libraries")."""
    dirs = list(dirs if dirs is not None else LIBCLANG_DIRS)
    if os.environ.get("LIBCLANG_PATH"):
        dirs.insert(0, os.environ["LIBCLANG_PATH"])
    found = [p for d in dirs for p in glob.glob(os.path.join(d, "libclang*.so*"))]
    return any(re.fullmatch(r"libclang(?:-\d[\d.]*)?\.so(?:\.[\d.]+)?", os.path.basename(p)) for p in found)


def check_prerequisites(arch: str) -> None:
    """Raise BuildError naming the packages to install, in one line, when something is missing."""
    need = missing_prerequisites(arch)
    if need:
        what = ", ".join(w for w, _ in need)
        pkgs = " ".join(dict.fromkeys(p for _, p in need))
        arch_arg = "" if arch == host_arch() else f" ARCH={arch}"
        raise BuildError(f"cannot build Unit for {arch} here: missing {what}: apt-get install {pkgs} "
                         f"(or `make unit-build-deps{arch_arg}`)")
    if arch != host_arch() and not _binfmt_enabled(arch):
        raise BuildError(f"Unit's configure runs its test programs, so {arch} ELF files must run here: "
                         f"update-binfmts --enable qemu-{arch} (package binfmt-support; `make "
                         f"unit-build-deps ARCH={arch}` does it)")


def install_prerequisites(arch: str, say: Callable[[str], None]) -> list[str]:
    """Install (apt-get; sudo when not root) what ``missing_prerequisites`` names, and for a foreign
    arch register qemu-user for its ELF files; returns the packages installed."""
    need = list(dict.fromkeys(p for _, p in missing_prerequisites(arch)))
    native = arch == host_arch()
    if native and need:
        need = list(dict.fromkeys(need + ["clang"] * ("libclang-dev" in need)))
    if not native:
        need = list(dict.fromkeys(need + ["binfmt-support"] * (shutil.which("update-binfmts") is None)))
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if need:
        if shutil.which("apt-get") is None:
            raise BuildError(f"install these (Debian/Ubuntu names) and retry: {' '.join(need)}")
        foreign = {p.split(":")[1] for p in need if ":" in p}
        for deb in sorted(foreign):
            if deb not in subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True,
                                         text=True).stdout.split():
                say(f"+ {' '.join(sudo)} dpkg --add-architecture {deb}".replace("+  ", "+ "))
                subprocess.run([*sudo, "dpkg", "--add-architecture", deb], check=True)
        for argv in ([*sudo, "apt-get", "update", "-qq"],
                     [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *need]):
            say("+ " + " ".join(argv))
            if subprocess.run(argv, env=env).returncode != 0:
                raise BuildError(f"`{' '.join(argv)}` failed: install {' '.join(need)} by hand and retry")
    if not native and not _binfmt_enabled(arch):
        if not Path("/proc/sys/fs/binfmt_misc/status").exists():
            subprocess.run([*sudo, "mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"])
        say(f"+ update-binfmts --enable qemu-{arch}")
        subprocess.run([*sudo, "update-binfmts", "--enable", f"qemu-{arch}"])
        if not _binfmt_enabled(arch):
            raise BuildError(f"could not register qemu-{arch} with binfmt_misc (Unit's configure runs "
                             f"{arch} test programs): update-binfmts --enable qemu-{arch}")
    return need


def _binfmt_enabled(arch: str) -> bool:
    entry = Path(f"/proc/sys/fs/binfmt_misc/qemu-{arch}")
    try:
        return entry.read_text().splitlines()[0].strip() == "enabled"
    except (OSError, IndexError):
        return False


# -- Rust toolchains ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Toolchain:
    """A Rust toolchain: where its cargo and rustc are, and the environment they need."""

    name: str                              # "rustc 1.95.0" / "rustc-web 1.85.0 (Debian)"
    cargo: str
    rustc: str
    env: tuple[tuple[str, str], ...] = ()  # extra variables (LD_LIBRARY_PATH of an unpacked toolchain)
    origin: str = ""                       # PATH | /usr/bin | Debian package (unpacked)

    def environ(self, base: dict[str, str]) -> dict[str, str]:
        env = dict(base)
        env.update(self.env)
        env["PATH"] = os.path.dirname(self.cargo) + os.pathsep + base.get("PATH", "")
        env["CARGO"], env["RUSTC"] = self.cargo, self.rustc
        return env

    def version(self) -> str:
        return _first_line([self.rustc, "--version"], self.environ(dict(os.environ)))

    def has_target(self, triple: str) -> bool:
        out = _first_line([self.rustc, "--print", "sysroot"], self.environ(dict(os.environ)))
        return bool(out) and (Path(out) / "lib/rustlib" / triple).is_dir()

    def describe(self) -> dict[str, str]:
        env = self.environ(dict(os.environ))
        return {"name": self.name, "origin": self.origin, "rustc": self.version(),
                "cargo": _first_line([self.cargo, "--version"], env)}


def _first_line(argv: list[str], env: dict[str, str] | None = None) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines and out.returncode == 0 else ""


def installed_toolchains() -> list[Toolchain]:
    """The Rust toolchains present: cargo/rustc on PATH (rustup's), then Debian's in /usr/bin."""
    pairs = []
    cargo, rustc = shutil.which("cargo"), shutil.which("rustc")
    if cargo and rustc:
        pairs.append((cargo, rustc, "PATH"))
    if os.path.exists("/usr/bin/cargo") and os.path.exists("/usr/bin/rustc") and \
            os.path.realpath("/usr/bin/rustc") != os.path.realpath(rustc or ""):
        pairs.append(("/usr/bin/cargo", "/usr/bin/rustc", "/usr/bin"))
    found = []
    for cargo, rustc, origin in pairs:
        version = Toolchain("", cargo, rustc).version()
        if version:
            found.append(Toolchain(f"{version.split(' (')[0]} ({origin})", cargo, rustc, origin=origin))
    return found


def debian_rust_versions() -> list[str]:
    """The rustc-web versions Debian's archive offers here (``apt-cache madison``), newest first."""
    if shutil.which("apt-cache") is None:
        return []
    out = subprocess.run(["apt-cache", "madison", "rustc-web"], capture_output=True, text=True, timeout=60)
    versions = [line.split("|")[1].strip() for line in out.stdout.splitlines() if line.count("|") >= 2]
    return list(dict.fromkeys(versions))


def debian_toolchain(version: str, arch: str, log: Callable[[str], None]) -> Toolchain:
    """Debian's rustc-web ``version`` unpacked into the cache (packages fetched with ``apt-get
    download``, with the shared libraries it needs that this machine lacks); for a foreign ``arch``
    the standard library for it too. Nothing is installed into the system."""
    short = version.split("+")[0]
    root = unit_cache() / "toolchains" / f"rustc-web-{short}"
    with _locked(root.with_suffix(".lock")):
        want = [f"rustc-web={version}", f"cargo-web={version}",
                f"libstd-rust-web-{'.'.join(short.split('.')[:2])}={version}", f"libstd-rust-web-dev={version}"]
        if arch != host_arch():
            want.append(f"libstd-rust-web-dev:{DEB_ARCH[arch]}={version}")
        stamp = root / ".unpacked"
        have = set(stamp.read_text().split()) if stamp.is_file() else set()
        todo = [p for p in want if p not in have]
        if todo:
            log(f"fetching Debian's Rust {short} ({', '.join(p.split('=')[0] for p in todo)}) into {root}")
            debs = root / "debs"
            debs.mkdir(parents=True, exist_ok=True)
            _apt_download(todo, debs)
            for _ in range(6):                   # their libraries' libraries too, to a fixed point
                more = _missing_libs(debs)
                if not more:
                    break
                _apt_download(more, debs)
            for deb in sorted(debs.glob("*.deb")):
                subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, capture_output=True)
            stamp.write_text("\n".join(sorted(have | set(todo))) + "\n")
    host_triplet = f"{host_arch()}-linux-gnu"
    libs = [str(root / "usr/lib" / host_triplet), str(root / "lib" / host_triplet)]
    env = (("LD_LIBRARY_PATH", os.pathsep.join(libs + [os.environ.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)),)
    tc = Toolchain(_toolchain_name(version), str(root / "usr/bin/cargo"), str(root / "usr/bin/rustc"),
                   env, origin=f"Debian rustc-web {version}, unpacked in {root}")
    if not tc.version() or not _first_line([tc.cargo, "--version"], tc.environ(dict(os.environ))):
        raise BuildError(f"Debian's rustc-web {short} was unpacked into {root} but does not run: "
                         f"delete that dir and retry")
    return tc


def _apt_download(packages: list[str], dest: Path) -> None:
    if not packages:
        return
    if shutil.which("apt-get") is None:
        raise BuildError("fetching a Rust toolchain needs Debian's apt-get: install a Rust toolchain that "
                         "builds this revision and put its cargo first on PATH")
    out = subprocess.run(["apt-get", "download", "-q", *packages], cwd=dest, capture_output=True,
                         text=True, timeout=900)
    if out.returncode != 0:
        why = (out.stderr.strip().splitlines() or ["no output"])[-1]
        hint = " (for another arch: dpkg --add-architecture arm64 && apt-get update)" if ":" in " ".join(
            p.split("=")[0] for p in packages) else ""
        raise BuildError(f"apt-get download {' '.join(packages)} failed: {why}{hint}")


def _missing_libs(debs: Path) -> list[str]:
    """Shared-library packages the unpacked debs depend on that are not installed on this machine."""
    fetched = {deb.name.split("_")[0] for deb in debs.glob("*.deb")}
    need = []
    for deb in debs.glob("*.deb"):
        depends = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True,
                                 text=True).stdout
        for alt in depends.split(","):
            name = alt.split("|")[0].strip().split(" ")[0].split(":")[0]
            if not name.startswith("lib") or name.endswith("-dev") or name in fetched or name in need:
                continue                                  # runtime libraries only
            installed = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", name], capture_output=True,
                                       text=True).stdout
            if "install ok installed" not in installed and _has_candidate(name):
                need.append(name)                         # (a virtual package has none: skipped)
    return need


def _has_candidate(package: str) -> bool:
    out = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True).stdout
    m = re.search(r"Candidate:\s*(\S+)", out)
    return bool(m) and m.group(1) != "(none)"


def toolchain_candidates(arch: str, lock_key: str, log: Callable[[str], None]) -> Iterable[Toolchain]:
    """Toolchains to try, best bet first: the one that last built this lock, then those installed,
    then Debian's rustc-web versions (fetched on demand). For a foreign arch only those holding
    that arch's standard library."""
    triple = RUST_TARGETS[arch]
    remembered = _read(unit_cache() / "toolchain-for" / f"{arch}-{lock_key}")
    installed = [tc for tc in installed_toolchains() if arch == host_arch() or tc.has_target(triple)]
    order: list[Toolchain | str] = [*installed, *debian_rust_versions()]
    order.sort(key=lambda x: _toolchain_name(x) != remembered)        # stable: the rest keep their order
    seen: set[str] = set()
    for item in order:
        if isinstance(item, str):
            try:
                item = debian_toolchain(item, arch, log)
            except BuildError as exc:
                log(f"  (skipping Debian rustc-web {item}: {exc})")
                continue
        if item.name not in seen:
            seen.add(item.name)
            yield item


def _toolchain_name(item: Toolchain | str) -> str:
    """A toolchain's name, also for a Debian version not fetched yet."""
    return item.name if isinstance(item, Toolchain) else f"rustc-web {item.split('+')[0]} (Debian)"


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


# -- building ---------------------------------------------------------------------------------

@dataclass
class Built:
    """A finished build: where its files are and its record."""

    dir: Path
    record: dict

    @property
    def unitd(self) -> Path:
        return self.dir / "sbin" / "unitd"

    @property
    def modules(self) -> Path:
        return self.dir / "modules"

    @property
    def name(self) -> str:
        return self.record["name"]


@dataclass
class _Steps:
    """The timed steps of one build, and where their output goes."""

    log_path: Path
    say: Callable[[str], None]
    times: dict[str, float] = field(default_factory=dict)

    def run(self, step: str, argv: list[str], cwd: Path, env: dict[str, str], *, check: bool = True,
            quiet: bool = False) -> subprocess.CompletedProcess:
        """Run one command of ``step``, appending its output to the log; BuildError on failure."""
        if not quiet:
            self.say(f"  {step}: {' '.join(argv)[:110]}")
        t0 = time.monotonic()
        with open(self.log_path, "a") as log:
            log.write(f"\n### {step}: {' '.join(argv)} (in {cwd})\n")
            log.flush()
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            try:
                rc = self._wait(proc, step, t0)
            except BaseException:              # Ctrl-C, timeout: the whole make/cargo tree goes
                procs.stop_tree(proc, 10.0)
                raise
        self.times[step] = round(self.times.get(step, 0.0) + time.monotonic() - t0, 1)
        if check and rc != 0:
            raise BuildFailed(f"{step} failed (exit {rc}): {self.tail()} (whole log: {self.log_path})")
        return subprocess.CompletedProcess(argv, rc)

    def _wait(self, proc: subprocess.Popen, step: str, t0: float, every_s: float = 30.0) -> int:
        """Wait for ``proc``, saying every ``every_s`` what it is at (the log's last line)."""
        while True:
            try:
                return proc.wait(timeout=every_s)
            except subprocess.TimeoutExpired:
                elapsed = time.monotonic() - t0
                if elapsed > STEP_TIMEOUT_S:
                    raise BuildFailed(f"{step} did not finish in {STEP_TIMEOUT_S:g} s (log: {self.log_path})")
                last = self.tail().strip()[:90]
                self.say(f"  {step}: {_mmss(elapsed)} … {last}")

    def tail(self, n: int = 1) -> str:
        """The most telling line of the log's last step: its first compile error, else its last line."""
        text = self.log_path.read_text(errors="replace")
        last = text.rsplit("\n### ", 1)[-1]
        m = _COMPILE_ERROR.search(last)
        if m:
            return last[m.start():].splitlines()[0][:300]
        lines = [ln for ln in last.strip().splitlines() if ln.strip()]
        return " | ".join(lines[-n:])[:300] if lines else "no output"


def find_built(flavor: str, commit: str, arch: str, configure_args: Sequence[str] = ()) -> Built | None:
    """The cached build of ``commit`` for ``arch`` (with ``configure_args``), if one finished."""
    d = build_dir(flavor, commit, arch, configure_args)
    try:
        record = json.loads((d / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return Built(d, record) if (d / "sbin/unitd").is_file() and (d / "modules" / WASM_MODULE).is_file() else None


def build(rev: str, *, source: str | os.PathLike | None = None, flavor: str | None = None,
          arch: str | None = None, jobs: int | None = None, rebuild: bool = False,
          configure_args: Sequence[str] = (),
          say: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> Built:
    """Build ``rev`` of ``source`` (default: the flavor's public repository) for ``arch`` with the
    wasm-wasi-component module, passing ``configure_args`` to Unit's ``./configure`` (features compiled in
    on request, e.g. ``--zlib``; part of the build's name and cache key); return the cached build when it
    exists (unless ``rebuild``)."""
    flavor = flavor or "unit"
    arch = normalize_arch(arch)
    configure_args = check_configure_args(configure_args)
    if arch not in RUST_TARGETS:
        raise BuildError(f"cannot build Unit for {arch}: use x86_64 or aarch64")
    src = open_source(source, flavor, log=say)
    commit = resolve_rev(src, rev)
    done = find_built(flavor, commit, arch, configure_args)
    if done and not rebuild:
        return done
    check_prerequisites(arch)
    out = build_dir(flavor, commit, arch, configure_args)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _locked(Path(str(out) + ".lock")):
        done = find_built(flavor, commit, arch, configure_args)    # another process built it while we waited
        if done and not rebuild:
            return done
        return _build(src, rev, commit, flavor, arch, out, jobs or os.cpu_count() or 2, say, configure_args)


def _build(src: Source, rev: str, commit: str, flavor: str, arch: str, out: Path, jobs: int,
           say: Callable[[str], None], configure_args: Sequence[str] = ()) -> Built:
    name = build_name(src, commit, flavor) + options_suffix(configure_args)
    native = arch == host_arch()
    t_start = time.monotonic()
    say(f"building {flavor} {name} ({commit[:10]}: {subject(src, commit)[:60]}) for {arch} in {out}")
    if out.exists():
        shutil.rmtree(out)
    tree = out / "src"
    tree.mkdir(parents=True)
    steps = _Steps(out / "build.log", say)
    archive = subprocess.run(["git", "--git-dir", str(src.mirror), "archive", "--format=tar", commit],
                             capture_output=True, timeout=GIT_TIMEOUT_S)
    if archive.returncode != 0:
        raise BuildError(f"git archive {commit[:10]} failed: {archive.stderr.decode(errors='replace')[-200:]}")
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    if not (tree / "auto/modules/wasm-wasi-component").is_file():
        raise BuildError(f"{name} ({commit[:10]}) has no wasm-wasi-component module (it came in 1.32.0): "
                         f"pick a later revision")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("CARGO_", "RUSTC", "RUSTUP_TOOLCHAIN"))}
    base_env["LC_ALL"] = "C"
    if flavor == "unit" and "freeunit" in _read(tree / "version").lower():
        flavor_seen = "freeunit"
    else:
        flavor_seen = flavor
    lock_key = hashlib.sha256((tree / "src/wasm-wasi-component/Cargo.lock").read_bytes()).hexdigest()[:16]
    target_dir = unit_cache() / "cargo-target" / f"{arch}-{lock_key}"
    target_dir.mkdir(parents=True, exist_ok=True)
    (tree / "src/wasm-wasi-component/target").symlink_to(target_dir, target_is_directory=True)
    triplet = f"{arch}-linux-gnu"
    configure = list(CONFIGURE) + ([] if native else [f"--cc={triplet}-gcc"]) + list(configure_args)
    env = dict(base_env)
    steps.run("configure", ["./configure", *configure], tree, env)
    steps.run("configure", ["./configure", "wasm-wasi-component"], tree, env, quiet=True)
    steps.run("C core", ["make", f"-j{jobs}", "unitd", "build/src/nxt_unit.o"], tree, env)
    tried, toolchain = _build_module(steps, tree, arch, lock_key, env, jobs)
    so = target_dir / ("" if native else RUST_TARGETS[arch]) / "release/libwasm_wasi_component.so"
    unitd = next((p for p in (tree / "build/sbin/unitd", tree / "build/unitd") if p.is_file()), None)
    if unitd is None or not so.is_file():
        raise BuildFailed(f"the build of {name} finished but produced no unitd or module (see {steps.log_path})")
    (out / "sbin").mkdir()
    (out / "modules").mkdir()
    shutil.copy2(unitd, out / "sbin/unitd")
    shutil.copy2(so, out / "modules" / WASM_MODULE)
    strip = "strip" if native else f"{triplet}-strip"
    if shutil.which(strip):
        for f in (out / "sbin/unitd", out / "modules" / WASM_MODULE):
            subprocess.run([strip, "--strip-debug", str(f)], capture_output=True)
    record = {
        "name": name, "flavor": flavor_seen, "rev": rev, "commit": commit,
        "describe": src.git("describe", "--tags", "--always", commit, check=False).strip(),
        "subject": subject(src, commit), "source": src.spec, "arch": arch,
        "configure": ["./configure", *configure], "module_configure": ["./configure", "wasm-wasi-component"],
        "configure_args": list(configure_args),
        "cargo_lock": lock_key, "cargo_target": str(target_dir),
        "toolchain": {"cc": _first_line(["cc" if native else f"{triplet}-gcc", "--version"]),
                      "rust": toolchain.describe(), "libclang": _libclang_version(),
                      "tried": tried},
        "times_s": {**steps.times, "total": round(time.monotonic() - t_start, 1)},
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "fixes": fixes_contained(src, commit),
    }
    tmp = out / (RECORD + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, out / RECORD)                    # the record last: a build is there or it is not
    shutil.rmtree(tree, ignore_errors=True)
    (unit_cache() / "toolchain-for").mkdir(exist_ok=True)
    (unit_cache() / "toolchain-for" / f"{arch}-{lock_key}").write_text(toolchain.name + "\n")
    say(f"built {flavor_seen} {name} for {arch} in {_mmss(record['times_s']['total'])} "
        f"(configure {_mmss(steps.times.get('configure', 0))}, C core {_mmss(steps.times.get('C core', 0))}, "
        f"module {_mmss(steps.times.get('module', 0))} with {toolchain.name}) -> unit@{name}")
    return Built(out, record)


def _build_module(steps: _Steps, tree: Path, arch: str, lock_key: str, env: dict[str, str],
                  jobs: int) -> tuple[list[dict], Toolchain]:
    """Compile the module with the first toolchain that can; what was tried, and the one that did."""
    native = arch == host_arch()
    triple = RUST_TARGETS[arch]
    tried: list[dict] = []
    first_error = ""
    for tc in toolchain_candidates(arch, lock_key, steps.say):
        tenv = tc.environ(env)
        tenv["CARGO_BUILD_JOBS"] = str(jobs)
        if native:
            argv = ["make", "wasm-wasi-component"]          # Unit's own rule: cargo build --release ...
        else:
            cross = f"{arch}-linux-gnu"
            up = triple.upper().replace("-", "_")
            tenv.update({f"CARGO_TARGET_{up}_LINKER": f"{cross}-gcc", f"CC_{triple.replace('-', '_')}": f"{cross}-gcc",
                         f"AR_{triple.replace('-', '_')}": f"{cross}-ar", "PKG_CONFIG_ALLOW_CROSS": "1",
                         f"BINDGEN_EXTRA_CLANG_ARGS_{triple.replace('-', '_')}":
                             f"--target={cross} -I/usr/{cross}/include -I/usr/include/{cross}"})
            argv = [tc.cargo, "build", "--release", "--target", triple,
                    "--manifest-path", "src/wasm-wasi-component/Cargo.toml"]
        steps.say(f"  module: compiling with {tc.name}")
        rc = steps.run("module", argv, tree, tenv, check=False, quiet=True).returncode
        if rc == 0:
            tried.append({"toolchain": tc.name, "result": "ok"})
            return tried, tc
        why = steps.tail()
        tried.append({"toolchain": tc.name, "result": f"failed: {why}"})
        first_error = first_error or why
        text = steps.log_path.read_text(errors="replace").rsplit("\n### ", 1)[-1]
        if any(s in text for s in _OFFLINE) and not _COMPILE_ERROR.search(text):
            raise BuildFailed(f"the module's crates could not be fetched: {why}: crates.io must be reachable "
                             f"(or vendored into ~/.cargo) (log: {steps.log_path})")
        if "Unable to find libclang" in text:            # no toolchain can help: the machine lacks libclang
            raise BuildError(f"the module's bindgen cannot find libclang: apt-get install libclang-dev (or "
                             f"`make unit-build-deps`), or set LIBCLANG_PATH (log: {steps.log_path})")
        steps.say(f"  module: {tc.name} cannot compile it ({why[:120]}); trying another toolchain")
        _clean_module(tree)
    raise BuildFailed(f"no Rust toolchain here compiles this revision's module (tried "
                     f"{', '.join(t['toolchain'] for t in tried) or 'none: install cargo (rustup)'}); "
                     f"first error: {first_error} (log: {steps.log_path})")


def _clean_module(tree: Path) -> None:
    """Drop a half-built module so the next toolchain starts from a clean state for it."""
    for p in (tree / "src/wasm-wasi-component/target").glob("*/release/libwasm_wasi_component.so"):
        p.unlink(missing_ok=True)


def _libclang_version() -> str:
    libs = sorted(glob.glob("/usr/lib/llvm-*/lib/libclang*.so*"))
    m = re.search(r"llvm-(\d+)", libs[-1]) if libs else None
    return f"libclang {m.group(1)}" if m else ""


def _mmss(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


class _locked:
    """An exclusive flock on ``path`` (created) for the duration of a ``with`` block."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.path, "w")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


# -- the builds discovery sees ------------------------------------------------------------------

def registered() -> list[Built]:
    """Every finished build in the cache, oldest first."""
    found = []
    for rec in sorted((unit_cache() / "builds").glob(f"*/{RECORD}"), key=lambda p: p.stat().st_mtime):
        try:
            built = Built(rec.parent, json.loads(rec.read_text()))
        except (OSError, ValueError):
            continue
        if built.unitd.is_file() and (built.modules / WASM_MODULE).is_file():
            found.append(built)
    return found


def fixes_contained(src: Source, commit: str) -> dict[str, bool | None]:
    """For every fixing commit the catalogue names (``analysis.catalogue.fix_commits``): whether
    ``commit`` contains it (descends from it), as the source's history says at build time (None: the
    source does not know that commit, e.g. a fix of the other flavor). Recorded in build.json, so the
    analysis places a build relative to a fix from the run's own files."""
    from restartbench.analysis.catalogue import fix_commits

    out: dict[str, bool | None] = {}
    for fix in fix_commits():
        known = subprocess.run(["git", "--git-dir", str(src.mirror), "cat-file", "-e", f"{fix}^{{commit}}"],
                               capture_output=True).returncode == 0
        out[fix] = is_ancestor(src, fix, commit) if known else None
    return out
