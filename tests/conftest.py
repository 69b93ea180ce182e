"""The tests' fixtures (pytest loads this file before the test modules); plain helpers are in helpers.py."""

from __future__ import annotations

import functools

import pytest


# -- real NGINX Unit builds -------------------------------------------------------------------
# Tests that take the ``unit_install`` fixture run once per Unit build declared here (UNITD=,
# RESTARTBENCH_UNITS / ./units.toml, PATH): every build listed is tested, one that is listed but
# unusable fails with the reason; with none at all they skip, saying what to install.

@functools.cache
def unit_candidates() -> tuple:
    """Every Unit build declared on this machine, usable or not, in version order (empty if none);
    discovered once per test session (it runs each ``unitd --version``)."""
    from restartbench.hosts.unit import discovery as units
    from restartbench.versions import version_key
    from restartbench.installations import InstallationError

    try:
        found = units.discover()
    except InstallationError:
        return ()
    # builds restartbench made (its cache) are tested by test_host_unit_build, not by every real-Unit test
    found = [c for c in found if c.reason != units.NO_UNIT and c.source != "built"]
    return tuple(sorted(found, key=lambda c: (version_key(c.installation.version) if c.installation
                                              else (), c.spec)))


def pytest_generate_tests(metafunc):
    if "unit_install" in metafunc.fixturenames:
        found = unit_candidates()
        metafunc.parametrize("unit_install", list(found) or [None], indirect=True, scope="module",
                             ids=[c.spec.removeprefix("unit@") for c in found] or ["no-unit"])


@pytest.fixture(scope="module")
def unit_install(request):
    """One real Unit build (an Installation), from ``unit_candidates``."""
    from restartbench.hosts.unit import discovery as units

    cand = request.param
    if cand is None:
        pytest.skip(f"{units.NO_UNIT} (or RESTARTBENCH_UNITS=units.toml)")
    if cand.installation is None:
        pytest.fail(f"{cand.spec} [{cand.source}] is declared but cannot be used: {cand.reason}")
    return cand.installation


_DEFAULT_RUNS: dict = {}


@pytest.fixture
def unit_default_run(unit_install, tmp_path_factory):
    """One real run per Unit build at the default load (three restarts 4 s apart), made once per test
    session and shared by the tests that judge it (gate verdicts, known-bug matches)."""
    from restartbench import RunConfig, read_run, run, scenarios

    key = (unit_install.name, str(unit_install.executable))
    if key not in _DEFAULT_RUNS:
        sc = scenarios.from_dict({"duration": "15s", "warmup": "3s", "cooldown": "4s", "restart_every": "4s",
                                  "grace": "3s", "window": "3s"})
        outcome = run(RunConfig(target=f"unit@{unit_install.name}", scenario=sc,
                                results_root=tmp_path_factory.mktemp("unit-default")))
        assert outcome.status == "complete", outcome.meta.get("reason")
        _DEFAULT_RUNS[key] = read_run(outcome.path)
    return _DEFAULT_RUNS[key]
