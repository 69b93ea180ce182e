"""restartbench: how WebAssembly component apps behave while their host restarts them.

The public API, for scripts, tests and asv benchmarks alike (the CLI calls the same ``run``)::

    from restartbench import RunConfig, run, scenarios
    outcome = run(RunConfig(target="wasmtime", scenario=scenarios.from_dict({"duration": "20s"})))
    outcome.path   # results/runs/<run-id>/: the contract is docs/results.md

``run`` checks its config first (``validate``: raises ConfigError with one line, as the CLI prints it).
"""

__version__ = "0.1.0"

from .results import FORMAT, FormatError, Run, read_run  # noqa: E402
from .run import ConfigError, Interrupted, RunConfig, RunOutcome, run, validate  # noqa: E402
from .load import LoadSpec  # noqa: E402
from .scenarios import Scenario, ScenarioError  # noqa: E402

__all__ = ["FORMAT", "FormatError", "Run", "read_run", "ConfigError", "Interrupted", "RunConfig",
           "RunOutcome", "run", "validate", "LoadSpec", "Scenario", "ScenarioError", "__version__"]
