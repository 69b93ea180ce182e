#!/usr/bin/env bash
# Gate a Unit or FreeUnit change on restart behaviour: build HEAD and BASE from SOURCE, run the same plan
# RUNS times on each, judge HEAD with BASE as its baseline (new findings fail, BASE's own are listed), and
# write the report, JUnit XML and a Markdown summary into OUT. The GitHub workflow (ci/github-workflow.yml)
# runs exactly this; tests/test_ci.py runs it on ../shared/unit/src/freeunit.bundle.
#
#   RESTARTBENCH=path/to/restartbench SOURCE=. HEAD=<sha> BASE=<sha> FLAVOR=freeunit ci/restartbench-ci.sh
#
# Exit code: the gate's (0 pass, 1 a new finding, 2 bad input, 3 a build or a run failed).
set -euo pipefail
: "${RESTARTBENCH:?set RESTARTBENCH to a restartbench checkout (made with make venv)}"
: "${SOURCE:?set SOURCE to the Unit source: a checkout, a bundle or a git URL}"
: "${HEAD:?set HEAD to the commit under test (a SHA)}"
: "${BASE:?set BASE to the commit it is compared with (a SHA)}"
FLAVOR="${FLAVOR:-unit}"
RUNS="${RUNS:-3}"
SCENARIO="${SCENARIO:-periodic-restart}"
OUT="${OUT:-restartbench-out}"
RUN_FLAGS=(${RUN_FLAGS:---duration 20s --restart-every 4s --grace 3s --window 3s --users 10})
rb="$RESTARTBENCH/.venv/bin/restartbench"
[ -x "$rb" ] || { echo "error: $rb not found: run make venv in $RESTARTBENCH" >&2; exit 2; }
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

for rev in "$HEAD" "$BASE"; do
    [[ "$rev" =~ ^[0-9a-f]{7,40}$ ]] || { echo "error: HEAD and BASE must be commit SHAs, got '$rev'" >&2; exit 2; }
done
echo "== building HEAD $HEAD and BASE $BASE ($FLAVOR)"
"$rb" build unit --source "$SOURCE" --rev "$HEAD,$BASE" --flavor "$FLAVOR"
head_target="unit@${HEAD:0:12}"             # a build of ours answers to its commit
base_target="unit@${BASE:0:12}"
for side in head base; do
    target="${side}_target"
    for i in $(seq 1 "$RUNS"); do
        echo "== $side ${!target} run $i/$RUNS"
        "$rb" run --target "${!target}" --scenario "$SCENARIO" "${RUN_FLAGS[@]}" --quiet \
            --results-dir "$OUT/runs/$side" --run-id "$side-$i" || [ $? -eq 1 ]
    done
done
echo "== gate: HEAD with BASE as baseline"
set +e
"$rb" gate "$OUT"/runs/head/* --baseline "$OUT"/runs/base/* --only-new \
    --junit "$OUT/junit.xml" --markdown "$OUT/summary.md"
code=$?
set -e
"$rb" report "$OUT"/runs/head/* "$OUT"/runs/base/* -o "$OUT/report.html"
echo "report: $OUT/report.html · junit: $OUT/junit.xml · summary: $OUT/summary.md"
exit $code
