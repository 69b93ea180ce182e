"""Loopback networking the targets share: URLs, a free port, waiting for an HTTP answer."""

from __future__ import annotations

import socket
import time

from .errors import TargetError


def http_url(host: str, port: int) -> str:
    """``http://host:port`` with an IPv6 host bracketed."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free now (bound and released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float, proc_alive=lambda: True) -> float:
    """Poll ``url`` until it answers any HTTP status; return seconds taken. Raise TargetError on timeout
    or when ``proc_alive()`` turns false."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    t = time.monotonic()
    last = ""
    while time.monotonic() - t < timeout_s:
        if not proc_alive():
            raise TargetError(f"host exited before {url} answered")
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=2)
        try:
            conn.request("GET", parts.path or "/")
            conn.getresponse().read()
            return time.monotonic() - t
        except OSError as exc:
            last = str(exc)
        finally:
            conn.close()
        time.sleep(0.01)
    raise TargetError(f"{url} did not answer within {timeout_s:g} s ({last})")
