"""The self-contained `index.html`: inline CSS, figures as data URIs, no script, no URL.

Every string that comes from the data (model output, references, ids, error messages, even
parameter names) goes through `esc` (html.escape with quotes). Nothing from the data is placed
in an attribute other than escaped `title`/`alt` text, and there is no <script> at all: the
sample browser is plain <details> elements.
"""

from __future__ import annotations

import base64
import html
from typing import Any, Iterable

import pandas as pd

from harness.report.figures import FigureFile
from harness.report.shape import Metric, cell_label, flag, fmt_metric, fmt_value

MAX_CHARS = 4000

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1280px;padding:1.2em;color:#1b1b1b}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:12.5px;margin:.5em 0}th,td{border:1px solid #ddd;padding:3px 6px;text-align:right;vertical-align:top}
th{background:#f4f4f4;position:sticky;top:0}td.l,th.l{text-align:left}
.scroll{overflow-x:auto;max-height:70vh}figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:12.5px}pre{white-space:pre-wrap;word-break:break-word;margin:0;font-size:12.5px;max-width:60em}
details{margin:.3em 0;border:1px solid #e4e4e4;border-radius:4px;padding:.2em .6em}summary{cursor:pointer}
.best{background:#fff6d6}.muted{color:#777}.err{color:#a00}.tag{font-size:11px;background:#eef;padding:0 4px;border-radius:3px}
"""


def esc(value: Any) -> str:
    """HTML-escape anything (None → empty)."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return ""
    return html.escape(str(value), quote=True)


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


def runs_section(runs: list[dict[str, Any]]) -> str:
    header = ["run", "model", "endpoint", "started", "status", "requests", "ok", "error"]
    rows = [[esc(r.get(k)) for k in ("label", "model", "base_url", "started_at", "status", "requests", "ok", "error")] for r in runs]
    return "<h2>Runs</h2>" + _table(header, rows, left=5)


def _interval(row: pd.Series, metric: Metric) -> str:
    text = esc(fmt_metric(row.get(metric.column)))
    if flag(row, metric):
        text += ' <span class="muted" title="top_logprobs missed more than 5% of the mass">(tail)</span>'
    if metric.lo and metric.hi and pd.notna(row.get(metric.lo)):
        text += f' <span class="muted">[{esc(fmt_metric(row.get(metric.lo)))}, {esc(fmt_metric(row.get(metric.hi)))}]</span>'
    return text


def summary_section(summary: pd.DataFrame, params: list[str], metrics: list[Metric], best_index: set[Any]) -> str:
    """The per-cell table: run, parameters, n, then each metric (with its interval)."""
    multi = summary["run_id"].nunique() > 1
    header = (["run"] if multi else []) + [esc(p) for p in params] + ["n"] + [esc(m.label) for m in metrics]
    rows, classes = [], []
    for idx, row in summary.iterrows():
        cells = ([esc(row["run_id"])] if multi else []) + [esc(fmt_value(row.get(p))) for p in params]
        cells.append(esc(row.get("n")))
        cells += [_interval(row, m) for m in metrics]
        rows.append(cells)
        classes.append("best" if idx in best_index else "")
    note = '<p class="muted">Highlighted: best trade-off per run. Brackets: 95% bootstrap interval (prompts resampled). Entropy is a lower bound; “(tail)”: top_logprobs left more than 5% of the probability unseen at over 10% of positions. Full table: <code>summary.csv</code>.</p>'
    return "<h2>Cells</h2>" + note + _table(header, rows, left=len(params) + int(multi), row_class=classes)


def figure_html(fig: FigureFile) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    return (
        f'<figure><img alt="{esc(fig.title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{esc(fig.caption)}</figcaption></figure>"
    )


def figures_section(title: str, figures: list[FigureFile]) -> str:
    return f"<h2>{esc(title)}</h2>" + "".join(figure_html(f) for f in figures) if figures else ""


def _clip(text: Any) -> str:
    value = "" if text is None or text is pd.NA or (isinstance(text, float) and text != text) else str(text)
    if len(value) > MAX_CHARS:
        return esc(value[:MAX_CHARS]) + f'<span class="muted"> … ({len(value) - MAX_CHARS} more characters)</span>'
    return esc(value)


def _sample_rows(samples: pd.DataFrame, score_names: list[str]) -> str:
    header = ["prompt", "sample", "output", "reference", "finish", *[esc(s) for s in score_names]]
    rows = []
    for _, r in samples.iterrows():
        if r.get("status") == "ok":
            output = f"<pre>{_clip(r.get('content'))}</pre>"
        else:
            output = f'<span class="err">error {esc(r.get("error_type"))}: {_clip(r.get("error_message"))}</span>'
        rows.append(
            [esc(r.get("prompt_id")), esc(r.get("sample")), output, f"<pre>{_clip(r.get('reference'))}</pre>",
             esc(r.get("finish_reason")), *[esc(fmt_metric(r.get(s))) for s in score_names]]
        )
    return _table(header, rows, left=5)


def samples_section(summary: pd.DataFrame, samples: pd.DataFrame, params: list[str], score_names: list[str],
                    quality: Metric | None) -> str:
    """Per cell a collapsible block of sample outputs with reference, finish reason and scores."""
    if not len(samples):
        return ""
    groups = dict(tuple(samples.groupby(["run_id", "cell_id"], sort=False)))
    multi = summary["run_id"].nunique() > 1
    parts = ["<h2>Sample outputs</h2>", '<p class="muted">Model output is shown as escaped text.</p>']
    for _, row in summary.iterrows():
        key = (row["run_id"], row["cell_id"])
        if key not in groups:
            continue
        label = cell_label(row, params)
        q = f" · {esc(quality.label)} {esc(fmt_metric(row.get(quality.column)))}" if quality else ""
        run = f'<span class="tag">{esc(row["run_id"])}</span> ' if multi else ""
        parts.append(
            f"<details><summary>{run}{esc(label)} <span class=\"muted\">· n={esc(row.get('n'))}{q}</span></summary>"
            f"{_sample_rows(groups[key], score_names)}</details>"
        )
    return "".join(parts)


def page(title: str, sections: list[str]) -> str:
    """The whole document."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1>{''.join(sections)}"
        '<p class="muted">Generated by harness report.</p></body></html>\n'
    )


__all__ = ["esc", "figure_html", "figures_section", "page", "runs_section", "samples_section", "summary_section"]
