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

Those figures are taken at the positions this run visited. A run that used the setting visits
other ones (a truncated sampler stays on likelier paths), so the `run_*` columns re-weight this
run's positions by how likely a run with the setting was to reach them (`path_weights`):
`run_removed` predicts the share of draws the setting refuses in its own run, `run_entropy` its
entropy after truncation, `run_expected_logprob` the mean logprob of its tokens — position by
position, averaged over this run's answer lengths (the end-of-answer draw is not in the
logprobs, so how long a truncated run's answers get cannot be predicted). They need the
setting's temperature to be the run's, and get wide when few positions stay on the setting's
paths (`run_ess`: Kish's effective number of positions behind them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.whatif.positions import Positions, extract_positions
from harness.whatif.truncate import Effect, Resolved, evaluate

__all__ = ["DEFAULT_VOCAB", "Setting", "as_run", "cell_setting", "length_profile_mean", "path_weights", "whatif_frame"]

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


def _interval(
    num: tuple[np.ndarray, np.ndarray], den: tuple[np.ndarray, np.ndarray], idx: np.ndarray
) -> tuple[float, float, float]:
    """(point, lo, hi) of a ratio of per-row sums (one pair per tail), bootstrapped over rows."""
    means, boots = [], []
    for a, d in zip(num, den):
        total = d.sum()
        means.append(a.sum() / total if total > 0 else math.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            boots.append(a[idx].sum(axis=1) / d[idx].sum(axis=1))
    if any(math.isnan(m) for m in means):
        return math.nan, math.nan, math.nan
    lo = min(float(np.nanquantile(b, 0.025)) for b in boots)
    hi = max(float(np.nanquantile(b, 0.975)) for b in boots)
    return (means[0] + means[1]) / 2, min(lo, *means), max(hi, *means)


def _per_row(values: np.ndarray, rows: np.ndarray, n_rows: int) -> np.ndarray:
    return np.bincount(rows, weights=values, minlength=n_rows)


def path_weights(effect: Effect, rows: np.ndarray) -> np.ndarray:
    """Importance weight of each position's prefix under the setting (positions in row order).

    A run with the setting reaches a prefix with probability prod over earlier positions of
    q'(token) / q(token) = kept / (1 - removed) relative to this run: 0 once a sampled token
    would have been cut. Weighted means over this run's positions then estimate what a run
    with the setting would meet at its own positions (off-policy importance sampling).
    """
    with np.errstate(divide="ignore"):
        step = np.log(np.clip(1.0 - effect.cut, 0.0, 1.0)) - np.log(np.clip(1.0 - effect.removed, 1e-12, 1.0))
    step = np.where(np.isnan(step), -np.inf, step)
    finite = np.where(np.isfinite(step), step, 0.0)
    dead = np.cumsum(~np.isfinite(step))
    total = np.cumsum(finite)
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]) if len(rows) else np.empty(0, dtype=np.int64)
    lengths = np.diff(np.r_[starts, len(rows)])
    base_total = np.repeat(total[starts] - finite[starts], lengths)
    base_dead = np.repeat(dead[starts] - (~np.isfinite(step[starts])), lengths)
    before_total = total - finite - base_total
    before_dead = dead - (~np.isfinite(step)) - base_dead
    return np.where(before_dead > 0, 0.0, np.exp(np.minimum(before_total, 50.0)))


def _profile_interval(
    values: tuple[np.ndarray, np.ndarray], weights: tuple[np.ndarray, np.ndarray], pos: Positions, n_rows: int, idx: np.ndarray
) -> tuple[float, float, float]:
    """(point, lo, hi) of the weighted mean at each position index, averaged over this run's length profile.

    At index t the estimate is sum(w f) / sum(w) over the rows reaching t; the indices are then
    weighted by how many of this run's rows reach them, so a setting is judged at the lengths
    this run had (the end-of-answer draw is not in the logprobs: how long its own answers
    would be cannot be told).
    """
    t = pos.index
    width = int(t.max()) + 1 if len(t) else 0
    profile = np.bincount(t, minlength=width).astype(np.float64)
    points, boots = [], []
    for f, w in zip(values, weights):
        num = np.zeros((n_rows, width))
        den = np.zeros((n_rows, width))
        np.add.at(num, (pos.row, t), f * w)
        np.add.at(den, (pos.row, t), w)
        points.append(_profile_mean(num.sum(axis=0), den.sum(axis=0), profile))
        chunks = [
            _profile_mean(num[c].sum(axis=1), den[c].sum(axis=1), profile) for c in np.array_split(idx, max(1, len(idx) // 50))
        ]
        boots.append(np.concatenate(chunks))
    if any(math.isnan(p) for p in points):
        return math.nan, math.nan, math.nan
    lo = min(float(np.nanquantile(b, 0.025)) for b in boots)
    hi = max(float(np.nanquantile(b, 0.975)) for b in boots)
    a, b = float(points[0]), float(points[1])
    return (a + b) / 2, min(lo, a, b), max(hi, a, b)


def _profile_mean(num: np.ndarray, den: np.ndarray, profile: np.ndarray) -> np.ndarray | float:
    """sum_t profile(t) * num(t) / den(t) / sum_t profile(t) over the t with den > 0 (last axis)."""
    live = den > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(live, num / np.where(live, den, 1.0), 0.0)
    weight = np.where(live, profile, 0.0)
    total = weight.sum(axis=-1)
    out = np.where(total > 0, (ratio * weight).sum(axis=-1) / np.where(total > 0, total, 1.0), np.nan)
    return float(out) if np.ndim(out) == 0 else out


def _row_sums(pair: tuple[Effect, Effect], name: str, pos: Positions, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row sums of one effect under each tail."""
    return _per_row(getattr(pair[0], name), pos.row, n_rows), _per_row(getattr(pair[1], name), pos.row, n_rows)


def _cell_records(
    pos: Positions, n_rows: int, cell: Resolved, settings: Sequence[Setting], vocab: int, idx: np.ndarray, skip_below: float
) -> list[dict[str, Any]]:
    counts = np.bincount(pos.row, minlength=n_rows).astype(np.float64)
    ones = (counts, counts)
    out = []
    for setting in settings:
        resolved = setting.resolve(cell)
        pair = evaluate(pos, resolved, vocab)
        same_temperature = resolved.temperature == cell.temperature
        record: dict[str, Any] = {
            "setting": setting.label,
            **{f"hyp_{k}": getattr(resolved, k) for k in ("temperature", "top_p", "top_k", "min_p")},
            "positions": len(pos),
            "affected_basis": "sampled" if same_temperature else "expected",
        }

        for name in _METRICS:
            record[name], record[f"{name}_lo"], record[f"{name}_hi"] = _interval(_row_sums(pair, name, pos, n_rows), ones, idx)
        source = "cut" if same_temperature else "removed"
        record["affected"], record["affected_lo"], record["affected_hi"] = _interval(_row_sums(pair, source, pos, n_rows), ones, idx)
        if same_temperature:
            weights = (path_weights(pair[0], pos.row), path_weights(pair[1], pos.row))
            for name in _METRICS:
                values = (getattr(pair[0], name), getattr(pair[1], name))
                record[f"run_{name}"], record[f"run_{name}_lo"], record[f"run_{name}_hi"] = _profile_interval(
                    values, weights, pos, n_rows, idx
                )
            record["run_ess"] = float(np.mean([w.sum() ** 2 / max(float((w * w).sum()), 1e-300) for w in weights]))
        record["tail_share"] = float(np.mean(getattr(pair[0], source) != getattr(pair[1], source))) if len(pos) else 0.0
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

    Cells without logprobs are left out. Columns: run_id, (target, when the run has several),
    cell_id, the cell's own temperature,
    top_p, top_k, min_p and penalties, rows, then setting, hyp_* (the complete hypothetical
    setting), positions, affected(+_lo/_hi, _basis), removed, candidates, entropy,
    entropy_before, expected_logprob (each with _lo/_hi), tail_share, tail_decides, verdict.
    """
    ok = rows[rows["status"] == "ok"] if "status" in rows else rows
    records: list[dict[str, Any]] = []
    rng = np.random.default_rng(seed)
    # several targets share cell ids (the point without the target): a cell is (run, target, point)
    several = "target" in ok.columns and ok["target"].nunique() > 1
    keys = [c for c in ("run_id", "target", "cell_id") if c in ok.columns and (c != "target" or several)]
    for key, cell_rows in ok.groupby(keys, sort=False, dropna=False) if keys else [((), ok)]:
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



def length_profile_mean(values: np.ndarray, pos: Positions, profile_from: Positions) -> float:
    """Mean of per-position `values` of `pos`, index by index, weighted by `profile_from`'s length profile.

    How a run's measured figure is put on the same footing as another run's `run_*` prediction.
    """
    t = pos.index
    width = max(int(t.max()) + 1 if len(t) else 0, int(profile_from.index.max()) + 1 if len(profile_from) else 0)
    num = np.bincount(t, weights=values, minlength=width)
    den = np.bincount(t, minlength=width).astype(np.float64)
    profile = np.bincount(profile_from.index, minlength=width).astype(np.float64)
    return float(_profile_mean(num, den, profile))
