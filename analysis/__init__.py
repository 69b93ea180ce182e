"""restartbench analysis: restart windows, metrics, comparisons, gates, plots and the HTML report.

Reads results directories through ``restartbench.results`` only. The CLI calls these functions
and prints what ``render`` returns; nothing here parses arguments or exits.
"""

from .summary import analyze, summarize, write_summary

__all__ = ["analyze", "summarize", "write_summary"]
