"""The report's headline: what was swept, the best cells, what changed most, errors and why.

Plain sentences from the summary and the rows (reshaping and counting only; every number
comes from `harness.analysis.metrics.summarize`). html.py and markdown.py escape them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.report.shape import (
    PARAM_HELP,
    Metric,
    axis_groups,
    cell_label,
    fmt_metric,
    fmt_param,
    higher_is_better,
    is_constant,
    sorted_values,
)

TOP_CELLS = 3
TOP_CHANGES = 3
TOP_ERRORS = 3
_MESSAGE_CHARS = 160


@dataclass(frozen=True)
class Headline:
    """Sentences for the top of the report, in reading order."""

    swept: str
    parameters: list[tuple[str, str, str]] = field(default_factory=list)  # (name, values, what it does)
    best: list[str] = field(default_factory=list)
    tradeoff: str = ""
    changes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    constant: str = ""


def _with_interval(row: pd.Series, metric: Metric) -> str:
    text = fmt_metric(row.get(metric.column))
    if metric.lo and metric.hi and pd.notna(row.get(metric.lo)):
        text += f" [{fmt_metric(row.get(metric.lo))}, {fmt_metric(row.get(metric.hi))}]"
    return text


def _swept(summary: pd.DataFrame, rows: pd.DataFrame, params: list[str]) -> str:
    groups = axis_groups(summary, params)
    axes = " × ".join(
        " = ".join(g) + " (" + ", ".join(fmt_param(g[0], v) for v in sorted_values(summary[g[0]])) + ")"
        for g in groups
    ) or "nothing (one cell)"
    prompts = rows["prompt_id"].nunique() if "prompt_id" in rows and len(rows) else 0
    repeats: int | str = int(rows["sample"].max()) + 1 if "sample" in rows and len(rows) else 0
    if "sample" in rows and "cell_id" in rows and len(rows):  # adaptive repeats: cells got different numbers
        per_cell = rows.groupby("cell_id")["sample"].max() + 1
        low, high = int(per_cell.min()), int(per_cell.max())
        repeats = high if low == high else f"{low}–{high} (adaptive)"
    runs = summary["run_id"].nunique() if len(summary) else 0
    where = f" in each of {runs} runs" if runs > 1 else ""
    return (f"Swept {axes}: {summary.groupby('run_id').size().max() if len(summary) else 0} cells{where}, "
            f"{len(rows)} requests ({prompts} prompts × {repeats} repeats per cell).")


def _parameters(summary: pd.DataFrame, params: list[str]) -> list[tuple[str, str, str]]:
    out = []
    for group in axis_groups(summary, params):
        for p in group:
            values = ", ".join(fmt_param(p, v) for v in sorted_values(summary[p]))
            out.append((p, values, PARAM_HELP.get(p, "")))
    return out


def _best(summary: pd.DataFrame, params: list[str], quality: Metric | None) -> list[str]:
    if quality is None or not summary[quality.column].notna().any():
        return []
    out = []
    multi = summary["run_id"].nunique() > 1
    for run, part in summary.groupby("run_id", sort=False):
        ranked = part.dropna(subset=[quality.column]).sort_values(quality.column, ascending=False, kind="stable")
        top = ranked.iloc[0]
        lo = top.get(quality.lo) if quality.lo else None
        floor = float(lo) if lo is not None and pd.notna(lo) else float(top[quality.column])
        tied = int((ranked[quality.column] >= floor - 1e-12).sum()) - 1
        for _, row in ranked.head(TOP_CELLS).iterrows():
            prefix = f"{run}: " if multi else ""
            out.append(f"{prefix}{cell_label(row, params)}: {quality.label} {_with_interval(row, quality)}")
        if tied > 0:
            where = f" of {run}" if multi else ""
            noun, verb = ("cell", "lies") if tied == 1 else ("cells", "lie")
            out.append(f"{tied} other {noun}{where} {verb} inside the best cell's interval: "
                       "they cannot be told apart from it with these prompts.")
    return out


def _tradeoff(summary: pd.DataFrame, params: list[str], quality: Metric | None, best: pd.Series) -> str:
    if quality is None or not len(best):
        return ""
    parts = []
    for run, idx in best.items():
        row = summary.loc[idx]
        latency = Metric("latency_p50", "latency p50 (s)", "latency_p50_lo", "latency_p50_hi")
        parts.append(f"{cell_label(row, params)} ({quality.label} {_with_interval(row, quality)}, latency p50 "
                     f"{_with_interval(row, latency)} s)" + (f" in {run}" if len(best) > 1 else ""))
    return ("Best trade-off: " + "; ".join(parts) + ". Rule: of the cells whose quality is inside the best "
            "cell's interval, and whose latency cannot be told from the fastest of them, the highest quality (then the first in table order).")


def _main_effect(summary: pd.DataFrame, params: list[str], column: str) -> tuple[str, float]:
    """The swept axis whose values move `column` most (range of its means over the other axes)."""
    best_axis, best_range = "", -1.0
    for group in axis_groups(summary, params):
        means = summary.groupby(summary[group[0]].map(str))[column].mean()
        spread = float(means.max() - means.min()) if means.notna().any() else -1.0
        if spread > best_range:
            best_axis, best_range = " = ".join(group), spread
    return best_axis, best_range


def _ends(summary: pd.DataFrame, values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The rows of the smallest and the largest value."""
    array = values.to_numpy(dtype=float)
    return summary.iloc[int(np.nanargmin(array))], summary.iloc[int(np.nanargmax(array))]


def with_note(label: str, note: str) -> str:
    """A note in the label's own bracket where it has one: `exact_match (mean score; higher is better)`,
    `error rate (lower is better)` — never two brackets in a row."""
    if not note:
        return label
    if label.endswith(")") and "(" in label:
        return f"{label[:-1]}; {note})"
    return f"{label} ({note})"


def _changes(summary: pd.DataFrame, params: list[str], metrics: list[Metric], quality: Metric | None) -> list[str]:
    """The quality metric (the sweep is about it), then the metrics whose two ends are furthest
    apart against the width of those ends' intervals."""
    scored = []
    for m in metrics:
        values = summary[m.column].astype(float)
        if values.notna().sum() < 2 or is_constant(values):
            continue
        low, high = _ends(summary, values)
        spread = float(values.max() - values.min())
        widths = [float(r[m.hi] - r[m.lo]) for r in (low, high) if m.lo and m.hi and pd.notna(r.get(m.lo))]
        width = sum(widths) / len(widths) if widths else 0.0
        signal = spread / width if width > 0 else 10.0 * spread / (abs(float(values.mean())) or 1.0)
        scored.append((float("inf") if m == quality else signal, m))
    multi = "run_id" in summary and summary["run_id"].nunique() > 1

    def where(row: pd.Series) -> str:  # several runs: which run the cell is in
        return cell_label(row, params) + (f" in {row['run_id']}" if multi else "")

    out = []
    for _, m in sorted(scored, key=lambda t: -t[0])[:TOP_CHANGES]:
        low, high = _ends(summary, summary[m.column].astype(float))
        axis, _ = _main_effect(summary, params, m.column)
        direction = higher_is_better(m)
        note = "" if direction is None else ("higher is better" if direction else "lower is better")
        driver = f", mostly with {axis}" if axis else ""
        overlap = m.lo and m.hi and pd.notna(low.get(m.hi)) and low[m.hi] >= high.get(m.lo, float("inf"))
        caveat = " — the intervals of the two ends overlap" if overlap else ""
        out.append(f"{with_note(m.label, note)}: {_with_interval(low, m)} at {where(low)} to "
                   f"{_with_interval(high, m)} at {where(high)}{driver}{caveat}.")
    return out


def _errors(rows: pd.DataFrame) -> list[str]:
    if not len(rows) or "status" not in rows:
        return []
    failed = rows[rows["status"] != "ok"]
    if not len(failed):
        return []
    kind = failed.get("error_type", pd.Series("error", index=failed.index)).fillna("error").astype(str)
    message = failed.get("error_message", pd.Series("", index=failed.index)).fillna("").astype(str)
    causes = (kind + ": " + message.str.slice(0, _MESSAGE_CHARS)).value_counts()
    if len(failed) == len(rows):
        head = f"All {len(rows)} requests failed: there is nothing to measure. Cause"
    else:
        head = f"{len(failed)} of {len(rows)} requests ({len(failed) / len(rows):.0%}) failed. Cause"
    lines = [head + ("s:" if len(causes) > 1 else ":")]
    lines += [f"{count} × {cause}" for cause, count in causes.head(TOP_ERRORS).items()]
    if len(causes) > TOP_ERRORS:
        lines.append(f"… and {len(causes) - TOP_ERRORS} other causes (see the error rows in summary.csv / the run).")
    return lines


def constant_line(summary: pd.DataFrame, constant: list[Metric]) -> str:
    """'Same in every cell: error rate 0, repeated bigrams 0.' (or '')."""
    if not constant or not len(summary):
        return ""
    parts = []
    for m in constant:
        value = summary[m.column].dropna()
        parts.append(f"{m.label} {fmt_metric(value.iloc[0]) if len(value) else '–'}")
    return "Same in every cell (not drawn): " + ", ".join(parts) + "."


def build_headline(summary: pd.DataFrame, rows: pd.DataFrame, params: list[str], quality: Metric | None,
                   best: pd.Series, varying: list[Metric], constant: list[Metric]) -> Headline:
    """Everything the top of the report says."""
    return Headline(
        swept=_swept(summary, rows, params),
        parameters=_parameters(summary, params),
        best=_best(summary, params, quality),
        tradeoff=_tradeoff(summary, params, quality, best),
        changes=_changes(summary, params, varying, quality),
        errors=_errors(rows),
        constant=constant_line(summary, constant),
    )


__all__ = ["Headline", "build_headline", "constant_line"]
