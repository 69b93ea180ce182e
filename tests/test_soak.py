"""Soak (slow, not in CI): 50 consecutive runs, about half interrupted at a random moment by a random stop
signal (or a SIGKILL of the orchestrator). Asserts 0 orphans and 50 readable run dirs.

    .venv/bin/python -m pytest -m slow tests/test_soak.py -s
"""

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from restartbench import read_run

REPO = Path(__file__).resolve().parent.parent
RUNS = 50


def orphans() -> list[str]:
    out = []
    for p in psutil.process_iter(["name", "cmdline", "status"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if p.info["status"] != psutil.STATUS_ZOMBIE and ("restartbench-soak" in cmd
                                                         or p.info["name"] == "wasmtime" and "soak" in cmd):
            out.append(f"{p.pid} {cmd[:100]}")
    return out


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_soak_50_runs_with_random_interruptions(tmp_path):
    rng = random.Random(20261126)
    root = tmp_path / "restartbench-soak"
    stats = {"complete": 0, "interrupted": 0, "crashed": 0, "failed": 0}
    t_all = time.monotonic()
    for i in range(RUNS):
        argv = [sys.executable, "-m", "restartbench", "run", "--quiet", "--results-dir", str(root),
                "--run-id", f"soak-{i:02d}", "--duration", "6s", "--warmup", "1s", "--cooldown", "1s",
                "--restart-every", "2s", "--grace", "1s", "--window", "2s", "--users", "3",
                "--request-timeout", "1s"]
        proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        action = rng.choice(["none", "none", "SIGINT", "SIGTERM", "SIGHUP", "SIGKILL", "double-SIGINT"])
        run_dir = root / f"soak-{i:02d}"
        if action != "none":
            deadline = time.monotonic() + 30         # any moment of the run: from its first file on
            while not (run_dir / "run.json").exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 7.0))
            if action == "double-SIGINT":
                proc.send_signal(signal.SIGINT)
                time.sleep(0.05)
                proc.send_signal(signal.SIGINT)
            else:
                proc.send_signal(getattr(signal, action))
        proc.wait(timeout=60)
        time.sleep(0.3)
        left = orphans()
        assert left == [], f"run {i} ({action}): orphans {left}"
        r = read_run(run_dir)                        # every run dir readable, whatever happened
        r.requests(), r.processes(), r.restarts()
        stats[r.status if r.status in stats else "failed"] += 1
    elapsed = time.monotonic() - t_all
    print(f"\nsoak: {RUNS} runs in {elapsed:.0f} s: {json.dumps(stats)}; orphans 0")
    assert sum(stats.values()) == RUNS
