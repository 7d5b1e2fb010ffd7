"""Reshaping the summary for display: labels, which metrics to show, pivots. No new metrics."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.scoring import Scorer
from harness.errors import UsageError

# metric column -> (axis label, higher is better?)
_KNOWN: dict[str, tuple[str, bool | None]] = {
    "error_rate": ("error rate", False),
    "latency_p50": ("latency p50 (s)", False),
    "latency_p95": ("latency p95 (s)", False),
    "latency_p99": ("latency p99 (s)", False),
    "ttft_p50": ("time to first token p50 (s)", False),
    "ttft_p95": ("time to first token p95 (s)", False),
    "tpot_p50": ("time per output token p50 (s)", False),
    "tpot_p95": ("time per output token p95 (s)", False),
    "itl_mean": ("inter-token latency, mean (s)", False),
    "tokens_per_s": ("tokens / s", True),
    "completion_tokens_mean": ("completion tokens (mean)", None),
    "distinct_1": ("distinct-1", None),
    "distinct_2": ("distinct-2", None),
    "unique_share": ("unique outputs per prompt (share)", None),
    "pairwise_similarity": ("pairwise similarity of repeats", None),
    "repetition": ("repeated bigrams (share)", False),
    "logprob_mean": ("mean token logprob (nats)", None),
    "perplexity": ("perplexity", None),
    "entropy_mean": ("entropy per token (nats, lower bound)", None),
    "nonargmax_share": ("non-argmax tokens (share)", None),
    "cost_per_request": ("cost per request", False),
    "cost_total": ("cost of the cell", False),
}
DEFAULT_METRICS = (
    "error_rate", "latency_p50", "completion_tokens_mean", "ttft_p50", "tpot_p50", "tokens_per_s",
    "distinct_2", "unique_share", "repetition", "entropy_mean", "nonargmax_share", "perplexity", "cost_per_request",
)
UNSET = "unset"
OFF = "off"

# what each sampling parameter does, in one line (shown beside the swept values)
PARAM_HELP: dict[str, str] = {
    "temperature": "divides the logits before sampling: 0 = always the most likely token, higher = flatter, more random",
    "top_p": "nucleus sampling: keep the smallest set of tokens whose probabilities add up to p (1 = off)",
    "top_k": "keep only the k most likely tokens (off = no limit)",
    "min_p": "drop tokens less likely than min_p × the most likely token's probability (0 = off)",
    "frequency_penalty": "lowers a token's logit by this much per earlier use in the output: less repetition",
    "presence_penalty": "lowers a token's logit once it has appeared at all: more new words",
    "repetition_penalty": "divides the logits of tokens already seen (1 = off)",
    "seed": "the sampler's random seed: the same seed repeats the same choices",
    "max_tokens": "stops generation after this many tokens (finish reason 'length')",
    "n": "completions per request",
    "target": "which endpoint or model answered",
    "model": "which model answered",
}
# values that switch a parameter off, shown as "off"
_OFF_VALUES: dict[str, tuple[float, ...]] = {"top_k": (-1.0, 0.0)}


@dataclass(frozen=True)
class Metric:
    """A metric column to draw, with its interval columns when it has them."""

    column: str
    label: str
    lo: str | None = None
    hi: str | None = None


def metric_for(column: str, summary: pd.DataFrame) -> Metric:
    """The Metric for a summary column (`exact_match` is taken to mean `exact_match_mean`)."""
    if column not in summary.columns and f"{column}_mean" in summary.columns:
        column = f"{column}_mean"
    base = column.removesuffix("_mean")
    lo, hi = f"{base}_lo", f"{base}_hi"
    label = _KNOWN.get(column, (base.replace("_", " "), None))[0]
    if lo in summary.columns and hi in summary.columns:
        if column.endswith("_mean") and column not in _KNOWN:
            label = f"{base} (mean score)"
        return Metric(column, label, lo, hi)
    return Metric(column, label)


def quality_metrics(summary: pd.DataFrame, scorers: list[Scorer]) -> list[Metric]:
    """One Metric per scorer with data."""
    out = []
    for s in scorers:
        col = f"{s.name}_mean"
        if col in summary.columns and summary[col].notna().any():
            out.append(Metric(col, f"{s.name} (mean score)", f"{s.name}_lo", f"{s.name}_hi"))
    return out


def chosen_metrics(summary: pd.DataFrame, scorers: list[Scorer], wanted: list[str] | None) -> list[Metric]:
    """Metrics to draw: `wanted` if given, else the scorers then DEFAULT_METRICS, skipping empty ones."""
    if wanted:
        metrics = [metric_for(w, summary) for w in wanted]
        unknown = [m.column for m in metrics if m.column not in summary.columns]
        if unknown and len(summary):
            numeric = [c for c in summary.columns if pd.api.types.is_numeric_dtype(summary[c])]
            raise UsageError(f"--metric: no column {unknown[0]!r} in the summary; use one of {', '.join(numeric)}")
    else:
        metrics = quality_metrics(summary, scorers) + [metric_for(c, summary) for c in DEFAULT_METRICS]
    return [m for m in metrics if m.column in summary.columns and summary[m.column].notna().any()]


TRUNCATED_NOTE = 0.5


def flag(row: pd.Series, metric: Metric) -> str:
    """' (tail)' when an entropy value rests on truncated top-k lists at over half of its positions
    (and not every cell does: then the report says it once, see `tail_everywhere`)."""
    share = row.get("entropy_truncated_share")
    if row.get("_tail_everywhere") is True:
        return ""
    if metric.column == "entropy_mean" and share is not None and pd.notna(share) and share > TRUNCATED_NOTE:
        return " (tail)"
    return ""


def tail_everywhere(summary: pd.DataFrame) -> bool:
    """True when every cell's entropy would be flagged: one note instead of a flag per cell."""
    if "entropy_truncated_share" not in summary:
        return False
    share = summary["entropy_truncated_share"].dropna()
    return bool(len(share)) and bool((share > TRUNCATED_NOTE).all())


def fmt_param(name: str, value: Any) -> str:
    """A parameter value as a reader wants it: "off" for a value that disables the parameter."""
    off = _OFF_VALUES.get(name)
    if off is not None:
        try:
            if float(value) in off:
                return OFF
        except (TypeError, ValueError):
            pass
    return fmt_value(value)


def fmt_value(value: Any) -> str:
    """A parameter value for labels: 0.7, 40, unset."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return UNSET
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    return str(value)


def fmt_metric(value: Any, digits: int = 3) -> str:
    """A metric value for tables: 3 significant digits, '–' for missing."""
    if value is None or value is pd.NA:
        return "–"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "–"
    if number != 0 and (abs(number) >= 1e5 or abs(number) < 1e-3):
        return f"{number:.{digits - 1}e}"
    if abs(number) >= 100:
        return f"{number:.0f}"
    if abs(number) >= 1:
        return f"{number:.{digits}g}"
    return f"{number:.{digits}f}".rstrip("0").rstrip(".")


def cell_label(row: pd.Series, params: list[str], sep: str = ", ") -> str:
    """`temperature=0.7, top_p=0.9` (or the cell id when nothing was swept)."""
    if not params:
        return str(row.get("cell_id", ""))
    return sep.join(f"{p}={fmt_param(p, row.get(p))}" for p in params)


def run_labels(run_ids: Sequence[str]) -> dict[str, str]:
    """Several runs: run id → "run 1", "run 2" … in report order (as the figures number them), so
    that wide tables need no column for long ids; one run: {} (tables then have no run column)."""
    ids = list(dict.fromkeys(run_ids))
    return {run: f"run {i + 1}" for i, run in enumerate(ids)} if len(ids) > 1 else {}


def run_legend(labels: dict[str, str]) -> str:
    """'run 1 = <id>; run 2 = <id>' (plain text: the renderers escape it), or '' for one run."""
    return "; ".join(f"{short} = {run}" for run, short in labels.items())


def sorted_values(series: pd.Series) -> list[Any]:
    """Distinct values, unset first, then ascending (numbers numerically)."""
    values = list(pd.unique(series))
    missing = [v for v in values if fmt_value(v) == UNSET]
    present = [v for v in values if fmt_value(v) != UNSET]
    try:
        present.sort()
    except TypeError:
        present.sort(key=str)
    return (missing[:1]) + present


def varying(summary: pd.DataFrame, params: list[str]) -> list[str]:
    """Parameters taking at least two values in the summary."""
    return [p for p in params if p in summary.columns and summary[p].map(fmt_value).nunique() > 1]


def locked(summary: pd.DataFrame, a: str, b: str) -> bool:
    """True when a and b move together (zipped): each value of one goes with one value of the other."""
    x, y = summary[a].map(fmt_value), summary[b].map(fmt_value)
    return bool((y.groupby(x).nunique() <= 1).all() and (x.groupby(y).nunique() <= 1).all())


def axis_groups(summary: pd.DataFrame, params: list[str]) -> list[list[str]]:
    """Varying parameters grouped so that zipped ones share one axis: [[temperature], [fp, pp]]."""
    groups: list[list[str]] = []
    for p in varying(summary, params):
        home = next((g for g in groups if locked(summary, g[0], p)), None)
        if home is None:
            groups.append([p])
        else:
            home.append(p)
    return groups


def axis_label(group: list[str]) -> str:
    """'frequency_penalty' or 'frequency_penalty = presence_penalty (zipped)'."""
    return group[0] if len(group) == 1 else f"{group[0]} (zipped: {', '.join(group[1:])})"


def pivot(part: pd.DataFrame, x: str, y: str, column: str) -> tuple[list[Any], list[Any], np.ndarray]:
    """(x values, y values, matrix[y, x]) of `column`, averaged over any other parameters."""
    xs, ys = sorted_values(part[x]), sorted_values(part[y])
    xi = {fmt_value(v): i for i, v in enumerate(xs)}
    yi = {fmt_value(v): i for i, v in enumerate(ys)}
    total = np.zeros((len(ys), len(xs)))
    count = np.zeros((len(ys), len(xs)))
    for xv, yv, val in zip(part[x].map(fmt_value), part[y].map(fmt_value), part[column]):
        if val is not None and not (isinstance(val, float) and math.isnan(val)):
            total[yi[yv], xi[xv]] += float(val)
            count[yi[yv], xi[xv]] += 1
    with np.errstate(invalid="ignore"):
        return xs, ys, np.where(count > 0, total / np.maximum(count, 1), np.nan)


def is_constant(values: pd.Series) -> bool:
    """True when every non-missing value is the same (to 9 significant digits)."""
    finite = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    if not len(finite):
        return True
    spread = float(finite.max() - finite.min())
    return spread <= 1e-9 * max(1.0, float(np.abs(finite).max()))


def split_constant(summary: pd.DataFrame, metrics: list[Metric]) -> tuple[list[Metric], list[Metric]]:
    """(metrics that vary across cells, metrics with one value everywhere) — the latter become text."""
    varying_: list[Metric] = []
    constant: list[Metric] = []
    for m in metrics:
        (constant if is_constant(summary[m.column]) else varying_).append(m)
    return varying_, constant


def higher_is_better(metric: Metric) -> bool | None:
    """True/False when a direction is known (scores: higher), else None."""
    if metric.column in _KNOWN:
        return _KNOWN[metric.column][1]
    return True if metric.column.endswith("_mean") and metric.lo else None


__all__ = [
    "DEFAULT_METRICS",
    "OFF",
    "PARAM_HELP",
    "Metric",
    "axis_groups",
    "axis_label",
    "cell_label",
    "chosen_metrics",
    "flag",
    "fmt_metric",
    "fmt_param",
    "fmt_value",
    "higher_is_better",
    "is_constant",
    "locked",
    "metric_for",
    "pivot",
    "quality_metrics",
    "run_labels",
    "run_legend",
    "sorted_values",
    "split_constant",
    "tail_everywhere",
    "varying",
]
