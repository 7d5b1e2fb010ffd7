"""`harness summarize RUN_DIR [--csv F | --parquet F] [--scoring ITEM ...]`: one row per cell."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import UsageError

_CONSOLE_COLUMNS = (
    "n", "error_rate", "latency_p50", "latency_p95", "tpot_p50", "tokens_per_s", "completion_tokens_mean",
    "distinct_2", "unique_share", "repetition", "entropy_mean", "nonargmax_share", "cost_per_request",
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "summarize",
        help="metrics per cell (sweep point) of a run",
        description="Print one row per cell of a run: errors, latency, scores with 95%% intervals, "
        "diversity and logprob statistics. --csv/--parquet write every column to a file instead.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (with manifest.json and results/)")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--csv", metavar="FILE", type=Path, help="write the full summary as CSV")
    out.add_argument("--parquet", metavar="FILE", type=Path, help="write the full summary as Parquet")
    parser.add_argument(
        "--scoring", nargs="+", metavar="ITEM",
        help='re-score with these scorers instead of the spec\'s: names (exact_match), "module:function", '
        "or YAML mappings ('{type: regex, pattern: \"^Paris$\"}')",
    )
    parser.add_argument("--allow-scorer", action="append", default=[], metavar="MODULE:FUNCTION",
                        help="run this custom scorer named by the run's manifest (imports its code; repeatable)")
    parser.set_defaults(func=handle)


def parse_scoring(items: list[str] | None) -> list[Any] | None:
    """--scoring values: a name / module:function as is, a YAML mapping or list parsed."""
    if items is None:
        return None
    import yaml

    parsed: list[Any] = []
    for item in items:
        text = item.strip()
        if text.startswith(("{", "[")):
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise UsageError(f"--scoring: not a YAML mapping or list ({str(exc).splitlines()[0]})") from None
            parsed.extend(value if isinstance(value, list) else [value])
        else:
            parsed.append(text)
    return parsed


def console_table(summary: pd.DataFrame, params: list[str], score_names: list[str]) -> str:
    """A readable text table of the main columns (scores as mean [lo, hi])."""
    from harness.report.shape import fmt_metric, fmt_value

    table = pd.DataFrame(index=summary.index)
    if summary["run_id"].nunique() > 1:
        table["run"] = summary["run_id"]
    for p in params:
        table[p] = summary[p].map(fmt_value)
    for name in score_names:
        mean, lo, hi = (summary[f"{name}_{s}"] for s in ("mean", "lo", "hi"))
        table[name] = [f"{fmt_metric(m)} [{fmt_metric(a)}, {fmt_metric(b)}]" for m, a, b in zip(mean, lo, hi)]
    for col in _CONSOLE_COLUMNS:
        if col in summary.columns and summary[col].notna().any():
            table[col] = summary[col].map(fmt_metric) if col != "n" else summary[col]
    if not params and "run" not in table:
        table.insert(0, "cell_id", summary["cell_id"])
    return table.to_string(index=False)


def _write(path: Path, flag: str, writer: Callable[[Path], Any]) -> None:
    """Write the summary file (its folder is created, like compare's outputs) and print its path."""
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give a file name", key=flag)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer(path)
    except OSError as exc:
        raise UsageError(f"cannot write {path} ({exc.strerror or exc})", key=flag) from None
    print(path)


def handle(args: argparse.Namespace) -> int:
    from harness.analysis.metrics import summarize, swept_params
    from harness.report import scorers_for
    from harness.report.data import load_runs
    from harness.textsafe import csv_safe_frame, visible_controls

    runs = load_runs([args.run_dir])
    scorers = scorers_for(runs, parse_scoring(args.scoring), args.allow_scorer)
    rows = runs[0].rows
    summary = summarize(rows, scorers)
    if args.csv:  # text cells that a spreadsheet would run as formulas are neutralised
        _write(args.csv, "--csv", lambda path: csv_safe_frame(summary).to_csv(path, index=False))
    elif args.parquet:
        _write(args.parquet, "--parquet", lambda path: summary.to_parquet(path, index=False))
    elif not len(summary):
        print("no results yet")
    else:
        print(visible_controls(console_table(summary, swept_params(rows), [s.name for s in scorers])))
    return 0
