"""Figures (matplotlib, Agg, object API — no pyplot state): each returns PNG bytes with a title.

Two figures at most: small multiples of every varying metric against the main swept axis, and
quality against latency. Several runs share every axis.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from harness.report.shape import (
    Metric,
    axis_groups,
    axis_label,
    cell_label,
    fmt_metric,
    fmt_param,
    fmt_value,
    locked,
    sorted_values,
    varying,
)

DPI = 110
MAX_LINES = 8
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
    """PNG bytes. The layout is fixed in inches (no constrained layout, no tight bounding box:
    each costs a full extra draw), and zlib level 1 keeps encoding cheap."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, pil_kwargs={"compress_level": 1})
    return buf.getvalue()


def _short(text: str, limit: int = _TITLE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Margins:
    """Space around and between panels, in inches."""

    left: float = 0.55
    right: float = 0.15
    top: float = 0.35
    bottom: float = 0.55
    wspace: float = 0.45
    hspace: float = 0.55


def _grid(nrows: int, ncols: int, width: float, height: float, margins: Margins | None = None,
          **kw: Any) -> tuple[Figure, np.ndarray]:
    """A figure of nrows × ncols panels of width × height inches each, with fixed margins."""
    m = margins or Margins()
    fig_w = m.left + m.right + ncols * width + (ncols - 1) * m.wspace
    fig_h = m.top + m.bottom + nrows * height + (nrows - 1) * m.hspace
    fig = Figure(figsize=(fig_w, fig_h))
    axes = np.asarray(fig.subplots(nrows, ncols, squeeze=False, gridspec_kw={
        "left": m.left / fig_w, "right": 1 - m.right / fig_w, "bottom": m.bottom / fig_h, "top": 1 - m.top / fig_h,
        "wspace": m.wspace / width, "hspace": m.hspace / height}, **kw))
    return fig, axes


def _runs(summary: pd.DataFrame) -> list[str]:
    return list(pd.unique(summary["run_id"]))


def blocks(summary: pd.DataFrame, facet: str | None = None) -> list[tuple[str, pd.DataFrame]]:
    """(title, cells) per block of panels: one per run, or per (run, `facet` value) — e.g. one per
    target, side by side on the same axes."""
    runs = _runs(summary)
    out: list[tuple[str, pd.DataFrame]] = []
    for r_i, run in enumerate(runs):
        part = summary[summary["run_id"] == run]
        run_title = f"run {r_i + 1}: {_short(run, 30)}"
        if facet is None or facet not in part:
            out.append((run_title, part))
            continue
        for value in sorted_values(part[facet]):
            title = f"{facet} {_short(fmt_value(value), 30)}"
            out.append((f"{title} ({run_title})" if len(runs) > 1 else title,
                        part[part[facet].map(fmt_value) == fmt_value(value)]))
    return out


def _numeric_positions(values: Sequence[Any]) -> tuple[np.ndarray, bool]:
    """Real x positions when every value is a number, else 0..n-1."""
    try:
        pos = np.array([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        return np.arange(len(values), dtype=np.float64), False
    if np.isnan(pos).any():
        return np.arange(len(values), dtype=np.float64), False
    return pos, True


# --- small multiples: every varying metric against the main swept axis -------------------------


PANEL_COLS = 4


def main_axis(summary: pd.DataFrame, params: list[str]) -> list[str] | None:
    """The axis group drawn along x: the one with the most values (zipped parameters share it)."""
    groups = axis_groups(summary, params)
    if not groups:
        return None
    return max(groups, key=lambda g: summary[g[0]].map(fmt_value).nunique())


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
    keys = part[others].apply(lambda r: ", ".join(f"{p}={fmt_param(p, v)}" for p, v in zip(others, r)), axis=1)
    order = sorted(dict.fromkeys(keys), key=lambda k: list(keys).index(k))
    return [(k, part[keys == k]) for k in order[:MAX_LINES]], note


def _draw_lines(ax: Any, part: pd.DataFrame, params: list[str], x: str, metric: Metric,
                where: dict[str, float], colours: dict[str, str]) -> str:
    groups, note = _line_groups(part, params, x)
    for label, rows in groups:
        rows = rows.assign(_x=rows[x].map(lambda v: where[fmt_value(v)])).groupby("_x").mean(numeric_only=True)
        colour = colours.setdefault(label, f"C{len(colours) % 10}")
        ax.plot(rows.index, rows[metric.column], marker="o", ms=3, lw=1.3, color=colour, label=label)
        if metric.lo and metric.hi:
            ax.fill_between(rows.index, rows[metric.lo], rows[metric.hi], color=colour, alpha=0.15, lw=0)
    return note


def _tick_labels(x: str, xs: list[Any], panel_px: float = 250.0) -> tuple[int, list[str], bool]:
    """(step, labels shown, slanted): at most ~6 labels; long ones (target or model names)
    shortened and slanted so that no two overlap."""
    labels = [fmt_param(x, v) for v in xs]
    step = max(1, math.ceil(len(xs) / 6))
    shown = labels[::step]
    room = panel_px / max(1, len(shown)) / 4.5  # characters that fit per label at 7 pt
    if max(len(lb) for lb in shown) > room:
        return step, [_short(lb, 14) for lb in shown], True
    return step, shown, False


def _x_ticks(ax: Any, pos: np.ndarray, ticks: tuple[int, list[str], bool]) -> None:
    step, shown, slanted = ticks
    if slanted:
        ax.set_xticks(pos[::step], shown, fontsize=6.5, rotation=30, ha="right", rotation_mode="anchor")
    else:
        ax.set_xticks(pos[::step], shown, fontsize=7)
    ax.tick_params(axis="y", labelsize=7)


def small_multiples(summary: pd.DataFrame, params: list[str], metrics: list[Metric],
                    facet: str | None = None) -> FigureFile | None:
    """One small panel per metric against the main swept axis; one line per setting of the other
    axes, shaded 95% interval; several runs (or `facet` values, e.g. targets): one block of panels
    each, side by side, same axes throughout."""
    group = main_axis(summary, params)
    if group is None or not metrics:
        return None
    x = group[0]
    parts = blocks(summary, facet)
    runs = [title for title, _ in parts]
    # several runs: a metric's panels sit side by side, one per run (run 1, run 2, …)
    per_row = max(1, PANEL_COLS // len(runs)) if len(runs) <= PANEL_COLS else 1
    ncols = min(per_row, len(metrics)) * len(runs)
    nrows = math.ceil(len(metrics) / max(1, ncols // len(runs)))
    legend_rows = math.ceil(min(MAX_LINES, max(1, part_lines(summary, params, x))) / 4)
    xs = sorted_values(summary[x])
    ticks = _tick_labels(x, xs)
    slant = 0.45 if ticks[2] else 0.0
    margins = Margins(top=0.35 + (0.22 * legend_rows if part_lines(summary, params, x) > 1 else 0),
                      bottom=0.6 + slant, left=0.55 + slant, hspace=(0.55 if len(runs) == 1 else 0.7) + slant)
    fig, axes = _grid(nrows, ncols, 2.55, 1.75, margins)
    pos, _ = _numeric_positions(xs)
    if len(pos) > 1 and not _evenly_readable(pos):
        pos = np.arange(len(xs), dtype=np.float64)
    where = {fmt_value(v): p for v, p in zip(xs, pos)}
    colours: dict[str, str] = {}
    notes: set[str] = set()
    panels: dict[str, list[Any]] = {}
    log_columns = {m.column for m in metrics if m.column in LOG_SCALE and _spans_decades(summary, m)}
    for k, metric in enumerate(metrics):
        for r_i, (title, part) in enumerate(parts):
            slot = k * len(runs) + r_i
            ax = axes[slot // ncols, slot % ncols]
            notes.add(_draw_lines(ax, part, params, x, metric, where, colours))
            if len(runs) == 1:
                ax.set_title(_short(metric.label, 42), fontsize=8)
            else:
                ax.set_title(f"{_short(metric.label, 42)}\n{title}", fontsize=7.5)
            _x_ticks(ax, pos, ticks)
            if metric.column in log_columns:
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_metric(v)))
            else:  # tiny or huge values (seconds per token) as short labels × 10^k
                ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4), useMathText=True)
                ax.yaxis.get_offset_text().set_fontsize(7)
            ax.grid(alpha=0.3)
            panels.setdefault(metric.column, []).append(ax)
    for slot in range(len(metrics) * len(runs), nrows * ncols):
        axes[slot // ncols, slot % ncols].set_visible(False)
    pad = 0.05 * (float(pos.max() - pos.min()) or 1.0)
    for column, group_axes in panels.items():  # one x and y range per metric across runs
        low = min(a.get_ylim()[0] for a in group_axes)
        if (summary[column].dropna() >= 0).all() and column not in log_columns:  # no negative axis
            low = max(low, 0.0)
        high = max(a.get_ylim()[1] for a in group_axes)
        for a in group_axes:
            a.set_ylim(low, high)
            a.set_xlim(float(pos.min()) - pad, float(pos.max()) + pad)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if len(colours) > 1:
        by_label = dict(zip(labels, handles))
        for ax in axes.flat:
            for h, lb in zip(*ax.get_legend_handles_labels()):
                by_label.setdefault(lb, h)
        fig.legend(list(by_label.values()), [_short(lb, 40) for lb in by_label], loc="upper center",
                   fontsize=8, frameon=False, ncols=min(4, len(by_label)), bbox_to_anchor=(0.5, 1.0))
    fixed = "".join(n for n in notes if n)
    fig.supxlabel(axis_label(group) + fixed, fontsize=9, y=0.12 / fig.get_figheight())
    caption = (f"Each panel one metric against {x}; one line per setting of the other swept parameters{fixed}; "
               "shaded: 95% interval (prompt-clustered bootstrap)."
               + (f" A metric's panels sit side by side, one per {'target' if facet else 'run'}, on the same axes."
                  if len(runs) > 1 else ""))
    return FigureFile(file_name("panels", x), f"metrics vs {x}", caption, _render(fig))


LOG_SCALE = ("perplexity",)


def _spans_decades(summary: pd.DataFrame, metric: Metric) -> bool:
    """True when a positive metric's values (and intervals) span more than 30×: draw it on a log axis."""
    cols = [c for c in (metric.column, metric.lo, metric.hi) if c and c in summary]
    values = summary[cols].to_numpy(dtype=float).ravel()
    values = values[np.isfinite(values)]
    return bool(len(values)) and values.min() > 0 and values.max() / values.min() > 30


def part_lines(summary: pd.DataFrame, params: list[str], x: str) -> int:
    """How many lines a panel of the first run holds (for the legend's room)."""
    first = summary[summary["run_id"] == _runs(summary)[0]]
    return len(_line_groups(first, params, x)[0])


def _evenly_readable(pos: np.ndarray) -> bool:
    """False when real positions would crowd labels (smallest gap < 4% of the range)."""
    ordered = np.sort(pos)
    span = float(ordered[-1] - ordered[0])
    return span > 0 and float(np.diff(ordered).min()) >= 0.04 * span


# --- quality vs latency ------------------------------------------------------------------------


def _errors(part: pd.DataFrame, centre: str, lo: str | None, hi: str | None) -> np.ndarray | None:
    if not lo or not hi or lo not in part or hi not in part:
        return None
    c = part[centre].to_numpy(dtype=float)
    err = np.vstack([c - part[lo].to_numpy(dtype=float), part[hi].to_numpy(dtype=float) - c])
    return np.clip(np.nan_to_num(err), 0, None)


def pareto(summary: pd.DataFrame, params: list[str], quality: Metric, front: pd.Series, best: pd.Series) -> FigureFile:
    """Quality against median latency per cell, both with 95% intervals; the Pareto front joined;
    the best trade-off starred. Several runs: one panel each, shared axes."""
    runs = _runs(summary)
    fig, axes = _grid(1, len(runs), 4.4 if len(runs) > 1 else 5.6, 3.2, Margins(left=0.75, bottom=0.95, top=0.3),
                      sharey="row", sharex="row")
    for r_i, (ax, run) in enumerate(zip(axes[0], runs)):
        part = summary[(summary["run_id"] == run)].dropna(subset=[quality.column, "latency_p50"])
        y = part[quality.column].to_numpy(dtype=float)
        x = part["latency_p50"].to_numpy(dtype=float)
        ax.errorbar(x, y, yerr=_errors(part, quality.column, quality.lo, quality.hi),
                    xerr=_errors(part, "latency_p50", "latency_p50_lo", "latency_p50_hi"), fmt="o", ms=4,
                    color="C0", alpha=0.55, elinewidth=0.8, label="cell (95% intervals)")
        on_front = part[front.reindex(part.index).fillna(False).astype(bool)].sort_values("latency_p50")
        if len(on_front):
            ax.step(on_front["latency_p50"], on_front[quality.column], where="post", color="C3", lw=1.2,
                    marker="o", ms=6, mfc="none", label="Pareto front")
        if run in best.index and best[run] in part.index:
            b = part.loc[best[run]]
            ax.plot([b["latency_p50"]], [b[quality.column]], marker="*", ms=14, color="C1", ls="none",
                    label="best trade-off: " + _short(cell_label(b, params), 40) if len(runs) == 1 else "best trade-off")
        ax.set_xlabel("latency p50 (s)", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_metric(v)))
        ax.tick_params(labelsize=8)
        if len(runs) > 1:  # numbered as in the panels and the tables
            ax.set_title(f"run {r_i + 1}: {_short(run)}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(quality.label, fontsize=9)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", fontsize=8, frameon=False, ncols=min(3, len(labels)))
    caption = ("Each point a cell with its 95% intervals; red: cells no other cell beats on both quality and "
               "latency; star: the best trade-off (see the headline for the rule).")
    return FigureFile("pareto.png", f"{quality.label} vs latency", caption, _render(fig))


def target_tradeoffs(summary: pd.DataFrame, quality: Metric, front: pd.Series, cost: str | None) -> FigureFile:
    """Every cell of every target: quality against median latency and (with prices) against cost
    per request; one colour per target, 95% intervals; ringed: cells on the front across targets
    (no other cell is as good on quality, latency and cost and better on one). One row per run."""
    runs = _runs(summary)
    axes_per_run = 2 if cost else 1
    fig, axes = _grid(len(runs), axes_per_run, 4.4, 3.0, Margins(left=0.75, bottom=0.95, top=0.35, hspace=0.8),
                      sharey="all", sharex="col")  # every run on the same axes
    names = [fmt_value(v) for v in sorted_values(summary["target"])]
    colours = {n: f"C{i % 10}" for i, n in enumerate(names)}
    xs: list[tuple[str, str, str | None, str | None]] = [("latency_p50", "latency p50 (s)", "latency_p50_lo",
                                                           "latency_p50_hi")]
    if cost:
        xs.append((cost, "cost per request", None, None))
    for r_i, run in enumerate(runs):
        part = summary[summary["run_id"] == run]
        for a_i, (col, label, lo, hi) in enumerate(xs):
            ax = axes[r_i, a_i]
            for name in names:
                cells = part[part["target"].map(fmt_value) == name].dropna(subset=[quality.column, col])
                if not len(cells):
                    continue
                ax.errorbar(cells[col].to_numpy(dtype=float), cells[quality.column].to_numpy(dtype=float),
                            yerr=_errors(cells, quality.column, quality.lo, quality.hi), xerr=_errors(cells, col, lo, hi),
                            fmt="o", ms=4, color=colours[name], alpha=0.7, elinewidth=0.8, label=_short(name, 30))
            on = part[front.reindex(part.index).fillna(False).astype(bool)].dropna(subset=[quality.column, col])
            if len(on):
                ax.plot(on[col], on[quality.column], "o", ms=10, mfc="none", mec="C3", mew=1.3,
                        label="on the front (all targets)")
            ax.set_xlabel(label, fontsize=9)
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_metric(v)))
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
            if len(runs) > 1:
                ax.set_title(f"run {r_i + 1}: {_short(run)}", fontsize=9)
        axes[r_i, 0].set_ylabel(quality.label, fontsize=9)
    by_label: dict[str, Any] = {}
    for ax in axes.flat:
        for h, lb in zip(*ax.get_legend_handles_labels()):
            by_label.setdefault(lb, h)
    fig.legend(list(by_label.values()), list(by_label), loc="lower center", fontsize=8, frameon=False,
               ncols=min(4, len(by_label)))
    caption = ("Each point a cell (target × setting) with its 95% intervals, one colour per target; ringed: "
               "cells no other cell of the run matches or beats on quality, latency"
               + (" and cost per request" if cost else "") + " at once (the Pareto front across targets).")
    return FigureFile("targets.png", f"targets: {quality.label} vs latency" + (" and cost" if cost else ""),
                      caption, _render(fig))


__all__ = ["FigureFile", "blocks", "main_axis", "pareto", "small_multiples", "target_tradeoffs"]
