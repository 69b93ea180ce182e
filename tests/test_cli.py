"""The command line: bad input is one line on stderr and exit 2, before anything starts."""

import socket
import subprocess
import sys

import pytest

from restartbench import cli

BAD = [
    (["run", "--target", "nginx"], "unknown target 'nginx'"),
    (["run", "--target", "wasmtime@9.9"], "only the pinned wasmtime"),
    (["run", "--arch", "sparc"], "unknown architecture 'sparc'"),
    (["run", "--duration", "10x"], "is not a duration"),
    (["run", "--duration", "0"], "duration must be > 0"),
    (["run", "--users", "0"], "users must be greater than 0"),
    (["run", "--users", "many"], "users must be a number"),
    (["run", "--restart-every", "1s"], "shorter than the lingering grace"),
    (["run", "--restarts", "100"], "need a duration of at least"),
    (["run", "--sleep-share", "1.5"], "share must be between 0 and 1"),
    (["run", "--request-timeout", "9s", "--restart-every", "5s"], "not below the restart interval"),
    (["run", "--host", "10.1.2.3"], "not a loopback address"),
    (["run", "--host", "example.org"], "not an IP address"),
    (["run", "--port", "70000"], "out of range"),
    (["run", "--scenario", "nope"], "scenario 'nope' not found"),
    (["run", "--actions", "reboot"], "unknown restart action"),
    (["run", "--app", "nope"], "unknown app 'nope'"),
    (["run", "--processes", "2"], "wasmtime serve runs one process"),
    (["run", "--restart-mode", "drain", "--target", "unit"], "--restart-mode is for the wasmtime target"),
    (["run", "--unit-app", "x.json"], "--unit-app is for the unit target"),
    (["run", "--results-dir", "/proc/forbidden"], "cannot create /proc/forbidden"),
    (["summary", "/nonexistent-run"], "no run.json here"),
    (["gate", "latest", "--limits", "/nonexistent.toml"], ""),
    (["frobnicate"], "invalid choice"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err, err
    assert message in err


def test_occupied_port_is_refused(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert cli.main(["run", "--port", str(port)]) == 2
    assert "is in use" in capsys.readouterr().err


def test_malformed_scenario_file(tmp_path, capsys):
    bad = tmp_path / "s.toml"
    bad.write_text("restart_every = [\n")
    assert cli.main(["run", "--scenario", str(bad)]) == 2
    assert "fix the TOML" in capsys.readouterr().err


def test_unknown_results_format(tmp_path, capsys):
    (tmp_path / "run.json").write_text('{"format": 7}')
    assert cli.main(["summary", str(tmp_path)]) == 2
    assert "format 7 is not supported" in capsys.readouterr().err


def test_help_and_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "restartbench", "run", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "--restart-every" in out.stdout


def test_targets_lists_the_embedded_host(capsys):
    assert cli.main(["targets"]) == 0
    out = capsys.readouterr().out
    assert "wasmtime" in out and "49.0.3" in out
