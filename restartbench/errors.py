"""The error types several layers share (each module's own errors stay in that module).

``InstallationError`` is raised by discovery, the arch helpers and the builders alike (a target that
cannot be resolved); ``TargetError`` by every host target (the host could not be started or driven).
"""

from __future__ import annotations


class InstallationError(ValueError):
    """A target that cannot be resolved; the message says what to install or set."""


class TargetError(RuntimeError):
    """The host could not be started or driven (not a finding about restarts: a run failure)."""
