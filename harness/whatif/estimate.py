"""Per cell and hypothetical setting: what truncation would change, with intervals.

Every figure is a mean over the cell's generated positions (pooled: each token counts once).
Its interval joins two sources of doubt: sampling (a bootstrap over the cell's rows, 95%) and
the tail beyond the returned top_logprobs (the "few" and "many" tails of `truncate.py`):
`lo` is the bootstrap's 2.5% point under the lower tail, `hi` the 97.5% point under the upper
one; the point estimate is the middle of the two tails' means.

`affected` is the share of positions where the setting would have cut the token the run
actually sampled (basis "sampled"); when the setting changes the temperature the sampled tokens
are not draws from it, so `affected` is the expected share of draws it forbids, i.e. the mass
removed (basis "expected").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from harness.whatif.positions import Positions, extract_positions
from harness.whatif.truncate import Effect, Resolved, evaluate

__all__ = ["DEFAULT_VOCAB", "Setting", "cell_setting", "whatif_frame"]

DEFAULT_VOCAB = 262_144  # Gemma 3's vocabulary: a generous bound for the "many" tail
_METRICS = ("removed", "candidates", "entropy", "entropy_before", "expected_logprob")


@dataclass(frozen=True)
class Setting:
    """A hypothetical setting; None keeps the cell's own value."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None

    def resolve(self, cell: Resolved) -> Resolved:
        """The complete setting at a cell."""
        return Resolved(
            temperature=cell.temperature if self.temperature is None else self.temperature,
            top_p=cell.top_p if self.top_p is None else self.top_p,
            top_k=cell.top_k if self.top_k is None else self.top_k,
            min_p=cell.min_p if self.min_p is None else self.min_p,
        )

    @property
    def label(self) -> str:
        """"top_p 0.9", "min_p 0.1, T 0.7", "as run"."""
        parts = [f"{name} {_fmt(value)}" for name, value in self._items() if name != "temperature"]
        if self.temperature is not None:
            parts.append(f"T {_fmt(self.temperature)}")
        return ", ".join(parts) or "as run"

    def _items(self) -> list[tuple[str, Any]]:
        items = [("temperature", self.temperature), ("top_p", self.top_p), ("top_k", self.top_k), ("min_p", self.min_p)]
        return [(k, v) for k, v in items if v is not None]


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e6 else str(value)
    return "off" if value == -1 else str(value)


def _value(row: pd.Series, name: str, default: float) -> float:
    value = row.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return default
    return float(value)


def cell_setting(row: pd.Series) -> Resolved:
    """The setting a cell ran with (parameters not sent: the OpenAI defaults, i.e. off / T 1)."""
    return Resolved(
        temperature=_value(row, "temperature", 1.0),
        top_p=_value(row, "top_p", 1.0),
        top_k=int(_value(row, "top_k", -1)),
        min_p=_value(row, "min_p", 0.0),
    )


def _interval(per_row_few: np.ndarray, per_row_many: np.ndarray, positions: np.ndarray, idx: np.ndarray) -> tuple[float, float, float]:
    """(point, lo, hi) of a pooled mean from per-row sums under both tails."""
    total = positions.sum()
    means = [a.sum() / total for a in (per_row_few, per_row_many)]
    denom = positions[idx].sum(axis=1)
    boots = [a[idx].sum(axis=1) / denom for a in (per_row_few, per_row_many)]
    lo = min(float(np.quantile(b, 0.025)) for b in boots)
    hi = max(float(np.quantile(b, 0.975)) for b in boots)
    lo, hi = min(lo, *means), max(hi, *means)
    return (means[0] + means[1]) / 2, lo, hi


def _per_row(values: np.ndarray, rows: np.ndarray, n_rows: int) -> np.ndarray:
    return np.bincount(rows, weights=values, minlength=n_rows)


def _cell_records(
    pos: Positions, n_rows: int, cell: Resolved, settings: Sequence[Setting], vocab: int, idx: np.ndarray, skip_below: float
) -> list[dict[str, Any]]:
    counts = np.bincount(pos.row, minlength=n_rows).astype(np.float64)
    out = []
    for setting in settings:
        resolved = setting.resolve(cell)
        few, many = evaluate(pos, resolved, vocab)
        same_temperature = resolved.temperature == cell.temperature
        record: dict[str, Any] = {
            "setting": setting.label,
            **{f"hyp_{k}": getattr(resolved, k) for k in ("temperature", "top_p", "top_k", "min_p")},
            "positions": len(pos),
            "affected_basis": "sampled" if same_temperature else "expected",
        }
        for name in _METRICS:
            record[name], record[f"{name}_lo"], record[f"{name}_hi"] = _interval(
                _per_row(getattr(few, name), pos.row, n_rows), _per_row(getattr(many, name), pos.row, n_rows), counts, idx
            )
        source = "cut" if same_temperature else "removed"
        pair: tuple[Effect, Effect] = (few, many)
        record["affected"], record["affected_lo"], record["affected_hi"] = _interval(
            *(_per_row(getattr(e, source), pos.row, n_rows) for e in pair), counts, idx
        )
        record["tail_share"] = float(np.mean(getattr(few, source) != getattr(many, source))) if len(pos) else 0.0
        means = [float(getattr(e, source).mean()) for e in pair]
        record["tail_decides"] = (means[0] < skip_below) != (means[1] < skip_below)
        record["verdict"] = _verdict(record["affected_lo"], record["affected_hi"], skip_below)
        out.append(record)
    return out


def _verdict(lo: float, hi: float, skip_below: float) -> str:
    if hi < skip_below:
        return "skip"
    if lo >= skip_below:
        return "run"
    return "unsure"


def whatif_frame(
    rows: pd.DataFrame,
    settings: Sequence[Setting],
    *,
    vocab: int = DEFAULT_VOCAB,
    skip_below: float = 0.01,
    resamples: int = 400,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (cell, setting) of a run's result rows; see the module docstring.

    Cells without logprobs are left out. Columns: run_id, cell_id, the cell's own temperature,
    top_p, top_k, min_p and penalties, rows, then setting, hyp_* (the complete hypothetical
    setting), positions, affected(+_lo/_hi, _basis), removed, candidates, entropy,
    entropy_before, expected_logprob (each with _lo/_hi), tail_share, tail_decides, verdict.
    """
    ok = rows[rows["status"] == "ok"] if "status" in rows else rows
    records: list[dict[str, Any]] = []
    rng = np.random.default_rng(seed)
    keys = [c for c in ("run_id", "cell_id") if c in ok.columns]
    for key, cell_rows in ok.groupby(keys, sort=False) if keys else [((), ok)]:
        cell_rows = cell_rows.reset_index(drop=True)
        pos = extract_positions(cell_rows["logprobs"])
        if not len(pos):
            continue
        first = cell_rows.iloc[0]
        cell = cell_setting(first)
        idx = rng.integers(0, len(cell_rows), size=(resamples, len(cell_rows)))
        head = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        head.update({"temperature": cell.temperature, "top_p": cell.top_p, "top_k": cell.top_k, "min_p": cell.min_p})
        penalties = [_value(first, p, 0.0) for p in ("frequency_penalty", "presence_penalty")]
        head.update({"penalties": any(v != 0.0 for v in penalties), "rows": len(cell_rows)})
        for record in _cell_records(pos, len(cell_rows), cell, settings, vocab, idx, skip_below):
            records.append({**head, **record})
    return pd.DataFrame.from_records(records)


def as_run(settings: Sequence[Setting]) -> list[Setting]:
    """The settings plus "as run" (the cell's own setting) first: the baseline to read them against."""
    return [Setting(), *(s for s in settings if s != Setting())]

