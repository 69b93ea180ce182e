"""analysis.findings and the aimed gate: findings as results, --bug/--allow, baseline by finding,
emulation controls, the build × finding table. Runs are Unit-shaped results directories whose crashes
are written into host.log exactly as Unit logs them (the lines of tests/data/unit/runs)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from restartbench.analysis import GateInputError, evaluate, load_limits, summarize
from restartbench.analysis.compare import compare_table, finding_table, write_csv
from restartbench.analysis.findings import SITES, check_ids, counts, fisher_greater, sites, wilson
from analysis_fixtures import Tree, requests_frame, restarts_frame, write_run

TIMES = [10.0, 15.0, 20.0, 25.0]
DATA = Path(__file__).parent / "data" / "unit" / "runs" / "1.35.0-router-segv"


def unit_run(root, run_id, *, leaving=(), router=(), version="1.35.0", arch="x86_64", emulated=False,
             control=None):
    """A Unit run with 4 restarts (index 0..3) whose old app crashes on its way out after the restarts
    in ``leaving`` and whose router crashes after those in ``router`` (Unit's log lines)."""
    restarts = restarts_frame(TIMES)
    restarts["index"] = range(len(TIMES))
    tree = Tree(TIMES)
    lines = ["--- restartbench 2026/12/02 00:00:00 start: unitd --no-daemon"]
    for i in range(len(TIMES)):
        lines.append(f"--- restartbench 2026/12/02 00:00:{10 + 5 * i:02d} restart {i}: restart")
        if i in leaving:                          # the app of generation i (pids: Tree.procs)
            lines.append(f"2026/12/02 00:00:{10 + 5 * i:02d} [alert] {100 + 3 * i}#1 app process "
                         f"{101 + 3 * i} exited on signal 11")
        if i in router:
            lines.append(f"2026/12/02 00:00:{10 + 5 * i:02d} [alert] 1#1 process 3 exited on signal 11")
    meta = {"control": control} if control else {}
    run = write_run(root, run_id, requests=requests_frame(), restarts=restarts, processes=tree.frame(),
                    target={"kind": "unit", "name": version, "version": version, "arch": arch,
                            "runner": ["qemu"] if emulated else [], "emulated": emulated},
                    scenario={"name": "periodic-restart", "restart_count": len(TIMES)}, meta=meta)
    (run.path / "host.log").write_text("\n".join(lines) + "\n")
    return run


def finding(summary, fid):
    return next(f for f in summary["findings"] if f["id"] == fid)


def test_sites_locate_crashes_by_role_and_restart(tmp_path):
    s = summarize(unit_run(tmp_path, "r", leaving=(0, 2), router=(1,)))
    got = {x.id: x.restarts for x in sites(s, json.loads((tmp_path / "r" / "run.json").read_text()))}
    assert got == {"crash-leaving@app": (0, 2), "crash@router": (1,)}


def test_findings_are_results_with_rates_and_the_checks_they_explain(tmp_path):
    s = summarize(unit_run(tmp_path, "r", leaving=(0, 1, 2, 3), router=(1,)))
    assert s["summary_format"] == 5
    router = finding(s, "unit-router-crash-on-reconfigure")
    assert router["kind"] == "known" and router["restarts"] == [1] and (router["k"], router["n"]) == (1, 4)
    assert router["failing"] == ["crashes while serving"]
    app = finding(s, "unit-quitting-app-crash")            # every restart: above the tolerated rate
    assert (app["k"], app["n"], app["per"]) == (4, 4, "restart") and app["failing"] == [
        "restarts whose old processes crashed"]


def test_an_unexplained_failure_is_an_unnamed_finding_named_where_it_failed(tmp_path):
    run = unit_run(tmp_path, "r", router=(2,))
    meta = json.loads((run.path / "run.json").read_text())
    s = summarize(run)
    s["known_bugs"] = []            # a catalogue without the router entry: the row is nobody's known bug
    from restartbench.analysis.gate import GateResult, judge_run, limits_for

    result = GateResult()
    judge_run(result, run, s, limits_for(s, load_limits()))
    [f] = result.findings[run.run_id]
    assert f.id == "crash@router" and f.kind == "unnamed" and f.restarts == [2] and (f.k, f.n) == (1, 4)
    row = next(r for r in result.rows if r.check == "crashes while serving")
    assert row.findings == ["crash@router"] and result.explained(row) == "no known signature"
    assert meta["target"]["kind"] == "unit"


def test_aimed_gate_judges_only_the_asked_finding(tmp_path):
    run = unit_run(tmp_path, "r", leaving=(0, 1, 2, 3), router=(1,))
    whole = evaluate([run], load_limits())
    assert not whole.passed
    router = evaluate([run], load_limits(), bugs=["unit-router-crash-on-reconfigure"])
    assert not router.passed and {r.check for r in router.failures()} == {"crashes while serving"}
    outcomes = {r.check: router.outcome(r) for r in router.rows}
    assert outcomes["restarts whose old processes crashed"] == "not asked"
    # a bug this run does not show: pass, though the run fails other checks
    hang = evaluate([run], load_limits(), bugs=["unit-1179"])
    assert hang.passed and hang.exit_code == 0
    # allowing both findings passes the run; they are still listed
    allowed = evaluate([run], load_limits(), allow=["unit-router-crash-on-reconfigure", "unit-quitting-app-crash"])
    assert allowed.passed and {allowed.outcome(r) for r in allowed.rows if r.verdict == "fail"} == {"allowed"}
    assert {f.id for f in allowed.findings[run.run_id]} >= {"unit-router-crash-on-reconfigure"}
    # allowing one is not enough
    assert not evaluate([run], load_limits(), allow=["unit-quitting-app-crash"]).passed


def test_aimed_gate_input_errors(tmp_path):
    run = unit_run(tmp_path, "r", leaving=(0,))
    with pytest.raises(GateInputError, match="--bug nope: unknown finding; known bugs: unit-1179-restart-hang"):
        evaluate([run], load_limits(), bugs=["nope"])
    with pytest.raises(GateInputError, match="--allow x@: unknown finding"):
        evaluate([run], load_limits(), allow=["x@"])
    with pytest.raises(GateInputError, match="explains no gate check"):
        evaluate([run], load_limits(), bugs=["unit-inflight-503-on-restart"])
    wasm = write_run(tmp_path, "w", requests=requests_frame(), restarts=restarts_frame(TIMES),
                     processes=Tree(TIMES, only_main=True).frame(),
                     target={"kind": "wasmtime", "name": "wasmtime", "version": "49.0.3", "arch": "x86_64"})
    with pytest.raises(GateInputError, match="is a bug of unit; these runs are of wasmtime"):
        evaluate([wasm], load_limits(), bugs=["unit-1179"])
    # fd growth needs 3+ restarts: a 2-restart run cannot show it
    short = write_run(tmp_path, "s", requests=requests_frame(), restarts=restarts_frame([10.0, 15.0]),
                      processes=Tree([10.0, 15.0]).frame())
    with pytest.raises(GateInputError, match="no run given can show it"):
        evaluate([short], load_limits(), bugs=["unit-fd-growth-per-reconfigure"])
    assert check_ids(["crash@router", "unit-1179", "lingering"]) is None


def test_baseline_by_finding_rates_and_new_findings(tmp_path):
    base = [unit_run(tmp_path, f"b{i}", leaving=(0,) if i == 0 else ()) for i in range(3)]
    same = [unit_run(tmp_path, f"s{i}", leaving=(1,) if i == 0 else ()) for i in range(3)]
    result = evaluate(same, load_limits(), baseline=base)
    row = next(r for r in result.rows if r.check == "finding unit-quitting-app-crash")
    assert row.verdict == "pass" and row.value.startswith("1/12 vs 1/12 restarts")
    worse = [unit_run(tmp_path, f"w{i}", leaving=(0, 1, 2, 3), router=(2,) if i == 0 else ()) for i in range(3)]
    result = evaluate(worse, load_limits(), baseline=base)
    rows = {r.check: r for r in result.rows if r.scope == "candidates vs baseline"}
    assert rows["finding unit-quitting-app-crash"].verdict == "fail"           # 12/12 vs 1/12
    assert rows["finding unit-quitting-app-crash"].findings == ["unit-quitting-app-crash"]
    new = rows["finding unit-router-crash-on-reconfigure"]
    assert new.note.startswith("new: the baseline never showed it") and new.verdict == "pass"   # 1/12 vs 0/12
    assert fisher_greater(12, 12, 1, 12) < 0.01 < fisher_greater(1, 12, 0, 12)


def test_a_baseline_of_another_host_is_refused(tmp_path):
    run = unit_run(tmp_path, "r")
    wasm = write_run(tmp_path, "w", requests=requests_frame(), restarts=restarts_frame(TIMES),
                     processes=Tree(TIMES, only_main=True).frame(),
                     target={"kind": "wasmtime", "name": "wasmtime", "version": "49.0.3", "arch": "x86_64"})
    with pytest.raises(GateInputError, match="the baseline runs are of host wasmtime, the candidates of unit"):
        evaluate([run], load_limits(), baseline=[wasm])


def test_emulation_control_tells_the_build_the_arch_and_the_emulator_apart(tmp_path):
    """A foreign run whose quitting-app crash is as frequent in the emulated control is an emulation
    effect (passes); a crash the native control shows too is the build's (fails); one above the
    emulated control is an arch effect (fails)."""
    foreign = unit_run(tmp_path, "arm", leaving=(0, 1, 2, 3), arch="aarch64", emulated=True)
    native = unit_run(tmp_path, "arm-control-native", control={"of": "arm", "kind": "native"})
    emulated = unit_run(tmp_path, "arm-control-emulated", leaving=(0, 1, 2), emulated=True,
                        control={"of": "arm", "kind": "emulated"})
    alone = evaluate([foreign], load_limits())
    assert not alone.passed                                                     # no control: it fails
    result = evaluate([foreign, native, emulated], load_limits())               # controls found by run.json
    assert result.controls == {"arm": ["arm-control-native", "arm-control-emulated"]}
    assert result.effects["arm"] == {"unit-quitting-app-crash": "emulation effect"}
    assert result.passed and {result.outcome(r) for r in result.rows if r.verdict == "fail"} == {"emulation effect"}
    assert {r.scope for r in result.rows} == {"arm"}                            # controls are not judged
    # the same crash natively: the build's
    native_bad = unit_run(tmp_path, "arm-control-native2", leaving=(0, 1, 2, 3), control={"of": "arm", "kind": "native"})
    result = evaluate([foreign], load_limits(), controls=[native_bad, emulated])
    assert result.effects["arm"]["unit-quitting-app-crash"] == "build" and not result.passed
    # the emulated control clean: an arch effect (4/4 vs 0/4 is p = 0.014 > 0.01 — too few restarts; so 8 vs 0)
    clean = [unit_run(tmp_path, f"arm-e{i}", emulated=True, control={"of": "arm", "kind": "emulated"}) for i in range(2)]
    foreign2 = [foreign, unit_run(tmp_path, "arm2", leaving=(0, 1, 2, 3), arch="aarch64", emulated=True)]
    result = evaluate(foreign2[:1], load_limits(), controls=[native, *clean])
    assert result.effects["arm"]["unit-quitting-app-crash"] == "arch effect" and not result.passed


def test_build_by_finding_table_with_intervals(tmp_path):
    runs = [unit_run(tmp_path, f"a{i}", leaving=(0, 1, 2, 3), version="1.32.0") for i in range(2)] + \
           [unit_run(tmp_path, f"b{i}", leaving=(1,) if i else (), version="1.32.1") for i in range(2)]
    table = compare_table(runs)
    found = table.attrs["findings"]
    crash = found.set_index(["label", "id"])
    a = crash.loc[("unit@1.32.0 x86_64", "unit-quitting-app-crash")]
    b = crash.loc[("unit@1.32.1 x86_64", "unit-quitting-app-crash")]
    assert (a["k"], a["n"], b["k"], b["n"]) == (8, 8, 1, 8)
    assert (b["lo"], b["hi"]) == pytest.approx(wilson(1, 8)) and b["lo"] < 1 / 8 < b["hi"]
    path = write_csv(table, tmp_path / "compare.csv")
    assert (tmp_path / "compare-findings.csv").is_file() and path.is_file()
    assert counts([(summarize(runs[0]), summarize(runs[0])["findings"])], "unit-quitting-app-crash") == (4, 4)


def test_the_kept_router_crash_run_names_its_finding(tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(DATA, run_dir)
    from restartbench.results import read_run

    s = summarize(read_run(run_dir))
    ids = {f["id"]: f for f in s["findings"]}
    assert ids["unit-router-crash-on-reconfigure"]["failing"] == ["crashes while serving"]
    assert set(SITES) >= set(ids["unit-router-crash-on-reconfigure"]["checks"])


def test_cli_gate_aimed_and_its_input_errors(tmp_path, capsys):
    """`restartbench gate RUN --bug/--allow/--baseline`: the verdict of the question asked; unknown
    ids, a --bug no run can show, a baseline of another host: exit 2 with one line."""
    from restartbench import cli

    run = unit_run(tmp_path, "r", leaving=(0, 1, 2, 3), router=(1,))
    assert cli.main(["gate", str(run.path)]) == 1
    assert cli.main(["gate", str(run.path), "--bug", "unit-1179"]) == 0
    assert "asked about unit-1179 only" in capsys.readouterr().out
    assert cli.main(["gate", str(run.path), "--allow", "unit-quitting-app-crash,unit-router-crash-on-reconfigure"]) == 0
    assert cli.main(["gate", str(run.path), "--bug", "crash@router"]) == 1        # a site a known bug explains
    assert cli.main(["gate", str(run.path), "--bug", "crash"]) == 1               # a stem: every crash@...
    assert cli.main(["gate", str(run.path), "--bug", "lingering"]) == 0           # none lingered
    capsys.readouterr()
    wasm = write_run(tmp_path, "w", requests=requests_frame(), restarts=restarts_frame(TIMES),
                     processes=Tree(TIMES, only_main=True).frame(),
                     target={"kind": "wasmtime", "name": "wasmtime", "version": "49.0.3", "arch": "x86_64"})
    for argv, said in ((["--bug", "unit-9999"], "--bug unit-9999: unknown finding"),
                       (["--bug", "unit-1179"], None),
                       (["--baseline", str(wasm.path)], "the baseline runs are of host wasmtime")):
        target = str(wasm.path) if said is None else str(run.path)
        assert cli.main(["gate", target, *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: "), err
        assert said is None and "is a bug of unit" in err or said in err
