"""restartbench analysis: restart windows, metrics, comparisons, gates, plots and the HTML report.

Reads results directories through ``restartbench.results`` only. The CLI calls these functions
and prints what the ``render`` functions return; nothing here parses arguments or exits.
"""

from .compare import compare_table, write_csv
from .gate import GateInputError, GateResult, evaluate, load_limits
from .report import write_report
from .summary import analyze, summarize, write_summary

__all__ = ["analyze", "summarize", "write_summary", "compare_table", "write_csv",
           "evaluate", "load_limits", "GateResult", "GateInputError", "write_report"]
