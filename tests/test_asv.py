"""asv end to end: `asv run` on a temp copy of the suite's asv files (asv.conf.json, benchmarks/) in a
throwaway git repo, with one tiny wasmtime scenario, then `asv publish`.

restartbench itself comes from the venv (its editable install), as it does for `make asv`. HOME points
at the temp dir so asv's machine file (~/.asv-machine.json) stays out of the user's home.
"""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from restartbench import installations, procs
from restartbench.hosts import wasmtime as wasmtime_host

REPO = Path(__file__).resolve().parent.parent
ASV = Path(sys.executable).parent / "asv"
TRACKS = ("track_window_timeout_rate", "track_lingering_max", "track_recovery_p95", "track_unrecovered",
          "track_rss_slope", "track_fd_slope")
#: 11 s of load, restarts at 2, 5 and 8 s: three restart windows, enough for a retention slope (3 s apart:
#: the default 2 s request timeout must be below the interval, as run() checks)
OVERRIDES = "warmup=2s,cooldown=2s,restart_every=3s,grace=2s,window=2s"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@localhost", *args],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _asv(tmp: Path, env: dict, *args: str, timeout: float) -> subprocess.CompletedProcess:
    out = subprocess.run([str(ASV), *args], cwd=tmp, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, f"asv {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
    return out


@pytest.fixture(scope="module")
def asv_run(tmp_path_factory):
    try:
        arch = wasmtime_host.installation().arch
    except Exception as exc:                       # noqa: BLE001
        pytest.skip(f"no wasmtime here: {exc}")
    if not ASV.exists():
        pytest.skip(f"{ASV} not installed: make venv")
    tmp = tmp_path_factory.mktemp("asv")
    shutil.copy(REPO / "asv.conf.json", tmp / "asv.conf.json")
    (tmp / "benchmarks").mkdir()
    for name in ("__init__.py", "restarts.py"):
        shutil.copy(REPO / "benchmarks" / name, tmp / "benchmarks" / name)
    _git(tmp, "init", "-q", "-b", "main")
    _git(tmp, "add", "asv.conf.json", "benchmarks")
    _git(tmp, "commit", "-q", "-m", "suite copy")
    commit = _git(tmp, "rev-parse", "HEAD")
    env = {**os.environ, "HOME": str(tmp),
           "RESTARTBENCH_ASV_ARCH": arch, "RESTARTBENCH_ASV_TARGETS": "wasmtime",
           # process-count is Unit's: wasmtime cannot do it, so asv must skip that combination
           "RESTARTBENCH_ASV_SCENARIOS": "periodic-restart,process-count",
           "RESTARTBENCH_ASV_DURATION": "11s", "RESTARTBENCH_ASV_OVERRIDES": OVERRIDES,
           "RESTARTBENCH_ASV_USERS": "5", "RESTARTBENCH_ASV_RUNS": str(tmp / "runs")}
    machine = f"test-{arch}"
    _asv(tmp, env, "machine", "--yes", timeout=60)
    _asv(tmp, env, "machine", "--yes", "--machine", machine, "--arch", arch, timeout=60)
    ran = _asv(tmp, env, "run", "--machine", machine, "--set-commit-hash", commit,
               "--environment", f"existing:{sys.executable}", "--show-stderr", timeout=240)
    published = _asv(tmp, env, "publish", timeout=120)
    return {"tmp": tmp, "commit": commit, "machine": machine, "arch": arch, "ran": ran,
            "published": published}


def _results(asv_run) -> dict:
    files = list((asv_run["tmp"] / "results" / "asv" / asv_run["machine"]).glob(
        f"{asv_run['commit'][:8]}-existing-*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def test_every_track_has_a_number_for_the_run_and_skips_what_wasmtime_cannot_do(asv_run):
    doc = _results(asv_run)
    assert doc["params"]["machine"] == asv_run["machine"] and doc["params"]["arch"] == asv_run["arch"]
    for track in TRACKS:
        result, params = doc["results"][f"restarts.Restarts.{track}"][:2]
        targets, scenario_labels = params
        assert len(targets) == 1 and targets[0].startswith("'wasmtime ")
        assert [s.split()[0].strip("'") for s in scenario_labels] == ["periodic-restart", "process-count"]
        value, skipped = result
        assert isinstance(value, (int, float)) and math.isfinite(value), (track, value)
        assert skipped is None or (isinstance(skipped, float) and math.isnan(skipped)), (track, skipped)
    values = {t: doc["results"][f"restarts.Restarts.{t}"][0][0] for t in TRACKS}
    # a clean wasmtime run: no old process survives a restart, and every restart recovers quickly
    assert values["track_lingering_max"] == 0
    assert 0 <= values["track_window_timeout_rate"] <= 1
    assert 0 < values["track_recovery_p95"] < 2.0
    # the one combination ran once: a single run dir, complete, with its summary
    runs = [p.parent for p in (asv_run["tmp"] / "runs").glob("*/*/run.json")]
    assert len(runs) == 1, runs
    meta = json.loads((runs[0] / "run.json").read_text())
    assert meta["status"] == "complete" and meta["scenario"]["duration_s"] == 11.0
    # one definition: asv's recovery p95 and unrecovered share are the summary's (and the gate's) numbers
    overall = json.loads((runs[0] / "summary.json").read_text())["overall"]
    assert values["track_recovery_p95"] == pytest.approx(overall["recovery_p95_s"])
    assert values["track_unrecovered"] == pytest.approx(overall["unrecovered"] / overall["restarts"])


def test_no_process_of_the_run_is_left(asv_run):
    (run_dir,) = [p.parent for p in (asv_run["tmp"] / "runs").glob("*/*/run.json")]
    meta = json.loads((run_dir / "run.json").read_text())
    assert procs.tagged(meta["run_id"]) == []
    assert meta["survivors"] == []


def test_publish_writes_browsable_html(asv_run):
    html = asv_run["tmp"] / "results" / "html"
    assert (html / "index.html").is_file() and (html / "index.json").is_file()
    index = json.loads((html / "index.json").read_text())
    for track in TRACKS:
        bench = index["benchmarks"][f"restarts.Restarts.{track}"]
        assert bench["type"] == "track" and bench["unit"] and bench["param_names"] == ["target", "scenario"]
        graphs = list((html / "graphs").glob(f"arch-{asv_run['arch']}/**/restarts.Restarts.{track}.json"))
        assert len(graphs) == 1, graphs
        points = json.loads(graphs[0].read_text())
        assert len(points) == 1 and isinstance(points[0][1][0], (int, float))


# -- the published HTML offline ---------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _serve(root: Path):
    """A static HTTP server on 127.0.0.1 for ``root`` (browsers refuse asv's data requests from file://)."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _dom(url: str, profile: Path) -> str:
    """The DOM of ``url`` after its scripts ran, in headless Chromium that cannot reach any host but
    127.0.0.1 (every other name fails to resolve: offline, whatever this machine can reach)."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
           "--virtual-time-budget=20000", "--dump-dom", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, start_new_session=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_offline_html_loads_nothing_from_the_network(asv_run, tmp_path):
    """`restartbench offline-html` rewrites every CDN script and stylesheet to a local copy."""
    from restartbench import cli

    html = tmp_path / "html"
    shutil.copytree(asv_run["tmp"] / "results" / "html", html)
    assert "https://cdn" in (html / "index.html").read_text()       # as asv publishes it
    assert cli.main(["offline-html", str(html)]) == 0
    page = (html / "index.html").read_text()
    import re

    external = re.findall(r'<(?:script|link)\b[^>]*(?:src|href)="(https?://[^"]+)"', page)
    assert external == []
    for src in re.findall(r'<(?:script|link)\b[^>]*(?:src|href)="(vendor/[^"]+)"', page):
        assert (html / src).stat().st_size > 1000, src
    assert cli.main(["offline-html", str(html)]) == 0                 # idempotent
    assert cli.main(["offline-html", str(tmp_path / "nothing")]) == 2


@pytest.mark.skipif(not CHROMIUM, reason="no Chromium here (apt-get install chromium): cannot open the page")
def test_published_html_draws_its_graphs_offline(asv_run, tmp_path):
    """The published page, opened offline in headless Chromium, draws its graphs: the summary grid
    and one benchmark's graph are flot canvases, and asv's "failed to load" page never shows."""
    from restartbench import asvhtml

    html = tmp_path / "html"
    shutil.copytree(asv_run["tmp"] / "results" / "html", html)
    asvhtml.make_offline(html)
    server = _serve(html)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/index.html"
        grid = _dom(base, tmp_path / "profile1")
        graph = _dom(f"{base}#restarts.Restarts.track_lingering_max", tmp_path / "profile2")
    finally:
        server.shutdown()
    for dom in (grid, graph):
        assert "failed to load" not in dom and "dependencies of airspeed velocity" not in dom
    assert grid.count('class="flot-base"') >= len(TRACKS), grid[-3000:]      # a small graph per benchmark
    assert 'class="flot-base"' in graph and "track_lingering_max" in graph


def test_unpatched_html_fails_offline_so_the_check_means_something(asv_run, tmp_path):
    """Control: asv's page as published (CDN scripts), opened the same way, shows asv's load failure."""
    if not CHROMIUM:
        pytest.skip("no Chromium here (apt-get install chromium)")
    html = tmp_path / "html"
    shutil.copytree(asv_run["tmp"] / "results" / "html", html)
    server = _serve(html)
    try:
        dom = _dom(f"http://127.0.0.1:{server.server_address[1]}/index.html", tmp_path / "profile")
    finally:
        server.shutdown()
    assert "failed to load" in dom and 'class="flot-base"' not in dom
