"""The commands about host builds and apps: ``targets``, ``build-apps``, ``build``, ``build-deps``."""

from __future__ import annotations

import argparse

from rich.table import Table

from .. import apps, arches, hosts, installations
from .common import (EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, UsageError, console, errors, positive)

def register(sub) -> None:
    """Add ``targets``, ``build-apps``, ``build``, ``build-deps`` to the subcommands."""
    p = sub.add_parser("targets", help="list the host builds found here (and why any was rejected)")
    p.set_defaults(func=cmd_targets)

    p = sub.add_parser("build-apps", help="build the wasm component apps from source")
    p.add_argument("names", nargs="*", help=f"apps to build (default all: {', '.join(apps.APPS)})")
    p.add_argument("--force", action="store_true", help="rebuild even when up to date")
    p.set_defaults(func=cmd_build_apps)

    p = sub.add_parser("build", help="build NGINX Unit or FreeUnit from source (any tag, branch or commit) "
                       "with the wasm-wasi-component module, into the cache; `targets` then lists it")
    p.add_argument("what", choices=["unit"], help="what to build: unit (NGINX Unit or FreeUnit, see --flavor)")
    p.add_argument("--rev", required=True, help="tag, branch or commit; comma-separated for several")
    p.add_argument("--source", default=None, help="a git URL, a local checkout or a git bundle (default: "
                   "the flavor's public repository)")
    p.add_argument("--flavor", choices=["unit", "freeunit"], default="unit",
                   help="unit (NGINX Unit, default) or freeunit (the fork continuing it)")
    p.add_argument("--arch", default=None, help="x86_64 or aarch64 (arm64: cross-built on x86_64)")
    p.add_argument("--missing", action="store_true", help="only the revs no discovered build answers to "
                   "(what `make bench UNIT=...` uses)")
    p.add_argument("--rebuild", action="store_true", help="build again even when the cache has it")
    p.add_argument("--configure-args", default="", metavar="\"ARGS\"",
                   help="options for Unit's ./configure, one quoted string (e.g. \"--zlib --zstd\": features "
                   "compiled in only on request); part of the build's name (unit@1.35.0+zlib-zstd-…) and cache key, "
                   "recorded in build.json")
    p.add_argument("-j", "--jobs", type=positive(int, "--jobs"), default=None,
                   help="parallel make/cargo jobs (default: the CPU count)")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("build-deps", help="install (apt-get) what `build unit` needs here: compilers, "
                       "libclang, OpenSSL/PCRE2 headers; for --arch aarch64 the cross tools and qemu-user")
    p.add_argument("--arch", default=None, help="the arch to build for (default this machine's)")
    p.set_defaults(func=cmd_build_deps)


def cmd_targets(args: argparse.Namespace) -> int:
    table = Table(title="host builds found", title_justify="left")
    for col in ("target", "version", "arch", "runs as", "source", "modules / note"):
        table.add_column(col)
    usable = 0
    found = installations.discover()            # runs every candidate's --version: once
    for cand in found:
        inst = cand.installation
        if inst is not None and not cand.reason:
            usable += 1
            table.add_row(inst.label, inst.version, inst.arch, "emulated" if inst.emulated else "native",
                          cand.source, str(inst.modules or inst.executable))
        else:
            table.add_row(cand.spec, "-", "-", "-", cand.source, f"[red]rejected:[/] {cand.reason}")
    console.print(table)
    for host in hosts.all_hosts():                 # a host with no usable build: how to get one
        mine = [c for c in found if c.spec.partition("@")[0] == host.kind]
        if not any(c.installation and not c.reason for c in mine) and host.missing_hint():
            console.print(host.missing_hint())
    return EXIT_OK if usable else EXIT_USAGE


def cmd_build_apps(args: argparse.Namespace) -> int:
    names = args.names or list(apps.APPS)
    for name in names:
        try:
            apps.app_spec(name)
        except apps.UnknownApp as exc:
            raise UsageError(str(exc)) from None
    for name in names:
        path = apps.build(name, force=args.force)
        console.print(f"{name}: {path} ({path.stat().st_size:,} bytes)")
    return EXIT_OK


def cmd_build(args: argparse.Namespace) -> int:
    from .. import matrix
    from ..hosts.unit import build as unitbuild, discovery as units

    revs = matrix.split_list(args.rev)
    if not revs:
        raise UsageError("--rev is empty: pass a tag, branch or commit, e.g. --rev 1.32.1")
    arch = arches.normalize_arch(args.arch)
    import shlex

    try:
        options = unitbuild.check_configure_args(shlex.split(args.configure_args or ""))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    table = Table(title=f"{args.flavor} builds for {arch}", title_justify="left")
    for col in ("rev", "target", "commit", "toolchain", "build time", "where"):
        table.add_column(col, overflow="fold")
    for rev in revs:
        if args.missing and not args.rebuild and not options:
            try:
                inst = units.resolve(unitbuild.flavored(rev, args.flavor), arch)
                table.add_row(rev, inst.label, inst.commit[:10] or "-", "-", "already there",
                              str(inst.executable))
                continue
            except installations.InstallationError:
                pass
        try:
            built = unitbuild.build(rev, source=args.source, flavor=args.flavor, arch=arch, jobs=args.jobs,
                                    rebuild=args.rebuild, configure_args=options,
                                    say=lambda s: errors.print(s, markup=False, highlight=False))
        except unitbuild.BuildFailed as exc:
            errors.print(f"error: building {args.flavor} {rev} for {arch} failed: {exc}", markup=False,
                         highlight=False, soft_wrap=True)
            return EXIT_RUN_FAILED
        rec = built.record
        table.add_row(rev, f"unit@{built.name}", rec["commit"][:10], rec["toolchain"]["rust"]["name"],
                      f"{rec['times_s']['total']:.0f} s", str(built.dir))
    console.print(table)
    return EXIT_OK


def cmd_build_deps(args: argparse.Namespace) -> int:
    from ..hosts.unit import build as unitbuild

    arch = arches.normalize_arch(args.arch)
    done = unitbuild.install_prerequisites(arch, say=lambda s: errors.print(s, markup=False, highlight=False))
    unitbuild.check_prerequisites(arch)
    console.print(f"build prerequisites for {arch}: " + (f"installed {' '.join(done)}" if done else
                                                          "all present"))
    return EXIT_OK
