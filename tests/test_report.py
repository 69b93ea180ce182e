"""analysis.report: one self-contained HTML file whose images decode, also in a real browser."""

from __future__ import annotations

import base64
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from restartbench.analysis import evaluate, write_report
from restartbench.results import read_run
from analysis_fixtures import MiB, Tree, clean_run, requests_frame, restarts_frame, write_run

CHROMIUM = Path("/usr/bin/chromium")
FIGURES_PER_RUN = 4                       # timeline, traffic, processes, retention
IMG = re.compile(r'<img\b[^>]*\bsrc="(data:image/png;base64,([A-Za-z0-9+/=]+))"')


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    times = [10.0, 15.0, 20.0]
    runs = [
        clean_run(root, "clean"),
        write_run(root, "faulty", requests=requests_frame(timeouts=[(10.0, 10.5)],
                                                          errors=[(20.0, 25.0)]),
                  restarts=restarts_frame(times),
                  processes=Tree(times, n_app=3, lingering_generations={0},
                                 rss_per_restart=2 * MiB).frame(),
                  target={"kind": "unit", "name": "1.32.0", "version": "1.32.0",
                          "arch": "aarch64", "emulated": True}),
        write_run(root, "empty", status="interrupted", requests=None, restarts=None, processes=None),
        write_run(root, "steady", requests=requests_frame(duration=10.0), restarts=restarts_frame([]),
                  processes=Tree([], duration=10.0, only_main=True).frame()),
    ]
    out = write_report(runs, root / "out" / "report.html", gate=evaluate(runs))
    return out, len(runs)


def test_report_is_one_self_contained_file(report):
    path, n_runs = report
    html = path.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', html, re.I)
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html and "<link" not in html
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]   # nothing beside it
    images = IMG.findall(html)
    heatmap = int("Findings by build" in html)              # the build × finding heatmap, when any run has one
    assert len(images) == html.count("<img") == FIGURES_PER_RUN * n_runs + heatmap
    for _, b64 in images:
        width, height = png_size(base64.b64decode(b64))
        assert width >= 800 and height >= 200


def test_report_contents(report):
    html = report[0].read_text()
    for text in ("Comparison", "Gate", "verdict: FAIL", "clean", "faulty", "empty", "steady",
                 "(emulated)", "never", "no restarts in this run", "lingering"):
        assert text in html, text
    assert html.count("<h2 id=") == 4 + 1                      # the runs, and the verdict first
    assert html.index("Verdict") < html.index("Comparison") < html.index('<h2 id="clean">')
    assert "Builds × scenarios" in html


def test_report_without_runs_or_gate(tmp_path):
    html = write_report([], tmp_path / "r.html").read_text()
    assert "0 run(s)" in html and "<img" not in html


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="headless browser check needs /usr/bin/chromium "
                           "(Debian: apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    path, n_runs = report
    probe = tmp_path / "probe.html"
    check = """<script>
window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "imgcheck";
  out.textContent = [...document.images].map(
      i => `${i.complete}:${i.naturalWidth}x${i.naturalHeight}`).join(" ");
  document.body.appendChild(out);
});
</script></body>"""
    probe.write_text(path.read_text().replace("</body>", check))
    profile = tmp_path / "profile"
    proc = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=10000",
         "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert "restartbench report" in dom and "Comparison" in dom
    found = re.search(r'<pre id="imgcheck">([^<]*)</pre>', dom)
    assert found, f"load handler did not run; DOM tail: {dom[-500:]}"
    states = found.group(1).split()
    assert len(states) == FIGURES_PER_RUN * n_runs + int("Findings by build" in dom)
    for state in states:
        complete, size = state.split(":")
        width, height = map(int, size.split("x"))
        assert complete == "true" and width >= 800 and height >= 200, state
    shutil.rmtree(profile, ignore_errors=True)


def _rendered_text(html_path: Path, tmp_path: Path) -> str:
    """The page as headless Chromium renders it: ``document.body.innerText`` (what a reader sees, CSS
    applied), with each image's size."""
    probe = tmp_path / "probe.html"
    probe.write_text(html_path.read_text().replace("</body>", """<script>
window.addEventListener("load", () => {
  const out = document.createElement("textarea");
  out.id = "rendered";
  out.textContent = document.body.innerText + "\\nIMAGES " + [...document.images].map(
      i => `${i.alt}=${i.naturalWidth}`).join("|");
  document.body.appendChild(out);
});
</script></body>"""))
    proc = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'<textarea id="rendered">(.*?)</textarea>', proc.stdout, re.S)
    assert found, proc.stdout[-500:]
    return __import__("html").unescape(found.group(1))


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless browser check needs /usr/bin/chromium "
                                                 "(Debian: apt-get install -y chromium)")
def test_the_rendered_page_leads_with_the_verdict(tmp_path):
    """A failing real run (Unit 1.35.0 whose router crashed at a restart) and a passing one: what a reader
    sees first is the verdict of each, the failed check with its reason and the finding with its rate;
    each run's first figure is its timeline."""
    failing = tmp_path / "runs" / "1.35.0-router-segv"
    shutil.copytree(Path(__file__).parent / "data" / "unit" / "runs" / "1.35.0-router-segv", failing)
    passing = clean_run(tmp_path / "runs", "clean")
    out = write_report([read_run(failing), passing], tmp_path / "report.html")
    text = _rendered_text(out, tmp_path)
    head = text[: text.index("Comparison")]
    rid = read_run(failing).run_id
    assert head.index("Verdict: FAIL") < head.index(f"FAIL\t{rid}") < head.index("PASS\tclean")
    assert "crashes while serving" in head and "router" in head                 # the check and its reason
    assert "unit-router-crash-on-reconfigure" in head and "restarts" in head     # the finding with its k/n
    assert "Builds × scenarios" in head
    images = [i.rsplit("=", 1) for i in text.split("IMAGES ")[1].strip().split("|")]
    names = [name for name, _ in images]
    assert names.count("timeline") == 2 and all(int(width) >= 800 for _, width in images)
    assert names.index("timeline") < names.index("traffic")           # each run's first figure
