"""Which hypothetical settings are worth running: one line per (setting, cell)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

__all__ = ["grid_advice", "suggestions"]


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%" if x >= 0.001 or x == 0 else f"{100 * x:.2f}%"


def _cell_label(row: pd.Series) -> str:
    parts = [f"T={row['temperature']:g}"]
    if row["top_p"] < 1.0:
        parts.append(f"top_p={row['top_p']:g}")
    if row["top_k"] > 0:
        parts.append(f"top_k={int(row['top_k'])}")
    if row["min_p"] > 0.0:
        parts.append(f"min_p={row['min_p']:g}")
    return " ".join(parts)


def grid_advice(frame: pd.DataFrame) -> list[str]:
    """One line per hypothetical setting over every cell: in how many it is worth running."""
    lines = []
    for setting, rows in frame[frame["setting"] != "as run"].groupby("setting", sort=False):
        counts = rows["verdict"].value_counts()
        run, skip, unsure = (int(counts.get(v, 0)) for v in ("run", "skip", "unsure"))
        span = f"{_pct(rows['affected'].min())}-{_pct(rows['affected'].max())}"
        lines.append(
            f"{setting}: worth running in {run} of {len(rows)} cells, skip in {skip}, unsure in {unsure} "
            f"(changes {span} of tokens)"
        )
    return lines


def suggestions(frame: pd.DataFrame, skip_below: float = 0.01,
                label: Callable[[pd.Series], str] | None = None) -> list[str]:
    """'min_p 0.2 would change 0.4% [0.1%, 0.9%] of tokens at T=0.7: skip', one per row.

    A verdict that depends on the tokens beyond the returned top_logprobs says so. With more
    than one cell, `grid_advice` lines (one per setting) come first. `label` names a cell (default
    `T=0.7 min_p=0.2`, the short form of `harness whatif`; the report passes its own).
    """
    name = label or _cell_label
    lines = grid_advice(frame) if frame["cell_id"].nunique() > 1 else []
    for _, row in frame.iterrows():
        if row["setting"] == "as run":
            continue
        if row["hyp_top_p"] >= 1.0 and row["hyp_top_k"] <= 0 and row["hyp_min_p"] <= 0.0:
            lines.append(
                f"{row['setting']} truncates nothing at {name(row)}; entropy "
                f"{row['entropy_before']:.2f} -> {row['entropy']:.2f} nats [{row['entropy_lo']:.2f}, {row['entropy_hi']:.2f}]"
            )
            continue
        what = "of tokens" if row["affected_basis"] == "sampled" else "of draws (expected)"
        verdict = {
            "skip": f"skip (below {_pct(skip_below)})",
            "run": "worth running",
            "unsure": f"unsure (interval straddles {_pct(skip_below)})",
        }[row["verdict"]]
        line = (
            f"{row['setting']} would change {_pct(row['affected'])} [{_pct(row['affected_lo'])}, "
            f"{_pct(row['affected_hi'])}] {what} at {name(row)}: {verdict}"
        )
        if row["tail_decides"]:
            line += "; depends on the tail beyond top_logprobs (ask for more)"
        if row["penalties"]:
            line += "; penalties not modelled"
        lines.append(line)
    return lines
