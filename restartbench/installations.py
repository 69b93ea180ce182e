"""Which host builds exist here, and which one a target spec names.

A target spec is what users type: ``wasmtime`` (the pinned wasmtime from PyPI) or ``unit``,
``unit@<name>`` (an installed or built NGINX Unit / FreeUnit); the part before ``@`` is a host kind
(``restartbench.hosts``). ``resolve(spec, arch)`` turns it into an ``Installation``; ``discover()``
lists every host's candidates with the reason any was rejected.

Architecture always comes from the executable's ELF header, never from the machine; a foreign-arch
executable runs under a user-mode emulator (``runner`` prefix), recorded as ``emulated`` (``arches``).
"""

from __future__ import annotations

from . import hosts
from .errors import InstallationError
from .hosts.base import Candidate, Installation


def resolve(spec: str, arch: str | None = None) -> Installation:
    """The installation a target spec names, for ``arch`` (default: this machine's)."""
    host, name = hosts.split(spec)
    return host.resolve(name, arch)


def discover() -> list[Candidate]:
    """Every host build found here, usable or not (with the reason), host by host."""
    return [c for host in hosts.all_hosts() for c in host.discover()]


def usable() -> list[Installation]:
    """Every usable host build ``discover()`` finds."""
    return [c.installation for c in discover() if c.installation is not None and not c.reason]


__all__ = ["Candidate", "Installation", "InstallationError", "discover", "resolve", "usable"]
