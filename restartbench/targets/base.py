"""What every host target provides: start, restart, stop, and which of its processes plays which role.

A target owns one host instance in a private temporary directory. The run drives it as:

    target = SomeTarget(installation, app, workdir, port=...)
    target.start()                 # host up, app answering on target.url
    target.roots()                 # the host's top-level pids now: the census's roots
    target.restart(action)         # -> RestartReply, one scripted action
    target.role(title)             # -> role of a process from its cmdline title
    target.stop()                  # -> StopReport: survivors and findings; nothing left running

Hosts differ in how they restart (Unit: control API; wasmtime: process replacement), so the
``restart`` kinds a target accepts are listed in ``restart_kinds``.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil


@dataclass(frozen=True)
class Installation:
    """One host build: where its executable is, what it is, and how to run it on this machine."""

    kind: str                      # "wasmtime" | "unit"
    name: str                      # the user's name for it, e.g. "1.32.0" or "wasmtime"
    executable: Path
    version: str
    arch: str                      # "x86_64" | "aarch64" (normalised, from the ELF header)
    runner: tuple[str, ...] = ()   # prefix to run a foreign-arch binary, e.g. ("qemu-aarch64-static", "-L", ...)
    modules: Path | None = None    # Unit's modules dir
    flavor: str = ""               # e.g. "unit" or "freeunit"
    commit: str = ""               # the source commit, for a build made by restartbench (unitbuild)
    build_record: Path | None = None   # that build's build.json: commit, configure lines, toolchains

    def answers_to(self, name: str) -> bool:
        """Whether users may call this build ``name``: its name, or (7+ hex digits) its commit."""
        return name == self.name or (len(name) >= 7 and bool(self.commit) and self.commit.startswith(name))

    @property
    def emulated(self) -> bool:
        return bool(self.runner)

    @property
    def label(self) -> str:
        """``kind@name`` as users type it."""
        return self.kind if self.name == self.kind else f"{self.kind}@{self.name}"

    def command(self, *args: str) -> list[str]:
        """The argv that runs this installation's executable with ``args``."""
        return [*self.runner, str(self.executable), *args]

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        d["executable"] = str(self.executable)
        d["modules"] = str(self.modules) if self.modules else None
        d["runner"] = list(self.runner)
        d["emulated"] = self.emulated
        d["build_record"] = str(self.build_record) if self.build_record else None
        if self.build_record:                    # a build of ours: how it was made goes with every result
            try:
                d["build"] = json.loads(Path(self.build_record).read_text())
            except (OSError, ValueError):
                d["build"] = None
        return d


@dataclass
class RestartReply:
    """What one restart action did: its kind, its timing (monotonic s) and the host's answer."""

    kind: str
    t_sent: float
    t_done: float
    http_status: int = 0      # 0 when the action is not an HTTP call
    body: str = ""


@dataclass
class StopReport:
    """What teardown found: processes that outlived a graceful stop, and other findings."""

    graceful: bool = True                         # the host exited on its own after the stop signal
    survivors: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    stop_s: float = 0.0


class TargetError(RuntimeError):
    """The host could not be started or driven (not a finding about restarts: a run failure)."""


class Target(Protocol):
    """The host protocol the run drives. See the module docstring."""

    kind: str
    restart_kinds: tuple[str, ...]
    installation: Installation
    url: str
    pid: int | None
    log_path: Path

    def start(self) -> None: ...
    def roots(self) -> list[int]: ...          # top-level pids of the host now (old ones too, while alive)
    def alive(self) -> bool: ...               # the host's top process still runs (False = it crashed)
    def exit_reason(self) -> str: ...          # how it ended, e.g. "killed by SIGKILL", once not alive
    def restart(self, action: dict[str, Any]) -> RestartReply: ...
    def role(self, title: str, pid: int = 0, ppid: int = 0) -> str: ...
    def stop(self) -> StopReport: ...
    def describe(self) -> dict[str, Any]: ...
    def status_sample(self) -> dict[str, float]: ...


# -- helpers shared by targets ------------------------------------------------------------------

def exit_reason(returncode: int | None) -> str:
    """A Popen returncode in words."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def process_title(proc: psutil.Process) -> str:
    """A process's title as ``ps args`` shows it (cmdline joined); empty if it vanished."""
    try:
        return " ".join(proc.cmdline()) or proc.name()
    except psutil.ZombieProcess:
        try:
            return proc.name()          # a zombie has no cmdline left, only its comm
        except psutil.Error:
            return ""
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ""


def tree(root_pid: int, extra: set[int] = frozenset()) -> list[psutil.Process]:
    """The live processes of a host: ``root_pid``'s descendants plus ``extra`` pids still alive
    (descendants that were reparented away from the tree), root included."""
    procs: dict[int, psutil.Process] = {}
    try:
        root = psutil.Process(root_pid)
        procs[root.pid] = root
        for child in root.children(recursive=True):
            procs[child.pid] = child
    except psutil.NoSuchProcess:
        pass
    for pid in extra:
        if pid not in procs:
            try:
                procs[pid] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                pass
    return list(procs.values())


def http_url(host: str, port: int) -> str:
    """``http://host:port`` with an IPv6 host bracketed."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free now (bound and released)."""
    import socket

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
