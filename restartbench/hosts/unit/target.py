"""NGINX Unit / FreeUnit: a private ``unitd`` per run, driven through its control API on a unix socket.

Every run gets its own instance, self-contained in the target's work dir (mode 0700)::

    control.sock   the control API (``--control unix:…``; Unit makes it 0600)
    state/ tmp/    ``--statedir`` and ``--tmpdir`` (created first: 1.32 makes only the last path part)
    unit.pid       ``--pid``
    unit.log       ``--log``; unitd's stdout/stderr are appended to it too (start-up errors land there)

``unitd --no-daemon`` runs in its own session (``procs.spawn``: it also dies with the orchestrator).
Every option is given a value: unitd takes a following option as a missing value and can then
start a second, daemonized Unit elsewhere (reference: NOTE-option-probe-incident.txt).

Privileges: unprivileged, Unit runs everything as the calling user (the reference runs did this,
via ``setpriv`` to nobody). As root, Unit would switch its router and app processes to ``nobody``,
which cannot enter the run's 0700 work dir nor, often, read the component; so the target passes
``--user``/``--group`` of the calling user (root) and all of Unit runs as that user. The target
options ``user=``/``group=`` override this (e.g. ``user="nobody"`` to mirror a packaged setup; the
component and the work dir's parents must then be readable by that user).

The app: ``{"type": "wasm-wasi-component", "component": <abs path>, "processes": N}`` behind a
listener on a free loopback port, or the user's own Unit application object (target option
``app_object=<file.json>``, any language Unit runs: ``processes`` and ``environment`` are set by
the run). Restart kinds and the control API calls they make:

``restart``    GET /control/applications/<app>/restart
``config``     PUT /config/applications/<app>/environment (Unit replaces the app processes)
``swap``       PUT /config/applications/<app>/component (a changed app object: Unit replaces the
               processes); then GET …/restart only if the path did not change (a rewritten file),
               or always with ``swap_restart=True``
``processes``  PUT /config/applications/<app>/processes
``change``     a scenario's control-API change: its request (method, /config path, JSON body) with the
               placeholders {app}, {address}, {port}, {port2}, {component}, {dir} filled in. A change Unit rejects stops the
               run there with Unit's own error (``error``, ``detail``, ``location.path``) in one line;
               ``check_changes`` sends every step to an idle instance first (``run.validate`` uses it)
``daemon``     unitd stopped (SIGTERM, bounded, as at the end of a run) and started again on the same
               state dir, so Unit restores its configuration from there, as ``systemctl restart unit``
               does; with ``upgrade_to`` the new unitd is that other build (a package upgrade). The
               reply says how long each half took, whether the configuration came back, and what the old
               daemon left behind (findings ``daemon_stop_hang``, ``daemon_left``, ``config_lost``,
               ``daemon_not_back``)

With ``second_app`` the configuration also serves ``other`` (the same component, its own process) on a
listener of its own (``other_url``): restarting or reconfiguring the app under test must not disturb it
(the load's requests to it, named ``/other``, are judged by the isolation check).

Shutdown never hangs the suite: SIGTERM to main, a bounded wait, then SIGKILL for the whole session
and for every process of the tree ever seen that left it. A main still alive after the wait is the
known Unit shutdown hang: recorded as a ``stop_hang`` finding; every survivor is recorded.

Unit's log gets the orchestrator's own lines (``results.log_mark``): ``restart <i>: <kind>`` just
before each action is sent, ``stop: SIGTERM`` and ``stop: SIGKILL`` before each signal, so that the
analysis knows which restart every crash or alert followed (the log's own times are whole seconds).

Under emulation (qemu-user) process titles are qemu's command line: roles then come from Unit's log,
where each process names itself when it starts (``LogRoles``).
"""

from __future__ import annotations

import grp
import http.client
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import psutil

from ... import procs, results
from ...errors import TargetError
from ...net import free_port, http_url, wait_http
from ..base import Installation, RestartReply, StopReport
from .processes import APP_NAME, LogRoles, unit_role

WASM_TYPE = "wasm-wasi-component"
OTHER_APP = "other"               # the second app of a ``second_app`` configuration
#: no address-space cap, even emulated (unlike wasmtime serve's): the module reserves 8 GiB of
#: address space per wasm instance, one per request in flight, and qemu-user passes each reservation
#: on to this machine; under a cap every instantiation fails (``mmap failed to reserve 0x200000000
#: bytes``, the app aborts). Its resident memory stays ~200 MB under qemu.
EMULATED_VMEM_CAP = None
SUN_PATH_MAX = 100                # bytes a unix socket path may have here (108 with NUL; keep a margin)
TRACK_EVERY_S = 2.0               # how often roots() re-walks the tree to remember its processes

# -- /status -----------------------------------------------------------------------------------

def flatten_status(status: dict[str, Any], app: str | None = APP_NAME) -> dict[str, float]:
    """/status as flat numeric counters: ``connections.active``, ``requests.total``,
    ``app.processes.running`` (``app`` = the run's app; other apps as ``applications.<name>.…``).
    Tolerates every shape since 1.28 (1.33+ adds ``modules``: not counters, skipped) and the
    whole-API document (``GET /``) that nests it under ``status``."""
    if "status" in status and isinstance(status["status"], dict) and "connections" not in status:
        status = status["status"]
    out: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            out[prefix] = float(value)
        elif isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), sub)

    for key, value in status.items():
        if key == "modules":
            continue
        if key == "applications" and isinstance(value, dict):
            for name, sub in value.items():
                walk("app" if name == app else f"applications.{name}", sub)
        else:
            walk(str(key), value)
    return out


# -- the control API over a unix socket -------------------------------------------------------

@dataclass
class Reply:
    """One control API answer."""

    method: str
    path: str
    status: int
    body: str
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def compact(self) -> str:
        """The body on one line (Unit pretty-prints with tabs)."""
        try:
            return json.dumps(self.json(), separators=(",", ":"))
        except ValueError:
            return " ".join(self.body.split())


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over an AF_UNIX stream socket."""

    def __init__(self, path: str | Path, timeout: float = 10.0):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def control(sock_path: str | Path, method: str, path: str, body: Any = None,
            timeout: float = 10.0) -> Reply:
    """One request to Unit's control API; ``body`` (not str/bytes) is sent as JSON.
    Raises OSError (incl. timeouts) when the socket does not answer."""
    data = None
    if body is not None:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        data = data.encode() if isinstance(data, str) else data
    conn = UnixHTTPConnection(sock_path, timeout)
    t = time.monotonic()
    try:
        conn.request(method, path, body=data,
                     headers={"Content-Type": "application/json"} if data is not None else {})
        resp = conn.getresponse()
        text = resp.read().decode(errors="replace")
        return Reply(method, path, resp.status, text, time.monotonic() - t)
    finally:
        conn.close()


class ChangeRejected(TargetError):
    """Unit refused a scripted change: the run stops at that action with Unit's error."""

    stops_run = True


def rejection(reply: Reply) -> str:
    """Unit's error answer in one line: ``error``, ``detail`` and ``location.path`` (or the raw body)."""
    try:
        doc = reply.json() or {}
    except ValueError:
        doc = {}
    if not isinstance(doc, dict) or not doc:
        return f"HTTP {reply.status} {reply.compact()}"
    loc = (doc.get("location") or {}).get("path") if isinstance(doc.get("location"), dict) else None
    return (f"HTTP {reply.status} {doc.get('error', '')}".strip()
            + (f" — {doc['detail']}" if doc.get("detail") else "") + (f" (at {loc})" if loc else ""))


# -- shutdown ---------------------------------------------------------------------------------

def shutdown(proc: subprocess.Popen, tracked: Iterable[psutil.Process], grace_s: float,
             role=unit_role, mark=lambda event: None) -> StopReport:
    """SIGTERM ``proc`` (unitd main, a session leader), wait up to ``grace_s`` for it, its session and every
    ``tracked`` process to exit, then SIGKILL what is left (``procs.stop_tree``). ``proc`` still alive
    after the wait is a ``stop_hang`` finding; every process left is a survivor. ``mark(event)`` is told
    ``stop: SIGTERM`` / ``stop: SIGKILL`` just before each signal goes out."""
    stopped = procs.stop_tree(proc, grace_s, tracked=tracked, mark=mark,
                              describe=lambda p: {**procs.describe_process(p), "role": role(procs.process_title(p))})
    report = StopReport(graceful=stopped.graceful, survivors=stopped.survivors, stop_s=stopped.stop_s)
    if not stopped.exited:
        report.findings.append({
            "kind": "stop_hang", "pid": proc.pid,
            "detail": f"unitd main {proc.pid} was still running {grace_s:g} s after SIGTERM (the known "
                      f"Unit shutdown hang); killed it and {len(stopped.survivors) - 1} other process(es)",
            "processes": stopped.survivors})
    if stopped.unkillable:
        report.findings.append({"kind": "stop_unkillable", "detail": f"{len(stopped.unkillable)} process(es) "
                                f"survived SIGKILL: {stopped.unkillable}"})
    return report


# -- the target -------------------------------------------------------------------------------

class UnitTarget:
    """One private unitd serving one app on a free loopback port; see the module docstring."""

    kind = "unit"
    restart_kinds = ("restart", "config", "swap", "processes", "change", "daemon")

    def __init__(self, installation: Installation, component: Path, workdir: Path, *,
                 address: str = "127.0.0.1", port: int | None = None, processes: int = 1,
                 app_name: str = APP_NAME, app_object: str | Path | dict | None = None,
                 env: dict[str, str] | None = None, user: str | None = None, group: str | None = None,
                 swap_restart: bool = False, ready_timeout_s: float = 60.0,
                 control_timeout_s: float = 10.0, stop_timeout_s: float = 5.0, second_app: bool = False):
        if installation.kind != "unit":
            raise TargetError(f"UnitTarget needs a unit installation, got {installation.kind!r}")
        if installation.modules is None:
            raise TargetError(f"{installation.label}: no modules dir; set UNIT_MODULES or 'modules' in units.toml")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", app_name):
            raise TargetError(f"app name {app_name!r}: use letters, digits, '_', '.', '-'")
        slow = 5.0 if installation.emulated else 1.0
        self.installation = installation
        self.component = Path(component).resolve()
        self.workdir = Path(workdir).resolve()
        self.address = address
        self.port = port or free_port(address)
        self.port2 = free_port(address)            # {port2}, {port4}: listeners a change may add
        self.port4 = free_port(address)
        self.second_app = bool(second_app)
        self.port3 = free_port(address) if self.second_app else 0      # the second app's own listener
        self.processes = int(processes)
        self.app_name = app_name
        self.app_object = load_app_object(app_object) if app_object is not None else None
        if self.app_object and self.app_object.get("type") == WASM_TYPE and self.app_object.get("component"):
            self.component = Path(self.app_object["component"]).resolve()
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self.user, self.group = _credentials(user, group)
        self.swap_restart = swap_restart
        self.ready_timeout_s = ready_timeout_s * slow
        self.control_timeout_s = control_timeout_s * slow
        self.stop_timeout_s = stop_timeout_s
        self.log_path = self.workdir / "unit.log"
        self._log_roles = LogRoles(self.log_path, app=app_name)
        self.state_dir = self.workdir / "state"
        self.tmp_dir = self.workdir / "tmp"
        self.pid_path = self.workdir / "unit.pid"
        self._sock_dir: Path | None = None
        self.control_socket = self._socket_path()
        self.proc: subprocess.Popen | None = None
        self.calls: list[Reply] = []
        self.findings: list[dict[str, Any]] = []
        self._seen: dict[int, psutil.Process] = {}
        self._tracked_at = 0.0
        self._roots: list[int] = []
        self._lock = threading.Lock()
        self._actions = 0
        self.config = self.full_config()

    # -- the protocol ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return http_url(self.address, self.port)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        """unitd up, control socket answering, config applied, app answering on ``url``."""
        if self.is_wasm() and not self.component.is_file():
            raise TargetError(f"component {self.component} not found: run `restartbench build-apps`")
        self._prepare_dirs()
        self._spawn()
        self._wait_control()
        reply = self._call("PUT", "/config", self.config)
        if not reply.ok:
            raise TargetError(f"Unit rejected the configuration: {reply.status} {reply.compact()}"
                              f"{self._alerts_hint()}")
        try:
            wait_http(self.url, self.ready_timeout_s, self._alive)
        except TargetError as exc:
            raise TargetError(f"the app did not answer: {exc}{self._alerts_hint()}") from exc
        self._track(force=True)

    def alive(self) -> bool:
        """unitd main still runs (False: it crashed or was killed)."""
        return self._alive()

    def exit_reason(self) -> str:
        if self.proc is None:
            return "not started"
        code = self.proc.poll()
        return "still running" if code is None else f"unitd main {procs.exit_reason(code)}"

    def roots(self) -> list[int]:
        """Main, plus any process of the tree ever seen that now lives outside it (reparented).
        Called by the census every round: the tree is walked only every ``TRACK_EVERY_S``
        (the census itself follows every process it has seen in between)."""
        if self.proc is None:
            return []
        self._track()
        return list(self._roots or [self.proc.pid])

    def role(self, title: str, pid: int = 0, ppid: int = 0) -> str:
        """From the process title; under emulation (titles are qemu's) from Unit's log."""
        role = unit_role(title, self.app_name)
        if role != "other" or not self.installation.emulated or not pid:
            return role
        return self._log_roles.role(pid, ppid, self.proc.pid if self.proc is not None else None)

    def restart(self, action: dict[str, Any]) -> RestartReply:
        """One scripted action through the control API; its status, body and timing recorded."""
        kind = action.get("kind", "restart")
        self._mark(f"restart {self._actions}: {kind}")      # the run's restart index, in Unit's log
        self._actions += 1
        if kind not in self.restart_kinds:
            raise TargetError(f"Unit cannot do a {kind!r} action; it does {', '.join(self.restart_kinds)}")
        app = f"/config/applications/{self.app_name}"
        restart = f"/control/applications/{self.app_name}/restart"
        if kind == "daemon":
            return self._restart_daemon(action)
        t_sent = time.monotonic()
        steps: list[Reply] = []
        if kind == "change":
            method, path = action["method"], self.fill(action["path"])
            steps.append(self._call(method, path, json.dumps(self.fill(action["body"])) if "body" in action else None))
            if not steps[-1].ok:
                raise ChangeRejected(f"Unit rejected change {action.get('name', '')!r}: {method} {path}: "
                                     f"{rejection(steps[-1])}")
        elif kind == "restart":
            steps.append(self._call("GET", restart))
        elif kind == "config":
            self.env.update({str(k): str(v) for k, v in action.get("env", {}).items()})
            env = self.app_config().get("environment", {})       # the app object's own values kept
            steps.append(self._call("PUT", f"{app}/environment", env))
        elif kind == "swap":
            if not self.is_wasm():
                raise TargetError("a component swap needs a wasm-wasi-component app (app_object is "
                                  f"{self.app_config().get('type')!r})")
            new = Path(action["component"]).resolve()
            unchanged = new == self.component
            self.component = new
            steps.append(self._call("PUT", f"{app}/component", json.dumps(str(new))))
            if steps[-1].ok and (unchanged or self.swap_restart):
                steps.append(self._call("GET", restart))
        else:
            self.processes = int(action["processes"])
            steps.append(self._call("PUT", f"{app}/processes", self.processes))
        t_done = time.monotonic()
        self.config = self.full_config() if kind != "change" else self._call("GET", "/config").json()
        failed = next((s for s in steps if not s.ok), steps[-1])
        body = steps[0].compact() if len(steps) == 1 else \
            "; ".join(f"{s.method} {s.path} {s.status} {s.compact()}" for s in steps)
        return RestartReply(kind=kind, t_sent=t_sent, t_done=t_done, http_status=failed.status, body=body,
                            method=steps[0].method, path=steps[0].path, name=str(action.get("name", "")))

    def _restart_daemon(self, action: dict[str, Any]) -> RestartReply:
        """Stop unitd (SIGTERM, bounded) and start it again on the same state dir (another build with
        ``upgrade_to``): Unit restores its configuration from the state dir. Never hangs: a daemon that
        does not come back is a finding (``daemon_not_back``), the run goes on and its requests fail."""
        t_sent = time.monotonic()
        before = self._call("GET", "/config").json()
        self._track(force=True)
        with self._lock:
            tracked = list(self._seen.values())
        old_pid = self.proc.pid
        stopped = shutdown(self.proc, tracked, self.stop_timeout_s, mark=self._mark)
        t_stopped = time.monotonic()
        for f in stopped.findings:
            self.findings.append({**f, "kind": "daemon_" + f["kind"].removeprefix("stop_"),
                                  "detail": f"at a daemon restart: {f['detail']}"})
        if stopped.survivors:
            self.findings.append({"kind": "daemon_left", "pid": old_pid, "processes": stopped.survivors,
                                  "detail": f"{len(stopped.survivors)} process(es) of the old unitd {old_pid} were "
                                            f"still running {self.stop_timeout_s:g} s after its SIGTERM (killed)"})
        with self._lock:
            self._seen.clear()
            self._roots = []
        upgrade = action.get("upgrade_to")
        if upgrade:
            from .discovery import resolve

            self.installation = resolve(upgrade, self.installation.arch)
        notes = [f"stopped in {t_stopped - t_sent:.2f} s" + ("" if stopped.graceful else
                                                            f" ({len(stopped.survivors)} left, killed)")]
        try:
            self._spawn()
            self._wait_control()
            after = self._call("GET", "/config").json()
            restored = after == before
            if not restored:
                self.findings.append({"kind": "config_lost", "detail": "after a daemon restart Unit's "
                                      "configuration was not the one before (restored from the state dir)",
                                      "before": before, "after": after})
            wait_http(self.url, self.ready_timeout_s, self._alive)
            notes.append(f"answering {time.monotonic() - t_stopped:.2f} s after the start"
                         + (f" ({self.installation.label} {self.installation.version})" if upgrade else "")
                         + f", configuration {'restored' if restored else 'NOT restored'}")
            status = 200 if restored else 500
            self.config = after
        except TargetError as exc:
            self.findings.append({"kind": "daemon_not_back", "detail": f"unitd did not come back after a daemon "
                                  f"restart: {str(exc).splitlines()[0]}"})
            notes.append(f"did not come back: {str(exc).splitlines()[0]}")
            status = 503
        self._track(force=True)
        return RestartReply(kind="daemon", t_sent=t_sent, t_done=time.monotonic(), http_status=status,
                            body="; ".join(notes), method="", path="")

    def status_sample(self) -> dict[str, float]:
        """GET /status, flattened (see ``flatten_status``). Raises when Unit does not answer."""
        reply = control(self.control_socket, "GET", "/status", timeout=1.0)
        if not reply.ok:
            raise TargetError(f"GET /status: {reply.status} {reply.compact()}")
        return flatten_status(reply.json(), self.app_name)

    def stop(self) -> StopReport:
        """SIGTERM main, bounded wait, then kill the session and every escaped process; see ``shutdown``."""
        if self.proc is None:
            self._cleanup()
            return StopReport(findings=list(self.findings))
        self._track(force=True)
        with self._lock:
            tracked = list(self._seen.values())
        report = shutdown(self.proc, tracked, self.stop_timeout_s, mark=self._mark)
        report.findings[:0] = self.findings
        self._cleanup()
        return report

    def describe(self) -> dict[str, Any]:
        app = f"/control/applications/{self.app_name}/restart"
        cfg = f"/config/applications/{self.app_name}"
        return {**self.installation.describe(), "restart_method": "control API",
                "restart_calls": {"restart": f"GET {app}", "config": f"PUT {cfg}/environment",
                                  "swap": f"PUT {cfg}/component" + (f" + GET {app}" if self.swap_restart else ""),
                                  "processes": f"PUT {cfg}/processes",
                                  "change": "the scenario's [changes] steps (PUT/POST/DELETE /config/...)",
                                  "daemon": "SIGTERM unitd, start it on the same state dir "
                                            "(upgrade_to: another build)"},
                "app_name": self.app_name, "component": str(self.component), "config": self.config,
                "control_socket": str(self.control_socket), "command": self.command(), "port": self.port,
                "user": self.user, "group": self.group, "app_object": self.app_object is not None}

    # -- configuration --------------------------------------------------------------------------

    def is_wasm(self) -> bool:
        return self.app_config().get("type") == WASM_TYPE

    def app_config(self) -> dict[str, Any]:
        """The application object: the user's (app_object) or the wasm component, with the run's
        ``processes`` and ``environment``."""
        if self.app_object is not None:
            app = json.loads(json.dumps(self.app_object))
        else:
            app = {"type": WASM_TYPE}
        if app.get("type") == WASM_TYPE:
            app["component"] = str(self.component)
        app["processes"] = self.processes
        if self.env:
            app["environment"] = {**app.get("environment", {}), **self.env}
        return app

    def full_config(self) -> dict[str, Any]:
        host = f"[{self.address}]" if ":" in self.address else self.address
        if not self.second_app:
            return {"listeners": {f"{host}:{self.port}": {"pass": f"applications/{self.app_name}"}},
                    "applications": {self.app_name: self.app_config()}}
        other = {**self.app_config(), "processes": 1}
        other.pop("environment", None)
        return {"listeners": {f"{host}:{self.port}": {"pass": f"applications/{self.app_name}"},
                              f"{host}:{self.port3}": {"pass": f"applications/{OTHER_APP}"}},
                "applications": {self.app_name: self.app_config(), OTHER_APP: other}}

    @property
    def other_url(self) -> str | None:
        """The second app's URL (``second_app``), else None."""
        return http_url(self.address, self.port3) if self.second_app else None

    def fill(self, value: Any) -> Any:
        """``value`` (a path or a JSON body) with {app}, {address}, {port}, {port2}, {component}, {dir} filled in."""
        if isinstance(value, str):
            host = f"[{self.address}]" if ":" in self.address else self.address
            for key, text in (("app", self.app_name), ("address", host), ("port", str(self.port)),
                              ("port2", str(self.port2)), ("port4", str(self.port4)),
                              ("component", str(self.component)),
                              ("dir", str(self.tmp_dir))):
                value = value.replace("{" + key + "}", text)
            return value
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        if isinstance(value, dict):
            return {self.fill(k): self.fill(v) for k, v in value.items()}
        return value

    def check_changes(self, steps: list[dict[str, Any]]) -> tuple[int, str]:
        """Send the change steps in order to this (idle) instance: the position of the first one Unit
        rejects and Unit's error in one line ((-1, "") when it takes them all). The configuration is
        restored afterwards."""
        before = self._call("GET", "/config").json()
        try:
            for n, step in enumerate(steps):
                reply = self._call(step["method"], self.fill(step["path"]),
                                   json.dumps(self.fill(step["body"])) if "body" in step else None)
                if not reply.ok:
                    return n, rejection(reply)
            return -1, ""
        finally:
            self._call("PUT", "/config", before)

    def command(self) -> list[str]:
        """unitd's argv: --no-daemon and every path option, each with a value, all in the work dir."""
        opts = [("--control", f"unix:{self.control_socket}"), ("--statedir", str(self.state_dir)),
                ("--pid", str(self.pid_path)), ("--log", str(self.log_path)),
                ("--tmpdir", str(self.tmp_dir)), ("--modulesdir", str(self.installation.modules))]
        if self.user:
            opts.append(("--user", self.user))
        if self.group:
            opts.append(("--group", self.group))
        argv = ["--no-daemon"]
        for opt, value in opts:
            if not value or value.startswith("-"):
                raise TargetError(f"unitd {opt} {value!r}: a value that looks like an option would be "
                                  f"taken as one; use an absolute path")
            argv += [opt, value]
        return self.installation.command(*argv)

    # -- internals ------------------------------------------------------------------------------

    def _socket_path(self) -> Path:
        """``workdir/control.sock``, or a short private dir when that path is too long for AF_UNIX."""
        path = self.workdir / "control.sock"
        if len(str(path).encode()) <= SUN_PATH_MAX:
            return path
        base = "/tmp" if os.path.isdir("/tmp") else None
        self._sock_dir = Path(tempfile.mkdtemp(prefix="rbu-", dir=base))
        return self._sock_dir / "control.sock"

    def _prepare_dirs(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o700)
        for d in (self.state_dir, self.tmp_dir):
            d.mkdir(mode=0o700, exist_ok=True)
        if self.control_socket.exists():
            self.control_socket.unlink()
        if self._sock_dir is not None:
            link = self.workdir / "control.sock"
            if not link.exists():
                link.symlink_to(self.control_socket)

    def _alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _spawn(self) -> None:
        """unitd started (its own session, dying with us), its start line marked in the log."""
        argv = self.command()
        if self.control_socket.exists():
            self.control_socket.unlink()
        with open(self.log_path, "ab") as log:
            log.write(results.log_mark(f"start: {' '.join(argv)}"))
            log.flush()
            try:
                self.proc = procs.spawn(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                        vmem_cap=EMULATED_VMEM_CAP if self.installation.emulated else None)
            except OSError as exc:
                raise TargetError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
        self._track(force=True)

    def _wait_control(self) -> None:
        deadline = time.monotonic() + self.control_timeout_s
        last = "no socket yet"
        while time.monotonic() < deadline:
            if not self._alive():
                raise TargetError(f"unitd exited (status {self.proc.returncode}) before its control socket "
                                  f"answered:{self._log_tail()}")
            if self.control_socket.exists():
                try:
                    if control(self.control_socket, "GET", "/config", timeout=1.0).ok:
                        return
                except OSError as exc:
                    last = str(exc)
            time.sleep(0.01)
        raise TargetError(f"unitd's control socket {self.control_socket} did not answer within "
                          f"{self.control_timeout_s:g} s ({last}){self._log_tail()}")

    def _call(self, method: str, path: str, body: Any = None) -> Reply:
        try:
            reply = control(self.control_socket, method, path, body, timeout=self.control_timeout_s)
        except OSError as exc:
            raise TargetError(f"control API {method} {path}: {exc or type(exc).__name__}") from exc
        self.calls.append(reply)
        return reply

    def _track(self, force: bool = False) -> bool:
        """Remember every process of main's tree (pid reuse is caught by psutil's create time);
        False when it was walked less than ``TRACK_EVERY_S`` ago (and not ``force``)."""
        now = time.monotonic()
        if self.proc is None or (not force and now - self._tracked_at < TRACK_EVERY_S):
            return False
        self._tracked_at = now
        found = procs.tree(self.proc.pid)
        with self._lock:
            for p in found:
                known = self._seen.get(p.pid)
                if known is None or not procs.alive(known):
                    self._seen[p.pid] = p
            for pid in [pid for pid, p in self._seen.items() if not procs.alive(p)]:
                del self._seen[pid]
            seen = dict(self._seen)
        roots = [self.proc.pid]
        for pid, p in seen.items():
            try:
                if pid != self.proc.pid and p.ppid() not in seen:
                    roots.append(pid)
            except psutil.Error:
                continue
        self._roots = roots
        return True

    def _log_tail(self, n: int = 8) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-n:]
        except OSError:
            return ""
        return "".join(f"\n    {line}" for line in lines) + f"\n  (log: {self.log_path})"

    def _alerts_hint(self) -> str:
        try:
            lines = [line for line in self.log_path.read_text(errors="replace").splitlines()
                     if "[alert]" in line or "[error]" in line or "[crit]" in line]
        except OSError:
            return ""
        tail = "".join(f"\n    {line}" for line in lines[-5:])
        return (f"; Unit logged:{tail}" if tail else "") + f"\n  (log: {self.log_path})"

    def _mark(self, event: str) -> None:
        """One orchestrator line in Unit's log (``results.log_mark``), in order with Unit's own:
        both append (Unit opens its log O_APPEND)."""
        try:
            with open(self.log_path, "ab") as log:
                log.write(results.log_mark(event))
        except OSError:
            pass

    def _cleanup(self) -> None:
        if self._sock_dir is not None:
            shutil.rmtree(self._sock_dir, ignore_errors=True)


def load_app_object(source: str | Path | dict) -> dict[str, Any]:
    """A Unit application object from a JSON file (or a dict): any ``type`` Unit runs."""
    if isinstance(source, dict):
        obj, where = source, "app_object"
    else:
        where = str(source)
        try:
            obj = json.loads(Path(source).read_text())
        except OSError as exc:
            raise TargetError(f"app_object {where}: cannot read ({exc.strerror})") from exc
        except ValueError as exc:
            raise TargetError(f"app_object {where}: not JSON ({exc})") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise TargetError(f"app_object {where}: must be a JSON object with a \"type\" (a Unit "
                          f"application object, e.g. {{\"type\": \"python\", \"path\": …, \"module\": …}})")
    return obj


def _credentials(user: str | None, group: str | None) -> tuple[str | None, str | None]:
    """``--user``/``--group`` for unitd: as given, else the caller's own when running as root
    (unprivileged, Unit cannot switch users and the options are left out)."""
    if user or group:
        return user, group
    if os.geteuid() != 0:
        return None, None
    return pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name
