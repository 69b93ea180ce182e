"""The census on a real process tree this test spawns: roles, generations, a zombie, a lingering child."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from restartbench import procs
from restartbench.census import Census

# A parent that starts two "app" children at once, one more once the test has marked a restart
# (the file argv[1] exists), and one the test kills once the census has seen it alive, left unreaped
# (a zombie); the first children stay alive (they "linger" past the restart).
TREE = textwrap.dedent("""
    import os, subprocess, sys, time
    py = sys.executable
    old = [subprocess.Popen([py, "-c", "import time; time.sleep(30)", "role=app"]) for _ in range(2)]
    deadline = time.monotonic() + 20
    while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:
        time.sleep(0.01)
    new = subprocess.Popen([py, "-c", "import time; time.sleep(30)", "role=app"])
    z = subprocess.Popen([py, "-c", "import time; time.sleep(30)", "role=zombie"])  # killed by the test, never waited for
    time.sleep(30)
""")


def role(title: str, pid: int = 0, ppid: int = 0) -> str:
    if title.endswith("role=app"):
        return "app"
    if title.endswith("role=zombie"):
        return "other"
    return "main"


@pytest.fixture
def tree(tmp_path):
    go = tmp_path / "restarted"
    proc = procs.spawn([sys.executable, "-c", TREE, str(go)])
    proc.go = go
    yield proc
    procs.stop_tree(proc, 1.0)


def _last(census: Census):
    df = census.frame()
    return df[df.t == df.t.max()] if len(df) else df


def test_census_roles_generations_zombie_and_lingering(tree):
    t0 = time.monotonic()
    census = Census(roots=lambda: [tree.pid], role=role, t0=t0, interval_s=0.05)
    census.start()
    try:
        assert procs.wait_until(lambda: (_last(census).role == "app").sum() == 2, 20, 0.02)
        census.note_restart(time.monotonic() - t0)   # "restart" between the first and second births
        tree.go.touch()
        assert procs.wait_until(lambda: (_last(census).role == "other").sum() == 1, 20, 0.02)  # seen alive
        os.kill(int(_last(census).query("role == 'other'").pid.iloc[0]), signal.SIGKILL)
        assert procs.wait_until(lambda: set(_last(census).state) >= {"zombie"}
                                and (_last(census).role == "app").sum() == 3, 20, 0.02)
        rounds = census.rounds
        assert procs.wait_until(lambda: census.rounds >= rounds + 21, 10, 0.02)   # a full sample more
    finally:
        census.stop()
    df = census.frame()
    last = _last(census)
    assert set(last.role) == {"main", "app", "other"}
    apps = last[last.role == "app"]
    assert sorted(apps.generation.tolist()) == [0, 0, 1]            # two old, one new
    assert (apps.ppid == tree.pid).all()
    zombie = last[last.role == "other"]
    assert zombie.state.tolist() == ["zombie"]
    # the two generation-0 app processes are still alive after the restart: lingering (by the
    # exact generation: the clock alone can put the third child's birth before the mark)
    lingering = last[(last.role == "app") & (last.generation == 0)]
    assert len(lingering) == 2
    assert (apps.rss > 0).all() and (apps.num_fds > 0).all() and (apps.num_threads >= 1).all()
    assert df.uss.notna().any() and df.uss.isna().any()              # USS in full samples only
    assert df.tcp_fds.notna().any() and df.tcp_fds.isna().any()


def test_census_keeps_watching_reparented_descendants():
    # the parent exits at once, leaving a grandchild reparented to init: still counted by the census
    script = "import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)', 'role=app'])"
    parent = procs.spawn([sys.executable, "-c", script + "; import time; time.sleep(0.5)"])
    try:
        t0 = time.monotonic()
        census = Census(roots=lambda: [parent.pid] if parent.poll() is None else [], role=role, t0=t0,
                        interval_s=0.05)
        census.start()
        time.sleep(1.2)
        census.stop()
        df = census.frame()
        final = df[df.t == df.t.max()]
        assert final.role.tolist() == ["app"]
        assert final.ppid.tolist() != [parent.pid]
    finally:
        procs.stop_tree(parent.pid, 0.0, signal.SIGKILL)
        parent.wait()


def test_generation_counts_restarts_sent_before_birth():
    c = Census(roots=lambda: [], role=role, t0=0.0)
    for t in (5.0, 1.0, 3.0):
        c.note_restart(t)
    assert [c.generation(b) for b in (0.5, 1.0, 2.0, 4.0, 9.0)] == [0, 1, 1, 2, 3]


def test_generation_is_exact_for_a_process_forked_right_after_the_mark():
    # The kernel's birth time has 10 ms ticks: a child forked 1 ms after a restart mark usually reads
    # as born before it. The last-pid rule must still count every such child as new, every time.
    from restartbench.census import last_pid

    before = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    t0 = time.monotonic()
    try:
        census = Census(roots=lambda: [], role=role, t0=t0)
        misread_by_clock = 0
        for i in range(30):
            census.note_restart(time.monotonic() - t0)
            child = subprocess.Popen(["true"])
            p = psutil.Process(child.pid)
            born = p.create_time() - psutil.boot_time() + (time.monotonic() - time.clock_gettime(
                time.CLOCK_BOOTTIME)) - t0
            child.wait()
            misread_by_clock += born < census.restarts[-1]
            assert census.generation(born, child.pid) == i + 1, (i, born, census.marks[-1])
        # the parent born before the first mark stays generation 0; pids alone never decide far births
        p = psutil.Process(before.pid)
        born = p.create_time() - psutil.boot_time() + (time.monotonic() - time.clock_gettime(
            time.CLOCK_BOOTTIME)) - t0
        assert census.generation(born, before.pid) == 0
        assert census.generation(born + 3600, 1) == 30          # an hour later, whatever its pid
        assert last_pid() is not None and last_pid() >= child.pid
    finally:
        before.kill()
        before.wait()
    # the clock alone would have misplaced some of these births (it is the reason for the pid rule)
    print(f"{misread_by_clock} of 30 births read as before their mark by the clock alone")


def test_generation_in_the_tick_before_a_mark_is_decided_by_pid():
    from restartbench.census import Mark

    c = Census(roots=lambda: [], role=role, t0=0.0)
    c.marks.append(Mark(1.0, last_pid=5000))
    assert c.generation(0.995, 5001) == 1       # same tick, later pid: born after the mark
    assert c.generation(0.995, 4999) == 0       # same tick, earlier pid: before
    assert c.generation(0.985, 9999) == 0       # more than a tick before: before, whatever the pid
    assert c.generation(1.0, 1) == 1            # at or after the mark by the clock: after
