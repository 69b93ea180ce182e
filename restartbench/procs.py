"""Child processes the suite starts (hosts, Locust): each in its own session, killed with its parent.

Two nets, so that nothing outlives the orchestrator however it ends:
- every child gets PR_SET_PDEATHSIG=SIGKILL: if the orchestrator dies (even by SIGKILL) the kernel
  kills the child. Spawn from the main thread only: the signal fires when the *thread* that forked
  the child exits;
- every child's session is registered with the reaper (``reaper.py``), which SIGKILLs the whole
  session — grandchildren included — when the orchestrator's end closes its pipe.
Inside ``tagging(tag)`` every child also carries ``RESTARTBENCH_TAG=<tag>`` in its environment, which
its descendants inherit: ``tagged(tag)`` finds them even after they left the session (setsid after a
double fork), and the reaper kills them too.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import psutil

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:            # the parent already died between fork and prctl
        os._exit(1)


TAG_VAR = "RESTARTBENCH_TAG"
_local = threading.local()


@contextmanager
def tagging(tag: str) -> Iterator[None]:
    """Children spawned by this thread inside the block carry ``tag`` (see ``tagged``)."""
    _tell_reaper(f"tag={tag}")
    _local.tag = tag
    try:
        yield
    finally:
        _local.tag = None


def tagged(tag: str) -> list[psutil.Process]:
    """Live processes (not zombies) whose environment carries ``RESTARTBENCH_TAG=<tag>``."""
    needle = f"{TAG_VAR}={tag}".encode()
    out = []
    for proc in psutil.process_iter():
        try:
            with open(f"/proc/{proc.pid}/environ", "rb") as f:
                if needle in f.read().split(b"\0") and proc.status() != psutil.STATUS_ZOMBIE:
                    out.append(proc)
        except (OSError, psutil.NoSuchProcess):
            continue
    return out


def spawn(argv: Sequence[str], *, vmem_cap: int | None = None, **kwargs) -> subprocess.Popen:
    """Start ``argv`` in a new session that dies with this process; ``vmem_cap`` (bytes) caps its
    address space (RLIMIT_AS, a seatbelt for emulated hosts); ``kwargs`` go to Popen."""
    tag = getattr(_local, "tag", None)
    if tag:
        kwargs["env"] = {**(kwargs.get("env") or os.environ), TAG_VAR: tag}
    def pre_exec() -> None:
        _die_with_parent()
        if vmem_cap:
            resource.setrlimit(resource.RLIMIT_AS, (vmem_cap, vmem_cap))

    proc = subprocess.Popen(list(argv), start_new_session=True, preexec_fn=pre_exec,
                            stdin=subprocess.DEVNULL, **kwargs)
    _registered.add(proc.pid)
    _tell_reaper(f"+{proc.pid}")
    return proc


_reaper: subprocess.Popen | None = None
_registered: set[int] = set()


def _tell_reaper(line: str) -> None:
    """Register (``+sid``) or release (``-sid``) a session with the reaper, starting it on first use."""
    global _reaper
    if _reaper is None or _reaper.poll() is not None:
        script = Path(__file__).with_name("reaper.py")
        _reaper = subprocess.Popen([sys.executable, "-I", "-S", str(script)], stdin=subprocess.PIPE,
                                   start_new_session=True, text=True, bufsize=1, close_fds=True)
    try:
        _reaper.stdin.write(line + "\n")
        _reaper.stdin.flush()
    except (BrokenPipeError, OSError):
        _reaper = None


@dataclass
class Stopped:
    """How a process tree ended under ``stop_tree``."""

    exited: bool = True             # the leader exited on its own within the grace time
    graceful: bool = True           # so did every other process of the tree
    survivors: list[dict] = field(default_factory=list)    # what was left for SIGKILL (describe_process)
    unkillable: list[dict] = field(default_factory=list)   # what even SIGKILL left alive
    stop_s: float = 0.0


def stop_tree(leader: subprocess.Popen | int, grace_s: float, sig: int = signal.SIGTERM, *,
              tracked: Iterable[psutil.Process] = (), mark=lambda event: None, describe=None) -> Stopped:
    """The one way the suite stops a process tree: ``sig`` to ``leader`` (a session leader, as a Popen or
    a pid), a wait of up to ``grace_s`` for it, its session and every ``tracked`` process (members that
    left the session) to exit, then SIGKILL for what is left. ``mark(event)`` is told ``stop: <SIG>``
    just before each signal goes out; ``describe(proc)`` records a survivor (default
    ``describe_process``). Bounded: returns within ``grace_s`` + ~4 s whatever the processes do."""
    t = time.monotonic()
    popen = leader if isinstance(leader, subprocess.Popen) else None
    sid = popen.pid if popen is not None else int(leader)
    tracked = [p for p in tracked if p.pid != sid]
    describe = describe or describe_process

    def leader_alive() -> bool:
        if popen is not None:
            return popen.poll() is None
        p = _proc_or_none(sid)
        return p is not None and alive(p)

    def left() -> list[psutil.Process]:
        members = {p.pid: p for p in session_members(sid)}
        members.update({p.pid: p for p in tracked if p.pid not in members and alive(p)})
        members.pop(os.getpid(), None)
        return list(members.values())

    mark(f"stop: {signal.Signals(sig).name}")
    if leader_alive():
        try:
            os.kill(sid, sig)
        except ProcessLookupError:
            pass
    wait_until(lambda: not leader_alive() and not left(), grace_s, step_s=0.02)
    out = Stopped(exited=not leader_alive())
    rest = left()
    out.survivors = [describe(p) for p in rest]
    out.graceful = not rest
    if rest and sig != signal.SIGKILL:
        mark("stop: SIGKILL")
    _kill_session(sid)
    for p in rest:
        if alive(p):
            try:
                p.kill()
            except psutil.Error:
                pass
    wait_until(lambda: not any(alive(p) for p in rest), 2.0, step_s=0.01)
    if popen is not None:
        try:
            popen.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
    out.unkillable = [describe_process(p) for p in rest if alive(p)]
    out.stop_s = time.monotonic() - t
    return out


def _kill_session(sid: int) -> list[int]:
    """SIGKILL every process of session ``sid`` (its process group and members that left it)."""
    killed = []
    try:
        os.killpg(sid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and os.getsid(proc.pid) == sid:
                proc.kill()
                killed.append(proc.pid)
        except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
            continue
    if killed:                        # wait until gone or a zombie (init reaps those, not us)
        wait_until(lambda: not session_members(sid), 2.0, step_s=0.01)
    if not session_members(sid) and sid in _registered:
        _registered.discard(sid)
        _tell_reaper(f"-{sid}")
    return killed


def session_members(sid: int) -> list[psutil.Process]:
    """Every live, non-zombie process of session ``sid`` (a child started by ``spawn`` keeps its
    descendants there even when they are reparented to init)."""
    out = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
            continue
    return out


def describe_process(proc: psutil.Process) -> dict:
    """A survivor record: pid, ppid, title, state, age."""
    try:
        with proc.oneshot():
            return {"pid": proc.pid, "ppid": proc.ppid(), "title": " ".join(proc.cmdline()) or proc.name(),
                    "state": proc.status(), "age_s": round(time.time() - proc.create_time(), 3)}
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return {"pid": proc.pid, "title": "", "state": "gone"}


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
    """The live processes under ``root_pid`` (root included) plus ``extra`` pids still alive
    (descendants that were reparented away from the tree)."""
    found: dict[int, psutil.Process] = {}
    try:
        root = psutil.Process(root_pid)
        found[root.pid] = root
        for child in root.children(recursive=True):
            found[child.pid] = child
    except psutil.NoSuchProcess:
        pass
    for pid in extra:
        if pid not in found:
            try:
                found[pid] = psutil.Process(pid)
            except psutil.NoSuchProcess:
                pass
    return list(found.values())


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


def alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _proc_or_none(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def wait_until(predicate, timeout_s: float, step_s: float = 0.01) -> bool:
    """Poll ``predicate`` until true or ``timeout_s`` passes; return its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step_s)
