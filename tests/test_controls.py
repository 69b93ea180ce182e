"""restartbench.controls on real builds: an arm64 Unit run under qemu-user with its two controls (the same
release for this machine, native and under qemu-x86_64), judged by the gate that tells the build's
findings from the emulator's. Needs the arm64 builds listed beside the native ones (CI:
../shared/unit/units-all.toml) and the emulator (`make emulator ARCH=arm64`, which .ci/run runs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from restartbench import arches, cli, controls
from restartbench.hosts.base import Installation

HERE = arches.host_arch()


def all_builds() -> Path | None:
    """A registry listing both archs' builds: RESTARTBENCH_UNITS_ALL, else units-all.toml beside
    RESTARTBENCH_UNITS (as ../shared/unit has it)."""
    given = os.environ.get("RESTARTBENCH_UNITS_ALL")
    if given:
        return Path(given)
    units = os.environ.get("RESTARTBENCH_UNITS")
    path = Path(units).with_name("units-all.toml") if units else None
    return path if path is not None and path.is_file() else None


needs_arm64_units = pytest.mark.skipif(
    HERE != "x86_64" or all_builds() is None,
    reason="no registry of arm64 Unit builds beside native ones: set RESTARTBENCH_UNITS_ALL (e.g. "
           "../shared/unit/units-all.toml) on an x86_64 machine with `make emulator ARCH=arm64`")


def test_only_a_foreign_arch_build_needs_a_control():
    native = Installation(kind="unit", name="1.32.1", executable=Path("/x"), version="1.32.1", arch=HERE)
    assert not controls.needs_control(native)
    # a native build under qemu (itself a control) needs none either
    assert not controls.needs_control(Installation(kind="unit", name="1.32.1", executable=Path("/x"),
                                                   version="1.32.1", arch=HERE, runner=("qemu",)))
    assert controls.needs_control(Installation(kind="unit", name="a", executable=Path("/x"), version="1.32.1",
                                               arch="aarch64" if HERE == "x86_64" else "x86_64",
                                               runner=("qemu",)))


def test_control_config_is_the_same_plan_for_another_build():
    from restartbench import RunConfig

    native = Installation(kind="unit", name="1.32.1", executable=Path("/x"), version="1.32.1", arch=HERE)
    base = RunConfig(target="unit@1.32.1-arm64", arch="aarch64", target_options={"stop_timeout_s": 3.0})
    cfg = controls.control_config(base, "RUN", "native", native)
    assert cfg.installation is native and cfg.scenario is base.scenario and cfg.load is base.load
    assert cfg.control == {"of": "RUN", "kind": "native"} and cfg.run_id == "RUN-control-native"
    assert cfg.target_options == base.target_options and cfg.target_options is not base.target_options


@needs_arm64_units
@pytest.mark.parametrize("name, code, bug", [("1.32.1-arm64", 0, None), ("1.32.0-arm64", 1, "unit-1179")])
def test_arm64_unit_run_is_judged_against_its_controls(tmp_path, monkeypatch, capsys, name, code, bug):
    """1.32.0 fails for #1179 (the native control shows it too: the build's); 1.32.1 passes, whatever
    qemu-user makes of its quitting app (no more often than under the emulated control)."""
    monkeypatch.setenv("RESTARTBENCH_UNITS", str(all_builds()))
    got = cli.main(["run", "--target", f"unit@{name}", "--arch", "arm64", "--duration", "13s", "--warmup", "3s",
                    "--cooldown", "4s", "--restart-every", "3s", "--grace", "2s", "--window", "3s", "--users", "4",
                    "--sleep-share", "0", "--request-timeout", "2s", "--gate", "--quiet",
                    "--results-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert got == code, out
    runs = {json.loads(p.read_text())["run_id"]: json.loads(p.read_text()) for p in tmp_path.glob("*/run.json")}
    [foreign] = [r for r in runs.values() if "control" not in r]
    assert foreign["target"]["arch"] == "aarch64" and foreign["target"]["emulated"]
    kinds = {r["control"]["kind"]: r for r in runs.values() if "control" in r}
    assert set(kinds) == {"native", "emulated"}
    assert all(r["control"]["of"] == foreign["run_id"] and r["target"]["arch"] == HERE for r in kinds.values())
    assert not kinds["native"]["target"]["emulated"] and kinds["emulated"]["target"]["runner"][0].endswith(
        f"qemu-{HERE}-static")
    assert all(r["status"] == "complete" for r in runs.values())
    if bug:
        assert f"{bug}-restart-" in out and "build" in out         # named, and the build's (not qemu's)
