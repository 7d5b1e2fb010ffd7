"""The report's "what truncation would change" section: `harness whatif` on the runs being reported.

For every cell with stored top_logprobs, the default hypothetical settings (top_p 0.9/0.95,
top_k 5/40, min_p 0.05/0.1, one at a time) are estimated from the logprobs the run already has
(`harness.whatif`): the share of sampled tokens each would have cut, with its interval and a
run/skip/unsure verdict. Nothing is sent. Bounded: at most `MAX_ROWS_PER_CELL` rows per cell
are read with their logprobs (the first stored), so a large run costs no more than a small one.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from harness.report.shape import fmt_param
from harness.rundir.fs import RunPath
from harness.rundir.results import read_table
from harness.whatif import DEFAULT_SETTINGS, as_run, suggestions, whatif_frame
from harness.whatif.suggest import grid_advice

__all__ = ["MAX_ADVICE_LINES", "MAX_ROWS_PER_CELL", "MIN_TOP_LOGPROBS", "WhatIf", "advice_lines", "whatif_for_runs"]

MAX_ROWS_PER_CELL = 200
MAX_ADVICE_LINES = 20
TAIL_MARK = "(tail)"
MIN_TOP_LOGPROBS = 5  # with fewer candidates the unseen tail decides almost every verdict
_COLUMNS = ["run_id", "target", "request_id", "cell_id", "prompt_id", "sample", "status", "logprobs", "temperature",
            "top_p", "top_k", "min_p", "frequency_penalty", "presence_penalty"]


@dataclass(frozen=True)
class WhatIf:
    """The section's content: the estimate frame, the advice lines, or why there is none."""

    frame: pd.DataFrame | None
    advice: list[str]
    note: str  # shown above the table (or alone when there is no table)


def _top_k_returned(table: pa.Table) -> int:
    """The most candidates returned at any position (0 without logprobs)."""
    if "logprobs" not in table.column_names or table.num_rows == 0:
        return 0
    flat = pc.list_flatten(table.column("logprobs"))
    if len(flat) == 0 or "top_logprobs" not in [f.name for f in flat.type]:
        return 0
    lengths = pc.list_value_length(pc.struct_field(flat, "top_logprobs"))
    top = pc.max(lengths).as_py()
    return int(top or 0)


def _bounded_rows(table: pa.Table) -> pd.DataFrame:
    """At most MAX_ROWS_PER_CELL ok rows per cell, logprobs as Python objects only for those."""
    flat = table.select([c for c in table.column_names if c != "logprobs"]).to_pandas()
    flat = flat[flat["status"] == "ok"]  # stored order, as `harness whatif` reads it (same bootstrap draws)
    keys = [k for k in ("run_id", "target", "cell_id") if k in flat.columns]  # targets share cell ids
    keep = flat.groupby(keys, sort=False, dropna=False).head(MAX_ROWS_PER_CELL).index.to_numpy()
    rows: pd.DataFrame = table.take(pa.array(keep, type=pa.int64())).to_pandas()
    return rows


def _read(run_dir: RunPath, label: str) -> pa.Table:
    table = read_table(run_dir)
    table = table.select([c for c in _COLUMNS if c in table.column_names])
    return table.set_column(table.column_names.index("run_id"), "run_id",
                            pa.array([label] * table.num_rows, type=pa.string()))


def whatif_for_runs(runs: list[tuple[RunPath, str]], skip_below: float = 0.01) -> WhatIf | None:
    """The section for (run directory, label) pairs; None when no run stored logprobs at all."""
    tables = [_read(path, label) for path, label in runs]
    tops = [_top_k_returned(t) for t in tables]
    top = max(tops, default=0)
    if top == 0:
        return None
    if top < MIN_TOP_LOGPROBS:
        return WhatIf(None, [], f"The runs returned {top} top_logprobs per token; estimating what truncation "
                                f"would change needs {MIN_TOP_LOGPROBS} or more (20 is best).")
    # a run with too few candidates is left out rather than estimated as if it had enough
    few = [label for (_, label), k in zip(runs, tops, strict=True) if 0 < k < MIN_TOP_LOGPROBS]
    usable = [t for t, k in zip(tables, tops, strict=True) if k >= MIN_TOP_LOGPROBS]
    rows = pd.concat([_bounded_rows(t) for t in usable], ignore_index=True)
    frame = whatif_frame(rows, as_run(DEFAULT_SETTINGS), skip_below=skip_below)
    if not len(frame):
        return None
    low = min(k for k in tops if k >= MIN_TOP_LOGPROBS)
    per_token = f"{top}" if low == top else f"{low}–{top}"
    note = (f"Estimated from the stored top_logprobs ({per_token} per token), without sending anything: the share "
            f"of sampled tokens each setting would have cut, with its 95% interval (sampling and the unseen "
            f"tail). run: worth running; skip: below {skip_below:.0%}; unsure: the interval straddles it. ")
    if frame["tail_decides"].any():
        note += (f"{TAIL_MARK}: the verdict depends on the tokens beyond the returned top_logprobs "
                 f"(ask for more). ")
    if frame["penalties"].any():
        note += "Cells marked (penalties) used frequency/presence penalties, which the estimate does not model. "
    if few:
        note += (f"Left out: {', '.join(few)} (fewer than {MIN_TOP_LOGPROBS} top_logprobs per token). ")
    note += "`harness whatif RUN_DIR` gives every figure (docs/whatif.md)."
    return WhatIf(frame, advice_lines(frame, skip_below), note)


def advice_lines(frame: pd.DataFrame, skip_below: float = 0.01) -> list[str]:
    """What the table does not say at a glance: per run, one line per setting over its cells (in
    how many it is worth running); a run with a single cell gets `harness whatif`'s line per
    setting instead. At most MAX_ADVICE_LINES, the last one saying how many were left out."""
    runs = list(dict.fromkeys(frame["run_id"]))
    keys = [k for k in ("target", "cell_id") if k in frame.columns]
    lines = []
    for run in runs:
        part = frame[frame["run_id"] == run]
        several = len(part.groupby(keys, sort=False, dropna=False)) > 1
        found = grid_advice(part) if several else suggestions(part, skip_below, label=_set_label)
        lines += [f"{run}: {line}" if len(runs) > 1 else line for line in found]
    if len(lines) > MAX_ADVICE_LINES:
        left = len(lines) - (MAX_ADVICE_LINES - 1)
        lines = lines[:MAX_ADVICE_LINES - 1] + [f"… and {left} more lines: harness whatif RUN_DIR"]
    return lines


def cell_label(row: Any, varying: Collection[str] = ("top_p", "top_k", "min_p")) -> str:
    """The cell as the table's row header, named as in the rest of the report (`temperature=0.8,
    min_p=0`): its temperature and the truncation parameters in `varying`."""
    names = ["temperature", *(p for p in ("top_p", "top_k", "min_p") if p in varying)]
    return ", ".join(f"{p}={'off' if p == 'top_k' and row[p] <= 0 else fmt_param(p, row[p])}" for p in names)


def _set_label(row: Any) -> str:
    """A lone cell in an advice line: its temperature and the truncation it used (`temperature=0.8`)."""
    return cell_label(row, [p for p, on in (("top_p", row["top_p"] < 1.0), ("top_k", row["top_k"] > 0),
                                            ("min_p", row["min_p"] > 0.0)) if on])


def _grid(frame: pd.DataFrame) -> tuple[list[str], list[tuple[str, str, int, list[Any]]]]:
    """(settings, rows): per cell its run, label, tokens and its row of each setting (None: none)."""
    settings = [s for s in dict.fromkeys(frame["setting"]) if s != "as run"]
    varying = [p for p in ("top_p", "top_k", "min_p") if frame[p].nunique(dropna=False) > 1]
    rows = []
    keys = [k for k in ("run_id", "target", "cell_id") if k in frame.columns]  # target: a run with several
    for _, cell in frame.groupby(keys, sort=False, dropna=False):
        first = cell.iloc[0]
        by_setting = {r["setting"]: r for _, r in cell.iterrows()}
        label = cell_label(first, varying)
        if "target" in frame.columns:
            label = f"{first['target']}: {label}"
        if first["penalties"]:
            label += " (penalties)"
        rows.append((str(first["run_id"]), label, int(first["positions"]), [by_setting.get(s) for s in settings]))
    return settings, rows


def _share(r: Any) -> str:
    return f"{r['affected']:.1%}"


def _interval(r: Any) -> str:
    return f"[{r['affected_lo']:.1%}, {r['affected_hi']:.1%}]"


def table_cells(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of plain text: one row per cell, one column per hypothetical setting."""
    settings, cells = _grid(frame)
    multi = frame["run_id"].nunique() > 1
    header = (["run"] if multi else []) + ["cell", "tokens"] + settings
    rows = []
    for run, label, tokens, found in cells:
        values = ["" if r is None else f"{_share(r)} {_interval(r)} {r['verdict']}"
                  + (f" {TAIL_MARK}" if r["tail_decides"] else "") for r in found]
        rows.append(([run] if multi else []) + [label, str(tokens)] + values)
    return header, rows


def html_section(whatif: WhatIf, legend: str = "") -> str:
    """The section as escaped HTML (model-originated text never reaches it unescaped): per value the
    share and verdict, the interval below it (as in the Cells table); `run` verdicts in <strong>.
    `legend` says which run each short label ("run 1") stands for."""
    from harness.report.html import esc, html_table, legend_html

    note = re.sub(r"`([^`]*)`", r"<code>\1</code>", esc(whatif.note))  # after escaping: no markup inside
    parts = ['<div id="whatif"><h2>What truncation would change</h2>', f"<p>{note}</p>", legend_html(legend)]
    if whatif.frame is not None:
        settings, cells = _grid(whatif.frame)
        multi = whatif.frame["run_id"].nunique() > 1
        header = (["run"] if multi else []) + ["cell", "tokens"] + settings
        rows = []
        for run, label, tokens, found in cells:
            values = []
            for r in found:
                if r is None:
                    values.append("")
                    continue
                verdict = f"<strong>{esc(r['verdict'])}</strong>" if r["verdict"] == "run" else esc(r["verdict"])
                tail = f' <span class="muted">{esc(TAIL_MARK)}</span>' if r["tail_decides"] else ""
                values.append(f'{esc(_share(r))} {verdict}{tail}<span class="muted iv">{esc(_interval(r))}</span>')
            rows.append(([esc(run)] if multi else []) + [esc(label), str(tokens)] + values)
        parts.append(html_table([esc(h) for h in header], rows, left=header.index("cell") + 1))
    if whatif.advice:
        parts.append("<ul>" + "".join(f"<li>{esc(line)}</li>" for line in whatif.advice) + "</ul>")
    return "".join(parts) + "</div>"


def markdown_section(whatif: WhatIf, legend: str = "") -> str:
    """The section as Markdown (cells escaped)."""
    from harness.report.markdown import legend_md, md, md_table

    out = ["## What truncation would change", "", md(whatif.note), "", *legend_md(legend)]
    if whatif.frame is not None:
        header, rows = table_cells(whatif.frame)
        out += [md_table([md(h) for h in header], [[md(c) for c in row] for row in rows]), ""]
    out += [f"- {md(line)}" for line in whatif.advice]
    return "\n".join(out) + "\n"
