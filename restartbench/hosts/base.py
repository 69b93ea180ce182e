"""What every host provides: the ``Host`` (discovery, options, validity checks, process titles, extra
analysis) and its ``Target`` (start, restart, stop one instance), plus the helpers targets share.

``restartbench.hosts`` finds every ``Host`` (one module or package per host, see docs/hosts.md); the
rest of restartbench asks the host instead of comparing host names.

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

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol


if TYPE_CHECKING:                   # annotations only: the results and scenario modules never import hosts
    from ..results import Run
    from ..scenarios import Scenario


@dataclass(frozen=True)
class Installation:
    """One host build: where its executable is, what it is, and how to run it on this machine."""

    kind: str                      # the Host's kind: "wasmtime" | "unit"
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
class Candidate:
    """One host build found (or rejected) by discovery."""

    spec: str
    installation: Installation | None
    source: str                       # where it was found: pypi | UNITD | units.toml | PATH ...
    reason: str = ""                  # why it was rejected, if it was


@dataclass
class RestartReply:
    """What one restart action did: its kind, its timing (monotonic s) and the host's answer."""

    kind: str
    t_sent: float
    t_done: float
    http_status: int = 0      # 0 when the action is not an HTTP call
    body: str = ""
    method: str = ""          # the (first) request it made: GET, PUT, POST, DELETE ("" when none)
    path: str = ""            # its path, e.g. /control/applications/<app>/restart
    name: str = ""            # a scenario change's name (kind ``change``)


@dataclass
class StopReport:
    """What teardown found: processes that outlived a graceful stop, and other findings."""

    graceful: bool = True                         # the host exited on its own after the stop signal
    survivors: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    stop_s: float = 0.0


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


# -- the host ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class NoOptions:
    """The options of a host that has none."""


def option(default: Any, flag: str = "", help: str = "") -> Any:
    """A field of a host's options dataclass; ``flag`` is the CLI flag that sets it (for messages)."""
    return field(default=default, metadata={"flag": flag, "help": help})


class Host:
    """One host kind: everything restartbench knows about it, in one place. A host module defines a
    subclass and ``HOST = TheHost()``; ``restartbench.hosts`` finds it (docs/hosts.md walks through
    adding one). Subclasses set the class attributes and implement ``discover``, ``resolve`` and
    ``target_class``; the rest has defaults."""

    kind: ClassVar[str] = ""                     # the spec prefix users type: ``kind`` or ``kind@NAME``
    title: ClassVar[str] = ""                    # what it is, for listings: "wasmtime serve"
    order: ClassVar[int] = 50                    # listing and matrix order among hosts
    restart_kinds: ClassVar[tuple[str, ...]] = ("restart",)
    max_processes: ClassVar[int | None] = None   # app processes it can run (None: any count)
    roles: ClassVar[tuple[str, ...]] = ("main",)  # what ``role()`` calls its processes (besides "other")
    named: ClassVar[bool] = True                 # builds have names (``kind@NAME``); False: one build
    Options: ClassVar[type] = NoOptions          # a frozen dataclass of ``option(...)`` fields

    # -- discovery ------------------------------------------------------------------------------

    def discover(self) -> list[Candidate]:
        """Every build of this host found here, usable or not (with the reason)."""
        raise NotImplementedError

    def resolve(self, name: str, arch: str | None) -> Installation:
        """The build called ``name`` ("" = the default one) for ``arch`` (None = this machine's);
        raise InstallationError saying what to install or set."""
        raise NotImplementedError

    def missing_hint(self) -> str:
        """What to do when no build of this host is usable here ("" = nothing to say)."""
        return ""

    def spec_help(self) -> str:
        """How users name this host's builds, for messages: ``unit, unit@NAME``."""
        return f"{self.kind}, {self.kind}@NAME" if self.named else self.kind

    # -- the target -----------------------------------------------------------------------------

    def target_class(self) -> type:
        """The class implementing ``Target`` for this host."""
        raise NotImplementedError

    def target(self, installation: Installation, component: Path, workdir: Path, *, options: Any = None,
               **common: Any) -> "Target":
        """A target serving ``component``: ``common`` are the run's (address, port, processes),
        ``options`` an instance of ``Options`` (or a dict of its fields)."""
        opts = options if isinstance(options, self.Options) else self.options(options or {})
        return self.target_class()(installation, component, workdir, **common, **self.target_kwargs(opts))

    def target_kwargs(self, options: Any) -> dict[str, Any]:
        """The target's keyword arguments for ``options`` (default: the fields not left at None)."""
        return {k: v for k, v in dataclasses.asdict(options).items() if v is not None}

    # -- options --------------------------------------------------------------------------------

    def option_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.Options))

    def option_flag(self, name: str) -> str:
        """The CLI flag of option ``name`` ("" when it has none)."""
        for f in dataclasses.fields(self.Options):
            if f.name == name:
                return f.metadata.get("flag", "")
        return ""

    def options(self, given: dict[str, Any]) -> Any:
        """``given`` (option name -> value) as this host's ``Options``; raise ValueError naming an
        option this host does not take or a value it cannot use."""
        unknown = sorted(set(given) - set(self.option_names()))
        if unknown:
            raise ValueError(f"{unknown[0]} is not an option of the {self.kind} target "
                             f"(it takes {', '.join(self.option_names()) or 'none'})")
        opts = self.Options(**given)
        problem = self.check_options(opts)
        if problem:
            raise ValueError(problem)
        return opts

    def check_options(self, options: Any) -> str:
        """What is wrong with ``options`` ("" when nothing)."""
        return ""

    def app_options(self, app: Any) -> dict[str, Any]:
        """Options an app needs on this host (``apps.AppSpec``), applied unless the user set them."""
        return {}

    # -- validity -------------------------------------------------------------------------------

    def problems(self, scenario: "Scenario") -> list[str]:
        """Why this host cannot perform ``scenario`` (empty: it can)."""
        out = []
        missing = [k for k in scenario.kinds() if k not in self.restart_kinds]
        if missing:
            out.append(f"{self.kind} cannot do {', '.join(missing)} (it does "
                       f"{', '.join(self.restart_kinds)}): pick another --actions or --scenario")
        if self.max_processes is not None and scenario.processes > self.max_processes:
            runs = "one process" if self.max_processes == 1 else f"at most {self.max_processes} processes"
            out.append(f"{self.title.split(' (')[0]} runs {runs}: drop --processes or pick a host that runs "
                       f"several (`restartbench targets`)")
        return out

    # -- processes and analysis -----------------------------------------------------------------

    def role(self, title: str) -> str:
        """The census role of one of this host's processes, from its title (cmdline)."""
        return "main"

    def control_of(self, installation: Installation, say=lambda s: None) -> Installation:
        """The same revision as ``installation`` built for this machine's arch: a foreign-arch run's
        control. Raise InstallationError saying how to get one (default: this host's build of the same
        name for this machine)."""
        from ..arches import host_arch

        return self.resolve("" if not self.named else installation.name, host_arch())

    def vocabulary(self, version: str = "") -> dict[str, dict[str, Any]]:
        """Named control-API changes a build of ``version`` accepts (the shape of a scenario's
        ``[changes.NAME]``), for explore to draw from; none by default."""
        return {}

    def check_plan(self, installation: Installation, scenario: "Scenario", component: Path, workdir: Path) -> str:
        """What an idle instance of this build refuses in ``scenario``'s plan, as one line ("" when
        nothing: the default for a host without scripted changes)."""
        return ""

    def run_checks(self, run: "Run", grace_s: float | None = None) -> dict[str, Any] | None:
        """This host's own checks of a finished run (its log, its status counters), as a JSON-able
        dict in the shape docs/results.md gives for ``host_checks``; None: it has none."""
        return None
