"""Several targets in one run, side by side: one line per target (reshaping only).

For each (run, target): its model and price, requests and errors, its best trade-off cell
(`harness.analysis.metrics.best_tradeoff` among that target's cells) with quality, latency and
cost, and how many of its cells lie on the run's Pareto front *across targets* — the cells no other
cell of the run (any target) matches or beats on quality, median latency and, where prices are
given, cost per request at once (`pareto_set`). Everything here is plain text; html.py and
markdown.py escape it (target and model names come from the spec and the server).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from harness.analysis.cost import DEFAULT_TARGET, Price, target_series
from harness.analysis.metrics import best_tradeoff, pareto_set
from harness.report.shape import Metric, cell_label, fmt_metric, fmt_value

TARGET = "target"
COST = "cost_per_request"


@dataclass(frozen=True)
class TargetLine:
    """One target of one run, as text."""

    run: str
    target: str
    model: str
    price: str
    requests: int
    errors: int
    best: str  # the setting of its best trade-off cell
    quality: str
    latency: str
    cost_per_request: str
    cost_per_correct: str
    on_front: str  # "2 of 4 cells"


def several_targets(summary: pd.DataFrame) -> bool:
    """True when some run of the summary has cells of two or more targets."""
    if TARGET not in summary or not len(summary):
        return False
    return bool((summary.groupby("run_id", sort=False)[TARGET].nunique() > 1).any())


def has_cost(summary: pd.DataFrame) -> bool:
    return COST in summary and bool(summary[COST].notna().any())


def target_front(summary: pd.DataFrame, quality: Metric) -> tuple[pd.Series, bool]:
    """(cells on the front across targets, whether cost was one of its objectives): quality up,
    latency p50 down, cost per request down. Cost joins only when every cell with a quality has a
    price; otherwise the unpriced targets would silently drop out of the front."""
    objectives = [(quality.column, True), ("latency_p50", False)]
    scored = summary.dropna(subset=[quality.column])
    priced = has_cost(summary) and bool(scored[COST].notna().all())
    if priced:
        objectives.append((COST, False))
    return pareto_set(summary, objectives), priced


def _interval(row: pd.Series, column: str, lo: str | None, hi: str | None) -> str:
    text = fmt_metric(row.get(column))
    if lo and hi and pd.notna(row.get(lo)):
        text += f" [{fmt_metric(row.get(lo))}, {fmt_metric(row.get(hi))}]"
    return text


def price_text(price: Price | None) -> str:
    if price is None:
        return "–"
    return f"{price.input_per_mtok:g} in / {price.output_per_mtok:g} out per 1M tokens"


def lineup(
    summary: pd.DataFrame,
    rows: pd.DataFrame,
    params: list[str],
    quality: Metric | None,
    front: pd.Series,
    prices: Mapping[tuple[str, str], Price | None] | None = None,
) -> list[TargetLine]:
    """One line per (run, target), in summary order. `prices` maps (run label, target) → price."""
    if TARGET not in summary or not len(summary):
        return []
    prices = prices or {}
    names = target_series(summary)
    row_targets = target_series(rows) if len(rows) else pd.Series(dtype=object)
    shown = [p for p in params if p != TARGET]
    per_correct = f"{quality.column.removesuffix('_mean')}_cost_per_correct" if quality else None
    out = []
    for (run, target), part in summary.groupby([summary["run_id"], names], sort=False):
        mine = rows[(rows["run_id"] == run) & (row_targets == target)] if len(rows) else rows
        errors = int((mine["status"] != "ok").sum()) if len(mine) else 0
        models = sorted({str(m) for m in part["model"].dropna()}) if "model" in part else []
        best_row = None
        if quality is not None and part[quality.column].notna().any():
            picks = best_tradeoff(part, quality.column, "latency_p50")
            best_row = part.loc[picks.iloc[0]] if len(picks) else None
        on = int(front.reindex(part.index).fillna(False).astype(bool).sum()) if quality is not None else 0
        line = TargetLine(
            run=str(run),
            target=fmt_value(target) if target is not None else DEFAULT_TARGET,
            model=", ".join(models) or "?",
            price=price_text(prices.get((str(run), str(target)))),
            requests=len(mine),
            errors=errors,
            best=cell_label(best_row, shown) if best_row is not None and shown else ("(one cell)" if best_row is not None else "–"),
            quality=_interval(best_row, quality.column, quality.lo, quality.hi) if best_row is not None and quality else "–",
            latency=_interval(best_row, "latency_p50", "latency_p50_lo", "latency_p50_hi") if best_row is not None else "–",
            cost_per_request=fmt_metric(best_row.get(COST)) if best_row is not None else "–",
            cost_per_correct=fmt_metric(best_row.get(per_correct)) if best_row is not None and per_correct else "–",
            on_front=f"{on} of {len(part)} cells" if quality is not None else "–",
        )
        out.append(line)
    return out


def front_sentence(lines: list[TargetLine], priced: bool) -> str:
    """'On the quality/latency/cost front across targets: a 2 of 4 cells, b 0 of 4 cells.'"""
    if not lines or all(line.on_front == "–" for line in lines):
        return ""
    what = "quality / latency / cost" if priced else "quality / latency"
    multi = len({line.run for line in lines}) > 1
    parts = [f"{line.target}{f' ({line.run})' if multi else ''}: {line.on_front}" for line in lines]
    return f"On the {what} front across targets: " + "; ".join(parts) + "."


__all__ = ["TargetLine", "front_sentence", "has_cost", "lineup", "price_text", "several_targets", "target_front"]
