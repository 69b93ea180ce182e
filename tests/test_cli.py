"""The command line: bad input is one line on stderr and exit 2, before anything starts."""

import socket
import subprocess
import sys
from pathlib import Path

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
    (["gate", "latest", "--limits", "/nonexistent.toml"], "limits file /nonexistent.toml not found"),
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


def test_every_command_help_opens_with_what_it_does_as_printed():
    """Each description is printed raw by argparse: a %-escape from the one-line help must not show."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():
        text = " ".join(command.format_help().split())           # argparse wraps the description
        assert command.description and " ".join(command.description.split()) in text, name
        assert "%%" not in text, f"{name}: {text[:200]}"
    assert "95% intervals" in sub.choices["health"].format_help()


def test_targets_lists_the_embedded_host(capsys):
    assert cli.main(["targets"]) == 0
    out = capsys.readouterr().out
    assert "wasmtime" in out and "49.0.3" in out


# the checks live in run.validate: run() from Python refuses the same input with the same line
LIBRARY_FLAGS = ("--request-timeout", "--host", "--port", "--app", "--processes", "--restart-mode", "--unit-app",
                 "--results-dir")
LIBRARY_BAD = [(argv, message) for argv, message in BAD if argv[0] == "run" and argv[1] in LIBRARY_FLAGS]


@pytest.mark.parametrize("argv,message", LIBRARY_BAD, ids=[" ".join(a) for a, _ in LIBRARY_BAD])
def test_run_from_python_refuses_what_the_cli_refuses(argv, message, capsys, tmp_path, monkeypatch):
    from restartbench import RunConfig, run, scenarios
    from restartbench.load import LoadSpec

    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    cli_line = capsys.readouterr().err.strip().removeprefix("error: ")
    args = cli.build_parser().parse_args(argv)
    sc = scenarios.load(args.scenario, restart_every=args.restart_every, processes=args.processes)
    config = RunConfig(target=args.target, app=args.app, scenario=sc,
                       load=LoadSpec(request_timeout_s=args.request_timeout or 2.0), address=args.host,
                       port=args.port, results_root=args.results_dir, target_options=cli.target_options(args))
    with pytest.raises(cli.ConfigError) as caught:
        run(config)
    assert message in str(caught.value) and str(caught.value) == cli_line


def test_a_run_is_analysed_once_for_its_tables_summary_gate_and_report(tmp_path, monkeypatch, capsys):
    """`restartbench run --gate --report` after the run: one analysis feeds all four."""
    import json
    import shutil

    from restartbench import analysis
    import restartbench.analysis.summary as summary_mod
    from restartbench.run import RunOutcome

    run_dir = tmp_path / "run"
    shutil.copytree(Path(__file__).parent / "data" / "unit" / "runs" / "1.35.0-router-segv", run_dir)
    calls = []
    real = summary_mod.analyze

    def counting(run, *args, **kwargs):
        calls.append(run.path)
        return real(run, *args, **kwargs)

    monkeypatch.setattr(summary_mod, "analyze", counting)
    monkeypatch.setattr(analysis, "analyze", counting)
    meta = json.loads((run_dir / "run.json").read_text())
    code = cli.after_run(RunOutcome(run_dir, meta["status"], meta), analysis.load_limits(None), report=True)
    out = capsys.readouterr().out
    assert len(calls) == 1, calls
    assert code == 1 and "router" in out                           # that run's router crashed: the gate fails
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["summary_format"] == 5 and summary["host_checks"]["host"] == "unit"
    router = next(f for f in summary["findings"] if f["id"] == "unit-router-crash-on-reconfigure")
    assert router["kind"] == "known" and router["failing"] == ["crashes while serving"] and router["per"] == "restart"
    assert "unit-router-crash-on-reconfigure" in (run_dir / "report.html").read_text()
    assert cli.main(["summary", str(run_dir)]) == 0 and len(calls) == 2   # one more command, one more
