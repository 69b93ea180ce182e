"""restartbench.hosts.unit.target: roles from real Unit titles, /status shapes, the control client, config and
argv, bounded shutdown; and, with a real unitd (``-m unit``), start, every restart kind, a run, teardown."""

from __future__ import annotations

import json
import os
import re
import socketserver
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pandas as pd
import psutil
import pytest
from helpers import has_restart_bug, http_get

from restartbench import procs
from restartbench.errors import TargetError
from restartbench.versions import version_key
from restartbench.hosts.base import Installation
from restartbench.hosts.unit.processes import LogRoles, parse_title, unit_role
from restartbench.hosts.unit.target import Reply, UnitTarget, control, flatten_status, shutdown

DATA = Path(__file__).parent / "data" / "unit"
PS_LINE = re.compile(r"^\s*(\d+)\s+(\d+)\s.*?(unit: .*)$")


def ps_titles(name: str) -> list[tuple[int, int, str]]:
    """(pid, ppid, title) of every Unit process in a reference ``ps`` excerpt."""
    out = []
    for line in (DATA / name).read_text().splitlines():
        m = PS_LINE.match(line)
        if m:
            out.append((int(m.group(1)), int(m.group(2)), m.group(3)))
    return out


def fake_installation(tmp_path: Path, **kw) -> Installation:
    """An Installation record for config/argv tests (nothing is executed)."""
    modules = tmp_path / "modules"
    modules.mkdir(exist_ok=True)
    base = dict(kind="unit", name="1.32.0", executable=tmp_path / "sbin" / "unitd", version="1.32.0",
                arch="x86_64", modules=modules, flavor="unit")
    return Installation(**{**base, **kw})


# -- roles from the titles of real Unit processes ---------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("ps-1.32.0-restart-under-load.txt", {2128: "main", 2132: "controller", 2133: "router", 5033: "prototype",
                                          5034: "app", 7183: "prototype", 7186: "app"}),
    ("ps-1.35.0-two-prototypes.txt", {13333: "main", 13337: "controller", 13338: "router", 23107: "prototype",
                                      23108: "app", 23109: "app", 29218: "prototype", 29221: "app", 29222: "app"}),
    ("ps-1.32.0-sigterm-hang.txt", {2128: "main", 22731: "prototype", 22786: "app", 22787: "app"}),
    ("ps-1.32.0-orphans.txt", {22731: "prototype", 22786: "app", 22787: "app"}),
])
def test_roles_of_reference_trees(name, expected):
    rows = ps_titles(name)
    assert {pid: unit_role(title, "labapp") for pid, _, title in rows} == expected    # the reference's app
    others = {pid: unit_role(title) for pid, _, title in rows}     # under test is "restartbench": labapp's
    assert {p for p, r in others.items() if r == "bystander"} == {p for p, r in expected.items()
                                                                   if r in ("app", "prototype")}
    for pid, ppid, title in rows:                       # apps are children of a prototype
        role, detail = parse_title(title)
        if role == "app":
            assert dict((p, unit_role(t, "labapp")) for p, _, t in rows).get(ppid, "prototype") == "prototype"
        if role in ("prototype", "app"):
            assert detail == "labapp"
        if role == "main":
            assert detail == name.split("-")[1]         # the version in `unit: main v1.32.0 [...]`


def test_log_roles_name_every_process_from_units_log(tmp_path):
    """Under qemu-user titles are qemu's argv: roles come from Unit's own log (a real 1.32.0 log)."""
    log = tmp_path / "unit.log"
    text = (DATA / "wasm-1.32.0-load.log").read_text()
    head, tail = text[:text.index("5960#5960")], text[text.index("5960#5960"):]
    log.write_text(head)
    roles = LogRoles(log, every_s=0.0)
    assert roles.role(5926, 1, main=5926) == "main"
    assert roles.role(5927, 5926, main=5926) == "discovery"
    assert roles.role(5929, 5926, main=5926) == "router"
    assert roles.role(5930, 5926, main=5926) == "prototype"
    assert roles.role(5931, 5930, main=5926) == "app"
    assert roles.role(5928, 5926, main=5926) == "controller"          # main's unnamed child
    assert roles.role(5960, 5926, main=5926) == "other"               # not logged yet (after the router) ...
    assert roles.role(9999, 5931, main=5926) == "other"
    log.write_text(head + tail)                                          # ... the log grows
    assert roles.role(5960, 5926, main=5926) == "prototype"
    assert roles.role(5961, 5960, main=5926) == "app"


def test_titles_as_psutil_joins_them():
    """psutil splits a NUL-padded title into words and empty strings; the census joins them with spaces."""
    for _, _, title in ps_titles("ps-1.32.0-restart-under-load.txt"):
        padded = " ".join([title, "", "", ""])
        assert unit_role(padded) == unit_role(title) != "other"


def test_other_titles():
    argv = " ".join(psutil.Process().cmdline())
    assert unit_role(argv) == "other"
    _, _, main = ps_titles("ps-1.32.0-restart-under-load.txt")[0]
    cmd = main[main.index("[") + 1:-1]                  # unitd's own argv, as qemu-user would show it
    assert unit_role(cmd) == "other"
    assert unit_role("qemu-aarch64-static -L /usr/aarch64-linux-gnu " + cmd) == "other"
    assert unit_role("") == "other"


# -- /status ----------------------------------------------------------------------------------

def test_status_1_32():
    flat = flatten_status(json.loads((DATA / "status-1.32.0.json").read_text()), "labapp")
    assert flat == {"connections.accepted": 1512.0, "connections.active": 0.0, "connections.idle": 0.0,
                    "connections.closed": 1512.0, "requests.total": 1038648.0,
                    "app.processes.running": 2.0, "app.processes.starting": 0.0, "app.processes.idle": 2.0,
                    "app.requests.active": 0.0}


def test_status_1_35_has_modules_which_are_not_counters():
    flat = flatten_status(json.loads((DATA / "status-1.35.0.json").read_text()), "labapp")
    assert not any(k.startswith("modules") for k in flat)
    assert flat["connections.active"] == 8.0 and flat["app.requests.active"] == 0.0
    assert set(flat) == set(flatten_status(json.loads((DATA / "status-1.32.0.json").read_text()), "labapp"))


def test_status_other_shapes():
    other = flatten_status(json.loads((DATA / "status-1.32.0.json").read_text()), "restartbench")
    assert other["applications.labapp.processes.running"] == 2.0 and "app.processes.running" not in other
    idle = flatten_status(json.loads((DATA / "status-idle-1.32.0.json").read_text()), "labapp")
    assert (idle["connections.accepted"], idle["requests.total"], idle["app.processes.idle"]) == (4.0, 4.0, 2.0)
    empty = flatten_status(json.loads((DATA / "status-empty-1.32.0.json").read_text()))
    assert empty == {"connections.accepted": 0.0, "connections.active": 0.0, "connections.idle": 0.0,
                     "connections.closed": 0.0, "requests.total": 0.0}
    assert flatten_status(json.loads((DATA / "root-1.35.0.json").read_text())) == empty
    sub = flatten_status(json.loads((DATA / "status-app-1.32.0.json").read_text()))
    assert sub == {"processes.running": 2.0, "processes.starting": 0.0, "processes.idle": 2.0,
                   "requests.active": 0.0}


# -- the control client -----------------------------------------------------------------------

class _Recorded(BaseHTTPRequestHandler):
    """Answers with recorded Unit bodies (tests the unix-socket HTTP client, not Unit)."""

    routes: dict = {}
    received: list = []

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.received.append((self.command, self.path, self.rfile.read(length).decode()))
        if self.path == "/slow":
            time.sleep(3)
        status, name = self.routes.get((self.command, self.path), (404, "control/404-restart-unknown-app.json"))
        body = (DATA / name).read_bytes()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def recorded_socket(tmp_path):
    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

    path = tmp_path / "control.sock"
    _Recorded.received = []
    _Recorded.routes = {
        ("GET", "/control/applications/labapp/restart"): (200, "control/200-restart.json"),
        ("POST", "/control/applications/labapp/restart"): (405, "control/405-restart-post.json"),
        ("PUT", "/config/applications/labapp/processes"): (400, "control/400-processes-zero.json"),
        ("PUT", "/config/applications/labapp/environment"): (200, "control/200-put-environment.json"),
        ("GET", "/status"): (200, "status-1.35.0.json"),
    }
    server = Server(str(path), _Recorded)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield path
    server.shutdown()
    server.server_close()


def test_control_client_over_a_unix_socket(recorded_socket):
    r = control(recorded_socket, "GET", "/control/applications/labapp/restart")
    assert (r.status, r.json(), r.ok) == (200, {"success": "Ok"}, True)
    assert r.compact() == '{"success":"Ok"}' and r.seconds < 1
    r = control(recorded_socket, "GET", "/control/applications/nope/restart")
    assert (r.status, r.json()) == (404, {"error": "Value doesn't exist."})
    r = control(recorded_socket, "POST", "/control/applications/labapp/restart")
    assert (r.status, r.json()["error"]) == (405, "Method isn't allowed.")
    r = control(recorded_socket, "PUT", "/config/applications/labapp/processes", 0)
    assert r.status == 400 and "must be equal to or greater than 1" in r.json()["detail"]
    control(recorded_socket, "PUT", "/config/applications/labapp/environment", {"LABVAR": "v1"})
    assert _Recorded.received[-1] == ("PUT", "/config/applications/labapp/environment", '{"LABVAR": "v1"}')
    assert _Recorded.received[-2][2] == "0"


@pytest.mark.parametrize("path", sorted(p.name for p in (DATA / "control").glob("*.json")))
def test_recorded_control_bodies(path):
    status = int(path.split("-")[0])
    reply = Reply("GET", "/", status, (DATA / "control" / path).read_text(), 0.0)
    body = reply.json()
    assert reply.ok == (status == 200) and set(body) & ({"success"} if reply.ok else {"error"})
    assert "\t" not in reply.compact() and "\n" not in reply.compact()
    if status == 400 and "location" in body:           # bad JSON: Unit says where
        assert body["location"] == {"offset": 9, "line": 1, "column": 10}


def test_control_client_timeout_and_missing_socket(recorded_socket, tmp_path):
    t = time.monotonic()
    with pytest.raises(OSError):
        control(recorded_socket, "GET", "/slow", timeout=0.3)
    assert time.monotonic() - t < 2
    with pytest.raises(OSError):
        control(tmp_path / "nope.sock", "GET", "/config")


def test_status_sample_and_restart_reply_through_the_client(recorded_socket, tmp_path):
    target = UnitTarget(fake_installation(tmp_path), tmp_path / "app.wasm", tmp_path / "host", app_name="labapp")
    target.control_socket = recorded_socket
    assert target.status_sample()["connections.active"] == 8.0
    reply = target.restart({"kind": "restart"})
    assert (reply.kind, reply.http_status, reply.body) == ("restart", 200, '{"success":"Ok"}')
    assert 0 <= reply.t_done - reply.t_sent < 1
    reply = target.restart({"kind": "processes", "processes": 0})
    assert reply.http_status == 400 and "Invalid configuration." in reply.body
    assert target.config["applications"]["labapp"]["processes"] == 0
    reply = target.restart({"kind": "config", "env": {"LABVAR": "v1"}})
    assert reply.http_status == 200 and json.loads(reply.body) == {"success": "Reconfiguration done."}
    assert target.config["applications"]["labapp"]["environment"] == {"LABVAR": "v1"}
    with pytest.raises(TargetError, match="cannot do a 'reload'"):
        target.restart({"kind": "reload"})
    target.control_socket = tmp_path / "gone.sock"
    with pytest.raises(TargetError, match="control API GET /control/applications/labapp/restart"):
        target.restart({"kind": "restart"})


# -- config and argv --------------------------------------------------------------------------

def test_command_gives_every_option_a_value_inside_the_workdir(tmp_path):
    target = UnitTarget(fake_installation(tmp_path), tmp_path / "app.wasm", tmp_path / "host", port=18132)
    argv = target.command()
    assert argv[0] == str(tmp_path / "sbin" / "unitd") and argv[1] == "--no-daemon"
    opts = dict(zip(argv[2::2], argv[3::2]))
    assert set(opts) >= {"--control", "--statedir", "--pid", "--log", "--tmpdir", "--modulesdir"}
    assert not any(v.startswith("-") for v in opts.values())
    assert not set(opts) & {"--state", "--tmp", "--modules"}          # deprecated aliases
    assert opts["--control"] == f"unix:{tmp_path / 'host' / 'control.sock'}"
    for opt in ("--statedir", "--pid", "--log", "--tmpdir"):
        assert Path(opts[opt]).parent in (tmp_path / "host",) or Path(opts[opt]).parent.parent == tmp_path / "host"
        assert Path(opts[opt]).is_relative_to(tmp_path / "host")
    assert opts["--modulesdir"] == str(tmp_path / "modules")
    assert ("--user" in opts) == (os.geteuid() == 0)
    assert target.log_path == tmp_path / "host" / "unit.log"


def test_command_refuses_a_value_that_looks_like_an_option(tmp_path):
    target = UnitTarget(fake_installation(tmp_path, modules=Path("--version")), tmp_path / "a.wasm",
                        tmp_path / "host")
    with pytest.raises(TargetError, match="would be taken as one"):
        target.command()


def test_emulated_command_has_the_runner_prefix(tmp_path):
    inst = fake_installation(tmp_path, arch="aarch64", runner=("qemu-aarch64-static", "-L", "/usr/aarch64-linux-gnu"))
    target = UnitTarget(inst, tmp_path / "a.wasm", tmp_path / "host")
    assert target.command()[:4] == ["qemu-aarch64-static", "-L", "/usr/aarch64-linux-gnu",
                                    str(tmp_path / "sbin" / "unitd")]
    assert target.ready_timeout_s > 60


def test_long_workdir_gets_a_short_socket(tmp_path):
    deep = tmp_path / ("x" * 60) / ("y" * 40) / "host"
    target = UnitTarget(fake_installation(tmp_path), tmp_path / "a.wasm", deep)
    assert len(str(target.control_socket).encode()) <= 100
    assert target.control_socket.parent.exists() and oct(target.control_socket.parent.stat().st_mode)[-3:] == "700"
    target.stop()
    assert not target.control_socket.parent.exists()


def test_config_of_the_wasm_app(tmp_path):
    target = UnitTarget(fake_installation(tmp_path), Path("rel/app.wasm"), tmp_path / "host", port=18132,
                        processes=2, env={"A": 1})
    assert target.config == {
        "listeners": {"127.0.0.1:18132": {"pass": "applications/restartbench"}},
        "applications": {"restartbench": {"type": "wasm-wasi-component",
                                          "component": str(Path("rel/app.wasm").resolve()),
                                          "processes": 2, "environment": {"A": "1"}}}}
    assert target.url == "http://127.0.0.1:18132"
    six = UnitTarget(fake_installation(tmp_path), tmp_path / "a.wasm", tmp_path / "h6", address="::1", port=9)
    assert list(six.config["listeners"]) == ["[::1]:9"] and six.url == "http://[::1]:9"
    d = target.describe()
    assert d["restart_method"] == "control API" and d["config"] == target.config
    assert d["control_socket"].endswith("control.sock") and d["version"] == "1.32.0" and d["flavor"] == "unit"
    assert d["restart_calls"]["restart"] == "GET /control/applications/restartbench/restart"
    from restartbench.scenarios import ACTION_KINDS
    assert set(d["restart_calls"]) == {*ACTION_KINDS, "change"}      # every action the run.json may record


def test_users_own_app_object(tmp_path):
    # the reference runs' Python app object (config-initial.json), as a user would pass it
    obj = {"type": "python", "processes": 2, "path": "$APPDIR", "module": "wsgi"}
    path = tmp_path / "app.json"
    path.write_text(json.dumps(obj))
    target = UnitTarget(fake_installation(tmp_path), tmp_path / "a.wasm", tmp_path / "host", processes=3,
                        app_object=path, env={"LABVAR": "v1"})
    app = target.config["applications"]["restartbench"]
    assert app == {"type": "python", "processes": 3, "path": "$APPDIR", "module": "wsgi",
                   "environment": {"LABVAR": "v1"}}
    assert not target.is_wasm()
    obj_env = UnitTarget(fake_installation(tmp_path), tmp_path / "a.wasm", tmp_path / "h2",
                         app_object={**obj, "environment": {"OWN": "x"}}, env={"LABVAR": "v1"})
    assert obj_env.app_config()["environment"] == {"OWN": "x", "LABVAR": "v1"}
    with pytest.raises(TargetError, match="needs a wasm-wasi-component app"):
        target.restart({"kind": "swap", "component": str(tmp_path / "b.wasm")})
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(TargetError, match="not JSON"):
        UnitTarget(fake_installation(tmp_path), tmp_path / "a.wasm", tmp_path / "h", app_object=tmp_path / "bad.json")
    with pytest.raises(TargetError, match='with a "type"'):
        UnitTarget(fake_installation(tmp_path), tmp_path / "a.wasm", tmp_path / "h", app_object={"module": "x"})
    wasm = UnitTarget(fake_installation(tmp_path), tmp_path / "a.wasm", tmp_path / "h",
                      app_object={"type": "wasm-wasi-component", "component": str(tmp_path / "own.wasm"),
                                  "access": {"filesystem": ["/tmp"]}})
    assert wasm.config["applications"]["restartbench"]["component"] == str(tmp_path / "own.wasm")
    assert wasm.config["applications"]["restartbench"]["access"] == {"filesystem": ["/tmp"]}


def test_start_failures_are_clear(tmp_path):
    target = UnitTarget(fake_installation(tmp_path), tmp_path / "missing.wasm", tmp_path / "host")
    with pytest.raises(TargetError, match="build-apps"):
        target.start()
    assert target.stop().survivors == []
    (tmp_path / "a.wasm").write_bytes(b"")
    target = UnitTarget(fake_installation(tmp_path), tmp_path / "a.wasm", tmp_path / "host")
    with pytest.raises(TargetError, match=r"cannot run .*sbin/unitd: No such file"):
        target.start()
    assert oct((tmp_path / "host").stat().st_mode)[-3:] == "700"
    assert (tmp_path / "host" / "state").is_dir() and (tmp_path / "host" / "tmp").is_dir()


def test_start_reports_an_executable_that_exits_or_never_answers(tmp_path):
    """The start-up failure paths, with plain programs in unitd's place (they never answer the API)."""
    (tmp_path / "a.wasm").write_bytes(b"")
    gone = UnitTarget(fake_installation(tmp_path, executable=Path("/bin/false")), tmp_path / "a.wasm",
                      tmp_path / "h1")
    with pytest.raises(TargetError, match=r"unitd exited \(status 1\) before its control socket answered"):
        gone.start()
    assert "--- restartbench" in gone.log_path.read_text() and gone.stop().survivors == []
    silent = UnitTarget(fake_installation(tmp_path, executable=Path("unitd"),
                                          runner=(sys.executable, "-c", "import time; time.sleep(30)")),
                        tmp_path / "a.wasm", tmp_path / "h2", control_timeout_s=0.3)
    t = time.monotonic()
    with pytest.raises(TargetError, match=r"control socket .* did not answer within 1.5 s"):  # x5: emulated
        silent.start()
    assert silent.alive() and silent.exit_reason() == "still running"
    report = silent.stop()
    assert report.graceful and not report.findings and time.monotonic() - t < 5
    assert silent.exit_reason() == "unitd main killed by SIGTERM" and not silent.alive()


# -- bounded shutdown, on plain process trees -------------------------------------------------

STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
print("ready", flush=True)
time.sleep(60)
"""

ESCAPING = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import os, time; os.setsid(); time.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""


def _spawn(code: str) -> tuple[subprocess.Popen, str]:
    proc = procs.spawn([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_shutdown_of_a_main_that_ignores_sigterm_is_bounded(tmp_path):
    proc, _ = _spawn(STUBBORN)
    assert procs.wait_until(lambda: len(_descendants(proc.pid)) == 1, 5)
    kids = _descendants(proc.pid)
    t = time.monotonic()
    report = shutdown(proc, kids, grace_s=0.5)
    assert time.monotonic() - t < 4
    assert report.graceful is False and proc.poll() is not None
    (hang,) = [f for f in report.findings if f["kind"] == "stop_hang"]
    assert hang["pid"] == proc.pid and "still running 0.5 s after SIGTERM" in hang["detail"]
    assert {s["pid"] for s in report.survivors} == {proc.pid, kids[0].pid}
    assert all(s["role"] == "other" for s in report.survivors)
    assert not procs.session_members(proc.pid) and not _running(kids[0].pid)


def test_shutdown_kills_a_tracked_process_that_left_the_session():
    proc, escaped_pid = _spawn(ESCAPING)
    escaped = psutil.Process(int(escaped_pid))
    assert procs.wait_until(lambda: os.getsid(escaped.pid) == escaped.pid, 5)
    report = shutdown(proc, [escaped], grace_s=0.5)
    assert not report.findings                        # main exited on SIGTERM: no hang
    assert [s["pid"] for s in report.survivors] == [escaped.pid] and report.graceful is False
    assert not escaped.is_running() or escaped.status() == psutil.STATUS_ZOMBIE


def test_shutdown_of_a_clean_exit():
    proc = procs.spawn([sys.executable, "-c", "import time; time.sleep(60)"])
    report = shutdown(proc, [], grace_s=2)
    assert report.graceful and not report.survivors and not report.findings and report.stop_s < 2


def test_roots_include_a_reparented_descendant(tmp_path):
    """A process of the tree whose parent exited (reparented to init) stays a census root."""
    code = ("import subprocess, sys, time\n"
            "mid = subprocess.Popen([sys.executable, '-c', 'import subprocess, sys, time; "
            "subprocess.Popen([sys.executable, \"-c\", \"import time; time.sleep(60)\"]); time.sleep(0.8)'])\n"
            "print('ready', flush=True); time.sleep(60)\n")
    target = UnitTarget(fake_installation(tmp_path), tmp_path / "a.wasm", tmp_path / "host", stop_timeout_s=0.5)
    target.proc, _ = _spawn(code)
    assert procs.wait_until(lambda: len(_descendants(target.proc.pid)) == 2, 5)
    target._track(force=True)
    leaf = [p for p in _descendants(target.proc.pid) if p.ppid() != target.proc.pid][0]
    assert target.roots() == [target.proc.pid]
    assert procs.wait_until(lambda: leaf.ppid() != target.proc.pid and leaf.ppid() not in
                            {p.pid for p in _descendants(target.proc.pid)}, 5)
    # the tree is re-walked every TRACK_EVERY_S (the census follows known processes in between)
    assert procs.wait_until(lambda: leaf.pid in target.roots(), 5, step_s=0.1)
    report = target.stop()
    assert leaf.pid in {s["pid"] for s in report.survivors}
    assert not leaf.is_running() or leaf.status() == psutil.STATUS_ZOMBIE


# -- with a real unitd: once per build declared here (conftest.unit_install) ---------------------

@pytest.fixture(scope="module")
def components(tmp_path_factory):
    from restartbench import apps

    out = tmp_path_factory.mktemp("apps")
    return {"a": apps.build("hello", out), "b": apps.build("hello-b", out)}


def _get(url: str, path: str = "/", timeout: float = 5) -> tuple[int, str]:
    return http_get(url, path, timeout)


def _body(url: str) -> str:
    try:
        return _get(url, timeout=2)[1]
    except OSError:
        return ""


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _roles(target: UnitTarget) -> dict[int, str]:
    from restartbench.procs import process_title, tree

    out = {}
    for root in target.roots():
        for p in tree(root):
            out[p.pid] = unit_role(process_title(p))
    return out


def _settled(target: UnitTarget, apps: int, timeout: float = 20, old: set[int] = frozenset()) -> dict[int, str]:
    """Wait until the tree is main + controller + router + one prototype + ``apps`` app
    processes, none of them in ``old``; the roles by pid."""
    want = {"main": 1, "controller": 1, "router": 1, "prototype": 1, "app": apps}
    roles: dict[int, str] = {}

    def done() -> bool:
        nonlocal roles
        roles = _roles(target)
        counts = {r: list(roles.values()).count(r) for r in want}
        return counts == want and not old & set(roles)
    procs.wait_until(done, timeout, step_s=0.05)
    return roles


def _app_pids(roles: dict[int, str]) -> set[int]:
    return {p for p, r in roles.items() if r in ("app", "prototype")}


@pytest.fixture
def unit_target(unit_install, components, tmp_path):
    """A started private unitd serving the hello component with 2 app processes; stopped after,
    checking that nothing of it is left."""
    target = UnitTarget(unit_install, components["a"], tmp_path / "host", processes=2)
    try:
        target.start()
        yield target
    finally:
        report = target.stop()
        assert report.stop_s < target.stop_timeout_s + 5
        assert not procs.session_members(target.pid)
        assert not [p for p in _roles_seen(target) if _running(p)]


def _roles_seen(target: UnitTarget) -> list[int]:
    with target._lock:
        return list(target._seen)


@pytest.mark.unit
def test_real_unit_starts_with_every_role(unit_target):
    assert _get(unit_target.url) == (200, "hello from restartbench (a)\n")
    roles = _settled(unit_target, 2)
    assert sorted(roles.values()) == ["app", "app", "controller", "main", "prototype", "router"]
    sample = unit_target.status_sample()
    assert sample["app.processes.running"] == 2 and "connections.active" in sample
    assert control(unit_target.control_socket, "GET", "/control/applications/nope/restart").status == 404


@pytest.mark.unit
def test_real_unit_restart(unit_install, unit_target):
    before = _app_pids(_settled(unit_target, 2))
    reply = unit_target.restart({"kind": "restart"})
    assert (reply.http_status, reply.body) == (200, '{"success":"Ok"}')
    if has_restart_bug(unit_install):
        # the 1.32.0 bug: Ok, then the old app processes never exit and every request hangs
        with pytest.raises(OSError):
            _get(unit_target.url, timeout=3)
        assert before <= _app_pids(_roles(unit_target))
    else:
        after = _settled(unit_target, 2, old=before)
        assert not before & _app_pids(after)
        assert _get(unit_target.url) == (200, "hello from restartbench (a)\n")


@pytest.mark.unit
def test_real_unit_config_change_replaces_the_app_processes(unit_install, unit_target):
    before = _app_pids(_settled(unit_target, 2))
    reply = unit_target.restart({"kind": "config", "env": {"RESTARTBENCH_CONFIG": "1"}})
    assert reply.http_status == 200 and "Reconfiguration done." in reply.body
    got = control(unit_target.control_socket, "GET", "/config/applications/restartbench/environment").json()
    assert got == {"RESTARTBENCH_CONFIG": "1"}
    # new processes start first; on a sound Unit the old ones then leave (1.32.0: they stay)
    assert procs.wait_until(lambda: len(_app_pids(_roles(unit_target)) - before) == 3, 20, 0.05)
    assert _get(unit_target.url)[0] == 200
    if not has_restart_bug(unit_install):
        assert not before & _app_pids(_settled(unit_target, 2, old=before))


@pytest.mark.unit
def test_real_unit_component_swap_serves_the_other_build(unit_target, components):
    reply = unit_target.restart({"kind": "swap", "component": str(components["b"])})
    assert reply.http_status == 200 and "Reconfiguration done." in reply.body
    got = control(unit_target.control_socket, "GET", "/config/applications/restartbench/component").json()
    assert got == str(components["b"].resolve())
    assert procs.wait_until(lambda: _body(unit_target.url) == "hello from restartbench (b)\n", 20, 0.05)
    reply = unit_target.restart({"kind": "swap", "component": str(components["a"])})
    assert reply.http_status == 200
    assert procs.wait_until(lambda: _body(unit_target.url) == "hello from restartbench (a)\n", 20, 0.05)


@pytest.mark.unit
def test_real_unit_process_count_change_shows_in_census_and_status(unit_install, unit_target):
    from restartbench.census import Census

    _settled(unit_target, 2)
    census = Census(roots=unit_target.roots, role=unit_target.role, t0=time.monotonic(), interval_s=0.05,
                    status=unit_target.status_sample, status_every=1)
    buggy = has_restart_bug(unit_install)

    def new_generation_serves() -> bool:
        frame = census.frame()
        last = frame[(frame.t == frame.t.max()) & (frame.role == "app")]
        return sorted(last.generation) == ([0, 0] if buggy else []) + [1, 1, 1]

    census.start()
    try:
        census.note_restart(time.monotonic() - census.t0)
        reply = unit_target.restart({"kind": "processes", "processes": 3})
        assert reply.http_status == 200
        assert procs.wait_until(lambda: unit_target.status_sample()["app.processes.running"] == 3, 20, 0.05)
        # Unit replaces the whole app (a new prototype and 3 new app processes); on 1.32.0 the old
        # two never leave (its restart bug)
        assert procs.wait_until(new_generation_serves, 20, 0.05)
    finally:
        census.stop()
    status = census.status_frame()
    assert status[status.key == "app.processes.running"].value.iloc[-1] == 3
    assert _get(unit_target.url)[0] == 200


@pytest.mark.unit
def test_real_unit_stop_after_main_was_killed_leaves_nothing(unit_install, components, tmp_path):
    target = UnitTarget(unit_install, components["a"], tmp_path / "host", processes=2)
    try:
        target.start()
        roles = _settled(target, 2)
        os.kill(target.pid, 9)                           # orphans Unit's children (if they live on)
        procs.wait_until(lambda: not target.alive(), 5)
        assert "SIGKILL" in target.exit_reason()
    finally:
        report = target.stop()
    assert not [pid for pid in roles if _running(pid)]
    assert {s["role"] for s in report.survivors} <= {"controller", "router", "prototype", "app"}


@pytest.mark.unit
def test_real_unit_log_marks_each_restart_and_the_stop(unit_install, components, tmp_path):
    from restartbench.hosts.unit.checks import log_phases
    from restartbench.results import LOG_MARK

    target = UnitTarget(unit_install, components["a"], tmp_path / "host")
    try:
        target.start()
        target.restart({"kind": "processes", "processes": 2})
        target.restart({"kind": "config", "env": {"A": "1"}})
    finally:
        target.stop()
    text = target.log_path.read_text()
    marks = [line.split(" ", 4)[-1] for line in text.splitlines() if line.startswith(LOG_MARK)]
    assert marks[0].startswith("start: ") and marks[1:3] == ["restart 0: processes", "restart 1: config"]
    assert marks[3] == "stop: SIGTERM" and marks[4:] in ([], ["stop: SIGKILL"])
    lines = pd.Series(text.splitlines(), dtype="string")
    phases = log_phases(lines)
    started = lines.str.contains(" application started")
    # the app process started by the config change is logged after restart 1's mark
    assert phases[started]["restart"].dropna().tolist()[-1] == 1


# -- reconfiguration: scripted changes, daemon restarts, a second app ----------------------------------

LISTENER = {"listener": {"steps": [
    {"method": "PUT", "path": "/config/listeners/{address}:{port2}", "body": {"pass": "applications/{app}"}},
    {"method": "DELETE", "path": "/config/listeners/{address}:{port2}"}]}}


@pytest.mark.unit
def test_real_unit_change_adds_and_removes_a_listener(unit_target):
    change = LISTENER["listener"]["steps"]
    reply = unit_target.restart({"kind": "change", "name": "listener", **change[0]})
    assert reply.http_status == 200 and reply.method == "PUT" and reply.name == "listener"
    assert reply.path == f"/config/listeners/127.0.0.1:{unit_target.port2}"
    assert _get(f"http://127.0.0.1:{unit_target.port2}/")[0] == 200            # the new listener serves
    assert f"127.0.0.1:{unit_target.port2}" in unit_target.config["listeners"]
    reply = unit_target.restart({"kind": "change", "name": "listener", **change[1]})
    assert reply.http_status == 200 and reply.method == "DELETE"
    with pytest.raises(OSError):
        _get(f"http://127.0.0.1:{unit_target.port2}/", timeout=2)
    assert _get(unit_target.url)[0] == 200                                       # the app's own never moved


@pytest.mark.unit
def test_real_unit_refused_change_stops_with_units_error(unit_target):
    from restartbench.hosts.unit.target import ChangeRejected

    with pytest.raises(ChangeRejected, match=r"Unit rejected change 'bad': PUT /config/settings/http/"
                                             r"idle_timeout: HTTP 4\d\d .*") as caught:
        unit_target.restart({"kind": "change", "name": "bad", "method": "PUT",
                             "path": "/config/settings/http/idle_timeout", "body": "not a number"})
    assert "\n" not in str(caught.value) and caught.value.stops_run
    n, why = unit_target.check_changes([{"method": "PUT", "path": "/config/listeners/{address}:{port}/pass",
                                         "body": "applications/nope"}])
    assert n == 0 and why.startswith("HTTP 400") and "nope" in why
    assert _get(unit_target.url)[0] == 200                         # checking put the configuration back


@pytest.mark.unit
def test_real_unit_daemon_restart_restores_the_configuration(unit_install, unit_target):
    before = unit_target.pid
    unit_target.restart({"kind": "processes", "processes": 3})                 # state worth restoring
    reply = unit_target.restart({"kind": "daemon"})
    assert unit_target.pid != before and unit_target.alive()
    assert reply.http_status == 200 and "configuration restored" in reply.body, reply.body
    got = control(unit_target.control_socket, "GET", "/config/applications/restartbench/processes").json()
    assert got == 3
    assert not _running(before)
    assert _get(unit_target.url)[0] == 200 or has_restart_bug(unit_install)
    text = unit_target.log_path.read_text()
    assert text.count("--- restartbench") >= 4 and text.count(" start: ") == 2


@pytest.mark.unit
def test_real_unit_second_app_has_its_own_listener_and_processes(unit_install, components, tmp_path):
    target = UnitTarget(unit_install, components["a"], tmp_path / "host", second_app=True)
    try:
        target.start()
        assert _get(target.other_url)[0] == 200 and _get(target.url)[0] == 200
        _settled(target, 1)
        assert procs.wait_until(lambda: list(_roles(target).values()).count("bystander") == 2, 20, 0.05)
        assert list(_roles(target).values()).count("app") == 1          # other's prototype and app process
    finally:
        target.stop()


@pytest.mark.unit
def test_real_unit_daemon_restart_can_upgrade_to_another_build(components, tmp_path):
    """The upgrade path: unitd of the oldest build stopped, the newest started on its state dir."""
    from restartbench.hosts.unit import discovery

    found = sorted((c.installation for c in discovery.discover() if c.installation is not None and not c.reason
                    and not c.installation.emulated), key=lambda i: version_key(i.version))
    if len({i.version for i in found}) < 2:
        pytest.skip("an upgrade needs two Unit builds of different versions (units.toml)")
    old, new = found[0], found[-1]
    target = UnitTarget(old, components["a"], tmp_path / "host", processes=2)
    try:
        target.start()
        reply = target.restart({"kind": "daemon", "upgrade_to": new.name})
        assert target.installation.version == new.version and reply.http_status == 200, reply.body
        assert f"{new.label} {new.version}" in reply.body and "configuration restored" in reply.body
        assert _get(target.url)[0] == 200
        got = control(target.control_socket, "GET", "/config/applications/restartbench/processes").json()
        assert got == 2
    finally:
        target.stop()
