"""`report.md`: runs, best trade-offs, the cell table and links to the PNGs. No model output.

Strings from the data are escaped for Markdown *and* HTML (GitHub renders inline HTML), so an
id or a parameter value cannot inject markup or links.
"""

from __future__ import annotations

import html
import re
from typing import Any

import pandas as pd

from harness.report.figures import FigureFile
from harness.report.shape import Metric, cell_label, flag, fmt_metric, fmt_value

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md(value: Any) -> str:
    """Escape text for a Markdown table cell: HTML entities, Markdown punctuation, no newlines."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return ""
    text = html.escape(" ".join(str(value).split()), quote=False)
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


def render(
    title: str,
    runs: list[dict[str, Any]],
    summary: pd.DataFrame,
    params: list[str],
    metrics: list[Metric],
    best: pd.Series,
    quality: Metric | None,
    figures: list[FigureFile],
) -> str:
    """The whole Markdown document."""
    out = [f"# {md(title)}", ""]
    run_rows = [[md(r.get(k)) for k in ("label", "model", "status", "requests", "ok", "error")] for r in runs]
    out += [_table(["run", "model", "status", "requests", "ok", "error"], run_rows), ""]
    if quality is not None and len(best):
        out += ["## Best trade-off", ""]
        out += [f"Fastest cell (median latency) whose {md(quality.label)} is within the best cell's 95% interval:", ""]
        for run, idx in best.items():
            row = summary.loc[idx]
            out.append(
                f"- **{md(run)}**: {md(cell_label(row, params))}: {md(quality.label)} "
                f"{_with_interval(row, quality)}, latency p50 {md(fmt_metric(row.get('latency_p50')))} s"
            )
        out.append("")
    multi = summary["run_id"].nunique() > 1
    header = (["run"] if multi else []) + [md(p) for p in params] + ["n"] + [md(m.label) for m in metrics]
    rows = []
    for _, row in summary.iterrows():
        cells = ([md(row["run_id"])] if multi else []) + [md(fmt_value(row.get(p))) for p in params]
        rows.append(cells + [md(row.get("n"))] + [_with_interval(row, m) for m in metrics])
    out += ["## Cells", "", "Brackets: 95% bootstrap interval (prompts resampled). Entropy is a lower bound; "
            "(tail): top_logprobs left > 5% of the mass unseen at > 10% of positions. All metrics: `summary.csv`.", ""]
    out += [_table(header, rows), ""]
    if figures:
        out += ["## Figures", ""]
        for fig in figures:
            out += [f"### {md(fig.title)}", "", f"![{md(fig.title)}]({fig.name})", "", md(fig.caption), ""]
    return "\n".join(out)


__all__ = ["md", "render"]
