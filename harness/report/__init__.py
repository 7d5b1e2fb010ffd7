"""`harness report`: figures, a self-contained index.html and report.md for one or more runs.

The report draws and renders; every number comes from `harness.metrics.summarize`.

    report/
      data.py      load run directories (flat rows + per-row logprob sums)
      shape.py     labels, metric choice, pivots (reshaping only)
      figures.py   matplotlib figures → PNG bytes
      html.py      index.html (escaped, no script, no URL)
      markdown.py  report.md
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Sequence

import pandas as pd

from harness.errors import SpecError, UsageError
from harness.metrics import best_tradeoff, pareto_front, summarize, swept_params
from harness.report import figures as figs
from harness.report import html as html_out
from harness.report import markdown as md_out
from harness.report.data import RunData, combined_rows, load_runs
from harness.report.shape import Metric, axis_groups, chosen_metrics, quality_metrics
from harness.scoring import Scorer, resolve_scorers, score_frame

log = logging.getLogger(__name__)

MAX_PAIRS = 3
MAX_LINE_PARAMS = 3
MAX_LINE_METRICS = 6


@dataclass(frozen=True)
class ReportOptions:
    """What to draw: metric columns (None = scorers + defaults), samples shown per cell."""

    metrics: list[str] | None = None
    samples_per_cell: int = 5
    scoring: list[Any] | None = None  # overrides the runs' spec `scoring`
    allow_scorers: tuple[str, ...] = ()  # custom scorers of the runs' specs that may be imported


@dataclass
class Report:
    """What `build_report` wrote."""

    out_dir: Path
    files: list[Path] = field(default_factory=list)
    summary: pd.DataFrame | None = None


def scorers_for(
    runs: Sequence[RunData], override: list[Any] | None = None, allow: Collection[str] = ()
) -> list[Scorer]:
    """The override, else the union (by metric name, in order) of the runs' spec `scoring`.

    A run's custom `module:function` scorer is imported only when named in `allow`.
    """
    if override is not None:
        return resolve_scorers(override, key="--scoring")
    seen: dict[str, Scorer] = {}
    for run in runs:
        try:
            for scorer in resolve_scorers(run.spec.get("scoring"), key="spec.scoring", allow_custom=allow):
                seen.setdefault(scorer.name, scorer)
        except SpecError as err:
            raise SpecError(err.detail, file=str(run.path / "manifest.json"), key=err.key) from None
    return list(seen.values())


def _run_info(run: RunData) -> dict[str, Any]:
    m = run.manifest
    models = run.rows["model"].dropna().unique() if "model" in run.rows else []
    ok = int((run.rows["status"] == "ok").sum()) if len(run.rows) else 0
    return {
        "label": run.label,
        "model": m.target.model or (models[0] if len(models) else None),
        "base_url": m.target.base_url,
        "started_at": m.started_at,
        "status": m.status,
        "requests": m.counts.requests or len(run.rows),
        "ok": m.counts.ok or ok,
        "error": m.counts.error or len(run.rows) - ok,
    }


def _samples(rows: pd.DataFrame, scores: pd.DataFrame, per_cell: int) -> pd.DataFrame:
    """Up to `per_cell` rows per cell, different prompts first (sample 0 of each prompt)."""
    if per_cell <= 0 or not len(rows):
        return rows.iloc[0:0]
    cols = [c for c in ("run_id", "cell_id", "prompt_id", "sample", "status", "content", "reference",
                        "finish_reason", "error_type", "error_message") if c in rows.columns]
    picked = rows[cols].join(scores).sort_values(["sample", "prompt_id"], kind="stable")
    return picked.groupby(["run_id", "cell_id"], sort=False).head(per_cell)


def _draw(summary: pd.DataFrame, rows: pd.DataFrame, params: list[str], metrics: list[Metric],
          quality: Metric | None) -> tuple[list[figs.FigureFile], dict[str, list[figs.FigureFile]]]:
    sections: dict[str, list[figs.FigureFile]] = {"Quality vs latency": [], "Metrics vs parameters": [],
                                                  "Heatmaps": [], "Latency": []}
    if quality is not None:
        front = pareto_front(summary, quality.column, "latency_p50")
        best = best_tradeoff(summary, quality.column, "latency_p50")
        sections["Quality vs latency"].append(figs.pareto(summary, params, quality, front, best))
    swept = [group[0] for group in axis_groups(summary, params)]  # zipped parameters share an axis
    for x in swept[:MAX_LINE_PARAMS]:
        sections["Metrics vs parameters"].append(figs.lines(summary, params, x, metrics[:MAX_LINE_METRICS]))
    for x, y in list(itertools.combinations(swept, 2))[:MAX_PAIRS]:
        for metric in metrics:
            sections["Heatmaps"].append(figs.heatmap(summary, params, x, y, metric))
    if len(rows):
        sections["Latency"].append(figs.latency(rows, summary, params))
    ordered = [f for group in sections.values() for f in group]
    return ordered, sections


def _check_out(out: Path) -> None:
    """A file where the output folder should be is bad input (checked before any work)."""
    if out.exists() and not out.is_dir():
        raise UsageError("is a file; the report needs a folder (new or existing)", file=str(out))


def _make_out(out: Path) -> None:
    """Create the output folder (an unwritable path is bad input)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the report folder ({exc.strerror or exc})", file=str(out)) from None


def build_report(run_dirs: Sequence[str | Path], out_dir: str | Path, options: ReportOptions | None = None) -> Report:
    """Load the runs, summarise, draw, and write PNGs, index.html, report.md and summary.csv."""
    options = options or ReportOptions()
    out = Path(out_dir)
    _check_out(out)
    runs = load_runs(list(run_dirs))
    scorers = scorers_for(runs, options.scoring, options.allow_scorers)
    rows = combined_rows(runs)
    scores = score_frame(rows, scorers)
    summary = summarize(rows, scorers, scores=scores)
    params = swept_params(rows)
    metrics = chosen_metrics(summary, scorers, options.metrics)
    qualities = quality_metrics(summary, scorers)
    quality = qualities[0] if qualities else None
    ordered, sections = _draw(summary, rows, params, metrics, quality)
    best = best_tradeoff(summary, quality.column, "latency_p50") if quality is not None else pd.Series(dtype=object)
    info = [_run_info(r) for r in runs]
    title = "harness report: " + ", ".join(r.label for r in runs)
    _make_out(out)
    report = Report(out_dir=out, summary=summary)
    for fig in ordered:
        (out / fig.name).write_bytes(fig.png)
        report.files.append(out / fig.name)
    table_metrics = ([quality] if quality else []) + [m for m in metrics if m != quality]
    body = [
        html_out.runs_section(info),
        html_out.summary_section(summary, params, table_metrics, set(best.tolist())),
        *[html_out.figures_section(name, group) for name, group in sections.items()],
        html_out.samples_section(summary, _samples(rows, scores, options.samples_per_cell), params,
                                 [s.name for s in scorers], quality),
    ]
    files = {
        "index.html": html_out.page(title, body),
        "report.md": md_out.render(title, info, summary, params, table_metrics, best, quality, ordered),
    }
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
        report.files.append(out / name)
    summary.to_csv(out / "summary.csv", index=False)
    report.files.append(out / "summary.csv")
    log.info("report written to %s (%d files)", out, len(report.files))
    return report


__all__ = ["Report", "ReportOptions", "build_report", "scorers_for"]
