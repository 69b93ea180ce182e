"""Fault injection, for real: signals to the real orchestrator and host, a stalled host, a crashed host,
a host that never becomes ready or ignores SIGTERM, an escaping descendant, a full filesystem.
Every case must end in bounded time, with a clear status, the fault as a finding, and no process left."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from restartbench import LoadSpec, RunConfig, read_run, run, scenarios
from restartbench.arches import host_arch
from restartbench.hosts.base import Installation

REPO = Path(__file__).resolve().parent.parent
STANDIN = Path(__file__).resolve().parent / "standins" / "escaping_host.py"


def short(**kw):
    base = {"duration": "8s", "warmup": "2s", "cooldown": "2s", "restart_every": "2s", "grace": "1s",
            "window": "2s"}
    return scenarios.from_dict({**base, **kw})


def leftovers(marker: str) -> list[str]:
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if marker in cmd and p.info["status"] != psutil.STATUS_ZOMBIE and p.pid != os.getpid():
            out.append(f"{p.pid} {cmd[:120]}")
    return out


def start_cli(tmp_path, *args, quiet=True):
    """`restartbench run` as a real subprocess (its own session, so signals hit only it); not
    ``quiet``: it prints a line per phase (its stdout is not a terminal)."""
    argv = [sys.executable, "-m", "restartbench", "run", *(["--quiet"] if quiet else []), "--results-dir",
            str(tmp_path), "--duration", "20s", "--users", "4", *args]
    return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for_load(tmp_path, timeout=30):
    """Wait until the run's Locust has recorded requests; return the run dir."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for raw in tmp_path.glob("*/.requests/requests-*.csv"):
            if raw.stat().st_size > 2000:
                return raw.parent.parent
        time.sleep(0.2)
    raise AssertionError("the run never started its load")


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_stop_signal_marks_interrupted_and_keeps_everything(tmp_path, sig, code):
    proc = start_cli(tmp_path)
    run_dir = wait_for_load(tmp_path)
    t = time.monotonic()
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == code, out
    assert time.monotonic() - t < 15
    r = read_run(run_dir)
    assert r.meta["status"] == "interrupted" and r.meta["reason"] == sig.name
    assert len(r.requests()) > 100 and len(r.processes()) > 5
    assert leftovers(run_dir.name) == [] and leftovers(str(r.meta["target"]["port"])) == []


def read_until(proc, text: str, timeout: float = 30.0) -> str:
    """The subprocess's output up to the first line holding ``text`` (observed, not slept for). Reads
    the raw pipe (a buffered readline after select() can hold the line back until more output comes)."""
    import select

    fd, seen, deadline = proc.stdout.fileno(), b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 65536)
            seen += chunk
            if text.encode() in seen or not chunk:
                return seen.decode(errors="replace")
    raise AssertionError(f"{text!r} never came; output so far: {seen[-500:]!r}")


def test_second_ctrl_c_forces_but_files_stay_readable(tmp_path):
    proc = start_cli(tmp_path, quiet=False)
    run_dir = wait_for_load(tmp_path)
    _kill_host(tmp_path, signal.SIGSTOP)       # a hung host: its stop takes seconds, so the teardown is long
    proc.send_signal(signal.SIGINT)
    assert "stopping" in read_until(proc, "stopping")        # the teardown has begun (observed)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    r = read_run(run_dir)
    assert r.meta["status"] == "interrupted" and proc.returncode == 130, out[-3000:]
    # the second one was taken during the teardown (which then skips its graceful waits), not lost
    assert [f["kind"] for f in r.meta["findings"] if f["kind"] == "signal_during_teardown"] == [
        "signal_during_teardown"], r.meta["findings"]
    r.requests(), r.processes(), r.restarts()
    assert leftovers(str(r.meta["target"]["port"])) == []


def test_sigkill_of_the_orchestrator_leaves_no_process(tmp_path):
    proc = start_cli(tmp_path)
    run_dir = wait_for_load(tmp_path)
    meta = json.loads((run_dir / "run.json").read_text())
    children = psutil.Process(proc.pid).children(recursive=True)
    assert any("wasmtime" in " ".join(c.cmdline()) for c in children)
    proc.kill()
    proc.wait()
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert [c for c in alive if c.status() != psutil.STATUS_ZOMBIE] == []
    assert read_run(run_dir).status == "crashed"          # recognisable as a crashed orchestrator
    assert meta["status"] == "running"


def test_host_crash_mid_run_fails_the_run_with_a_finding(tmp_path):
    cfg = RunConfig(scenario=short(duration="20s", restart_every="8s", restarts=2), load=LoadSpec(users=3),
                    results_root=tmp_path)
    killer = threading.Timer(4.0, lambda: _kill_host(tmp_path, signal.SIGKILL))
    killer.start()
    t = time.monotonic()
    outcome = run(cfg)
    killer.cancel()
    assert time.monotonic() - t < 15
    assert outcome.status == "failed" and "killed by SIGKILL" in outcome.meta["reason"]
    assert any(f["kind"] == "host_fault" for f in outcome.meta["findings"])
    assert len(read_run(outcome.path).requests()) > 0


def test_stalled_host_is_killed_at_teardown_and_recorded(tmp_path):
    cfg = RunConfig(scenario=short(restarts=1, restart_every="4s", duration="8s"), load=LoadSpec(users=3),
                    results_root=tmp_path)
    threading.Timer(5.0, lambda: _kill_host(tmp_path, signal.SIGSTOP)).start()   # after the only restart
    t = time.monotonic()
    outcome = run(cfg)
    assert time.monotonic() - t < 25
    r = read_run(outcome.path)
    assert r.meta["stop"]["graceful"] is False
    assert [s["state"] for s in r.meta["survivors"]] == ["stopped"]
    assert any(f["kind"] == "survivors" for f in r.meta["findings"])
    req = r.requests()
    assert (req.outcome == "timeout").sum() >= 3                 # the stall is seen as timeouts
    assert leftovers(str(r.meta["target"]["port"])) == []


def test_host_that_never_becomes_ready(tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_MODE", "never-ready")
    cfg = RunConfig(scenario=short(), results_root=tmp_path, installation=_standin(), load=LoadSpec(request_timeout_s=1.5),
                    target_options={"ready_timeout_s": 3})
    t = time.monotonic()
    outcome = run(cfg)
    assert time.monotonic() - t < 15
    assert outcome.status == "failed" and "did not answer within 3 s" in outcome.meta["reason"]
    assert leftovers(str(STANDIN)) == []


def test_host_ignoring_sigterm_and_escaping_descendant(tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_MODE", "escape")
    cfg = RunConfig(scenario=short(restarts=0, duration="5s"), load=LoadSpec(users=2, sleep_share=0),
                    results_root=tmp_path, installation=_standin())
    outcome = run(cfg)
    assert outcome.status == "complete", outcome.meta["reason"]
    escaped = [s for s in outcome.meta["survivors"] if s.get("escaped_session")]
    assert len(escaped) == 1 and "standin-escapee" in escaped[0]["title"]
    assert any(f["kind"] == "escaped" for f in outcome.meta["findings"])
    assert leftovers("standin-escapee") == []

    monkeypatch.setenv("STANDIN_MODE", "ignore-term")
    outcome = run(RunConfig(scenario=short(restarts=0, duration="5s"), load=LoadSpec(users=2, sleep_share=0),
                            results_root=tmp_path, installation=_standin()))
    assert outcome.meta["stop"]["graceful"] is False and len(outcome.meta["survivors"]) == 1
    assert leftovers(str(STANDIN)) == []


def test_full_disk_during_a_run_ends_cleanly(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        cfg = RunConfig(scenario=short(), load=LoadSpec(users=4, request_timeout_s=1.5), results_root=mnt)
        t = time.monotonic()
        outcome = run(cfg)
        assert time.monotonic() - t < 30
        meta = json.loads((outcome.path / "run.json").read_text())
        assert meta["status"] == "failed" and "could not write" in meta["reason"]
        assert any(f["kind"] == "write_error" for f in meta["findings"])
        assert leftovers(str(meta["target"]["port"])) == []
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def test_two_runs_at_once_share_nothing(tmp_path):
    outcomes = []

    def one(i):
        outcomes.append(run(RunConfig(scenario=short(duration="6s", restarts=1), load=LoadSpec(users=2),
                                      results_root=tmp_path / str(i))))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert [o.status for o in outcomes] == ["complete", "complete"]
    ports = {o.meta["target"]["port"] for o in outcomes}
    assert len(ports) == 2
    assert outcomes[0].path != outcomes[1].path
    # temp dirs are gone after the runs (no --keep)
    assert not list(Path("/tmp").glob(f"restartbench-{outcomes[0].meta['run_id']}-*"))


def _standin() -> Installation:
    return Installation(kind="wasmtime", name="standin", executable=STANDIN, version="test-standin",
                        arch=host_arch(), flavor="test stand-in (not wasmtime)")


def _kill_host(root: Path, sig):
    for run_json in root.glob("*/run.json"):
        port = json.loads(run_json.read_text()).get("target", {}).get("port")
        for p in psutil.process_iter(["name", "cmdline"]):
            if p.info["name"] == "wasmtime" and f"127.0.0.1:{port}" in (p.info["cmdline"] or []):
                os.kill(p.pid, sig)
