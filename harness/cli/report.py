"""`harness report RUN_DIR... [--out DIR]`: index.html, report.md, PNG figures, summary.csv."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from harness.errors import UsageError

DEFAULT_ROOT = Path("reports")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="figures, a self-contained HTML page and Markdown for one or more runs",
        description="Write index.html (self-contained), report.md, PNG figures and summary.csv. "
        "Several runs are shown side by side. The output directory is the last line printed.",
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories")
    parser.add_argument("--out", metavar="DIR", help="output directory, a local folder (default: reports/<run ids>)")
    parser.add_argument("--metric", action="append", metavar="M", dest="metrics",
                        help="a summary column to draw (repeatable; default: scorers, error rate, latency, "
                        "diversity, entropy)")
    parser.add_argument("--samples", type=int, default=6, metavar="N", help="sample outputs per cell: prompts × up to 3 repeats (default 6)")
    parser.add_argument("--scoring", nargs="+", metavar="ITEM", help="re-score with these scorers (as in summarize)")
    parser.add_argument("--no-whatif", action="store_true",
                        help="leave out the section estimating what top_p/top_k/min_p would change (from top_logprobs)")
    parser.add_argument("--allow-scorer", action="append", default=[], metavar="MODULE:FUNCTION",
                        help="run this custom scorer named by the run's manifest (imports its code; repeatable)")
    parser.set_defaults(func=handle)


def default_out(run_dirs: list[str]) -> Path:
    """reports/<name>[+<name>…] from the run directories' names, filesystem-safe."""
    from harness.rundir.fs import as_run_path

    names = [re.sub(r"[^A-Za-z0-9._-]+", "_", as_run_path(d).resolve().name) or "run" for d in run_dirs]
    joined = "+".join(names)
    return DEFAULT_ROOT / (joined if len(joined) <= 120 else joined[:110] + f"+{len(names)}runs")


def handle(args: argparse.Namespace) -> int:
    from harness.cli.summarize import parse_scoring
    from harness.report import ReportOptions, build_report

    if args.samples < 0:
        raise UsageError("--samples: must be 0 or more")
    from harness.rundir.fs import is_remote

    if args.out and is_remote(args.out):
        raise UsageError("a report is written to a local folder (its runs may be on s3://)", key="--out")
    out = Path(args.out) if args.out else default_out(args.run_dirs)
    options = ReportOptions(metrics=args.metrics, samples_per_cell=args.samples, scoring=parse_scoring(args.scoring),
                            allow_scorers=tuple(args.allow_scorer), whatif=not args.no_whatif)
    report = build_report(args.run_dirs, out, options)
    for path in report.files:
        if path.suffix in (".html", ".md"):
            print(path)
    print(report.out_dir)
    return 0
