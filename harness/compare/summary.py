"""Text renderings of a Comparison: Markdown (a CI step summary) and a plain terminal table.

Every string that did not come from harness itself (run ids, model names, metric names,
point labels) is escaped before it is placed in Markdown.
"""

from __future__ import annotations

import html
import math

from harness.textsafe import visible_controls

from .result import ALL_POINTS, CellResult, Comparison, MetricSummary

_ICON = {"regressed": "❌", "improved": "✅", "no change": "➖", "inconclusive": "❔"}


def fmt(value: float) -> str:
    """Four significant digits; ``–`` for NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4g}"


def fmt_diff(value: float) -> str:
    """Signed, four significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.4g}"


def md(text: object) -> str:
    """Escape text for a Markdown table cell (HTML, pipes, backticks, emphasis, newlines)."""
    escaped = html.escape(visible_controls(str(text)), quote=True)
    for char in "\\`*_[]|#":
        escaped = escaped.replace(char, "\\" + char)
    return " ".join(escaped.split())


def headline(comparison: Comparison) -> str:
    """One line: pass or fail and why."""
    if not comparison.failed:
        return "PASS: no regression"
    parts = [f"{len(comparison.regressions)} regressed cell(s)"] if comparison.regressions else []
    parts += [f"{c.name} {fmt(c.value)} > {fmt(c.limit)}" for c in comparison.ceilings if not c.passed]
    if not parts:
        parts = ["inconclusive gated metric(s) (--fail-on-inconclusive)"]
    return "FAIL: " + ", ".join(parts)


def summary_cell(comparison: Comparison, metric: str) -> CellResult | None:
    """The cell that decides a metric's verdict (`MetricSummary.point`): its numbers are the
    ones shown beside the verdict, in the terminal and in Markdown alike."""
    summary = next((m for m in comparison.metrics if m.metric == metric), None)
    cells = [c for c in comparison.cells if c.metric == metric]
    point = summary.point if summary is not None else ALL_POINTS
    chosen = [c for c in cells if c.point == point]
    return chosen[0] if chosen else (cells[0] if cells else None)


def _cell_name(cell: CellResult) -> str:
    return "all points" if cell.point == ALL_POINTS else cell.label


_METRIC_HEAD = (
    "| metric | verdict | gated | decided by | base | candidate | Δ | CI | p worse (adj.) | p better (adj.) |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def _metric_row(comparison: Comparison, m: MetricSummary) -> str:
    cell = summary_cell(comparison, m.metric)
    if cell is None:
        return f"| {md(m.metric)} | {_ICON[m.verdict]} {m.verdict} | {'yes' if m.gated else 'no'} | | | | | | | |"
    t = cell.test
    direction = "↑" if m.higher_is_better else "↓"
    return (
        f"| {md(m.metric)} {direction} | {_ICON[m.verdict]} {m.verdict} | {'yes' if m.gated else 'no'} "
        f"| {md(_cell_name(cell))} | {fmt(t.base)} | {fmt(t.cand)} | {fmt_diff(t.diff)} "
        f"| [{fmt_diff(t.ci_low)}, {fmt_diff(t.ci_high)}] | {fmt(cell.p_worse)} | {fmt(cell.p_better)} |"
    )


def _cell_row(cell: CellResult) -> str:
    t = cell.test
    return (
        f"| {md(cell.metric)} | {md(cell.label)} | {_ICON[cell.verdict]} {cell.verdict} | {fmt(t.base)} "
        f"| {fmt(t.cand)} | {fmt_diff(t.diff)} | [{fmt_diff(t.ci_low)}, {fmt_diff(t.ci_high)}] "
        f"| {fmt(cell.p_worse)} | {fmt(cell.tolerance)} | {t.n_prompts} |"
    )


_CELL_HEAD = (
    "| metric | point | verdict | base | candidate | Δ | CI | p worse (adj.) | allowed | prompts |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def render_markdown(comparison: Comparison) -> str:
    """A summary fit for ``$GITHUB_STEP_SUMMARY``."""
    c, o = comparison, comparison.options
    ok = "✅" if not c.failed else "❌"
    lines = [
        f"## {ok} harness compare — {md(headline(c))}",
        "",
        (f"Base **{md(c.base.label)}** ({md(c.base.model)}) → candidate **{md(c.cand.label)}** "
         f"({md(c.cand.model)}): {c.n_pairs} pairs over {len(c.shared_points)} shared point(s); "
         f"{round((1 - o.alpha) * 100)}% intervals, one-sided tests at α = {o.alpha:g}, "
         f"{'Holm' if o.correction == 'holm' else 'Benjamini–Hochberg'} correction across cells."),
        "",
        ("Each line's verdict and numbers come from the cell named under *decided by*. p worse / p better: "
         "one-sided p-values that the candidate is worse / better, adjusted across cells."),
        "",
        _METRIC_HEAD,
        *(_metric_row(c, m) for m in c.metrics),
    ]
    lines += _ceiling_lines(c) + _regression_lines(c) + _detail_lines(c) + _leftover_lines(c)
    return "\n".join(lines) + "\n"


def _ceiling_lines(c: Comparison) -> list[str]:
    return [
        "",
        *(
            f"- {'✅' if k.passed else '❌'} candidate {md(k.name)} {fmt(k.value)} "
            f"(limit {fmt(k.limit)}, {k.rows} rows)"
            for k in c.ceilings
        ),
    ] if c.ceilings else []


def _regression_lines(c: Comparison) -> list[str]:
    if not c.regressions:
        return []
    return ["", "### Regressions", "", _CELL_HEAD, *(_cell_row(r) for r in c.regressions)]


def _detail_lines(c: Comparison) -> list[str]:
    gated = [x for x in c.cells if x.gated]
    return [
        "", "<details><summary>All gated cells</summary>", "", _CELL_HEAD,
        *(_cell_row(x) for x in gated), "", "</details>",
    ]


def _leftover_lines(c: Comparison) -> list[str]:
    lines: list[str] = []
    if c.only_base or c.only_cand:
        lines += ["", "### Not compared (points in one run only)", ""]
        lines += [f"- base only: {md(_label(p))}" for p in c.only_base]
        lines += [f"- candidate only: {md(_label(p))}" for p in c.only_cand]
    if c.unpaired_base or c.unpaired_cand:
        lines += ["", f"Unpaired rows left out: {c.unpaired_base} in base, {c.unpaired_cand} in candidate."]
    lines += [f"\n> {md(n)}" for n in c.notes]
    return lines


def _label(point: str) -> str:
    from .pairing import point_label

    return point_label(point)


def render_text(comparison: Comparison) -> str:
    """A compact plain-text table for the terminal."""
    c = comparison
    rows = [("metric", "verdict", "gated", "decided by", "base", "cand", "diff", "CI", "p_worse(adj)",
             "p_better(adj)")]
    for m in c.metrics:
        cell = summary_cell(c, m.metric)
        t = cell.test if cell else None
        rows.append((
            m.metric, m.verdict, "yes" if m.gated else "no", _cell_name(cell) if cell else "",
            fmt(t.base) if t else "", fmt(t.cand) if t else "", fmt_diff(t.diff) if t else "",
            f"[{fmt_diff(t.ci_low)}, {fmt_diff(t.ci_high)}]" if t else "", fmt(cell.p_worse) if cell else "",
            fmt(cell.p_better) if cell else "",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    table = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    out = [
        (f"base {c.base.label} ({c.base.model}) vs candidate {c.cand.label} ({c.cand.model}): "
         f"{c.n_pairs} pairs, {len(c.shared_points)} shared point(s)"),
        *table,
    ]
    out += [
        f"REGRESSED {r.metric} @ {r.label}: {fmt(r.test.base)} -> {fmt(r.test.cand)} "
        f"(diff {fmt_diff(r.test.diff)}, p_worse(adj) {fmt(r.p_worse)})"
        for r in c.regressions
    ]
    out += [f"{k.name}: {fmt(k.value)} (limit {fmt(k.limit)}) {'ok' if k.passed else 'EXCEEDED'}" for k in c.ceilings]
    if c.only_base or c.only_cand:
        out.append(f"not compared: {len(c.only_base)} point(s) only in base, {len(c.only_cand)} only in candidate")
    if c.unpaired_base or c.unpaired_cand:
        out.append(f"unpaired rows: {c.unpaired_base} base, {c.unpaired_cand} candidate")
    out += list(c.notes)
    out.append(headline(c))
    return "\n".join(_printable(line) for line in out) + "\n"


def _printable(text: str) -> str:
    """Drop control characters (terminal escapes) from a line."""
    return "".join(ch for ch in text if ch.isprintable() or ch == "\t")


__all__ = ["fmt", "fmt_diff", "headline", "md", "render_markdown", "render_text", "summary_cell"]
