"""restartbench.hosts: the registry finds every host module, the rest of the suite asks it, and a third
host is one new module (docs/hosts.md)."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest

from restartbench import hosts, installations, scenarios
from restartbench.errors import InstallationError
from restartbench.versions import version_key
from restartbench.run import ConfigError, RunConfig, validate

REPO = Path(__file__).resolve().parent.parent


def test_the_hosts_in_their_order():
    assert hosts.kinds() == ["wasmtime", "unit"]
    assert hosts.get("unit").restart_kinds == ("restart", "config", "swap", "processes", "change", "daemon", "second-app")
    assert hosts.get("wasmtime").max_processes == 1 and "restart_mode" in hosts.get("wasmtime").option_names()
    assert hosts.owner_of_option("app_object") is hosts.get("unit")


@pytest.mark.parametrize("spec,kind,name", [("wasmtime", "wasmtime", ""), ("wasmtime@wasmtime", "wasmtime", ""),
                                            ("unit", "unit", ""), ("unit@1.32.0", "unit", "1.32.0"),
                                            ("unit@freeunit-1.36.0", "unit", "freeunit-1.36.0")])
def test_split_a_spec(spec, kind, name):
    host, got = hosts.split(spec)
    assert host.kind == kind and got == name


@pytest.mark.parametrize("spec,message", [("nginx", "unknown target 'nginx': use wasmtime, unit, unit@NAME"),
                                          ("wasmtime@48", "only the pinned wasmtime is available")])
def test_bad_specs_say_what_to_type(spec, message):
    with pytest.raises(InstallationError, match=re.escape(message)):
        hosts.split(spec)
    with pytest.raises(InstallationError, match=re.escape(message)):
        installations.resolve(spec)


def test_one_version_order():
    """Builds, matrix cells, asv parameters and the catalogue all sort with this one key."""
    versions = ["1.35.0", "v1.34.2", "1.32.1", "1.4.0", "1.35.0rc1", "1.32.0", "weird", "1.33.0"]
    assert sorted(versions, key=version_key) == ["1.4.0", "1.32.0", "1.32.1", "1.33.0", "v1.34.2", "1.35.0rc1",
                                                 "1.35.0", "weird"]


def test_no_module_outside_hosts_compares_host_names():
    """Knowledge of one host lives in its module: the rest asks ``restartbench.hosts``."""
    pattern = re.compile(r'''(?:kind|target|host)\w*\s*[!=]=\s*["'](?:unit|wasmtime)["']|'''
                         r'''startswith\(["'](?:unit|wasmtime)''')
    offenders = []
    for path in [*REPO.glob("restartbench/*.py"), *REPO.glob("restartbench/cli/*.py"), *REPO.glob("analysis/*.py"),
                 *REPO.glob("benchmarks/*.py")]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert offenders == []


# -- a third host: one new module ------------------------------------------------------------------

THIRD = '''
from dataclasses import dataclass
from pathlib import Path

from restartbench.hosts.base import Candidate, Host, Installation, option


@dataclass(frozen=True)
class EchoOptions:
    loud: bool | None = option(None, "--echo-loud", "say it twice")


class Echo(Host):
    kind = "echo"
    title = "echo serve (a test host)"
    order = 20
    restart_kinds = ("restart",)
    max_processes = 1
    named = False
    Options = EchoOptions

    def discover(self):
        return [Candidate("echo", self.resolve("", None), "test")]

    def resolve(self, name, arch):
        return Installation(kind="echo", name="echo", executable=Path("/bin/echo"), version="1.0",
                            arch=arch or "x86_64")

    def target_class(self):
        raise NotImplementedError

    def role(self, title):
        return "main" if title.startswith("echo") else "other"


HOST = Echo()
'''


@pytest.fixture
def third_host(tmp_path, monkeypatch):
    """``restartbench/hosts`` with one more module in it (from another directory of the package path)."""
    pkg = tmp_path / "more_hosts"
    pkg.mkdir()
    (pkg / "echo.py").write_text(textwrap.dedent(THIRD))
    monkeypatch.setattr(hosts, "__path__", [*hosts.__path__, str(pkg)])
    hosts.all_hosts.cache_clear()
    yield hosts.get("echo")
    hosts.all_hosts.cache_clear()
    sys.modules.pop("restartbench.hosts.echo", None)


def test_a_new_module_is_a_new_host(third_host, tmp_path):
    assert hosts.kinds() == ["wasmtime", "unit", "echo"]
    assert hosts.split("echo")[0] is third_host
    assert any(c.spec == "echo" and c.installation.version == "1.0" for c in installations.discover())
    assert installations.resolve("echo").kind == "echo"
    assert "echo" in hosts.spec_help()
    # run() asks it what it can do and which options it takes
    sc = scenarios.load("config-change", duration="30s")
    with pytest.raises(ConfigError, match=r"echo cannot do config \(it does restart\)"):
        validate(RunConfig(target="echo", scenario=sc, results_root=tmp_path), resolve=False)
    with pytest.raises(ConfigError, match="--echo-loud is for the echo target"):
        validate(RunConfig(target="wasmtime", target_options={"loud": True}, results_root=tmp_path),
                 resolve=False)
    with pytest.raises(ConfigError, match="--restart-mode is for the wasmtime target"):
        validate(RunConfig(target="echo", target_options={"restart_mode": "drain"}, results_root=tmp_path),
                 resolve=False)
    validate(RunConfig(target="echo", target_options={"loud": True}, results_root=tmp_path), resolve=False)


def test_a_new_host_joins_matrices_and_explore(third_host):
    import random

    from restartbench import explore, matrix

    registry = [third_host.resolve("", "x86_64"), hosts.get("wasmtime").resolve("", None)]
    cells = matrix.cells(["echo", "wasmtime"], ["x86_64"], "periodic-restart", registry=registry)
    assert [c.kind for c in cells] == ["echo", "wasmtime"]              # kinds in the order given
    plans = [explore.random_plan(random.Random(n), "echo") for n in range(30)]
    assert {k for p in plans for k in p.kinds} == {"restart"} and {p.processes for p in plans} == {1}


def test_options_are_typed_per_host(tmp_path):
    from restartbench.hosts.wasmtime import WasmtimeOptions

    config = RunConfig(target="wasmtime", target_options=WasmtimeOptions(restart_mode="drain"),
                       results_root=tmp_path)
    validate(config, resolve=False)
    assert config.target_options == {"restart_mode": "drain"}
    with pytest.raises(ConfigError, match="--restart-mode 'slow': use one of term, drain"):
        validate(RunConfig(target="wasmtime", target_options={"restart_mode": "slow"}, results_root=tmp_path),
                 resolve=False)
    with pytest.raises(ConfigError, match="unknown target option 'colour'"):
        validate(RunConfig(target="unit", target_options={"colour": "red"}, results_root=tmp_path),
                 resolve=False)
