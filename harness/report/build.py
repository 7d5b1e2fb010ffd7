"""Build a report: load runs, summarize, draw the figures, write index.html and report.md."""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.cost import Price, manifest_targets, prices_from_manifest, target_series
from harness.analysis.metrics import best_tradeoff, pareto_front, summarize, swept_params
from harness.analysis.scoring import Scorer, resolve_scorers, score_frame
from harness.errors import SpecError, UsageError
from harness.report import counterfactual, endpoint
from harness.report import figures as figs
from harness.report import html as html_out
from harness.report import markdown as md_out
from harness.report.counterfactual import whatif_for_runs
from harness.report.data import RunData, combined_rows, load_runs
from harness.report.headline import build_headline
from harness.report.lineup import TargetLine, front_sentence, lineup, several_targets, target_front
from harness.report.shape import (
    Metric,
    chosen_metrics,
    quality_metrics,
    run_labels,
    run_legend,
    split_constant,
    tail_everywhere,
)
from harness.rundir.fs import RunPath
from harness.textsafe import csv_safe_frame

log = logging.getLogger(__name__)

MAX_PANELS = 12
TAIL_NOTE = ("Entropy is a loose lower bound in every cell: top_logprobs left more than 5% of the probability "
             "unseen at over half of the positions (ask for more top_logprobs to tighten it).")
SAMPLE_REPEATS = 3


@dataclass(frozen=True)
class ReportOptions:
    """What to draw: metric columns (None = scorers + defaults), samples shown per cell."""

    metrics: list[str] | None = None
    samples_per_cell: int = 6
    scoring: list[Any] | None = None  # overrides the runs' spec `scoring`
    allow_scorers: tuple[str, ...] = ()  # custom scorers of the runs' specs that may be imported
    whatif: bool = True  # the "what truncation would change" section, where the runs stored top_logprobs


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
    models = list(run.rows["model"].dropna().unique()) if "model" in run.rows else []
    ok = int((run.rows["status"] == "ok").sum()) if len(run.rows) else 0
    targets = manifest_targets(m)
    model: str | None
    if len(targets) > 1:  # several targets: name: model, …
        model = ", ".join(f"{name}: {info.get('model') or '?'}" for name, info in targets.items())
    else:
        model = m.target.model or (models[0] if len(models) else None)
    return {
        "label": run.label,
        "model": model,
        "base_url": m.target.base_url,
        "started_at": m.started_at,
        "status": m.status,
        "requests": m.counts.requests or len(run.rows),
        "ok": m.counts.ok or ok,
        "error": m.counts.error or len(run.rows) - ok,
    }


def _samples(rows: pd.DataFrame, scores: pd.DataFrame, per_cell: int) -> pd.DataFrame:
    """About `per_cell` outputs per cell: the same prompts in every cell (those whose outputs differ
    most across the run come first), and up to SAMPLE_REPEATS repeats of each."""
    if per_cell <= 0 or not len(rows):
        return rows.iloc[0:0]
    cols = [c for c in ("run_id", "target", "cell_id", "prompt_id", "sample", "status", "content", "reference",
                        "finish_reason", "error_type", "error_message") if c in rows.columns]
    repeats = min(SAMPLE_REPEATS, int(rows["sample"].max()) + 1, per_cell)
    n_prompts = max(1, math.ceil(per_cell / repeats))
    spread = rows.groupby("prompt_id", sort=False)["content"].nunique(dropna=False)
    prompts = spread.sort_values(ascending=False, kind="stable").index[:n_prompts]
    picked = rows[rows["prompt_id"].isin(prompts) & (rows["sample"] < repeats)][cols].join(scores)
    order = {p: i for i, p in enumerate(prompts)}
    return picked.assign(_o=picked["prompt_id"].map(order)).sort_values(["_o", "sample"], kind="stable").drop(columns="_o")


def _draw(summary: pd.DataFrame, params: list[str], metrics: list[Metric], quality: Metric | None,
          best: pd.Series, targets: TargetView | None = None) -> list[figs.FigureFile]:
    """The figures worth drawing: small multiples of the varying metrics; quality vs latency.

    Several targets in a run: when another parameter varies too, each target gets its own block
    of panels (side by side, shared axes) and the x axis is that parameter; otherwise the targets
    are the x axis. The trade-off figure then shows every target's cells together, with the front
    across targets and, with prices, cost per request (even when quality is the same everywhere:
    then latency and cost decide)."""
    out = []
    facet = None
    if targets is not None and figs.main_axis(summary, [p for p in params if p != "target"]) is not None:
        facet, params = "target", [p for p in params if p != "target"]
    panels = figs.small_multiples(summary, params, metrics[:MAX_PANELS], facet=facet)
    if panels is not None:
        out.append(panels)
    if not summary["latency_p50"].notna().any():
        return out
    if targets is not None and targets.quality is not None and targets.front is not None:
        out.append(figs.target_tradeoffs(summary, targets.quality, targets.front,
                                         "cost_per_request" if targets.priced else None))
    elif quality is not None and len(summary) > 1:
        front = pareto_front(summary, quality.column, "latency_p50")
        out.append(figs.pareto(summary, params, quality, front, best))
    return out


@dataclass(frozen=True)
class TargetView:
    """Several targets: the quality they are compared on (a scorer, shown even when it is the same
    everywhere), the cells on the front across targets, whether cost was one of its objectives,
    and one line per target."""

    quality: Metric | None
    front: pd.Series | None
    priced: bool
    lines: list[TargetLine]
    sentence: str


def _target_view(summary: pd.DataFrame, rows: pd.DataFrame, params: list[str], scorers: list[Scorer],
                 runs: Sequence[RunData]) -> TargetView | None:
    if not several_targets(summary):
        return None
    qualities = quality_metrics(summary, scorers)
    quality = qualities[0] if qualities else None
    front, priced = target_front(summary, quality) if quality is not None else (None, False)
    lines = lineup(summary, rows, params, quality, front if front is not None else pd.Series(dtype=bool), _prices(runs))
    return TargetView(quality, front, priced, lines, front_sentence(lines, priced))


def _prices(runs: Sequence[RunData]) -> dict[tuple[str, str], Price | None]:
    """(run label, target) → price, from each run's manifest."""
    return {(r.label, name): price for r in runs for name, price in prices_from_manifest(r.manifest).items()}


def _latency_first(metrics: list[Metric]) -> list[Metric]:
    """Quality first, then latency with completion tokens beside it (they explain it), then the rest."""
    order = ["latency_p50", "completion_tokens_mean", "ttft_p50", "tpot_p50", "tokens_per_s"]
    quality = [m for m in metrics if m.column.endswith("_mean") and m.lo and m.column not in
               ("completion_tokens_mean", "entropy_mean", "logprob_mean", "itl_mean")]
    speed = sorted([m for m in metrics if m.column in order], key=lambda m: order.index(m.column))
    rest = [m for m in metrics if m not in quality and m not in speed]
    return quality + speed + rest


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


def build_report(run_dirs: Sequence[str | RunPath], out_dir: str | Path, options: ReportOptions | None = None) -> Report:
    """Load the runs, summarise, draw, and write PNGs, index.html, report.md and summary.csv."""
    options = options or ReportOptions()
    out = Path(out_dir)
    _check_out(out)
    runs = load_runs(list(run_dirs))
    scorers = scorers_for(runs, options.scoring, options.allow_scorers)
    rows = combined_rows(runs)
    if "target" in rows.columns:  # rows of a run without the column belong to its one target
        rows = rows.assign(target=target_series(rows))
    scores = score_frame(rows, scorers)
    summary = summarize(rows, scorers, scores=scores)
    params = swept_params(rows)
    metrics = _latency_first(chosen_metrics(summary, scorers, options.metrics))
    shown, constant = split_constant(summary, metrics) if len(summary) > 1 else (metrics, [])
    qualities = [m for m in quality_metrics(summary, scorers) if m in shown or len(summary) == 1]
    quality = qualities[0] if qualities else None
    best = best_tradeoff(summary, quality.column, "latency_p50") if quality is not None else pd.Series(dtype=object)
    head = build_headline(summary, rows, params, quality, best, shown, constant)
    table = summary
    if tail_everywhere(summary) and any(m.column == "entropy_mean" for m in shown + constant):
        table = summary.assign(_tail_everywhere=True)  # one note, not "(tail)" in every cell
        head = replace(head, constant=(head.constant + " " if head.constant else "") + TAIL_NOTE)
    targets = _target_view(summary, rows, params, scorers, runs)
    figures = _draw(summary, params, shown, quality, best, targets)
    # several runs: wide tables name them "run 1", "run 2" (as the figures do), with a legend
    labels = run_labels([r.label for r in runs])
    legend = run_legend(labels)
    table = table.assign(run_id=table["run_id"].map(lambda run: labels.get(run, run)))
    lines, sentence = (targets.lines, targets.sentence) if targets else ([], "")
    lines = [replace(line, run=labels.get(line.run, line.run)) for line in lines]
    target_quality = targets.quality if targets else None
    info = [{"short": labels.get(r.label, ""), **_run_info(r)} for r in runs]
    title = "harness report: " + ", ".join(r.label for r in runs)
    _make_out(out)
    report = Report(out_dir=out, summary=summary)
    for fig in figures:
        (out / fig.name).write_bytes(fig.png)
        report.files.append(out / fig.name)
    body = [
        html_out.headline_section(head),
        html_out.targets_section(lines, sentence, target_quality, legend),
        html_out.figures_section("Figures", figures),
        html_out.summary_section(table, params, shown, set(best.tolist()), legend),
        html_out.samples_section(summary, _samples(rows, scores, options.samples_per_cell), params, quality),
        html_out.runs_section(info),
    ]
    markdown = md_out.render(title, info, table, params, shown, head, figures, lines, sentence, target_quality, legend)
    profiles = [prof for r in runs for prof in endpoint.load_profiles(r.path, labels.get(r.label, r.label))]
    if profiles:
        body.insert(1, endpoint.html_section(profiles, params, legend))
        markdown += "\n" + endpoint.markdown_section(profiles, params, legend)
    whatif = whatif_for_runs([(r.path, labels.get(r.label, r.label)) for r in runs]) if options.whatif else None
    if whatif is not None:
        body.insert(-1, counterfactual.html_section(whatif, legend))
        markdown += "\n" + counterfactual.markdown_section(whatif, legend)
    files = {"index.html": html_out.page(title, body), "report.md": markdown}
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
        report.files.append(out / name)
    csv_safe_frame(summary).to_csv(out / "summary.csv", index=False)
    report.files.append(out / "summary.csv")
    log.info("report written to %s (%d files)", out, len(report.files))
    return report


__all__ = ["Report", "ReportOptions", "build_report", "scorers_for"]
