#!/usr/bin/env python3
"""A stand-in host for fault tests — NOT wasmtime and not Unit: it answers HTTP on the ``--addr`` it is
given (like `wasmtime serve`) and, to test the suite's teardown, starts a grandchild that leaves the
host's session (setsid after a double fork) and would outlive the host's stop. Modes (env STANDIN_MODE):
``escape`` (default) as above; ``never-ready``: never listens; ``ignore-term``: answers, ignores SIGTERM."""

import http.server
import os
import signal
import sys
import time

mode = os.environ.get("STANDIN_MODE", "escape")
addr = sys.argv[sys.argv.index("--addr") + 1]
host, port = addr.rsplit(":", 1)

if mode == "never-ready":
    time.sleep(600)
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode == "escape" and os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execlp(sys.executable, sys.executable, "-c", "import time; time.sleep(600)", "standin-escapee")
    os._exit(0)


class Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"stand-in\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer((host, int(port)), Hello).serve_forever()
