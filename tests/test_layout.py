"""docs/layout.md's rules of who imports whom, checked on the package's real import graph (tests/layout.py)."""

from __future__ import annotations

import subprocess
import sys

import layout


def test_every_import_follows_the_layers():
    assert layout.violations() == []


def test_the_graph_sees_real_imports_at_any_depth():
    g = layout.graph()
    assert "restartbench.results" in g["restartbench.run"]
    assert "restartbench.metadata" in g["restartbench.results"]
    assert "restartbench.bisect" in g["restartbench.cli.bisect"]                 # a function-level import
    assert "restartbench.scenarios" not in g["restartbench.hosts.base"]         # TYPE_CHECKING only
    assert set(layout.modules()) >= {"restartbench.analysis.gate", "restartbench.hosts.unit.target",
                                     "restartbench.cli.live"}


def test_a_forbidden_import_is_reported(monkeypatch):
    real = layout.graph()
    monkeypatch.setattr(layout, "graph", lambda: {**real, "restartbench.analysis.gate":
                                                  real["restartbench.analysis.gate"] | {"restartbench.run"}})
    assert layout.violations() == ["restartbench.analysis.gate (analysis) imports restartbench.run (run)"]


def test_nothing_imports_the_cli_or_the_jobs_from_below():
    for mod, deps in layout.graph().items():
        if layout.layer(mod) not in ("cli",):
            assert not any(layout.layer(d) == "cli" for d in deps), mod
        if layout.layer(mod) in ("analysis", "hosts", "run", "contract", "helpers", "bottom"):
            assert not any(layout.layer(d) == "jobs" for d in deps), mod


def test_the_layout_command_runs():
    out = subprocess.run([sys.executable, str(layout.REPO / "tests" / "layout.py")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "restartbench.cli.live" in out.stdout and "imports against docs/layout.md: none" in out.stdout
