"""asv along Unit's history: an asv environment whose "install" of a commit is restartbench's Unit builder.

``asv.unit.conf.json`` names this module as a plugin (``".restartbench.hosts.unit.asv"``) and its
environment type (``restartbench-unit``); its ``repo`` is ``.asv/unit.git``, a link to the builder's
mirror of a Unit source (``link_source``; ``make asv-unit UNIT_SOURCE=...`` makes it). Then asv works
on Unit commits natively::

    asv run --config asv.unit.conf.json 1.32.0..1.32.1      # builds each commit, runs the benchmarks
    asv publish --config asv.unit.conf.json                 # graphs along Unit's history
    asv find --config asv.unit.conf.json 1.32.0..1.32.1 restarts.track_window_timeout_rate

The environment is the Python running asv (restartbench's venv: nothing is pip-installed per
commit). Installing a commit builds it with ``unitbuild.build`` (cached: a commit is compiled once
per machine, and revisions of one Cargo.lock share their compiled crates) and tells the benchmarks
which build to run through ``RESTARTBENCH_ASV_UNIT_BUILD``; ``benchmarks/restarts.py`` then measures
that build under one stable parameter label, so one graph follows the commits. A commit that does
not build is recorded by asv as a failed build and skipped.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from asv import util
from asv.console import log
from asv.environment import Environment

from . import build as unitbuild

BUILD_ENV = "RESTARTBENCH_ASV_UNIT_BUILD"
LINK = Path(".asv/unit.git")


class UnitHistoryEnvironment(Environment):
    """This venv's Python, with the benchmarked Unit commit built by ``unitbuild``. (Not a subclass of
    asv's ExistingEnvironment: asv treats those as unable to install a commit.)"""

    tool_name = "restartbench-unit"

    def __init__(self, conf, python, requirements, tagged_env_vars):
        self._executable = sys.executable
        self._requirements, self._python = {}, f"{sys.version_info[0]}.{sys.version_info[1]}"
        super().__init__(conf, f"{sys.version_info[0]}.{sys.version_info[1]}", {}, tagged_env_vars)
        self._requirements = {}
        self._source = str(Path(conf.repo).resolve())
        self._flavor = getattr(conf, "restartbench_flavor", "unit")
        self._installed: str | None = None

    @classmethod
    def matches(cls, python) -> bool:
        return True                  # whatever "pythons" says, the venv that runs asv is the one

    @property
    def name(self) -> str:
        return f"{self.tool_name}-py{self._python}"

    def check_presence(self) -> bool:
        return True

    def create(self):
        os.makedirs(self._path, exist_ok=True)

    def _setup(self):
        pass

    def can_install_project(self) -> bool:
        return True

    @property
    def installed_commit_hash(self) -> str | None:
        return self._installed

    def _get_installed_commit_hash(self):
        return None

    def install_project(self, conf, repo, commit_hash=None):
        """Build ``commit_hash`` (or use its cached build) and point the benchmarks at it."""
        if commit_hash is None:
            commit_hash = repo.get_hash_from_name(None)
        if commit_hash == self._installed:
            return
        arch = os.environ.get("RESTARTBENCH_ASV_ARCH") or None
        try:
            built = unitbuild.build(commit_hash, source=self._source, flavor=self._flavor, arch=arch,
                                    say=log.warning)
        except unitbuild.BuildError as exc:
            log.error(f"building {commit_hash[:10]} failed: {exc}")
            self._installed = None
            raise util.ProcessError(["restartbench", "build", "unit", "--rev", commit_hash], 1, str(exc), "")
        self._installed = commit_hash
        self._set_commit_hash(commit_hash)
        self._global_env_vars[BUILD_ENV] = str(built.dir)

    def run(self, args, **kwargs):
        log.debug(f"Running '{' '.join(args)}' in {self.name}")
        return self.run_executable("python", args, **kwargs)

    def run_executable(self, executable, args, **kwargs):
        """Run ``python`` (this venv's) or another executable with asv's variables (ASV_COMMIT, ...)
        and ours (the build to measure)."""
        exe = self._executable if executable == "python" else executable
        env = dict(kwargs.pop("env", os.environ))
        env.update(self._global_env_vars)
        return util.check_output([exe] + args, env=env, **kwargs)


def link_source(source: str | None, flavor: str = "unit", link: Path = LINK) -> Path:
    """Make ``link`` (asv.unit.conf.json's repo) point at the builder's mirror of ``source``."""
    src = unitbuild.open_source(source, flavor, log=lambda s: print(s, file=sys.stderr))
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(src.mirror, target_is_directory=True)
    return link
