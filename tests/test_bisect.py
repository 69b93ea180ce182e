"""restartbench.bisect: the aimed search and the unaimed one that chooses what differs between the ends.
Runs are stand-ins whose findings are known (the search, its votes and its choices are real; the gate
on real runs is in test_matrix's CLI tests)."""

from __future__ import annotations

import pytest

from restartbench.analysis.gate import Judged

from restartbench.bisect import choose_by_findings, search

SEQ = [f"c{n}" for n in range(9, -1, -1)]          # from the good end (c9) to the bad end (c0)


def stand_in(found_at):
    """run_cell returns the commit; each judge reads ``found_at(commit)``: the findings that fail there."""
    def observe(commit):
        found = found_at(commit)
        return Judged("fail" if found else "pass", findings=found)

    def aimed(target):                  # as bisect.gate_judge: the verdict on the target, every finding listed
        def judge(commit):
            return Judged("fail" if [f for f in found_at(commit) if f in target] else "pass",
                          findings=found_at(commit))
        return judge
    return (lambda c: c), observe, aimed


def test_a_good_end_failing_for_another_bug_no_longer_stops_the_search():
    # the fix of "hang" is at c5 (c4 and older hang); every commit also shows the unrelated "router@crash"
    # from c7 on — including the good end
    def found_at(c):
        n = int(c[1:])
        return (["hang"] if n < 5 else []) + (["crash@router"] if n >= 7 else [])
    run_cell, observe, aimed = stand_in(found_at)
    chosen = {}

    def choose(at_good, at_bad):
        target, why = choose_by_findings(at_good, at_bad)
        chosen["judge"] = aimed(target)
        return target, why

    res = search("c9", "c0", SEQ, run_cell, lambda c: chosen["judge"](c), repeat=3, observe=observe, choose=choose)
    assert not res.error, res.error
    assert res.target == ["hang"] and "crash@router" in res.chosen and "left out" in res.chosen
    assert (res.last_good, res.first_bad) == ("c5", "c4")
    ends = {s.version: s for s in res.steps}
    assert ends["c9"].verdict == "pass" and ends["c9"].findings == [["crash@router"]] * 2   # its own runs kept
    # the whole gate (the old behaviour) stops at once: the good end fails
    old = search("c9", "c0", SEQ, run_cell, observe, repeat=3)
    assert old.error == "the good version c9 fails the gate: nothing to bisect"


def test_nothing_differs_between_the_ends_is_said():
    run_cell, observe, _ = stand_in(lambda c: ["same"])
    res = search("c9", "c0", SEQ, run_cell, observe, repeat=1, observe=observe, choose=choose_by_findings)
    assert res.error.startswith("the bad end shows no finding the good end does not (bad: same; good: same)")
    assert res.exit_code == 1


def test_a_finding_only_some_bad_runs_show_is_not_chosen():
    assert choose_by_findings([[]], [["a", "b"], ["a"]])[0] == ["a"]
    assert choose_by_findings([["b"]], [["a", "b"], ["a", "b"]])[0] == ["a"]


def test_faces_of_one_bug_count_as_one():
    # the hang face at one bad run, the crash face at the other: #1179 either way
    target, why = choose_by_findings([[]], [["unit-1179-restart-hang"], ["unit-1179-restart-crash"]])
    assert target == ["unit-1179"]


@pytest.mark.parametrize("repeat", [1, 3])
def test_aimed_search_votes_on_the_asked_finding_only(repeat):
    def found_at(c):
        n = int(c[1:])
        return (["hang"] if n < 3 else []) + (["noise"] if n % 2 else [])
    run_cell, _, aimed = stand_in(found_at)
    res = search("c9", "c0", SEQ, run_cell, aimed(["hang"]), repeat=repeat)
    assert (res.last_good, res.first_bad) == ("c3", "c2")
