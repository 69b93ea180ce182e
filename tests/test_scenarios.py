"""Restart plans: durations, validation, the shipped scenario files, action kinds in turn."""

import pytest

from restartbench import scenarios
from restartbench.scenarios import ScenarioError, parse_duration


@pytest.mark.parametrize("text,seconds", [("5s", 5), ("500ms", 0.5), ("2m", 120), ("1m30s", 90), ("7", 7),
                                          (3.5, 3.5)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "s", "1.2.3s", "5 s s", "-5s"])
def test_parse_duration_rejects(text):
    with pytest.raises(ScenarioError, match="not a duration"):
        parse_duration(text)


def test_default_plan_fits_the_duration():
    sc = scenarios.from_dict({"duration": "40s", "warmup": "5s", "cooldown": "5s", "restart_every": "5s"})
    times = [t for t, _ in sc.plan()]
    assert times == [5, 10, 15, 20, 25, 30, 35]
    assert times[-1] + sc.cooldown_s <= sc.duration_s


def test_actions_in_turn_and_swap_variants_alternate_per_kind():
    sc = scenarios.from_dict({"duration": "60s", "actions": "restart,swap", "processes": 2})
    kinds = [a["kind"] for _, a in sc.plan()]
    assert kinds[:4] == ["restart", "swap", "restart", "swap"]
    variants = [a["variant"] for _, a in sc.plan() if a["kind"] == "swap"]
    assert variants[:3] == ["b", "a", "b"]


def test_process_count_alternates():
    sc = scenarios.load("process-count")
    counts = [a["processes"] for _, a in sc.plan()]
    assert counts[:3] == [3, 2, 3]


@pytest.mark.parametrize("data,message", [
    ({"restart_every": "1s"}, "shorter than the lingering grace"),
    ({"duration": "8s"}, "leaves no time"),
    ({"restarts": 50}, "need a duration of at least"),
    ({"actions": "reboot"}, "unknown restart action"),
    ({"processes": 0}, "processes must be between"),
    ({"colour": "red"}, "unknown scenario setting"),
    ({"restarts": "3"}, "whole number"),
])
def test_invalid_plans_are_refused(data, message):
    with pytest.raises(ScenarioError, match=message):
        scenarios.from_dict(data)


def test_every_shipped_scenario_loads():
    names = [p.stem for p in scenarios.SCENARIO_DIR.glob("*.toml")]
    assert "periodic-restart" in names
    for name in names:
        assert scenarios.load(name).restart_count >= 3


def test_unknown_and_malformed_scenario_files(tmp_path):
    with pytest.raises(ScenarioError, match="not found: use one of"):
        scenarios.load("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("duration = \n")
    with pytest.raises(ScenarioError, match="fix the TOML"):
        scenarios.load(bad)
