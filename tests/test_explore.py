"""restartbench explore: plans, shrinking, the record it writes, and (marked slow) a real search on
the 1.32.0 build."""

from __future__ import annotations

import json
import random
import tomllib

import pytest

from restartbench import explore, hosts, scenarios
from restartbench.analysis.gate import Judged
from restartbench.explore import Plan, complexity, random_plan, simpler
from restartbench.run import Interrupted, RunOutcome


def test_random_plans_are_seeded_runnable_scenarios():
    a = [random_plan(random.Random(7), "unit") for _ in range(1)]
    b = [random_plan(random.Random(7), "unit") for _ in range(1)]
    assert a == b
    rng = random.Random(1)
    plans = [random_plan(rng, "unit") for _ in range(200)]
    vocabulary = set(hosts.get("unit").vocabulary())
    assert {k for p in plans for k in p.kinds} == {"restart", "config", "swap", "processes", "daemon", *vocabulary}
    assert {p.second_app for p in plans} == {True, False}
    assert "settings-server-version" not in hosts.get("unit").vocabulary("1.32.0")   # a 1.33.0 setting
    assert {p.rate > 0 for p in plans} == {True, False} and {p.fresh_connections for p in plans} == {True, False}
    assert {p.processes for p in plans} >= {1, 2} and min(p.users for p in plans) == 1
    for p in plans:                                   # every plan is a valid scenario with a fitting timeout
        sc = p.scenario()
        assert sc.restart_count == len(p.kinds) and sc.actions == list(p.kinds)
        assert set(sc.changes) == set(p.kinds) & vocabulary
        assert p.load().request_timeout_s < p.spacing_s or len(p.kinds) == 1
    assert all(set(p.kinds) <= {"restart", "config", "swap"} for p in
               (random_plan(random.Random(n), "wasmtime") for n in range(50)))


def test_a_plan_with_changes_round_trips_through_its_scenario_file(tmp_path):
    vocabulary = hosts.get("unit").vocabulary("1.35.0")
    plan = next(p for p in (random_plan(random.Random(n), "unit", vocabulary) for n in range(100))
                if p.changes and p.second_app)
    path = tmp_path / "minimal.toml"
    path.write_text(plan.to_toml("found"))
    again = scenarios.load(path)
    assert again.changes == plan.scenario().changes and again.second_app and again.actions == list(plan.kinds)
    assert again.plan() == plan.scenario().plan()


def test_a_plan_round_trips_through_its_scenario_file(tmp_path):
    plan = Plan(kinds=("restart", "config", "processes"), spacing_s=2.0, users=5, sleep_share=0.5, rate=100.0,
                fresh_connections=True, processes=2)
    path = tmp_path / "minimal.toml"
    path.write_text(plan.to_toml("found by a test\nreplay: restartbench run ..."))
    tomllib.loads(path.read_text())
    sc = scenarios.load(path)
    assert sc.actions == ["restart", "config", "processes"] and sc.restart_count == 3
    assert sc.restart_every_s == 2.0 and sc.processes == 2
    assert sc.load == {"users": 5, "sleep_share": 0.5, "rate": 100.0, "fresh_connections": True,
                       "request_timeout": 1.6}
    # the run command takes the scenario's load where no flag says otherwise
    from restartbench import cli

    args = cli.build_parser().parse_args(["run", "--scenario", str(path)])
    load = cli.load_spec(args, sc)
    assert (load.users, load.sleep_share, load.rate, load.fresh_connections, load.request_timeout_s) == \
        (5, 0.5, 100.0, True, 1.6)
    args = cli.build_parser().parse_args(["run", "--scenario", str(path), "--users", "3"])
    assert cli.load_spec(args, sc).users == 3


def test_simpler_plans_are_simpler():
    plan = Plan(kinds=("config", "swap", "restart", "processes"), spacing_s=1.0, users=20, sleep_share=0.1,
                rate=100.0, fresh_connections=True, processes=3)
    cands = list(simpler(plan))
    assert cands[0].kinds == ("config",)
    assert all(complexity(c) < complexity(plan) for c in cands)
    minimal = Plan(kinds=("restart",), spacing_s=5.0, users=1)
    assert list(simpler(minimal)) == []


def test_explore_finds_confirms_and_shrinks_to_a_minimal_plan(tmp_path):
    """A host that fails whenever a config change happens under 2+ users: found, confirmed, and shrunk
    to one config change by 2 users; the record and the scenario say so."""
    seen = []

    def runner(config):
        seen.append((tuple(config.scenario.actions), config.load.users))
        return RunOutcome(tmp_path, "complete", {"actions": list(config.scenario.actions),
                                                 "users": config.load.users})

    def judge(outcome):
        bad = "config" in outcome.meta["actions"] and outcome.meta["users"] >= 2
        return Judged("fail", ["lingering"], seen=["some-bug"]) if bad else Judged("pass")

    found = explore.explore("unit@x", 10_000, tmp_path / "out", seed=5, runner=runner, judge=judge)
    assert found.found and found.failing is not None
    assert found.minimal.kinds == ("config",) and found.minimal.users == 2
    assert [t.purpose for t in found.trials][-1] == "final"
    purposes = [t.purpose for t in found.trials]
    assert purposes[purposes.index("confirm") - 1] == "explore"            # a failure is re-run at once
    rec = json.loads((tmp_path / "out" / "explore.json").read_text())
    assert rec["found"] and rec["minimal"]["kinds"] == ["config"] and rec["minimal_failed_checks"] == ["lingering"]
    text = (tmp_path / "out" / "minimal.toml").read_text()
    assert "fails the gate: lingering" in text and "findings: some-bug" in text
    assert scenarios.load(tmp_path / "out" / "minimal.toml").actions == ["config"]
    assert "minimal failing plan" in (tmp_path / "out" / "report.md").read_text()
    # same seed, same search
    again = explore.explore("unit@x", 10_000, tmp_path / "out2", seed=5, runner=runner, judge=judge)
    assert [t.plan for t in again.trials] == [t.plan for t in found.trials]


def test_explore_reports_coverage_when_nothing_fails_and_keeps_flaky_ones_apart(tmp_path):
    """Every run takes the time a real one would (a fake clock): the budget ends the search."""
    n = {"runs": 0}
    now = [0.0]

    def runner(config):
        n["runs"] += 1
        now[0] += config.scenario.duration_s + explore.OVERHEAD_S
        return RunOutcome(tmp_path, "complete", {"n": n["runs"]})

    def judge(outcome):                            # the 2nd run fails once: never confirmed
        return Judged("fail", ["window timeout rate"]) if outcome.meta["n"] == 2 else Judged("pass")

    found = explore.explore("wasmtime", 200, tmp_path / "out", seed=1, runner=runner, judge=judge,
                            clock=lambda: now[0])
    assert not found.found and len(found.flaky) == 1
    assert found.elapsed_s <= 200 and n["runs"] >= 4
    cov = found.coverage()
    assert cov["plans"][0] >= 2 and cov["kinds"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "nothing failed the gate within the budget" in report and "flaky" in report
    assert not (tmp_path / "out" / "minimal.toml").exists()


def test_explore_stopped_keeps_what_it_found(tmp_path):
    calls = []

    def runner(config):
        calls.append(1)
        if len(calls) == 3:
            raise Interrupted("SIGINT")
        return RunOutcome(tmp_path, "complete", {})

    found = explore.explore("wasmtime", 10_000, tmp_path / "out", seed=2, runner=runner,
                            judge=lambda o: Judged("pass"))
    assert found.stopped == "SIGINT" and len(found.trials) == 2
    rec = json.loads((tmp_path / "out" / "explore.json").read_text())
    assert rec["stopped"] == "SIGINT" and len(rec["trials"]) == 2


@pytest.mark.slow
@pytest.mark.unit
@pytest.mark.timeout(900)
def test_real_explore_names_the_1_32_0_bug_with_one_restart(unit_install, tmp_path):
    """On 1.32.0 a failing plan is found well inside 5 minutes and shrunk to a single restart."""
    from helpers import has_restart_bug

    if not has_restart_bug(unit_install):
        pytest.skip("the 1.32.0 search; sound builds are explored in the benchmarks (README)")
    found = explore.explore(unit_install.label, 300, tmp_path / "out", seed=1, installation=unit_install)
    assert found.found and len(found.minimal.kinds) == 1
    first_fail = next(i for i, t in enumerate(found.trials) if t.verdict == "fail")
    assert sum(t.wall_s for t in found.trials[:first_fail + 1]) < 300
