"""restartbench: how WebAssembly component apps behave while their host restarts them.

The public API, for scripts, tests and asv benchmarks alike (the CLI calls the same ``run``)::

    from restartbench import RunConfig, run, scenarios
    outcome = run(RunConfig(target="wasmtime", scenario=scenarios.from_dict({"duration": "20s"})))
    outcome.path   # results/runs/<run-id>/, see restartbench.results for the contract
"""

__version__ = "0.1.0"

from .results import FORMAT, FormatError, Run, read_run  # noqa: E402
from .run import ConfigError, Interrupted, RunConfig, RunOutcome, run  # noqa: E402
from .load import LoadSpec  # noqa: E402
from .scenarios import Scenario, ScenarioError  # noqa: E402

__all__ = ["FORMAT", "FormatError", "Run", "read_run", "ConfigError", "Interrupted", "RunConfig",
           "RunOutcome", "run", "LoadSpec", "Scenario", "ScenarioError", "__version__"]
