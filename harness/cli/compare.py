"""`harness compare BASE_RUN CAND_RUN` or `harness compare RUN --base-target A --cand-target B`:
paired comparison and CI gate (exit 0 pass, 1 regression, 2 bad input)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from harness.compare import (
    CompareOptions,
    Gate,
    Threshold,
    compare_runs,
    render_junit,
    render_markdown,
    render_text,
)
from harness.errors import UsageError
from harness.rundir.results import load_run


class _Ordered(argparse.Action):
    """Keep --metric and --max-drop in command-line order: a --max-drop binds to the --metric before it."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        items = list(getattr(namespace, self.dest) or [])
        items.append((option_string, values))
        setattr(namespace, self.dest, items)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "compare",
        help="paired comparison of two runs (or two targets of one run); exit 1 on a regression (a CI gate)",
        description=(
            "Pair the rows of two runs — or of two targets of one run (--base-target, --cand-target) — "
            "by (point, prompt_id, sample) and test, per metric and cell, "
            "whether the candidate is worse: paired sign-flip permutation test clustered by prompt, "
            "bootstrap interval, Holm/BH correction across cells. Exit 0 no regression, 1 regression, "
            "2 bad input."
        ),
    )
    p.add_argument("base", metavar="BASE_RUN", help="run directory of the baseline")
    p.add_argument("cand", metavar="CAND_RUN", nargs="?",
                   help="run directory of the candidate (default: BASE_RUN, to compare two of its targets)")
    p.add_argument("--base-target", metavar="NAME",
                   help="the baseline is this target's rows of BASE_RUN (needed when the run has several targets)")
    p.add_argument("--cand-target", metavar="NAME",
                   help="the candidate is this target's rows of CAND_RUN (or of BASE_RUN when no CAND_RUN is given)")
    p.add_argument("--metric", dest="gate_flags", action=_Ordered, metavar="NAME",
                   help="gate on this metric (a scorer name, error_rate, latency_p95, ttft_p95 or tpot_p95); repeatable. "
                        "Default: every scorer metric of the runs' spec")
    p.add_argument("--max-drop", dest="gate_flags", action=_Ordered, metavar="X",
                   help="allowed worsening of the --metric before it (absolute, or relative with %%, "
                        "e.g. 0.02 or 5%%); before any --metric: the default for all. Default 0: "
                        "any significant worsening fails")
    p.add_argument("--max-error-rate", metavar="X",
                   help="fail when the candidate's error rate over the compared points exceeds X (0.05 or 5%%)")
    p.add_argument("--max-latency-ratio", type=float, metavar="R",
                   help="fail when p95 latency is significantly higher and candidate/base > R (e.g. 1.2)")
    p.add_argument("--max-tpot-ratio", type=float, metavar="R",
                   help="fail when the p95 time per output token (a request's mean inter-token latency; "
                        "streamed runs) is significantly higher and candidate/base > R")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level per family (default 0.05)")
    p.add_argument("--correction", choices=("holm", "bh"), default="holm",
                   help="across cells: holm (family-wise, default) or bh (false discovery rate)")
    p.add_argument("--margin", metavar="X",
                   help="'no change' needs the interval to rule out a worsening beyond X "
                        "(default: the allowed drop, else 0.02; 10%% for latency)")
    p.add_argument("--errors", dest="error_score", choices=("zero", "exclude"), default="zero",
                   help="an error row scores 0 on quality metrics (default) or its pair is left out")
    p.add_argument("--permute", choices=("prompt", "row"), default="prompt",
                   help="null of the quality tests: swap base and candidate per prompt (default; robust "
                        "when a run's repeats are correlated, e.g. a fixed seed) or shuffle a prompt's "
                        "rows (more power; needs every repeat to be an independent request)")
    p.add_argument("--fail-on-inconclusive", action="store_true",
                   help="also fail when a gated metric is inconclusive (too few prompts to tell)")
    p.add_argument("--seed", type=int, default=0, help="seed of the permutations and bootstrap (default 0)")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML (a testcase per gated metric × cell)")
    p.add_argument("--markdown", metavar="FILE",
                   help="write a Markdown summary (appended when FILE is $GITHUB_STEP_SUMMARY)")
    p.add_argument("--json", dest="json_out", metavar="FILE", help="write the full result as JSON")
    p.add_argument("--allow-scorer", action="append", default=[], metavar="MODULE:FUNCTION",
                   help="run this custom scorer named by a run's manifest (imports its code; repeatable)")
    p.set_defaults(func=handle)


def options_from_args(args: argparse.Namespace) -> CompareOptions:
    """Turn parsed flags into CompareOptions (UsageError on a bad value)."""
    gates, default = _gates(args.gate_flags or [])
    return CompareOptions(
        gates=tuple(gates),
        default_max_drop=default,
        max_error_rate=Threshold.parse(args.max_error_rate, "--max-error-rate") if args.max_error_rate else None,
        max_latency_ratio=args.max_latency_ratio,
        max_tpot_ratio=args.max_tpot_ratio,
        alpha=args.alpha,
        correction=args.correction,
        margin=Threshold.parse(args.margin, "--margin") if args.margin else None,
        error_score=args.error_score,
        permute=args.permute,
        seed=args.seed,
        fail_on_inconclusive=args.fail_on_inconclusive,
        allow_scorers=tuple(getattr(args, "allow_scorer", None) or ()),
    )


def _gates(flags: list[tuple[str, str]]) -> tuple[list[Gate], Threshold]:
    default = Threshold(0.0)
    names: list[str] = []
    drops: dict[str, Threshold] = {}
    for flag, value in flags:
        if flag == "--metric":
            if not value.strip():
                raise UsageError("empty metric name", key="--metric")
            if value in names:
                raise UsageError(f"metric {value!r} named twice", key="--metric")
            names.append(value)
        elif not names:
            default = Threshold.parse(value, "--max-drop")
        elif names[-1] in drops:
            raise UsageError(f"two --max-drop values for metric {names[-1]!r}", key="--max-drop")
        else:
            drops[names[-1]] = Threshold.parse(value, "--max-drop")
    return [Gate(n, drops.get(n, default)) for n in names], default


def _write(path: str, text: str, flag: str) -> None:
    append = bool(os.environ.get("GITHUB_STEP_SUMMARY")) and path == os.environ.get("GITHUB_STEP_SUMMARY")
    try:
        target = Path(path)
        if target.parent and not target.parent.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a" if append else "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}", key=flag) from None


def handle(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    if args.cand is None and args.cand_target is None:
        raise UsageError("name the candidate: CAND_RUN, or --cand-target NAME for a target of BASE_RUN",
                         key="CAND_RUN")
    base = load_run(args.base)
    cand = base if args.cand is None else load_run(args.cand)
    result = compare_runs(base, cand, options, base_target=args.base_target, cand_target=args.cand_target)
    if args.junit:
        _write(args.junit, render_junit(result), "--junit")
    if args.markdown:
        _write(args.markdown, render_markdown(result), "--markdown")
    if args.json_out:
        _write(args.json_out, json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n", "--json")
    sys.stdout.write(render_text(result))
    return 1 if result.failed else 0
