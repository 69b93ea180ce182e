"""Plain helpers the tests import (fixtures are in conftest.py)."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit


def http_get(where: str | int, path: str = "/", timeout: float = 10.0) -> tuple[int, str]:
    """One GET on a fresh connection to a URL (``http://host:port``) or a 127.0.0.1 port: (status, body)."""
    if isinstance(where, int):
        host, port = "127.0.0.1", where
    else:
        u = urlsplit(where)
        host, port = u.hostname, u.port
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def has_restart_bug(installation) -> bool:
    """The wasm-wasi-component restart bug (nginx/unit#1179): 1.32.0, fixed in 1.32.1 and 1.33.0."""
    return installation.version == "1.32.0"


def load_benchmark(name: str):
    """A module of benchmarks/ (not a package: asv imports those files by path), imported by path."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
