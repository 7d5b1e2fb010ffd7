"""`harness whatif RUN_DIR [--top-p P...] [--top-k K...] [--min-p M...] [--temperature T...]`.

From the stored top_logprobs: what each hypothetical truncation setting would change in every
cell, with intervals, and which settings are worth running. `--json` / `--csv` print every column.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from typing import Any

from harness.errors import RunDirError, UsageError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "whatif",
        help="what top_p / top_k / min_p would change, estimated from a run's logprobs",
        description="For every cell of a run and every hypothetical setting, estimate from the stored "
        "top_logprobs what truncation would do: the share of sampled tokens it would have cut, the "
        "probability mass it removes, the candidate-set size and the entropy after truncation, with 95%% "
        "intervals that include the unseen tail beyond the returned candidates. Several values of a flag "
        "are crossed with the others. Without flags: top_p 0.9, 0.95; top_k 5, 40; min_p 0.05, 0.1.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory whose rows have logprobs")
    parser.add_argument("--temperature", type=float, nargs="+", metavar="T", help="temperature(s) (default: each cell's)")
    parser.add_argument("--top-p", type=float, nargs="+", metavar="P", help="top_p value(s) in (0, 1]")
    parser.add_argument("--top-k", type=int, nargs="+", metavar="K", help="top_k value(s): >= 1, or -1 for off")
    parser.add_argument("--min-p", type=float, nargs="+", metavar="M", help="min_p value(s) in [0, 1]")
    parser.add_argument(
        "--vocab", type=int, default=None, metavar="N",
        help="vocabulary size bounding the unseen tail (default 262144, Gemma 3's)",
    )
    parser.add_argument(
        "--skip-below", type=float, default=0.01, metavar="X",
        help="a setting that changes less than this share of tokens (upper bound) is 'skip' (default 0.01)",
    )
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON document (rows and suggestions)")
    out.add_argument("--csv", action="store_true", help="print every column as CSV")
    parser.set_defaults(func=handle)


def _check(values: list[Any] | None, flag: str, ok: Any, allowed: str) -> list[Any] | None:
    for v in values or ():
        if (isinstance(v, float) and not math.isfinite(v)) or not ok(v):
            raise UsageError(f"{v} is not allowed; {allowed}", key=flag)
    return values


def settings_from(args: argparse.Namespace) -> list[Any]:
    """The hypothetical settings: the cross product of the values given (or the defaults)."""
    from harness.whatif import DEFAULT_SETTINGS, Setting

    given = {
        "temperature": _check(args.temperature, "--temperature", lambda v: 0.0 <= v <= 5.0, "use 0 to 5"),
        "top_p": _check(args.top_p, "--top-p", lambda v: 0.0 < v <= 1.0, "use a value in (0, 1]"),
        "top_k": _check(args.top_k, "--top-k", lambda v: v == -1 or v >= 1, "use -1 (off) or 1 and more"),
        "min_p": _check(args.min_p, "--min-p", lambda v: 0.0 <= v <= 1.0, "use a value in [0, 1]"),
    }
    chosen: dict[str, list[Any]] = {k: v for k, v in given.items() if v}
    if not chosen:
        return list(DEFAULT_SETTINGS)
    names = list(chosen)
    return [Setting(**dict(zip(names, combo))) for combo in itertools.product(*(chosen[n] for n in names))]


def _load_rows(run_dir: str) -> Any:
    from harness.rundir import read_results
    from harness.rundir.fs import as_run_path

    path = as_run_path(run_dir)
    if not (path / "manifest.json").is_file():
        raise RunDirError("not a run directory (no manifest.json)", file=str(path))
    rows = read_results(path)
    has_logprobs = "logprobs" in rows and rows["logprobs"].map(lambda v: v is not None and len(v) > 0).any()
    if not has_logprobs:
        raise RunDirError(
            "no logprobs in the results; run the sweep with params logprobs: true and top_logprobs: 5 or more",
            file=str(path / "results"),
        )
    return rows


def _table(frame: Any) -> str:
    import pandas as pd

    def span(name: str, fmt: str) -> list[str]:
        return [f"{m:{fmt}} [{a:{fmt}}, {b:{fmt}}]" for m, a, b in zip(frame[name], frame[f"{name}_lo"], frame[f"{name}_hi"])]

    cells = [f"T={t:g} top_p={p:g} top_k={'off' if k <= 0 else k} min_p={m:g}"
             for t, p, k, m in zip(frame["temperature"], frame["top_p"], frame["top_k"], frame["min_p"])]
    if "target" in frame:  # a run with several targets: the cell's target first
        cells = [f"{target}: {c}" for target, c in zip(frame["target"], cells)]
    if len(set(cells)) < frame["cell_id"].nunique():  # cells that differ in something else (seed, penalties)
        cells = [f"{c} ({cell_id[:6]})" for c, cell_id in zip(cells, frame["cell_id"])]
    table = pd.DataFrame({
        "cell": cells,
        "setting": frame["setting"],
        "tokens": frame["positions"],
        "affected": span("affected", ".1%"),
        "mass removed": span("removed", ".1%"),
        "candidates": span("candidates", ".3g"),
        "entropy (nats)": span("entropy", ".2f"),
        "tail": [f"{x:.1%}" for x in frame["tail_share"]],
        "verdict": frame["verdict"],
    })
    return str(table.to_string(index=False))


def handle(args: argparse.Namespace) -> int:
    from harness.whatif import DEFAULT_VOCAB, as_run, suggestions, whatif_frame

    settings = settings_from(args)
    if args.vocab is not None and args.vocab < 2:
        raise UsageError(f"{args.vocab} is not allowed; use 2 or more", key="--vocab")
    if not 0.0 < args.skip_below < 1.0:
        raise UsageError(f"{args.skip_below} is not allowed; use a share in (0, 1)", key="--skip-below")
    rows = _load_rows(args.run_dir)
    frame = whatif_frame(rows, as_run(settings), vocab=args.vocab or DEFAULT_VOCAB, skip_below=args.skip_below)
    lines = suggestions(frame, args.skip_below)
    if args.csv:
        frame.to_csv(sys.stdout, index=False)
    elif args.json:
        records = json.loads(frame.to_json(orient="records"))
        print(json.dumps({"run_dir": str(args.run_dir), "rows": records, "suggestions": lines}, indent=1))
    else:
        print(_table(frame))
        print()
        print("\n".join(lines))
    return 0
