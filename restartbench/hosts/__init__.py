"""The hosts restartbench drives, one module (or package) each: ``wasmtime`` (the embedded default,
``wasmtime serve``) and ``unit`` (NGINX Unit and FreeUnit). Each defines ``HOST``, an instance of a
``base.Host`` subclass holding its discovery, target, options, restart kinds, validity checks,
process-title parsing and extra analysis checks. Everything else asks these functions:

    get("unit")                 # the Host of a kind (UnknownHost naming the kinds otherwise)
    of(installation)            # the Host of a build
    split("unit@1.32.0")        # -> (Host, "1.32.0"), checking the spec's form
    all_hosts()                 # every Host, in their ``order``

A new host is a new module here defining ``HOST`` (docs/hosts.md): nothing else changes.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from typing import Any

from ..errors import InstallationError
from .base import Host, Installation


class UnknownHost(InstallationError):
    """A host kind (or target spec) no host module defines."""


@functools.cache
def all_hosts() -> tuple[Host, ...]:
    """Every host module's ``HOST``, in ``order`` then kind."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        host = getattr(module, "HOST", None)
        if isinstance(host, Host):
            found.append(host)
    return tuple(sorted(found, key=lambda h: (h.order, h.kind)))


def kinds() -> list[str]:
    return [h.kind for h in all_hosts()]


def spec_help() -> str:
    """How targets are written, for messages: ``wasmtime, unit, unit@NAME``."""
    return ", ".join(h.spec_help() for h in all_hosts())


def get(kind: str) -> Host:
    """The Host of ``kind``."""
    for host in all_hosts():
        if host.kind == kind:
            return host
    raise UnknownHost(f"unknown host {kind!r}: use {spec_help()} (`restartbench targets` lists what is "
                      f"installed)")


def of(installation: Installation | dict[str, Any]) -> Host:
    """The Host of a build (an Installation, or its ``describe()`` dict as run.json holds it)."""
    kind = installation.get("kind") if isinstance(installation, dict) else installation.kind
    return get(str(kind))


def for_run(meta: dict[str, Any]) -> Host | None:
    """The Host a run's run.json names (None when it names none this suite knows)."""
    try:
        return of(meta.get("target") or {})
    except UnknownHost:
        return None


def split(spec: str) -> tuple[Host, str]:
    """``kind[@name]`` -> (its Host, name or ""). A name for a host with a single build must be its kind."""
    kind, _, name = str(spec).strip().partition("@")
    try:
        host = get(kind)
    except UnknownHost:
        raise UnknownHost(f"unknown target {spec!r}: use {spec_help()} (`restartbench targets` lists what "
                          f"is installed)") from None
    if not host.named and name not in ("", kind):
        raise InstallationError(f"{spec}: only the pinned {kind} is available; use --target {kind}")
    return host, "" if name == kind else name


def owner_of_option(name: str) -> Host | None:
    """The host whose options include ``name`` (the first in order), or None."""
    return next((h for h in all_hosts() if name in h.option_names()), None)


__all__ = ["Host", "Installation", "InstallationError", "UnknownHost", "all_hosts", "for_run", "get",
           "kinds", "of", "owner_of_option", "spec_help", "split"]
