"""The Unit builder: sources (URL, checkout, bundle), revisions, prerequisites, and a real build of a
Unit release from the shared git bundle, run through a short scenario.

The real build goes into the default cache (``~/.cache/restartbench``), so it is made once per
machine: the first ``make test`` on a fresh machine compiles Unit's C core and its wasm module
(~5 min on 2 cores), later ones find it. It needs the Unit history (``../shared/unit/src`` or
``RESTARTBENCH_UNIT_SOURCE``) and the build prerequisites; without them it skips saying which.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from restartbench import arches
from restartbench import cli, installations
from restartbench.hosts.unit import build as unitbuild
from restartbench.hosts.unit import discovery as units
from restartbench.hosts.unit.build import BuildError

REPO = Path(__file__).resolve().parents[1]
SHARED_BUNDLE = REPO.parent / "shared/unit/src/nginx-unit.bundle"


def unit_history() -> Path | None:
    """A source of Unit's history to build from: $RESTARTBENCH_UNIT_SOURCE or the shared bundle."""
    env = os.environ.get("RESTARTBENCH_UNIT_SOURCE")
    if env:
        return Path(env)
    return SHARED_BUNDLE if SHARED_BUNDLE.is_file() else None


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True,
                          env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}).stdout.strip()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RESTARTBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def history(tmp_path):
    """A small git history shaped like Unit's release line: 1.0.0, two commits on, a merge, 1.1.0."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "master")
    for n, msg in enumerate(["first", "second", "third"]):
        (repo / "version").write_text(f"NXT_VERSION=1.0.{n}\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", msg)
        if n == 0:
            git(repo, "tag", "1.0.0")
    git(repo, "checkout", "-q", "-b", "side", "HEAD~1")
    (repo / "side").write_text("x\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "on a side branch")
    git(repo, "checkout", "-q", "master")
    git(repo, "merge", "-q", "--no-ff", "-m", "merge side", "side")
    git(repo, "tag", "v1.1.0")
    git(repo, "tag", "1.1.0-1")                  # a packaging tag: not a release name
    return repo


# -- sources and revisions ----------------------------------------------------------------------

def test_sources_are_checkouts_bundles_or_urls(tmp_path, cache, history):
    assert unitbuild.source_spec(None, "unit") == "https://github.com/nginx/unit.git"
    assert unitbuild.source_spec(None, "freeunit") == "https://github.com/freeunitorg/freeunit.git"
    assert unitbuild.source_spec("git@github.com:nginx/unit.git", "unit") == "git@github.com:nginx/unit.git"
    assert unitbuild.source_spec(history, "unit") == str(history)
    bundle = tmp_path / "h.bundle"
    git(history, "bundle", "create", str(bundle), "--all")
    assert unitbuild.source_spec(bundle, "unit") == str(bundle)
    for bad, words in ((tmp_path / "nope", "no such file or directory"),
                       (tmp_path, "not a git checkout"),
                       (history / "version", "not a git bundle")):
        with pytest.raises(BuildError, match=words):
            unitbuild.source_spec(bad, "unit")
    with pytest.raises(BuildError, match="unknown flavor"):
        unitbuild.source_spec(None, "nginx")
    # both kinds of local source give the same commits
    a = unitbuild.open_source(history, "unit")
    b = unitbuild.open_source(bundle, "unit")
    assert a.mirror != b.mirror and a.mirror.is_relative_to(cache)
    assert unitbuild.resolve_rev(a, "v1.1.0") == unitbuild.resolve_rev(b, "v1.1.0") == git(history, "rev-parse", "v1.1.0")


def test_revisions_names_and_first_parent_history(cache, history):
    src = unitbuild.open_source(history, "unit")
    tip = unitbuild.resolve_rev(src, "master")
    first = unitbuild.resolve_rev(src, "1.0.0")
    assert unitbuild.resolve_rev(src, tip[:8]) == tip
    assert unitbuild.build_name(src, tip, "unit") == "1.1.0"             # release tag, v dropped
    assert unitbuild.build_name(src, tip, "freeunit") == "freeunit-1.1.0"
    middle = unitbuild.resolve_rev(src, "master~1")
    assert unitbuild.build_name(src, middle, "unit") == middle[:10]       # no release tag: the commit
    line = unitbuild.first_parent(src, first, tip)
    assert line[0] == first and line[-1] == tip and len(line) == 4        # the side commit is not on it
    assert [unitbuild.subject(src, c) for c in line] == ["first", "second", "third", "merge side"]
    side = unitbuild.resolve_rev(src, "side")
    assert unitbuild.is_ancestor(src, first, side) and not unitbuild.is_ancestor(src, tip, first)
    with pytest.raises(BuildError, match="not an ancestor"):
        unitbuild.first_parent(src, tip, first)
    with pytest.raises(BuildError, match=r"--rev 9\.9\.9: no such tag.*newest tags: 1\.0\.0, v1\.1\.0"):
        unitbuild.resolve_rev(src, "9.9.9")
    # a commit made in the checkout after the mirror was cloned: found by fetching once
    (history / "later").write_text("y\n")
    git(history, "add", "-A")
    git(history, "commit", "-q", "-m", "later")
    assert unitbuild.resolve_rev(src, git(history, "rev-parse", "HEAD")) == git(history, "rev-parse", "HEAD")


def test_a_tree_without_the_wasm_module_is_refused(cache, history):
    if unitbuild.missing_prerequisites(arches.host_arch()):
        pytest.skip("build prerequisites missing")
    with pytest.raises(BuildError, match="has no wasm-wasi-component module"):
        unitbuild.build("1.0.0", source=history, say=lambda s: None)
    assert unitbuild.registered() == []


def test_missing_prerequisites_are_named_in_one_line(monkeypatch):
    monkeypatch.setattr(unitbuild, "_libclang", lambda: False)
    real = unitbuild.shutil.which
    monkeypatch.setattr(unitbuild.shutil, "which", lambda name: None if name in ("cc", "gcc") else real(name))
    with pytest.raises(BuildError) as exc:
        unitbuild.check_prerequisites("x86_64" if arches.host_arch() == "x86_64" else "aarch64")
    msg = str(exc.value)
    assert "\n" not in msg and "a C compiler" in msg and "libclang" in msg
    assert "apt-get install build-essential libclang-dev" in msg and "make unit-build-deps" in msg


def test_cli_build_bad_input_is_one_line_exit_2(capsys, cache, tmp_path):
    assert cli.main(["build", "unit", "--rev", "1.32.1", "--source", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --source") and "no such file or directory" in err and err.count("\n") == 1
    assert cli.main(["build", "unit", "--rev", "1.32.1", "--arch", "sparc"]) == 2
    assert "unknown architecture" in capsys.readouterr().err


# -- a real build -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built_1_32_1():
    """NGINX Unit 1.32.1 built from Unit's history (once per machine: the default cache)."""
    src = unit_history()
    if src is None:
        pytest.skip("no Unit history to build from: set RESTARTBENCH_UNIT_SOURCE to a checkout, bundle or "
                    "git URL of NGINX Unit (the shared builds' ../shared/unit/src/nginx-unit.bundle)")
    need = unitbuild.missing_prerequisites(arches.host_arch())
    if need:
        pytest.skip(f"cannot build Unit here: apt-get install {' '.join(p for _, p in need)} "
                    f"(or `make unit-build-deps`)")
    return unitbuild.build("1.32.1", source=src)


@pytest.mark.unit
@pytest.mark.timeout(1800)                       # a cold build (the fixture) takes minutes
def test_real_build_is_registered_and_recorded(built_1_32_1, capsys):
    b = built_1_32_1
    rec = b.record
    assert rec["name"] == "1.32.1" and rec["flavor"] == "unit" and len(rec["commit"]) == 40
    assert rec["configure"][0] == "./configure" and "--openssl" in rec["configure"]
    assert rec["toolchain"]["rust"]["rustc"].startswith("rustc ") and rec["toolchain"]["cc"]
    assert rec["times_s"]["total"] > 0 and rec["cargo_lock"]
    inst = units.installation_of(b)
    assert inst.version == "1.32.1" and inst.commit == rec["commit"] and inst.answers_to(rec["commit"][:8])
    assert inst.describe()["build"]["commit"] == rec["commit"]
    # discovery lists it as a build of ours, by tag and by commit
    found = [c for c in units.discover() if c.source == unitbuild.BUILD_SOURCE and c.installation]
    assert any(c.installation.commit == rec["commit"] for c in found)
    assert units.resolve(rec["commit"][:10]).executable == b.unitd
    assert cli.main(["targets"]) == 0
    assert "built" in capsys.readouterr().out
    # asking again is a cache hit: nothing is compiled
    again = unitbuild.build("1.32.1", source=unit_history(), say=lambda s: pytest.fail(f"rebuilt: {s}"))
    assert again.dir == b.dir


@pytest.mark.unit
@pytest.mark.timeout(1800)
def test_real_build_runs_a_short_scenario(built_1_32_1, tmp_path):
    """The built 1.32.1 serves through restarts and passes the gate, as the shared 1.32.1 does; its
    run.json says which commit, configure line and toolchain made it."""
    from restartbench import analysis
    from restartbench.run import run

    inst = units.installation_of(built_1_32_1)
    config = cli.run_config(cli.build_parser().parse_args(
        ["run", "--target", f"unit@{inst.commit[:10]}", "--duration", "12s", "--restart-every", "4s",
         "--users", "10", "--results-dir", str(tmp_path), "--quiet"]))
    assert config.installation.commit == inst.commit
    outcome = run(config)
    assert outcome.status == "complete", outcome.meta.get("reason")
    meta = json.loads((outcome.path / "run.json").read_text())
    build = meta["target"]["build"]
    assert build["commit"] == inst.commit and build["configure"] and build["toolchain"]["rust"]["rustc"]
    verdict = analysis.evaluate([__import__("restartbench").results.read_run(outcome.path)])
    assert verdict.passed, analysis.gate.render(verdict)


@pytest.mark.unit
@pytest.mark.slow                      # a 12-minute cold build is a benchmark's cost, not a test's: -m slow
@pytest.mark.timeout(3600)
def test_cross_build_for_arm64_runs_under_qemu():
    """1.32.1 cross-built for aarch64 on this x86_64 machine (once per machine: ~12 min cold), its
    ELF files are aarch64, its record names the cross compiler and the Rust that had the target,
    and the Installation runs it under qemu-user."""
    if arches.host_arch() != "x86_64":
        pytest.skip("the cross-build recipe is for an x86_64 machine")
    src = unit_history()
    if src is None:
        pytest.skip("no Unit history to build from (RESTARTBENCH_UNIT_SOURCE)")
    need = unitbuild.missing_prerequisites("aarch64")
    if need or not unitbuild._binfmt_enabled("aarch64"):
        pytest.skip(f"cannot cross-build for aarch64 here: `make unit-build-deps ARCH=arm64` installs "
                    f"{' '.join(p for _, p in need) or 'the binfmt registration'}")
    built = unitbuild.build("1.32.1", source=src, arch="aarch64")
    assert arches.elf_arch(built.unitd) == "aarch64"
    assert arches.elf_arch(built.modules / unitbuild.WASM_MODULE) == "aarch64"
    rec = built.record
    assert rec["arch"] == "aarch64" and "--cc=aarch64-linux-gnu-gcc" in rec["configure"]
    assert rec["toolchain"]["cc"].startswith("aarch64-linux-gnu-gcc")
    inst = units.installation_of(built)
    assert inst.emulated and inst.version == "1.32.1" and inst.arch == "aarch64"


def test_libclang_means_libclang_not_clangs_cpp_library(tmp_path, monkeypatch):
    """Debian's clang brings libclang-cpp.so.14 without libclang: bindgen then fails to build the module,
    so the prerequisites check must name libclang-dev (seen on a fresh CI machine)."""
    monkeypatch.delenv("LIBCLANG_PATH", raising=False)
    (tmp_path / "libclang-cpp.so.14").touch()
    assert not unitbuild._libclang([str(tmp_path)])
    (tmp_path / "libclang-14.so.1").touch()
    assert unitbuild._libclang([str(tmp_path)])


def test_configure_args_are_checked_and_name_the_build():
    assert unitbuild.check_configure_args(["--zlib", "--zstd"]) == ["--zlib", "--zstd"]
    with pytest.raises(BuildError, match="'zlib' is not a configure option"):
        unitbuild.check_configure_args(["zlib"])
    with pytest.raises(BuildError, match="--modulesdir is set by the builder"):
        unitbuild.check_configure_args(["--modulesdir=/x"])
    plain, zlib = unitbuild.build_dir("unit", "a" * 40, "x86_64"), unitbuild.build_dir("unit", "a" * 40, "x86_64", ["--zlib"])
    assert plain != zlib and zlib.name.startswith(plain.name + "+zlib-")
    assert unitbuild.options_suffix(["--zlib"]) != unitbuild.options_suffix(["--zlib", "--zstd"])
    assert unitbuild.options_suffix([]) == ""


def test_cli_configure_args_bad_input_is_one_line_exit_2(capsys):
    assert cli.main(["build", "unit", "--rev", "1.32.1", "--configure-args=--prefix=/opt"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--prefix is set by the builder" in err


@pytest.mark.unit
@pytest.mark.timeout(1800)
def test_a_build_with_configure_args_is_another_build(built_1_32_1):
    """1.32.1 with --debug: its own cache entry and name, the option in its configure line, in build.json and
    in what the built unitd says of itself; the module's compiled crates are reused (same Cargo.lock)."""
    debug = unitbuild.build("1.32.1", source=unit_history(), configure_args=["--debug"])
    assert debug.dir != built_1_32_1.dir and debug.name.startswith("1.32.1+debug-")
    assert debug.record["configure_args"] == ["--debug"] and "--debug" in debug.record["configure"]
    assert debug.record["cargo_lock"] == built_1_32_1.record["cargo_lock"]
    out = subprocess.run([str(debug.unitd), "--version"], capture_output=True, text=True, timeout=30)
    assert "--debug" in out.stdout + out.stderr
    inst = units.installation_of(debug)
    assert inst.name == debug.name and units.resolve(debug.name).executable == debug.unitd
    assert units.resolve("1.32.1").executable != debug.unitd         # the plain name is still the plain build


def test_an_unreachable_source_is_one_line_naming_the_way_out(cache, tmp_path):
    from restartbench.hosts.unit.build import BuildError, open_source

    url = "http://127.0.0.1:9/unit.git"              # loopback, nothing listens on the discard port
    with pytest.raises(BuildError) as caught:
        open_source(url, "unit")
    text = str(caught.value)
    assert text.startswith(f"cannot clone {url}: ") and "\n" not in text
    assert "give a local checkout or a git bundle of it instead" in text
    assert not list((cache / "unit" / "sources").glob("*.git"))     # nothing half-cloned left
