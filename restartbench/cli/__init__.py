"""The command line: ``restartbench run|summary|report|compare|gate|targets|build|build-apps|matrix|bisect|explore``.

Argument parsing and printing only: every command calls the library functions a script, a test or an asv
benchmark would. One module per family of commands (``run``, ``analyse``, ``builds``, ``matrix``,
``bisect``, ``explore``), what they share in ``common`` (exit codes: see its docstring), the live view in
``live``.
"""

from __future__ import annotations

from typing import Sequence

from .. import apps, installations, results, scenarios
from ..run import ConfigError, Interrupted
from . import analyse, bisect, builds, explore, health, matrix, run
from ..analysis.gate import GateInputError
from .common import EXIT_USAGE, Parser, UsageError, errors, load_spec, run_config, signal_exit, target_options
from .run import after_run

__all__ = ["main", "build_parser", "load_spec", "run_config", "target_options", "after_run", "ConfigError",
           "UsageError"]


def build_parser() -> Parser:
    """Every command's parser."""
    parser = Parser(prog="restartbench", description="Benchmark and load-test WebAssembly component "
                    "apps while their host restarts them.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in (run, analyse, builds, matrix, explore, bisect, health):
        module.register(sub)
    for action in sub._choices_actions:            # `restartbench CMD --help` opens with what CMD does
        command = sub.choices[action.dest]
        if not command.description:         # a description is printed as written: no %-escapes
            text = action.help.replace("%%", "%")
            command.description = text[0].upper() + text[1:] + (
                "" if text.endswith(".") else ".") + " Exit codes: see README 'Exit codes'."
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``restartbench`` command."""
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UsageError as exc:
        errors.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_USAGE
    except (ConfigError, scenarios.ScenarioError, installations.InstallationError,
            results.FormatError, apps.AppBuildError, GateInputError) as exc:
        errors.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_USAGE
    except Interrupted as exc:              # a stop signal before the run dir existed
        errors.print(f"interrupted ({exc.reason}) before the run started; nothing to keep")
        return signal_exit(exc.reason, 130)
    except KeyboardInterrupt:
        errors.print("interrupted")
        return 130


if __name__ == "__main__":
    import sys

    sys.exit(main())
