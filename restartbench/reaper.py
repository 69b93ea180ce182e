"""The reaper: a tiny watchdog process that kills the suite's child sessions if the orchestrator dies.

PR_SET_PDEATHSIG only reaches a direct child; a host's own children (Unit's router, prototypes, apps;
Locust's workers) would outlive a SIGKILLed orchestrator. So the orchestrator starts this script once
(stdlib only, run by path: it imports nothing of restartbench) and writes one line per child session it
creates (``+<sid>``) and per session it has cleaned up itself (``-<sid>``), and the tag of each run
(``tag=<tag>``). When its stdin reaches EOF — the orchestrator exited, however it died — the reaper
SIGKILLs every session still listed and every process carrying a run's tag in its environment
(``RESTARTBENCH_TAG``, inherited by descendants that left their session), then exits.
It ignores SIGINT/SIGTERM/SIGHUP so a Ctrl-C meant for the orchestrator cannot take it down first.
"""

import os
import signal
import sys


def session_pids(sid: int) -> list:
    """Every process in session ``sid`` (read from /proc)."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.getsid(int(name)) == sid:
                    out.append(int(name))
            except OSError:
                continue
    return out


def tagged_pids(tags) -> list:
    """Processes whose environment holds ``RESTARTBENCH_TAG=<tag>`` for one of ``tags``."""
    needles = {f"RESTARTBENCH_TAG={t}".encode() for t in tags}
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    if needles & set(f.read().split(b"\0")):
                        out.append(int(name))
            except OSError:
                continue
    return out


def kill_sessions(sids) -> None:
    for sid in sids:
        try:
            os.killpg(sid, signal.SIGKILL)
        except OSError:
            pass
        for pid in session_pids(sid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    sids, tags = set(), set()
    for line in sys.stdin:
        line = line.strip()
        if line[:1] == "+" and line[1:].isdigit():
            sids.add(int(line[1:]))
        elif line[:1] == "-" and line[1:].isdigit():
            sids.discard(int(line[1:]))
        elif line.startswith("tag="):
            tags.add(line[4:])
    kill_sessions(sids)
    for pid in tagged_pids(tags):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


if __name__ == "__main__":
    main()
