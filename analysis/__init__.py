"""restartbench analysis: restart windows, metrics, comparisons, gates, plots and the HTML report.

Reads results directories through ``restartbench.results`` only. The CLI calls these functions
and prints what the ``render_*`` functions return; nothing here parses arguments or exits.

    summary = summarize(run)                      # dict, as written to summary.json
    table = compare_table(runs)                   # DataFrame; render_compare(table) -> rich Table
    result = evaluate(runs, load_limits(path), baseline=base_runs)
    result.exit_code                              # 0 pass, 1 fail (GateInputError: exit 2)
    write_report(runs, "report.html", gate=result)
"""

from .compare import compare_table, write_csv
from .compare import render as render_compare
from .gate import GateInputError, GateResult, evaluate, load_limits
from .gate import render as render_gate
from .report import write_report
from .summary import analyze, summarize, write_summary

__all__ = ["analyze", "summarize", "write_summary", "compare_table", "write_csv", "render_compare",
           "evaluate", "load_limits", "GateResult", "GateInputError", "render_gate",
           "write_report"]
