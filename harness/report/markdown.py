"""`report.md`: runs, best trade-offs, the cell table and links to the PNGs. No model output.

Strings from the data are escaped for Markdown *and* HTML (GitHub renders inline HTML), so an
id or a parameter value cannot inject markup or links.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

from harness.report.figures import FigureFile
from harness.report.headline import Headline
from harness.report.lineup import TargetLine
from harness.report.shape import Metric, flag, fmt_metric, fmt_param
from harness.textsafe import visible_controls

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md(value: Any) -> str:
    """Escape text for a Markdown table cell: HTML entities, Markdown punctuation, no newlines."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = html.escape(visible_controls(" ".join(str(value).split())), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", text)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _with_interval(row: pd.Series, m: Metric) -> str:
    text = fmt_metric(row.get(m.column)) + flag(row, m)
    if m.lo and m.hi and pd.notna(row.get(m.lo)):
        text += f" [{fmt_metric(row.get(m.lo))}, {fmt_metric(row.get(m.hi))}]"
    return md(text)


def _headline(head: Headline) -> list[str]:
    out = [f"**{md(head.swept)}**", ""]
    if head.errors:
        out += [f"**{md(head.errors[0])}**", "", *[f"- {md(e)}" for e in head.errors[1:]], ""]
    if head.best:
        out += ["Best cells (95% interval):", "", *[f"- {md(b)}" for b in head.best], ""]
    if head.tradeoff:
        out += [md(head.tradeoff), ""]
    if head.changes:
        out += ["What changed most across cells:", "", *[f"- {md(c)}" for c in head.changes], ""]
    if head.constant:
        out += [md(head.constant), ""]
    if head.parameters:
        out += ["## Swept parameters", "", _table(["parameter", "values", "what it does"],
                                                  [[md(n), md(v), md(h)] for n, v, h in head.parameters]), ""]
    return out


def legend_md(legend: str) -> list[str]:
    """The line above a table that says which run each short label stands for (or nothing)."""
    return [f"Runs: {md(legend)}.", ""] if legend else []


def _targets(lines: Sequence[TargetLine], sentence: str, quality: Metric | None, legend: str = "") -> list[str]:
    if not lines:
        return []
    multi = len({line.run for line in lines}) > 1
    priced = any(line.price != "–" for line in lines)
    header = (["run"] if multi else []) + ["target", "model", "requests", "errors", "best trade-off cell",
                                           md(quality.label) if quality else "quality", "latency p50 (s)"]
    header += ["price", "cost / request", "cost / correct answer"] if priced else []
    header.append("cells on the front")
    rows = []
    for line in lines:
        cells = ([md(line.run)] if multi else []) + [md(v) for v in (
            line.target, line.model, line.requests, line.errors, line.best, line.quality, line.latency)]
        cells += [md(line.price), md(line.cost_per_request), md(line.cost_per_correct)] if priced else []
        rows.append(cells + [md(line.on_front)])
    out = ["## Targets", ""]
    if sentence:
        out += [md(sentence), ""]
    return out + legend_md(legend) + [_table(header, rows), ""]


def render(
    title: str,
    runs: list[dict[str, Any]],
    summary: pd.DataFrame,
    params: list[str],
    metrics: list[Metric],
    head: Headline,
    figures: list[FigureFile],
    targets: Sequence[TargetLine] = (),
    targets_sentence: str = "",
    quality: Metric | None = None,
    legend: str = "",
) -> str:
    """The whole Markdown document. Several runs: the cell and target tables name them by the
    short labels ("run 1") that `legend` explains."""
    out = [f"# {md(title)}", "", *_headline(head), *_targets(targets, targets_sentence, quality, legend)]
    short = any(r.get("short") for r in runs)
    keys = (["short"] if short else []) + ["label", "model", "status", "requests", "ok", "error"]
    run_rows = [[md(r.get(k)) for k in keys] for r in runs]
    out += ["## Runs", "", _table(([""] if short else []) + ["run", "model", "status", "requests", "ok", "error"],
                                  run_rows), ""]
    multi = summary["run_id"].nunique() > 1
    header = (["run"] if multi else []) + [md(p) for p in params] + ["n"] + [md(m.label) for m in metrics]
    rows = []
    for _, row in summary.iterrows():
        cells = ([md(row["run_id"])] if multi else []) + [md(fmt_param(p, row.get(p))) for p in params]
        rows.append(cells + [md(row.get("n"))] + [_with_interval(row, m) for m in metrics])
    note = ("Brackets: 95% interval (prompts resampled: cluster bootstrap; distinct-n: jackknife). "
            "Entropy is a lower bound from top_logprobs; (tail): > 5% of the mass unseen at over half of the "
            "positions. Every metric: `summary.csv`.")
    out += ["## Cells", "", note, "", *legend_md(legend)]
    out += [_table(header, rows), ""]
    if figures:
        out += ["## Figures", ""]
        for fig in figures:
            out += [f"### {md(fig.title)}", "", f"![{md(fig.title)}]({fig.name})", "", md(fig.caption), ""]
    return "\n".join(out)


md_table = _table  # for sections built in their own modules (report/counterfactual.py)

__all__ = ["legend_md", "md", "md_table", "render"]
