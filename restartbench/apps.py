"""The apps under test: a registry of wasm component sources and how to build them.

Every app is built from source by the suite into ``<out_dir>/<name>.wasm`` (default ``apps/build/``):

    from restartbench import apps
    path = apps.build("hello")               # rebuilt only when a source is newer
    apps.app_spec("pyhello").imports           # the WASI interfaces beyond wasi:http it needs (hosts map them)

All apps serve the same routes: ``/`` (200, a body naming the variant), ``/sleep?ms=N`` (holds the
request N ms, capped at 60000, then 200; missing or malformed ``ms`` is 400) and 404 elsewhere.
Variants of one source (``hello`` and ``hello-b``) differ only in a ``{{TAG}}`` substituted into the
source template at build time, so a component swap can be told apart by the response body.

The WIT worlds import only the WASI 0.2.0 interfaces they need, so the WAT components run on every
host from NGINX Unit 1.32 (wasmtime 17, wasi:http 0.2.0 exactly) on. componentize-py apps import the
WASI version of the runtime it bundles instead (``AppSpec.wasi_version``), which old hosts lack.
The official ``wasi:*@0.2.0`` WIT packages are not vendored: each build copies the ones its world
references (transitively) from :func:`restartbench.tools.wasi_wit_deps` into a temporary ``deps/``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from restartbench import tools

APPS_DIR = Path(__file__).resolve().parent.parent / "apps"
DEFAULT_OUT_DIR = APPS_DIR / "build"
BUILD_TIMEOUT_S = 600

_PARAM_VALUE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")
_WASI_REF = re.compile(r"\bwasi:([a-z][a-z0-9-]*)/[a-z][a-z0-9-]*@(\d+\.\d+\.\d+)")


class AppBuildError(RuntimeError):
    """Building an app failed; the message says which step failed and what to do about it."""


class UnknownApp(KeyError):
    """No app of that name is registered; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown app"


@dataclass(frozen=True)
class AppSpec:
    """One buildable app: its sources, how to build them, and what the host needs to run it."""

    name: str
    source: Path                         # dir under apps/ holding the template and wit/
    description: str
    builder: str = "wat"                 # "wat" (wasm-tools embed + new) | "componentize-py"
    template: str = "hello.wat.in"       # file in ``source`` rendered with ``params``
    world: str = "hello"                 # world in ``source/wit``
    params: Mapping[str, str] = field(default_factory=dict)   # template substitutions
    imports: tuple[str, ...] = ()        # WASI worlds it imports beyond wasi:http/proxy, e.g. ("wasi:cli",)
    wasi_version: str = "0.2.0"          # the WASI version its imports name; hosts must provide it

    def sources(self) -> list[Path]:
        """Every file whose change makes the built component stale (this module included)."""
        files = [p for p in sorted(self.source.rglob("*"))
                 if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")]
        return [*files, Path(__file__).resolve()]


def _spec(name: str, source: str, description: str, **kw) -> AppSpec:
    params = types.MappingProxyType(dict(kw.pop("params", {})))
    return AppSpec(name=name, source=APPS_DIR / source, description=description, params=params, **kw)


APPS: Mapping[str, AppSpec] = types.MappingProxyType({s.name: s for s in (
    _spec("hello", "hello", "hand-written WAT wasi:http handler, variant (a); ~11 KB",
          params={"TAG": "a"}),
    _spec("hello-b", "hello", "the same as hello with body variant (b), for component swaps",
          params={"TAG": "b"}),
    _spec("pyhello", "pyhello", "componentize-py (CPython) wasi:http handler, ~18 MB: its Cranelift "
          "compile dominates restart downtime", builder="componentize-py", template="app.py.in",
          world="pyhello", params={"TAG": "py"}, imports=("wasi:cli",),
          wasi_version="0.2.9"),     # componentize-py 0.25.1's runtime lifts every import to 0.2.9
)})


def app_spec(name: str) -> AppSpec:
    """The spec of a registered app; :class:`UnknownApp` (a KeyError) lists the known names."""
    try:
        return APPS[name]
    except KeyError:
        raise UnknownApp(f"unknown app {name!r}; known apps: {', '.join(APPS)}") from None


def output_path(name: str, out_dir: Path | None = None) -> Path:
    """Where :func:`build` puts the app's component."""
    app_spec(name)
    return Path(out_dir or DEFAULT_OUT_DIR) / f"{name}.wasm"


def is_up_to_date(name: str, out_dir: Path | None = None) -> bool:
    """True if the built component exists and is not older than any of its sources."""
    out = output_path(name, out_dir)
    if not out.exists():
        return False
    newest = max(p.stat().st_mtime_ns for p in app_spec(name).sources())
    return out.stat().st_mtime_ns >= newest


def build(name: str = "hello", out_dir: Path | None = None, force: bool = False) -> Path:
    """Build ``<out_dir>/<name>.wasm`` if missing or stale (or ``force``); return its path.

    The component is written under a temporary name, validated with ``wasm-tools validate``, then
    renamed into place, so readers never see a partial or invalid file.
    """
    spec = app_spec(name)
    out = output_path(name, out_dir)
    if not force and is_up_to_date(name, out_dir):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".wasm.tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with tempfile.TemporaryDirectory(prefix=f"restartbench-build-{name}-") as work:
            _BUILDERS[spec.builder](spec, Path(work), tmp)
        _run([_wasm_tools(), "validate", str(tmp)], f"validating {name}",
             "the built component is invalid: check the source and the wasm-tools version")
        tmp.chmod(0o644)                  # mkstemp makes it 0600; hosts may run apps as another user
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def build_all(out_dir: Path | None = None, force: bool = False) -> dict[str, Path]:
    """Build every registered app (each only if stale, unless ``force``); name -> component path."""
    return {name: build(name, out_dir, force) for name in APPS}


def render(text: str, params: Mapping[str, str]) -> str:
    """Substitute ``{{NAME}}`` (and ``{{NAME_LEN}}``, its length in bytes) in a source template."""
    values: dict[str, str] = {}
    for key, value in params.items():
        if not _PARAM_VALUE.fullmatch(value):
            raise AppBuildError(f"template parameter {key}={value!r} must match {_PARAM_VALUE.pattern}")
        values[key] = value
        values[f"{key}_LEN"] = str(len(value.encode()))

    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in values:
            raise AppBuildError(f"template placeholder {m.group(0)} has no value; known: {sorted(values)}")
        return values[m.group(1)]

    return _PLACEHOLDER.sub(sub, text)


def assemble_wit(spec: AppSpec, dest: Path) -> Path:
    """Copy the app's WIT to ``dest`` plus a ``deps/`` of the WASI packages it references."""
    shutil.copytree(spec.source / "wit", dest)
    deps = _wasi_deps()
    todo = _wasi_refs(dest)
    seen: set[str] = set()
    while todo:
        pkg = todo.pop()
        if pkg in seen:
            continue
        seen.add(pkg)
        if not (deps / pkg).is_dir():
            raise AppBuildError(f"WIT package {pkg} (needed by {spec.name}) is not in {deps}: "
                                "use a WASI version the installed spin-sdk wheel ships")
        shutil.copytree(deps / pkg, dest / "deps" / pkg)
        todo |= _wasi_refs(dest / "deps" / pkg)
    return dest


def _wasi_refs(wit_dir: Path) -> set[str]:
    """``<pkg>@<version>`` dir names of the wasi:* packages the .wit files in a dir mention."""
    return {f"{m.group(1)}@{m.group(2)}" for f in wit_dir.glob("*.wit")
            for m in _WASI_REF.finditer(f.read_text())}


def _build_wat(spec: AppSpec, work: Path, out: Path) -> None:
    wit = assemble_wit(spec, work / "wit")
    wat = work / f"{spec.name}.wat"
    wat.write_text(render((spec.source / spec.template).read_text(), spec.params))
    core = work / "core.wasm"
    hint = f"fix {spec.source / spec.template} or {spec.source / 'wit'}"
    _run([_wasm_tools(), "component", "embed", str(wit), "-w", spec.world, str(wat), "-o", str(core)],
         f"wasm-tools component embed ({spec.name})", hint)
    _run([_wasm_tools(), "component", "new", str(core), "-o", str(out)],
         f"wasm-tools component new ({spec.name})", hint)


def _build_componentize_py(spec: AppSpec, work: Path, out: Path) -> None:
    if importlib.util.find_spec("componentize_py") is None:
        raise AppBuildError(f"componentize-py is needed to build {spec.name}: run `make venv` "
                            "(pyproject.toml pins it) or `.venv/bin/pip install -e .`")
    wit = assemble_wit(spec, work / "wit")
    pkg = work / "py"
    pkg.mkdir()
    module = spec.template.removesuffix(".in").removesuffix(".py")
    (pkg / f"{module}.py").write_text(render((spec.source / spec.template).read_text(), spec.params))
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    _run([sys.executable, "-c", _COMPONENTIZE_PY, "-q", "-d", str(wit), "-w", spec.world,
          "componentize", module, "-p", str(pkg), "-o", str(out)],
         f"componentize-py ({spec.name})", f"fix {spec.source / spec.template} or {spec.source / 'wit'}",
         cwd=pkg, env=env)


# componentize-py's console script, run with this interpreter (the package has no __main__)
_COMPONENTIZE_PY = "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())"

_BUILDERS = {"wat": _build_wat, "componentize-py": _build_componentize_py}


def _wasm_tools() -> str:
    try:
        return str(tools.wasm_tools())
    except tools.ToolMissing as e:
        raise AppBuildError(str(e)) from e


def _wasi_deps() -> Path:
    try:
        return tools.wasi_wit_deps()
    except tools.ToolMissing as e:
        raise AppBuildError(str(e)) from e


def _run(argv: list[str], what: str, hint: str, cwd: Path | None = None,
         env: dict[str, str] | None = None) -> None:
    """Run a build step; on failure raise AppBuildError with its output and ``hint``."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, cwd=cwd,
                              env=env)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AppBuildError(f"{what} could not run: {e}; {hint}") from e
    if proc.returncode != 0:
        output = (proc.stderr or proc.stdout).strip()[-4000:]
        raise AppBuildError(f"{what} failed (exit {proc.returncode}): {output}\n"
                            f"command: {' '.join(argv)}\nwhat to do: {hint}")
