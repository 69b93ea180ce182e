"""The benchmarks' own behaviour (benchmarks/overhead.py): not what they measure, how they fail."""

from __future__ import annotations


def test_the_overhead_benchmark_checks_what_it_needs_before_measuring(tmp_path):
    """Without wrk on PATH, benchmarks/overhead.py exits 2 at once with one line naming it (no traceback,
    no half-done measuring)."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    bindir = tmp_path / "bin"
    bindir.mkdir()
    env = {**os.environ, "PATH": str(bindir)}                      # no wrk anywhere
    t = time.monotonic()
    out = subprocess.run([sys.executable, str(repo / "benchmarks" / "overhead.py"), "--quick", "--out",
                          str(tmp_path / "o.json")], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and time.monotonic() - t < 30
    assert out.stderr.count("\n") == 1 and "apt-get install wrk" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "o.json").exists()
