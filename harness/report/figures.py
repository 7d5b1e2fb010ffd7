"""Figures (matplotlib, Agg, object API — no pyplot state): each returns PNG bytes with a title.

Runs are drawn side by side: one column of subplots per run, shared colour scales and axes.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from harness.report.shape import (
    Metric,
    axis_groups,
    axis_label,
    cell_label,
    fmt_metric,
    fmt_value,
    locked,
    pivot,
    sorted_values,
    varying,
)

DPI = 110
MAX_LINES = 8
MAX_BOXES = 30
MAX_ANNOTATED = 12
_TITLE_CHARS = 48


@dataclass(frozen=True)
class FigureFile:
    """A rendered figure: file name (PNG), title and a one-line caption."""

    name: str
    title: str
    caption: str
    png: bytes


def file_name(*parts: str) -> str:
    """A safe PNG file name from parts that may come from the data (parameter names)."""
    stem = "_".join(re.sub(r"[^A-Za-z0-9_-]+", "-", p).strip("-") or "x" for p in parts)
    return f"{stem[:150]}.png"


def _render(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _short(text: str, limit: int = _TITLE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _grid(nrows: int, ncols: int, width: float, height: float, **kw: Any) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = np.asarray(fig.subplots(nrows, ncols, squeeze=False, **kw))
    return fig, axes


def _runs(summary: pd.DataFrame) -> list[str]:
    return list(pd.unique(summary["run_id"]))


def _numeric_positions(values: Sequence[Any]) -> tuple[np.ndarray, bool]:
    """Real x positions when every value is a number, else 0..n-1."""
    try:
        pos = np.array([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        return np.arange(len(values), dtype=np.float64), False
    if np.isnan(pos).any():
        return np.arange(len(values), dtype=np.float64), False
    return pos, True


# --- heatmaps -----------------------------------------------------------------------------------


def _annotate(ax: Any, matrix: np.ndarray, norm: Any, cmap: Any) -> None:
    if max(matrix.shape) > MAX_ANNOTATED:
        return
    for (i, j), val in np.ndenumerate(matrix):
        if np.isnan(val):
            ax.text(j, i, "not run", ha="center", va="center", fontsize=7.5, color="0.45", style="italic")
            continue
        r, g, b, _ = cmap(norm(val))
        colour = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
        ax.text(j, i, fmt_metric(val), ha="center", va="center", fontsize=8, color=colour)


def heatmap(summary: pd.DataFrame, params: list[str], x: str, y: str, metric: Metric) -> FigureFile:
    """`metric` over parameters x and y, one panel per run, one colour scale."""
    runs = _runs(summary)
    fig, axes = _grid(1, len(runs), 4.6, 3.6)
    values = summary[metric.column].astype(float)
    vmin, vmax = np.nanmin(values), np.nanmax(values)
    if vmin == vmax:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    groups = {g[0]: g for g in axis_groups(summary, params)}
    shown = set(groups.get(x, [x]) + groups.get(y, [y]))
    others = [p for p in varying(summary, params) if p not in shown]
    image = None
    for ax, run in zip(axes[0], runs):
        xs, ys, matrix = pivot(summary[summary["run_id"] == run], x, y, metric.column)
        image = ax.imshow(matrix, aspect="auto", origin="lower", cmap="viridis", vmin=vmin, vmax=vmax)
        _annotate(ax, matrix, image.norm, image.cmap)
        ax.set_xticks(range(len(xs)), [fmt_value(v) for v in xs], rotation=45 if len(xs) > 6 else 0)
        ax.set_yticks(range(len(ys)), [fmt_value(v) for v in ys])
        xl, yl = axis_label(groups.get(x, [x])), axis_label(groups.get(y, [y]))
        ax.set_xlabel(xl, fontsize=10 if len(xl) < 28 else 8)
        ax.set_ylabel(yl, fontsize=10 if len(yl) < 28 else 8)
        ax.set_title(_short(run), fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=list(axes[0]), label=metric.label, shrink=0.9)
    note = f" (mean over {', '.join(others)})" if others else ""
    fig.suptitle(_short(f"{metric.label} by {x} and {y}{note}", 90), fontsize=10)
    caption = f"Heatmap of {metric.label} over {x} (x) and {y} (y){note}; one panel per run, shared colour scale."
    return FigureFile(file_name("heatmap", metric.column, x, y), f"{metric.label}: {x} × {y}", caption, _render(fig))


# --- lines with interval bands -----------------------------------------------------------------


def _line_groups(part: pd.DataFrame, params: list[str], x: str) -> tuple[list[tuple[str, pd.DataFrame]], str]:
    """(label, rows) per line, and a note on what was held fixed."""
    others = [p for p in varying(part, params) if p != x and not locked(part, x, p)]
    note = ""
    if others:
        combos = part[others].apply(lambda r: tuple(fmt_value(v) for v in r), axis=1)
        if combos.nunique() > MAX_LINES:
            hue, fixed = others[0], others[1:]
            first = {p: fmt_value(sorted_values(part[p])[0]) for p in fixed}
            mask = np.ones(len(part), dtype=bool)
            for p, v in first.items():
                mask &= (part[p].map(fmt_value) == v).to_numpy()
            part, others = part[mask], [hue]
            note = " (" + ", ".join(f"{p}={v}" for p, v in first.items()) + ")"
    if not others:
        return [("all", part)], note
    keys = part[others].apply(lambda r: ", ".join(f"{p}={fmt_value(v)}" for p, v in zip(others, r)), axis=1)
    order = list(dict.fromkeys(keys))
    return [(k, part[keys == k]) for k in order[:MAX_LINES]], note


def _draw_lines(ax: Any, part: pd.DataFrame, params: list[str], x: str, metric: Metric) -> tuple[str, bool]:
    xs = sorted_values(part[x])
    pos, numeric = _numeric_positions(xs)
    where = {fmt_value(v): p for v, p in zip(xs, pos)}
    groups, note = _line_groups(part, params, x)
    for i, (label, rows) in enumerate(groups):
        rows = rows.assign(_x=rows[x].map(lambda v: where[fmt_value(v)])).groupby("_x").mean(numeric_only=True)
        colour = f"C{i % 10}"
        ax.plot(rows.index, rows[metric.column], marker="o", ms=3.5, color=colour, label=label)
        if metric.lo and metric.hi:
            ax.fill_between(rows.index, rows[metric.lo], rows[metric.hi], color=colour, alpha=0.18, lw=0)
    ax.set_xticks(pos, [fmt_value(v) for v in xs], rotation=45 if len(xs) > 8 else 0)
    if numeric and len(xs) > 8:
        ax.set_xticks(pos[:: max(1, len(xs) // 8)], [fmt_value(v) for v in xs][:: max(1, len(xs) // 8)])
    ax.grid(alpha=0.3)
    return note, len(groups) > 1


def _line_layout(n_metrics: int, n_runs: int) -> tuple[int, int]:
    """(rows, cols): metrics down and runs across; a single run wraps its metrics in 3 columns."""
    if n_runs == 1:
        cols = min(3, n_metrics)
        return math.ceil(n_metrics / cols), cols
    return n_metrics, n_runs


def lines(summary: pd.DataFrame, params: list[str], x: str, metrics: list[Metric]) -> FigureFile:
    """Each metric against parameter x; one line per value of the other parameters, bands = 95% CI."""
    runs = _runs(summary)
    nrows, ncols = _line_layout(len(metrics), len(runs))
    group = next((g for g in axis_groups(summary, params) if g[0] == x), [x])
    xlabel = axis_label(group)
    fig, axes = _grid(nrows, ncols, 4.0, 2.9)
    single = len(runs) == 1
    notes, legend_ax = set(), None
    panels: dict[str, list[Any]] = {}
    for m_i, metric in enumerate(metrics):
        for r_i, run in enumerate(runs):
            ax = axes.flat[m_i] if single else axes[m_i, r_i]
            note, has_legend = _draw_lines(ax, summary[summary["run_id"] == run], params, x, metric)
            notes.add(note)
            legend_ax = legend_ax or (ax if has_legend else None)
            ax.set_xlabel(xlabel, fontsize=8)
            if single:
                ax.set_title(_short(metric.label, 40), fontsize=9)
            else:
                ax.set_ylabel(_short(metric.label, 28), fontsize=8)
                if m_i == 0:
                    ax.set_title(_short(run), fontsize=9)
            panels.setdefault(metric.column, []).append(ax)
    for ax in axes.flat[len(metrics):] if single else []:
        ax.set_visible(False)
    for group in panels.values():  # same y range across runs, for comparison
        low = min(a.get_ylim()[0] for a in group)
        high = max(a.get_ylim()[1] for a in group)
        for a in group:
            a.set_ylim(low, high)
    if legend_ax is not None:
        handles, labels = legend_ax.get_legend_handles_labels()
        fig.legend(handles, [_short(lb, 40) for lb in labels], loc="outside lower center", fontsize=8,
                   frameon=False, ncols=min(4, len(labels)))
    fixed = "".join(n for n in notes if n)
    title = f"Metrics vs {x}{fixed}" + (f" — {runs[0]}" if single else "")
    fig.suptitle(_short(title, 100), fontsize=10)
    caption = f"Each metric against {x}; one line per setting of the other swept parameters{fixed}; shaded: 95% bootstrap interval where defined."
    return FigureFile(file_name("lines", x), f"metrics vs {x}", caption, _render(fig))


# --- latency distributions ---------------------------------------------------------------------


def latency(rows: pd.DataFrame, summary: pd.DataFrame, params: list[str]) -> FigureFile:
    """Latency of ok requests per cell (or per value of the first parameter when cells are many)."""
    runs = _runs(summary)
    ok = rows[(rows["status"] == "ok") & rows["latency_s"].notna()]
    groups_per_run: list[tuple[list[str], list[np.ndarray]]] = []
    by = "cell"
    for run in runs:
        cells = summary[summary["run_id"] == run]
        part = ok[ok["run_id"] == run]
        if len(cells) <= MAX_BOXES or not varying(cells, params):
            by_cell = dict(tuple(part.groupby("cell_id", sort=False)["latency_s"]))
            labels = [cell_label(r, params) for _, r in cells.iterrows()]
            data = [by_cell[c].to_numpy() if c in by_cell else np.array([]) for c in cells["cell_id"]]
        else:
            first = varying(cells, params)[0]
            by = first
            keys = part[first].map(fmt_value)
            values = [fmt_value(v) for v in sorted_values(cells[first])]
            labels = [f"{first}={v}" for v in values]
            data = [part["latency_s"][keys == v].to_numpy() for v in values]
        groups_per_run.append((labels, data))
    height = max(2.2, 0.32 * max(len(g[0]) for g in groups_per_run) + 1.2)
    same_rows = all(labels == groups_per_run[0][0] for labels, _ in groups_per_run)
    fig, axes = _grid(1, len(runs), 5.2, height, sharex="row", sharey="row" if same_rows else "none")
    all_values = np.concatenate([d for _, ds in groups_per_run for d in ds if len(d)] or [np.array([1.0])])
    positive = all_values[all_values > 0]
    log_scale = len(positive) > 0 and positive.max() / max(positive.min(), 1e-9) > 30
    for ax, run, (labels, data) in zip(axes[0], runs, groups_per_run):
        keep = [i for i, d in enumerate(data) if len(d)]
        if keep:
            ax.boxplot(
                [data[i] for i in keep], positions=keep, orientation="horizontal", whis=(5, 95),
                showfliers=False, widths=0.6, medianprops={"color": "C1"}, manage_ticks=False,
            )
        if log_scale:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("latency (s)")
        ax.set_title(_short(run), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    for ax, (labels, _) in zip(axes[0], groups_per_run):
        if ax is axes[0, 0] or not same_rows:
            ax.set_yticks(range(len(labels)), [_short(lb, 40) for lb in labels], fontsize=8)
            ax.set_ylim(len(labels) - 0.3, -0.7)
        else:
            ax.tick_params(labelleft=False)
    fig.suptitle("Latency of successful requests" + ("" if by == "cell" else f" by {by}"), fontsize=10)
    caption = "Box: quartiles and median; whiskers: 5th–95th percentile; ok requests only."
    return FigureFile("latency.png", "latency distributions", caption, _render(fig))


# --- quality vs latency ------------------------------------------------------------------------


def pareto(summary: pd.DataFrame, params: list[str], quality: Metric, front: pd.Series, best: pd.Series) -> FigureFile:
    """Quality against median latency per cell; the Pareto front joined; the best trade-off starred."""
    runs = _runs(summary)
    fig, axes = _grid(1, len(runs), 4.8, 3.8, sharey="row")
    for ax, run in zip(axes[0], runs):
        part = summary[(summary["run_id"] == run)].dropna(subset=[quality.column, "latency_p50"])
        y = part[quality.column].to_numpy(dtype=float)
        x = part["latency_p50"].to_numpy(dtype=float)
        if quality.lo and quality.hi and len(part):
            err = np.vstack([y - part[quality.lo].to_numpy(dtype=float), part[quality.hi].to_numpy(dtype=float) - y])
            ax.errorbar(x, y, yerr=np.clip(err, 0, None), fmt="o", ms=4, color="C0", alpha=0.55, elinewidth=0.8,
                        label="cell (95% CI)")
        else:
            ax.plot(x, y, "o", ms=4, color="C0", alpha=0.6, label="cell")
        on_front = part[front.reindex(part.index).fillna(False).astype(bool)].sort_values("latency_p50")
        if len(on_front):
            ax.step(on_front["latency_p50"], on_front[quality.column], where="post", color="C3", lw=1.2,
                    marker="o", ms=6, mfc="none", label="Pareto front")
        if run in best.index and best[run] in part.index:
            b = part.loc[best[run]]
            ax.plot([b["latency_p50"]], [b[quality.column]], marker="*", ms=14, color="C1", ls="none",
                    label="best trade-off")
            ax.annotate(_short(cell_label(b, params), 36), (b["latency_p50"], b[quality.column]),
                        xytext=(18, -30), textcoords="offset points", fontsize=8, color="black", ha="left",
                        bbox={"boxstyle": "round", "fc": "white", "ec": "C1", "alpha": 0.9},
                        arrowprops={"arrowstyle": "->", "color": "C1"})
        ax.set_xlabel("latency p50 (s)")
        ax.set_title(_short(run), fontsize=9)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(quality.label)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", fontsize=8, frameon=False, ncols=len(labels))
    fig.suptitle(f"{quality.label} vs latency", fontsize=10)
    caption = ("Each point a cell; red: cells no other cell beats on both quality and latency; "
               "star: fastest cell whose quality is within the best cell's 95% interval.")
    return FigureFile("pareto.png", "quality vs latency", caption, _render(fig))


__all__ = ["FigureFile", "heatmap", "latency", "lines", "pareto"]
