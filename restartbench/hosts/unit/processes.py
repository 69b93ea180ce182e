"""NGINX Unit's processes as the census sees them: their roles, from process titles (``unit: main
v1.32.0 [...]``, ``unit: router``, ``unit: "app" prototype``, ``unit: "app" application``) or, where
titles are invisible (qemu-user shows its own argv), from Unit's log, where each process names
itself when it starts. The one place Unit's title and start-line formats are written down.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

#: a Unit process title; found after a runner's own arguments too (e.g. a dynamic loader as runner)
_TITLE = re.compile(r'(?:^|\s)unit: (?:main v(?P<version>\S+)|(?P<fixed>controller|router)'
                    r'|"(?P<app>.*)" (?P<kind>prototype|application))(?=\s|\[|$)')


def parse_title(title: str) -> tuple[str, str | None]:
    """``(role, detail)`` of a process title: detail is the version for main, the app for a
    prototype or app process, else None. Roles: main controller router prototype app other."""
    m = _TITLE.search(title.strip(" \0"))
    if not m:
        return "other", None
    if m.group("version"):
        return "main", m.group("version")
    if m.group("fixed"):
        return m.group("fixed"), None
    return ("prototype" if m.group("kind") == "prototype" else "app"), m.group("app")


#: the app the suite puts under test (its processes are ``app`` and ``prototype``)
APP_NAME = "restartbench"
#: the role of the processes (and prototypes) of every other app Unit runs beside it: a second app of
#: the scenario, an app a change adds; kept apart so that they are not taken for the app under test's
BYSTANDER = "bystander"


def unit_role(title: str, app: str = APP_NAME) -> str:
    """The census role of a Unit process, from its title (cmdline; comm stays ``unitd``): ``app`` and
    ``prototype`` for the app under test (``app``), ``bystander`` for another app's."""
    role, detail = parse_title(title)
    return BYSTANDER if role in ("prototype", "app") and detail != app else role


#: Unit's log lines naming a process it started, logged by that process itself (``nxt_process.c``).
#: Not ``controller started``: main logs that one, with its own pid.
LOG_START_LINE = (r"\[info\] (?P<pid>\d+)#\d+ (?:(?P<fixed>router|discovery)"
                  r"|\"(?P<app>.*)\" (?P<kind>prototype|application)) started$")
_LOG_START = re.compile(LOG_START_LINE, re.M)


class LogRoles:
    """Roles from Unit's log, for when process titles are invisible (qemu-user shows its own argv):
    every process but main and the controller names itself in the log when it starts. The log is
    read incrementally, at most every ``every_s``, and only when a pid is not known yet."""

    def __init__(self, log_path: Path, every_s: float = 0.2, app: str = APP_NAME):
        self.log_path, self.every_s, self.app = log_path, every_s, app
        self._offset, self._next = 0, 0.0
        self.roles: dict[int, str] = {}

    def _read(self) -> None:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except OSError:
            return
        end = chunk.rfind(b"\n") + 1                   # whole lines only; the rest next time
        self._offset += end
        for m in _LOG_START.finditer(chunk[:end].decode(errors="replace")):
            role = m.group("fixed") or ("prototype" if m.group("kind") == "prototype" else "app")
            if not m.group("fixed") and m.group("app") != self.app:
                role = BYSTANDER
            self.roles[int(m.group("pid"))] = role

    def role(self, pid: int, ppid: int, main: int | None) -> str:
        """main for unitd's own pid; the role the log gives; an unnamed child of main started before
        the router is the controller (the router and discovery name themselves); else other."""
        if pid == main:
            return "main"
        if pid not in self.roles and time.monotonic() >= self._next:
            self._next = time.monotonic() + self.every_s
            self._read()
        if pid in self.roles:
            return self.roles[pid]
        if ppid != main or main is None:
            return "other"
        routers = [p for p, r in self.roles.items() if r == "router"]
        # main starts the controller before the router: a later unnamed child is a prototype that
        # has not logged yet
        return "controller" if not routers or pid < min(routers) else "other"


def app_of(title: str) -> str | None:
    """The app a prototype or app process serves, from its title (None for other processes)."""
    role, detail = parse_title(title)
    return detail if role in ("prototype", "app") else None
