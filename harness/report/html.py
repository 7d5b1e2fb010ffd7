"""The self-contained `index.html`: inline CSS, figures as data URIs, no script, no URL.

Every string that comes from the data (model output, references, ids, error messages, even
parameter names) goes through `esc` (html.escape with quotes). Nothing from the data is placed
in an attribute other than escaped `title`/`alt` text, and there is no <script> at all: the
sample browser is plain <details> elements.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable
from typing import Any

import pandas as pd

from harness.report.figures import FigureFile
from harness.report.headline import Headline
from harness.report.lineup import TargetLine
from harness.report.shape import Metric, cell_label, flag, fmt_metric, fmt_param
from harness.textsafe import visible_controls

MAX_CHARS = 4000

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1280px;padding:1.2em;color:#1b1b1b}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:12.5px;margin:.5em 0}th,td{border:1px solid #ddd;padding:3px 4px;text-align:right;vertical-align:top}
th{background:#f4f4f4;position:sticky;top:0}td.l,th.l{text-align:left}
.scroll{overflow-x:auto;max-height:70vh}figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:12.5px}pre{white-space:pre-wrap;word-break:break-word;margin:0;font-size:12.5px;max-width:60em}
details{margin:.3em 0;border:1px solid #e4e4e4;border-radius:4px;padding:.2em .6em}summary{cursor:pointer}
.head{background:#f7f9fc;border:1px solid #dde4ee;border-radius:6px;padding:.6em 1em}.head ul{margin:.2em 0 .5em 1.2em;padding:0}
.samples td pre{max-width:28em}.iv{white-space:nowrap;display:block;font-size:11.5px}.best{background:#fff6d6}.muted{color:#777}.err{color:#a00}.nw{white-space:nowrap}.tag{font-size:11px;background:#eef;padding:0 4px;border-radius:3px}
"""


def esc(value: Any) -> str:
    """HTML-escape anything (None → empty); control characters become visible `\\xNN` text."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    return html.escape(visible_controls(str(value)), quote=True)


def _table(header: list[str], rows: Iterable[list[str]], left: int = 0, row_class: Iterable[str] | None = None) -> str:
    """A table whose cells are already-escaped HTML; the first `left` columns align left."""
    head = "".join(f'<th class="l">{h}</th>' if i < left else f"<th>{h}</th>" for i, h in enumerate(header))
    classes = list(row_class) if row_class is not None else None
    body = []
    for n, row in enumerate(rows):
        cls = f' class="{classes[n]}"' if classes and classes[n] else ""
        cells = "".join(f'<td class="l">{c}</td>' if i < left else f"<td>{c}</td>" for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def legend_html(legend: str) -> str:
    """The line under a table's heading that says which run each short label stands for."""
    return f'<p class="muted">Runs: {esc(legend)}.</p>' if legend else ""


def headline_section(head: Headline) -> str:
    """The box at the top: what was swept and what it did."""
    parts = ['<div class="head">', f"<p><b>{esc(head.swept)}</b></p>"]
    if head.errors:
        parts.append(f'<p class="err">{esc(head.errors[0])}</p><ul>' +
                     "".join(f"<li>{esc(e)}</li>" for e in head.errors[1:]) + "</ul>")
    if head.best:
        parts.append("<p>Best cells (95% interval):</p><ul>" + "".join(f"<li>{esc(b)}</li>" for b in head.best) + "</ul>")
    if head.tradeoff:
        parts.append(f"<p>{esc(head.tradeoff)}</p>")
    if head.changes:
        parts.append("<p>What changed most across cells:</p><ul>" +
                     "".join(f"<li>{esc(c)}</li>" for c in head.changes) + "</ul>")
    if head.constant:
        parts.append(f'<p class="muted">{esc(head.constant)}</p>')
    parts.append("</div>")
    if head.parameters:
        rows = [[f"<code>{esc(n)}</code>", esc(v), esc(h)] for n, v, h in head.parameters]
        parts.append("<h2>Swept parameters</h2>" + _table(["parameter", "values", "what it does"], rows, left=3))
    return "".join(parts)


def targets_section(lines: list[TargetLine], sentence: str, quality: Metric | None, legend: str = "") -> str:
    """Targets side by side: model, price, requests, errors, best cell, quality, latency, cost.
    Several runs: `line.run` is the short label that `legend` explains."""
    if not lines:
        return ""
    multi = len({line.run for line in lines}) > 1
    priced = any(line.price != "–" for line in lines)
    header = (["run"] if multi else []) + ["target", "model", "requests", "errors", "best trade-off cell",
                                           esc(quality.label) if quality else "quality", "latency p50 (s)"]
    if priced:
        header += ["price", "cost / request", "cost / correct answer"]
    header.append("cells on the front")
    rows = []
    for line in lines:
        cells = ([esc(line.run)] if multi else []) + [
            esc(line.target), esc(line.model), esc(line.requests), esc(line.errors), esc(line.best),
            esc(line.quality), esc(line.latency)]
        if priced:
            cells += [esc(line.price), esc(line.cost_per_request), esc(line.cost_per_correct)]
        cells.append(esc(line.on_front))
        rows.append(cells)
    note = ('<p class="muted">One line per target; its best trade-off cell by the rule of the headline, among '
            "its own cells. Cost: the servers' token counts × the target's price (per 1M tokens), in the "
            "price's currency; per correct answer: a cell's cost ÷ its summed score.</p>")
    text = f"<p>{esc(sentence)}</p>" if sentence else ""
    return "<h2>Targets</h2>" + text + note + legend_html(legend) + _table(header, rows, left=6 + int(multi))


def runs_section(runs: list[dict[str, Any]]) -> str:
    """One line per run; with several, first the short label ("run 1") the other tables use."""
    short = any(r.get("short") for r in runs)
    keys = (["short"] if short else []) + ["label", "model", "base_url", "started_at", "status", "requests", "ok", "error"]
    header = ([""] if short else []) + ["run", "model", "endpoint", "started", "status", "requests", "ok", "error"]
    rows = [[esc(r.get(k)) for k in keys] for r in runs]
    return "<h2>Runs</h2>" + _table(header, rows, left=5 + int(short))


def _interval(row: pd.Series, metric: Metric) -> str:
    text = esc(fmt_metric(row.get(metric.column)))
    if flag(row, metric):
        text += ' <span class="muted" title="top_logprobs missed more than 5% of the mass">(tail)</span>'
    if metric.lo and metric.hi and pd.notna(row.get(metric.lo)):
        lo, hi = esc(fmt_metric(row.get(metric.lo))), esc(fmt_metric(row.get(metric.hi)))
        text += f' <span class="muted iv">[{lo}, {hi}]</span>'
    return text


def _breakable(label: str) -> str:
    """Escaped, with a line-break opportunity after each underscore (`normalized_match`)."""
    return esc(label).replace("_", "_<wbr>")


def summary_section(summary: pd.DataFrame, params: list[str], metrics: list[Metric], best_index: set[Any],
                    legend: str = "") -> str:
    """The per-cell table: run, parameters, n, then each metric (with its interval). Several runs:
    `run_id` holds the short labels that `legend` explains."""
    multi = summary["run_id"].nunique() > 1
    # many columns: a long metric name may break after an underscore, a run label never
    header = (["run"] if multi else []) + [esc(p) for p in params] + ["n"] + [_breakable(m.label) for m in metrics]
    rows, classes = [], []
    for idx, row in summary.iterrows():
        cells = ([f'<span class="nw">{esc(row["run_id"])}</span>'] if multi else []) + [
            esc(fmt_param(p, row.get(p))) for p in params]
        cells.append(esc(row.get("n")))
        cells += [_interval(row, m) for m in metrics]
        rows.append(cells)
        classes.append("best" if idx in best_index else "")
    note = ('<p class="muted">Highlighted: best trade-off per run. Brackets: 95% interval (prompts resampled: '
            'cluster bootstrap; distinct-n: jackknife). Entropy is a lower bound from top_logprobs; “(tail)”: more '
            'than 5% of the probability unseen at over half of the positions. Every metric: '
            '<code>summary.csv</code>.</p>')
    return "<h2>Cells</h2>" + note + legend_html(legend) + _table(header, rows, left=len(params) + int(multi),
                                                                  row_class=classes)


def figure_html(fig: FigureFile) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    return (
        f'<figure><img alt="{esc(fig.title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{esc(fig.caption)}</figcaption></figure>"
    )


def figures_section(title: str, figures: list[FigureFile]) -> str:
    return f"<h2>{esc(title)}</h2>" + "".join(figure_html(f) for f in figures) if figures else ""


def _clip(text: Any) -> str:
    value = "" if text is None or text is pd.NA or (isinstance(text, float) and math.isnan(text)) else str(text)
    if len(value) > MAX_CHARS:
        return esc(value[:MAX_CHARS]) + f'<span class="muted"> … ({len(value) - MAX_CHARS} more characters)</span>'
    return esc(value)


def _output(r: pd.Series) -> str:
    if r.get("status") == "ok":
        finish = r.get("finish_reason")
        tail = f' <span class="muted">({esc(finish)})</span>' if finish not in (None, "stop") and pd.notna(finish) else ""
        text = r.get("content")
        body = _clip(text) if text not in (None, "") and pd.notna(text) else '<span class="muted">(empty)</span>'
        return f"<pre>{body}</pre>{tail}"
    return f'<span class="err">error {esc(r.get("error_type"))}: {_clip(r.get("error_message"))}</span>'


def _sample_grid(samples: pd.DataFrame) -> str:
    """Rows: prompts (with the reference); columns: repeats — the spread of outputs at a glance."""
    repeats = sorted(samples["sample"].dropna().unique().tolist())
    header = ["prompt", "reference", *[f"repeat {esc(k)}" for k in repeats]]
    rows = []
    for prompt, part in samples.groupby("prompt_id", sort=False):
        by_sample = {r["sample"]: r for _, r in part.iterrows()}
        first = part.iloc[0]
        rows.append([esc(prompt), f"<pre>{_clip(first.get('reference'))}</pre>",
                     *[_output(by_sample[k]) if k in by_sample else "" for k in repeats]])
    return _table(header, rows, left=2 + len(repeats))


def samples_section(summary: pd.DataFrame, samples: pd.DataFrame, params: list[str], quality: Metric | None) -> str:
    """Per cell a collapsible grid of outputs: the same prompts in every cell, several repeats each."""
    if not len(samples):
        return ""
    keys = ["run_id", "target", "cell_id"] if "target" in samples and "target" in summary else ["run_id", "cell_id"]
    groups = dict(tuple(samples.groupby(keys, sort=False, dropna=False)))
    multi = summary["run_id"].nunique() > 1
    parts = ["<h2>Sample outputs</h2>",
             ('<p class="muted">The same prompts in every cell, with several repeats each, so the spread the '
              'sweep is about shows across a row. Model output is shown as escaped text.</p><div class="samples">')]
    for n, (_, row) in enumerate(summary.iterrows()):
        key = tuple(row[k] for k in keys)
        if key not in groups:
            continue
        label = cell_label(row, params)
        q = f" · {esc(quality.label)} {esc(fmt_metric(row.get(quality.column)))}" if quality else ""
        run = f'<span class="tag">{esc(row["run_id"])}</span> ' if multi else ""
        parts.append(
            f"<details{' open' if n == 0 else ''}><summary>{run}{esc(label)} "
            f"<span class=\"muted\">· n={esc(row.get('n'))}{q}</span></summary>{_sample_grid(groups[key])}</details>"
        )
    return "".join(parts) + "</div>"


def page(title: str, sections: list[str]) -> str:
    """The whole document."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1>{''.join(sections)}"
        '<p class="muted">Generated by harness report.</p></body></html>\n'
    )


html_table = _table  # for sections built in their own modules (report/counterfactual.py)

__all__ = [
    "esc",
    "figure_html",
    "figures_section",
    "headline_section",
    "html_table",
    "legend_html",
    "page",
    "runs_section",
    "samples_section",
    "summary_section",
    "targets_section",
]
