"""The report's "what truncation would change" section: `harness whatif` on the runs being reported.

For every cell with stored top_logprobs, the default hypothetical settings (top_p 0.9/0.95,
top_k 5/40, min_p 0.05/0.1, one at a time) are estimated from the logprobs the run already has
(`harness.whatif`): the share of sampled tokens each would have cut, with its interval and a
run/skip/unsure verdict. Nothing is sent. Bounded: at most `MAX_ROWS_PER_CELL` rows per cell
are read with their logprobs (the first stored), so a large run costs no more than a small one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from harness.rundir.fs import RunPath
from harness.rundir.results import read_table
from harness.whatif import DEFAULT_SETTINGS, as_run, suggestions, whatif_frame

__all__ = ["MAX_ROWS_PER_CELL", "MIN_TOP_LOGPROBS", "WhatIf", "whatif_for_runs"]

MAX_ROWS_PER_CELL = 200
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
    top = max((_top_k_returned(t) for t in tables), default=0)
    if top == 0:
        return None
    if top < MIN_TOP_LOGPROBS:
        return WhatIf(None, [], f"The runs returned {top} top_logprobs per token; estimating what truncation "
                                f"would change needs {MIN_TOP_LOGPROBS} or more (20 is best).")
    rows = pd.concat([_bounded_rows(t) for t in tables], ignore_index=True)
    frame = whatif_frame(rows, as_run(DEFAULT_SETTINGS), skip_below=skip_below)
    if not len(frame):
        return None
    note = (f"Estimated from the stored top_logprobs ({top} per token), without sending anything: the share "
            f"of sampled tokens each setting would have cut, with its 95% interval (sampling and the unseen "
            f"tail). run: worth running; skip: below {skip_below:.0%}; unsure: the interval straddles it. "
            f"`harness whatif RUN_DIR` gives every figure (docs/whatif.md).")
    return WhatIf(frame, suggestions(frame, skip_below), note)


def cell_label(row: Any) -> str:
    """The cell as the table's row header."""
    parts = [f"T={row['temperature']:g}", f"top_p={row['top_p']:g}",
             f"top_k={'off' if row['top_k'] <= 0 else int(row['top_k'])}", f"min_p={row['min_p']:g}"]
    return " ".join(parts)


def table_cells(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of plain text: one row per cell, one column per hypothetical setting."""
    settings = [s for s in dict.fromkeys(frame["setting"]) if s != "as run"]
    multi = frame["run_id"].nunique() > 1
    header = (["run"] if multi else []) + ["cell", "tokens"] + settings
    rows = []
    keys = [k for k in ("run_id", "target", "cell_id") if k in frame.columns]  # target: a run with several
    for _, cell in frame.groupby(keys, sort=False, dropna=False):
        first = cell.iloc[0]
        by_setting = {r["setting"]: r for _, r in cell.iterrows()}
        values = []
        for s in settings:
            r = by_setting.get(s)
            values.append("" if r is None else
                          f"{r['affected']:.1%} [{r['affected_lo']:.1%}, {r['affected_hi']:.1%}] {r['verdict']}")
        label = cell_label(first) if "target" not in frame.columns else f"{first['target']}: {cell_label(first)}"
        rows.append(([str(first["run_id"])] if multi else []) + [label, str(int(first["positions"]))] + values)
    return header, rows


def html_section(whatif: WhatIf) -> str:
    """The section as escaped HTML (model-originated text never reaches it unescaped)."""
    from harness.report.html import esc, html_table

    parts = ['<div id="whatif"><h2>What truncation would change</h2>', f"<p>{esc(whatif.note)}</p>"]
    if whatif.frame is not None:
        header, rows = table_cells(whatif.frame)
        left = header.index("cell") + 1
        parts.append(html_table([esc(h) for h in header], ([esc(c) for c in row] for row in rows), left=left))
    if whatif.advice:
        parts.append("<ul>" + "".join(f"<li>{esc(line)}</li>" for line in whatif.advice[:20]) + "</ul>")
    return "".join(parts) + "</div>"


def markdown_section(whatif: WhatIf) -> str:
    """The section as Markdown (cells escaped)."""
    from harness.report.markdown import md, md_table

    out = ["## What truncation would change", "", md(whatif.note), ""]
    if whatif.frame is not None:
        header, rows = table_cells(whatif.frame)
        out += [md_table([md(h) for h in header], [[md(c) for c in row] for row in rows]), ""]
    out += [f"- {md(line)}" for line in whatif.advice[:20]]
    return "\n".join(out) + "\n"
