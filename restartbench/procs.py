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
from typing import Iterator, Sequence

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
    _tell_reaper(f"+{proc.pid}")
    return proc


_reaper: subprocess.Popen | None = None


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


def stop_group(proc: subprocess.Popen, grace_s: float, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig`` to ``proc``, wait up to ``grace_s`` for it, then SIGKILL its whole session.
    Returns True when it exited on its own. Never blocks longer than ``grace_s`` + 2 s."""
    graceful = True
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            graceful = False
    kill_session(proc.pid)
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        pass
    return graceful


def kill_session(sid: int) -> list[int]:
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
    if not session_members(sid):
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


def terminate_session(sid: int, grace_s: float, sig: int = signal.SIGTERM,
                      pid: int | None = None) -> tuple[bool, list[dict]]:
    """Stop session ``sid`` (its leader, or ``pid``, gets ``sig``), wait up to ``grace_s`` for every member
    to exit, then SIGKILL what is left. Returns (exited on its own, survivors recorded before the kill).
    Bounded: returns within ``grace_s`` + ~2 s whatever the processes do."""
    try:
        os.kill(pid or sid, sig)
    except ProcessLookupError:
        pass
    wait_until(lambda: not session_members(sid), grace_s, step_s=0.02)
    left = session_members(sid)
    survivors = [describe_process(p) for p in left]
    kill_session(sid)                # also releases the session from the reaper
    return not left, survivors


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
