"""restartbench.hosts.wasmtime on the real pinned `wasmtime serve`: the listening address it is given."""

from __future__ import annotations

import socket

import pytest

from helpers import http_get
from restartbench import apps, installations
from restartbench.hosts import wasmtime as wasmtime_host
from restartbench.hosts.wasmtime import WasmtimeTarget


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_serves_on_the_ipv6_loopback(tmp_path):
    """wasmtime takes ``[::1]:PORT`` (it rejects ``::1:PORT``)."""
    target = WasmtimeTarget(wasmtime_host.installation(), apps.build("hello"), tmp_path / "host", address="::1")
    assert target.command()[target.command().index("--addr") + 1] == f"[::1]:{target.port}"
    try:
        target.start()
        assert target.url == f"http://[::1]:{target.port}"
        assert http_get(target.url) == (200, "hello from restartbench (a)\n")
    finally:
        target.stop()
