"""analysis.gate: absolute limits, the baseline Mann–Whitney comparison, limits files, exit codes."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from restartbench.analysis import GateInputError, evaluate, load_limits
from restartbench.analysis.gate import DEFAULT_PATH, KEYS, defaults, min_p, relative_effect, render
from analysis_fixtures import (MiB, Tree, clean_run, requests_frame, restarts_frame,
                               write_run)
from rich.console import Console

TIMES = [10.0, 15.0, 20.0]


def faulty_run(root, run_id="faulty"):
    """Gen-0 apps never exit (3 linger), 5% timeouts in windows, restart 3 never answers ok,
    RSS grows 2 MiB per restart."""
    req = requests_frame(timeouts=[(10.0, 10.25), (15.0, 15.25)], errors=[(20.0, 25.0)])
    tree = Tree(TIMES, n_app=3, lingering_generations={0}, rss_per_restart=2 * MiB)
    return write_run(root, run_id, requests=req, restarts=restarts_frame(TIMES),
                     processes=tree.frame())


def verdicts(result):
    return {(r.check, r.scope): r.verdict for r in result.rows}


def test_clean_run_passes(tmp_path):
    result = evaluate([clean_run(tmp_path)], load_limits())
    assert result.exit_code == 0 and result.passed
    assert {r.verdict for r in result.rows} == {"pass", "skip"}
    assert [r.check for r in result.rows] == [
        "run completed", "lingering", "window timeout rate", "every restart recovers",
        "recovery p95", "RSS growth per restart", "fd growth per restart", "other app disturbed",
        "crashes while serving",
        "restarts whose old processes crashed",
        "shutdown hang", "processes outliving the stop", "requests stuck at idle"]
    # a host without a log of its processes' exits or /status counters: those are not judged; no second app
    assert {r.check for r in result.rows if r.verdict == "skip"} == {
        "crashes while serving", "restarts whose old processes crashed", "requests stuck at idle",
        "other app disturbed"}


def test_injected_faults_fail_the_right_checks(tmp_path):
    result = evaluate([faulty_run(tmp_path)], load_limits())
    assert result.exit_code == 1
    failed = {r.check: r for r in result.failures()}
    # the lingering processes keep their memory and fds: the tree's growth shows them too
    assert set(failed) == {"lingering", "window timeout rate", "every restart recovers",
                           "RSS growth per restart", "fd growth per restart"}
    assert failed["lingering"].value == "3"
    assert failed["window timeout rate"].value == "3.33%"      # 50 of 1500 window requests
    assert failed["every restart recovers"].value == "1/3 unrecovered"
    assert "restart 3" in failed["every restart recovers"].note
    v = verdicts(result)
    assert v[("run completed", "faulty")] == "pass"
    assert v[("recovery p95", "faulty")] == "pass"


def test_rss_growth_alone_fails_only_rss(tmp_path):
    run = write_run(tmp_path, "leaky", requests=requests_frame(), restarts=restarts_frame(TIMES),
                    processes=Tree(TIMES, rss_per_restart=2 * MiB).frame())
    result = evaluate([run])
    assert [(r.check, r.value) for r in result.failures()] == [("RSS growth per restart", "2.00 MiB")]


def test_each_candidate_is_judged(tmp_path):
    result = evaluate([clean_run(tmp_path), faulty_run(tmp_path)])
    assert result.exit_code == 1
    assert {r.scope for r in result.failures()} == {"faulty"}


def test_interrupted_run_fails_run_completed(tmp_path):
    run = write_run(tmp_path, status="interrupted", requests=requests_frame(duration=12.0),
                    restarts=restarts_frame([10.0]), scenario={"name": "s", "restart_count": 3})
    v = verdicts(evaluate([run]))
    assert v[("run completed", "run1")] == "fail"
    assert v[("restarts performed", "run1")] == "fail"
    assert v[("lingering", "run1")] == "skip"            # no census: not judged, not passed


def test_run_without_restarts_skips_restart_checks(tmp_path):
    run = write_run(tmp_path, requests=requests_frame(), restarts=restarts_frame([]))
    result = evaluate([run])
    assert result.exit_code == 0
    assert [(r.check, r.verdict) for r in result.rows] == [("run completed", "pass"),
                                                           ("restart checks", "skip")]


def test_disabled_limit_is_skipped(tmp_path):
    path = tmp_path / "limits.toml"
    path.write_text("[limits]\nlingering_max = false\nrss_slope_max = 4194304\n")
    limits = load_limits(path)
    assert limits["limits"]["window_timeout_rate_max"] == 0.01          # default kept
    v = {r.check: r.verdict for r in evaluate([faulty_run(tmp_path)], limits).rows}
    assert v["lingering"] == "skip" and v["every restart recovers"] == "fail"
    leaky = write_run(tmp_path, "leaky", requests=requests_frame(), restarts=restarts_frame(TIMES),
                      processes=Tree(TIMES, rss_per_restart=2 * MiB).frame())
    assert evaluate([leaky], limits).exit_code == 0


def test_shipped_file_matches_the_defaults():
    assert DEFAULT_PATH.is_file()
    assert load_limits(DEFAULT_PATH) == defaults() == load_limits()
    shipped = tomllib.loads(DEFAULT_PATH.read_text())
    assert load_limits()["limits"] == shipped["limits"] and set(shipped["limits"]) == set(KEYS["limits"])
    assert load_limits()["emulated"]["recovery_p95_s_max"] == shipped["emulated"]["recovery_p95_s_max"] == 10.0
    assert load_limits()["analysis"] == {"window_s": None, "grace_s": None}


@pytest.mark.parametrize("text, match", [
    ("[limits\nlingering_max = 0", "not valid TOML"),
    ("[limits]\nlingering_max = 0\nlingering_max = 1", "not valid TOML"),
    ("[limits]\nlingering = 0", "unknown key 'lingering'"),
    ("[limitz]\nlingering_max = 0", r"unknown section \[limitz\]"),
    ("[limits]\nlingering_max = 'none'", "expected a number >= 0"),
    ("[limits]\nall_recover = 1", "expected true or false"),
    ("[baseline]\nalpha = 2", "0 < alpha < 1"),
    ("[baseline]\nsamples = ['latency']", "expected a list of"),
    ("limits = 3", "must be a table"),
])
def test_malformed_limits_are_input_errors(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(GateInputError, match=match) as info:
        load_limits(path)
    assert "\n" not in str(info.value)


def test_missing_limits_file(tmp_path):
    with pytest.raises(GateInputError, match="not found"):
        load_limits(tmp_path / "nope.toml")


def test_no_candidates_is_an_input_error():
    with pytest.raises(GateInputError, match="no candidate"):
        evaluate([])


def test_unreadable_run_is_an_input_error(tmp_path):
    run = clean_run(tmp_path)
    (run.path / "processes.parquet").write_bytes(b"garbage")
    with pytest.raises(GateInputError, match="processes.parquet"):
        evaluate([run])


def test_render_shows_every_row(tmp_path):
    result = evaluate([faulty_run(tmp_path)])
    console = Console(record=True, width=200)
    console.print(render(result))
    text = console.export_text()
    assert "FAIL" in text and "exit 1" in text and "lingering" in text


# -- baseline ---------------------------------------------------------------------------------

def stall_run(root, run_id, stalls, emulated=False):
    """Restarts every 5 s from 5 s; after restart k nothing answers until stalls[k] later
    (inf: every request of the window fails)."""
    times = [5.0 + 5.0 * k for k in range(len(stalls))]
    req = requests_frame(duration=times[-1] + 5.0,
                         stalls=[(t, t + round(s, 2)) for t, s in zip(times, stalls) if s < 5],
                         errors=[(t, t + 5.0) for t, s in zip(times, stalls) if s >= 5])
    target = {"kind": "unit", "name": "1.34.0", "version": "1.34.0", "arch": "x86_64",
              "emulated": emulated}
    return write_run(root, run_id, requests=req, restarts=restarts_frame(times), target=target)


@pytest.fixture(scope="module")
def stalls():
    return np.random.default_rng(7).uniform(0.3, 0.9, size=(3, 20))   # 3 runs x 20 restarts


def test_baseline_detects_2x_slower_recovery(tmp_path, stalls):
    base = [stall_run(tmp_path, f"b{i}", s) for i, s in enumerate(stalls)]
    other = np.random.default_rng(8).uniform(0.3, 0.9, size=stalls.shape)
    slow = [stall_run(tmp_path, f"c{i}", 2 * s) for i, s in enumerate(other)]
    result = evaluate(slow, baseline=base)
    row = next(r for r in result.rows if r.check == "baseline recovery_s")
    assert row.verdict == "fail" and "candidate worse" in row.note
    assert "n=60/60" in row.value
    assert result.exit_code == 1


def test_baseline_ignores_2_percent_slower_recovery(tmp_path, stalls):
    base = [stall_run(tmp_path, f"b{i}", s) for i, s in enumerate(stalls)]
    slightly = [stall_run(tmp_path, f"c{i}", 1.02 * s) for i, s in enumerate(stalls)]
    result = evaluate(slightly, baseline=base)
    rows = {r.check: r for r in result.rows if r.check.startswith("baseline")}
    assert rows["baseline recovery_s"].verdict == "pass"
    assert rows["baseline timeout_rate"].verdict == "pass"
    assert rows["baseline restart_api_s"].verdict == "pass"
    assert result.exit_code == 0


def test_baseline_refuses_emulated_against_native(tmp_path, stalls):
    base = [stall_run(tmp_path, "b0", stalls[0])]
    emu = [stall_run(tmp_path, "c0", 2 * stalls[0], emulated=True)]
    rows = [r for r in evaluate(emu, baseline=base).rows if r.check.startswith("baseline")]
    assert len(rows) == 3
    assert all(r.verdict == "skip" and "refused" in r.note for r in rows)


def test_baseline_with_too_few_restarts_is_skipped(tmp_path):
    base = [stall_run(tmp_path, "b0", [0.3, 0.4, 0.5])]
    cand = [stall_run(tmp_path, "c0", [0.9, 0.95, 0.99])]
    row = next(r for r in evaluate(cand, baseline=base).rows if r.check == "baseline recovery_s")
    assert row.verdict == "skip" and "too few" in row.note


def test_unrecovered_restarts_rank_as_worst(tmp_path, stalls):
    base = [stall_run(tmp_path, f"b{i}", s) for i, s in enumerate(stalls)]
    never = [stall_run(tmp_path, f"c{i}", np.r_[np.full(12, np.inf), stalls[i][:8]])
             for i in range(3)]
    row = next(r for r in evaluate(never, baseline=base).rows if r.check == "baseline recovery_s")
    assert row.verdict == "fail" and "+inf" in row.value


def test_effect_and_min_p():
    assert relative_effect(np.array([2.0, 2.0]), np.array([1.0, 1.0]), "median") == 1.0
    assert relative_effect(np.array([0.1]), np.array([0.0]), "mean") == np.inf
    assert relative_effect(np.array([0.0]), np.array([0.0]), "mean") == 0.0
    assert min_p(5, 5) == pytest.approx(1 / 252)
    assert min_p(100, 100) == 0.0


def test_emulated_runs_are_judged_with_the_emulated_limits(tmp_path):
    # recovery of 3 s after every restart: too slow natively (2 s), fine under qemu (10 s)
    stalls = [(t, t + 3.0) for t in (10.0, 15.0, 20.0)]
    rows = dict(requests=requests_frame(30.0, stalls=stalls), restarts=restarts_frame((10.0, 15.0, 20.0)),
                processes=Tree((10.0, 15.0, 20.0), duration=30.0).frame())
    native = write_run(tmp_path, "native", **rows)
    emulated = write_run(tmp_path, "emulated", **rows, target={
        "kind": "wasmtime", "name": "wasmtime", "version": "49.0.3", "arch": "aarch64",
        "runner": ["qemu-aarch64-static"], "emulated": True})
    verdict = {r.scope: r for r in evaluate([native, emulated]).rows if r.check == "recovery p95"}
    assert verdict["native"].verdict == "fail"
    assert verdict["emulated"].verdict == "pass" and "emulated" in verdict["emulated"].note
    bad = tmp_path / "bad.toml"
    bad.write_text("[emulated]\nrss_slope_max = -1\n")
    with pytest.raises(GateInputError, match=r"\[emulated\] rss_slope_max"):
        load_limits(bad)


@pytest.mark.parametrize("k, n, verdict", [(3, 3, "fail"), (2, 3, "pass"), (1, 3, "pass"), (0, 3, "pass"),
                                           (5, 7, "fail"), (4, 7, "pass"), (1, 1, "skip"), (2, 2, "skip"),
                                           (0, 2, "pass")])
def test_crashes_of_replaced_processes_are_judged_as_a_rate(k, n, verdict):
    """Replaced processes crashing at every restart (1.32.0) fails from 3 restarts on; a rare race
    (1.32.1: ~8% of restarts) does not; with fewer restarts a crash cannot be told from the race."""
    from restartbench.analysis.gate import CRASH_ALPHA, GateResult, crash_rate_check

    result = GateResult()
    crash_rate_check(result, "run", k, n, 0.10, CRASH_ALPHA, "old app processes crashed", "no restarts")
    (row,) = result.rows
    assert row.verdict == verdict, row
    assert row.value.startswith(f"{k}/{n}")
    assert (row.note != "") == (verdict != "pass")


def test_a_crash_rate_limit_can_be_switched_off():
    from restartbench.analysis.gate import GateResult, crash_rate_check

    result = GateResult()
    crash_rate_check(result, "run", 3, 3, False, 0.002, "", "")
    assert result.rows[0].verdict == "skip" and result.rows[0].limit == "off"


def test_growth_per_restart_needs_a_trend(tmp_path):
    """One or two restarts make no trend: the RSS and fd growth rows skip, saying why."""
    run = clean_run(tmp_path, "two", restarts=(10.0, 15.0))
    rows = {r.check: r for r in evaluate([run]).rows}
    for check in ("RSS growth per restart", "fd growth per restart"):
        assert rows[check].verdict == "skip" and "a growth trend needs 3" in rows[check].note
    rows = {r.check: r for r in evaluate([clean_run(tmp_path, "three")]).rows}
    assert rows["RSS growth per restart"].verdict == "pass"


def test_only_new_findings_fail_against_a_baseline_that_shows_the_same(tmp_path):
    """A pull request's runs fail the same checks as its base's: with only_new they pass, the base's
    findings listed as known; without a baseline only_new is an input error."""
    base = [faulty_run(tmp_path / "base")]
    head = [faulty_run(tmp_path / "head")]
    plain = evaluate(head, load_limits(), baseline=base)
    assert not plain.passed
    known = evaluate(head, load_limits(), baseline=base, only_new=True)
    assert known.passed and known.baseline_known
    from restartbench.analysis.gate import verdict_line
    assert "known from the baseline" in verdict_line(known) and "verdict: PASS" in verdict_line(known)
    new = evaluate(head, load_limits(), baseline=[clean_run(tmp_path / "clean")], only_new=True)
    assert not new.passed                         # the clean base shows none of them: all new
    with pytest.raises(GateInputError, match="--only-new needs --baseline"):
        evaluate(head, load_limits(), only_new=True)
