"""The commands that read runs: ``summary``, ``report``, ``compare``, ``gate``, ``offline-html``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..results import write_atomic
from ..run import REPO, check_writable
from .common import EXIT_OK, UsageError, append_job_summary, console, gate_limits, ids, runs as open_runs


def register(sub) -> None:
    """Add ``summary``, ``report``, ``compare``, ``gate``, ``offline-html`` to the subcommands."""
    p = sub.add_parser("summary", help="print a run's summary table (and write summary.json)")
    p.add_argument("runs", nargs="+", help="run dirs, or 'latest'")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("report", help="one self-contained HTML report of runs")
    p.add_argument("runs", nargs="+", help="run dirs, or 'latest'")
    p.add_argument("-o", "--output", type=Path, default=None, help="HTML file (default: results/report.html)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="comparison table across runs (CSV too)")
    p.add_argument("runs", nargs="+", help="run dirs, or 'latest'")
    p.add_argument("--csv", type=Path, default=None, help="also write the table as CSV here")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("gate", help="judge runs against limits (and a baseline); exit 0 pass / 1 fail")
    p.add_argument("runs", nargs="+", help="candidate run dirs, or 'latest'")
    p.add_argument("--limits", default=None, help="limits TOML (default gates/default.toml)")
    p.add_argument("--baseline", nargs="+", default=None, help="baseline run dirs: timings compared per "
                   "restart (Mann-Whitney), each finding's rate compared (Fisher's exact test), new findings named")
    p.add_argument("--bug", action="append", default=None, metavar="ID[,ID]",
                   help="judge only the checks these findings explain (catalogue id, the bug its faces "
                   "share, or an unnamed finding such as crash@router)")
    p.add_argument("--allow", action="append", default=None, metavar="ID[,ID]",
                   help="pass a run whose only failures these findings explain (still listed)")
    p.add_argument("--only-new", action="store_true",
                   help="with --baseline (a pull request against its base): fail on findings the baseline does "
                   "not show, or shows significantly less often; the baseline's own are listed, allowed")
    p.add_argument("--junit", type=Path, default=None, metavar="FILE",
                   help="also write the verdict as JUnit XML (a testsuite per run, a testcase per check)")
    p.add_argument("--markdown", type=Path, default=None, metavar="FILE",
                   help="also write it as Markdown tables; with $GITHUB_STEP_SUMMARY set they are appended "
                   "there too (the job summary)")
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser("offline-html", help="make asv's published HTML load nothing from the network "
                       "(local copies of its JavaScript and CSS; `make asv` does this after asv publish)")
    p.add_argument("html_dir", type=Path, help="asv's html_dir, e.g. results/html")
    p.set_defaults(func=cmd_offline_html)


def cmd_summary(args: argparse.Namespace) -> int:
    from restartbench import analysis
    from restartbench.analysis import views

    for run in open_runs(args.runs):
        done = analysis.analyze(run)
        summary = done.summary()
        analysis.write_summary(done)
        for table in views.run_tables(summary, run.meta):
            console.print(table)
        console.print(f"summary: {run.path / 'summary.json'}")
        console.print(f"run directory: {run.path}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from restartbench import analysis
    runs = open_runs(args.runs)
    out = args.output or (REPO / "results" / "report.html")
    check_writable(out.parent)
    path = analysis.write_report(runs, out)
    console.print(f"report: {path}")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from restartbench.analysis import compare

    table = compare.compare_table(open_runs(args.runs))
    console.print(compare.render(table))
    found = table.attrs.get("findings")
    if found is not None and len(found):
        console.print(compare.render_findings(found))
    if args.csv:
        check_writable(args.csv.parent)
        console.print(f"csv: {compare.write_csv(table, args.csv)}")
        if found is not None and len(found):
            console.print(f"findings csv: {compare.findings_csv(args.csv)}")
    return EXIT_OK


def cmd_gate(args: argparse.Namespace) -> int:
    from restartbench import analysis
    from restartbench.analysis import outputs
    from restartbench.analysis.summary import analyses

    limits = gate_limits(args.limits or "default")
    for out in (args.junit, args.markdown):
        if out is not None:
            check_writable(out.parent)
    baseline = open_runs(args.baseline) if args.baseline else None
    params = limits.get("analysis", {})
    done = analyses(open_runs(args.runs), params.get("window_s"), params.get("grace_s"))   # analysed once
    verdict = analysis.evaluate(done, limits, baseline=baseline, bugs=ids(args.bug), allow=ids(args.allow),
                                only_new=args.only_new)
    console.print(analysis.gate.render(verdict))
    summaries = {a.run.run_id: a.summary() for a in done}
    if args.junit is not None:
        write_atomic(args.junit, outputs.junit_xml(verdict, summaries))
        console.print(f"junit: {args.junit}")
    text = outputs.markdown(verdict, summaries)
    if args.markdown is not None:
        write_atomic(args.markdown, text)
        console.print(f"markdown: {args.markdown}")
    append_job_summary(text)
    return verdict.exit_code


def cmd_offline_html(args: argparse.Namespace) -> int:
    from .. import asvhtml

    try:
        pages = asvhtml.make_offline(args.html_dir)
    except asvhtml.OfflineError as exc:
        raise UsageError(str(exc)) from None
    console.print(f"asv HTML in {args.html_dir}: " + (f"{len(pages)} page(s) now load local copies from "
                                                       f"{args.html_dir / asvhtml.VENDOR_DIR}" if pages
                                                       else "already loads nothing from the network"))
    return EXIT_OK
