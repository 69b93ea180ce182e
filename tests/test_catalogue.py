"""The catalogue of known restart bugs: the file itself, the matcher, and matches on real Unit runs
(the builds in ../shared/unit, via conftest's ``unit_install``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from restartbench.analysis import catalogue, evaluate, summarize
from restartbench.analysis.catalogue import CatalogueError, Match, load, match
from analysis_fixtures import clean_run

GATE_SOURCE = (Path(catalogue.__file__).parent / "gate.py").read_text()


def gate_check_names() -> set[str]:
    """Every check name the gate can emit (from its source: the names are literals there)."""
    names = set(re.findall(r'(?:check|upper|result\.add)\("([^"]+)"', GATE_SOURCE))
    names |= set(re.findall(r'check = "([^"]+)"', GATE_SOURCE))
    return names


def test_the_catalogue_is_complete_and_consistent():
    bugs = load()
    assert len(bugs) >= 8
    ids = [b.id for b in bugs]
    assert len(set(ids)) == len(ids)
    checks = gate_check_names()
    for b in bugs:
        assert b.title and b.advice and b.host in ("unit", "any"), b.id
        assert set(b.explains) <= checks, (b.id, set(b.explains) - checks)
    by_id = {b.id: b for b in bugs}
    for face in ("unit-1179-restart-hang", "unit-1179-restart-crash"):       # the 1.32.0 bug, both faces
        assert "nginx/unit#1179" in by_id[face].upstream and by_id[face].affected == ("1.32.0",)
        assert "1.32.1" in by_id[face].fixed_in and by_id[face].fix_commits
    wanted = {"unit-sigterm-shutdown-hang", "unit-requests-stuck-after-restart", "unit-memory-growth-per-reconfigure",
              "unit-fd-growth-per-reconfigure", "unit-router-crash-on-reconfigure", "unit-app-start-never-completes"}
    assert wanted <= set(ids)


@pytest.mark.parametrize("text, words", [
    ('[[bug]]\nid="a"\ntitle="t"\nhost="unit"\nadvice="x"\nwhen=["lingering_max >= 1"]\ncolour="red"', "unknown key"),
    ('[[bug]]\nid="a"\ntitle="t"\nhost="unit"\nadvice="x"\nwhen=["lingering_max is big"]', "write <fact> <op> <value>"),
    ('[[bug]]\nid="a"\ntitle="t"\nhost="unit"\nadvice="x"\nlog=["(unclosed"]', "log pattern"),
    ('[[bug]]\nid="a"\ntitle="t"\nhost="unit"\nadvice="x"', "no signature"),
    ('[[bug]]\nid="a"\ntitle="t"\nhost="unit"\nadvice="x"\nwhen=["restarts > 1"]\nsupersedes=["b"]', "unknown id"),
    ('[[bug]]\ntitle="t"\nhost="unit"\nadvice="x"\nwhen=["restarts > 1"]', "needs id"),
])
def test_a_broken_catalogue_says_which_entry_and_what(tmp_path, text, words):
    path = tmp_path / "bugs.toml"
    path.write_text(text)
    with pytest.raises(CatalogueError, match=words):
        load(path)


def test_conditions_hold_on_facts_and_supersede(tmp_path):
    path = tmp_path / "bugs.toml"
    path.write_text('''
[[bug]]
id = "specific"
title = "t"
host = "any"
advice = "x"
when = ["restarts >= 3", "lingering_max == 0"]
supersedes = ["generic"]
[[bug]]
id = "generic"
title = "t"
host = "any"
advice = "x"
when = ["restarts >= 1"]
[[bug]]
id = "never"
title = "t"
host = "any"
advice = "x"
when = ["stuck_requests >= 1"]
''')
    bugs = load(path)
    run = clean_run(tmp_path)
    found = match(run, summarize(run), bugs)
    assert [m.bug.id for m in found] == ["specific"]                 # generic dropped, never unknown
    assert found[0].evidence == ["restarts = 3 (restarts >= 3)", "lingering_max = 0 (lingering_max == 0)"]
    assert isinstance(found[0], Match) and "specific" in found[0].line()


def test_a_clean_run_matches_nothing_and_a_failing_one_says_so(tmp_path):
    run = clean_run(tmp_path)
    assert summarize(run)["known_bugs"] == []
    result = evaluate([run])
    assert result.passed and result.known_lines() == []


# -- real Unit runs -------------------------------------------------------------------------------

DATA_RUNS = Path(__file__).parent / "data" / "unit" / "runs"


def test_a_router_crash_of_1_35_0_is_named(tmp_path):
    """A real 1.35.0 run (kept from CI): the router died on SIGSEGV at restart 1, which Unit answered
    500 "Failed to restart app."; the quitting app crashed at two restarts too."""
    import shutil

    from restartbench import read_run

    run = read_run(shutil.copytree(DATA_RUNS / "1.35.0-router-segv", tmp_path / "run"))
    ids = [b["id"] for b in summarize(run)["known_bugs"]]
    assert "unit-router-crash-on-reconfigure" in ids and "unit-quitting-app-crash" in ids
    assert "unit-app-start-never-completes" not in ids             # the router crash explains the 500
    assert not {"unit-1179-restart-hang", "unit-1179-restart-crash"} & set(ids)
    result = evaluate([run])
    [row] = result.failures()
    assert row.check == "crashes while serving" and result.explained(row) == "unit-router-crash-on-reconfigure"
    assert "1.35.0 is a known affected version" in " ".join(result.known_lines())

def _run(unit_install, tmp_path, *, users=20, sleep_share=0.1, duration="15s"):
    """One real run of ``unit_install``: restarts 4 s apart under ``users`` Locust users."""
    from restartbench import RunConfig, read_run, run, scenarios
    from restartbench.load import LoadSpec

    sc = scenarios.from_dict({"duration": duration, "warmup": "3s", "cooldown": "4s", "restart_every": "4s",
                              "grace": "3s", "window": "3s"})
    config = RunConfig(target=f"unit@{unit_install.name}", scenario=sc, results_root=tmp_path,
                       load=LoadSpec(users=users, sleep_share=sleep_share))
    outcome = run(config)
    assert outcome.status == "complete", outcome.meta.get("reason")
    return read_run(outcome.path)


@pytest.mark.unit
def test_the_1_32_0_bug_is_named_on_1_32_0_only(unit_install, unit_default_run):
    """Default load: 1.32.0 matches the 1179 entry (crash face) and it explains every failing
    check; 1.32.1 and 1.35.0 match neither face."""
    from helpers import has_restart_bug

    run = unit_default_run
    summary = summarize(run)
    ids = {b["id"] for b in summary["known_bugs"]}
    faces = {"unit-1179-restart-hang", "unit-1179-restart-crash"}
    result = evaluate([run])
    if has_restart_bug(unit_install):
        assert ids & faces, (ids, result.frame().to_string())
        hit = next(b for b in summary["known_bugs"] if b["id"] in faces)
        assert any("Bad file descriptor" in e for e in hit["evidence"]) and "1.32.0" in hit["version_note"]
        assert not result.passed
        for row in result.failures():                 # every failing check is explained
            assert result.explained(row), (row.check, ids)
        lines = " ".join(result.known_lines())
        assert "nginx/unit#1179" in lines and "upgrade to Unit 1.32.1" in lines
    else:
        assert not ids & faces, ids


@pytest.mark.unit
def test_the_hang_face_at_low_load(unit_install, tmp_path):
    """One user, no held requests: on 1.32.0 the old app never exits and nothing answers (the hang
    face, which explains the stuck requests and the shutdown hang too); a sound build never matches it."""
    from helpers import has_restart_bug

    run = _run(unit_install, tmp_path, users=1, sleep_share=0.0, duration="12s")
    ids = [b["id"] for b in summarize(run)["known_bugs"]]
    if has_restart_bug(unit_install):
        assert "unit-1179-restart-hang" in ids, ids
        for generic in ("unit-requests-stuck-after-restart", "unit-sigterm-shutdown-hang",
                        "unit-app-start-never-completes"):
            assert generic not in ids                  # explained by the specific entry
    else:                                               # (a rare race of its own may still show)
        assert not {"unit-1179-restart-hang", "unit-1179-restart-crash"} & set(ids), ids


def test_a_build_of_ours_is_placed_by_the_fixes_its_record_names(tmp_path, monkeypatch):
    """Before or after a fix is decided when the build is made (build.json ``fixes``), not by asking a
    source mirror during analysis: with HOME empty and no cache the note is the same."""
    from restartbench.analysis.catalogue import _version_note, load

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("RESTARTBENCH_CACHE", str(tmp_path / "none"))
    face = next(b for b in load() if b.id == "unit-1179-restart-crash")
    before = {c: False for c in face.fix_commits}
    assert "comes before the fix" in _version_note(face, "1.32.0", before, "d7ff6bb4a1aa")
    after = {face.fix_commits[0]: None, face.fix_commits[1]: True}       # master's fix; the other unknown
    assert "contains the fix" in _version_note(face, "1.32.0", after, "24ed91f406aa")
    assert _version_note(face, "1.32.0", None, "24ed91f406aa") == "1.32.0 is a known affected version"
