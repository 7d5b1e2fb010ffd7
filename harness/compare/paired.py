"""Paired statistics for comparing two runs, clustered by prompt.

The unit of independence is the prompt, not the row: the repeats of one prompt share its
difficulty, so treating them as independent would make every interval too narrow and every
p-value too small (and the gate would cry wolf). Every function here therefore works on
per-prompt arrays:

- a *mean* statistic (accuracy, error rate): the per-prompt mean difference ``d_i`` over the
  paired repeats; the test is a paired sign-flip permutation test on ``d_i`` (exact under the
  null that base and candidate are exchangeable within a prompt), the interval a bootstrap
  over prompts.
- a *quantile* statistic (p95 latency): rows kept per prompt in a NaN-padded matrix; the
  permutation swaps the base and candidate rows of each prompt with probability 1/2, the
  bootstrap resamples prompts.

p-values are one-sided and returned for both directions; the caller picks which direction
is "worse". Corrections across cells: Holm (family-wise error) or Benjamini–Hochberg (FDR).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Correction = Literal["holm", "bh"]


@dataclass(frozen=True)
class PairedTest:
    """Result of one paired comparison. ``diff`` is candidate minus base."""

    n_prompts: int
    base: float
    cand: float
    diff: float
    ci_low: float
    ci_high: float
    p_greater: float  # one-sided: candidate > base
    p_less: float  # one-sided: candidate < base


def _mc_pvalue(null: np.ndarray, observed: float, greater: bool) -> float:
    """Monte Carlo permutation p-value, counting the observed arrangement (never 0)."""
    # float sums of the same terms in another order differ in the last bits: count those as ties
    tol = 1e-9 * max(abs(observed), float(np.abs(null).max(initial=0.0)))
    hits = np.count_nonzero(null >= observed - tol) if greater else np.count_nonzero(null <= observed + tol)
    return float((hits + 1) / (null.size + 1))


def _sign_flip_null(rng: np.random.Generator, d: np.ndarray, n_perm: int) -> np.ndarray:
    """Means of ``d`` under ``n_perm`` random sign flips (in chunks to bound memory)."""
    chunk = max(1, 2_000_000 // max(d.size, 1))
    parts = []
    for start in range(0, n_perm, chunk):
        rows = min(chunk, n_perm - start)
        packed = rng.integers(0, 256, size=(rows, (d.size + 7) // 8), dtype=np.uint8)
        bits = np.unpackbits(packed, axis=1)[:, : d.size].astype(np.float64)
        parts.append(2.0 * (bits @ d) - d.sum())  # sum of ±d_i with random signs
    return np.concatenate(parts) / d.size


def _row_perm_null(rng: np.random.Generator, mb: np.ndarray, mc: np.ndarray, n_perm: int) -> np.ndarray:
    """Mean per-prompt differences when each prompt's 2·k paired rows are shuffled between sides.

    ``mb``/``mc``: (prompts × repeats) matrices, NaN where a row is missing (same places in both).
    Prompts are grouped by their number of pairs k, so each group shuffles a dense block.
    """
    k = (~np.isnan(mb)).sum(axis=1)
    total = np.zeros(n_perm)
    n_prompts = int((k > 0).sum())
    for size in np.unique(k[k > 0]):
        group = k == size
        pooled = np.concatenate([_compact(mb[group])[:, :size], _compact(mc[group])[:, :size]], axis=1)
        chunk = max(1, 2_000_000 // pooled.size)
        for start in range(0, n_perm, chunk):
            rows = min(chunk, n_perm - start)
            block = np.broadcast_to(pooled, (rows, *pooled.shape)).copy()
            rng.permuted(block, axis=2, out=block)
            diff = block[:, :, size:].mean(axis=2) - block[:, :, :size].mean(axis=2)
            total[start : start + rows] += diff.sum(axis=1)
    return total / max(n_prompts, 1)


def _compact(m: np.ndarray) -> np.ndarray:
    """Each row's non-NaN values first, in order."""
    order = np.argsort(np.isnan(m), axis=1, kind="stable")
    return np.take_along_axis(m, order, axis=1)


def paired_mean_test(
    base: np.ndarray,
    cand: np.ndarray,
    *,
    rng: np.random.Generator,
    n_perm: int = 10_000,
    n_boot: int = 2_000,
    confidence: float = 0.95,
    rows: tuple[np.ndarray, np.ndarray] | None = None,
) -> PairedTest:
    """Permutation test and prompt bootstrap for per-prompt means ``base[i]``, ``cand[i]``.

    The null flips the sign of each prompt's difference (base and candidate exchangeable per
    prompt: robust when a run's repeats are correlated). With ``rows`` — the (prompts × repeats)
    row matrices the means come from — it shuffles each prompt's rows between the sides instead,
    which assumes every repeat is an independent draw and has more power.
    """
    base = np.asarray(base, dtype=float)
    cand = np.asarray(cand, dtype=float)
    d = cand - base
    n = d.size
    if n == 0:
        nan = float("nan")
        return PairedTest(0, nan, nan, nan, nan, nan, 1.0, 1.0)
    observed = float(d.mean())
    null = _sign_flip_null(rng, d, n_perm) if rows is None else _row_perm_null(rng, *rows, n_perm)
    boot = d[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    low, high = _interval(boot, confidence)
    return PairedTest(
        n_prompts=n,
        base=float(base.mean()),
        cand=float(cand.mean()),
        diff=observed,
        ci_low=low,
        ci_high=high,
        p_greater=_mc_pvalue(null, observed, greater=True),
        p_less=_mc_pvalue(null, observed, greater=False),
    )


def paired_quantile_test(
    base: np.ndarray,
    cand: np.ndarray,
    *,
    q: float,
    rng: np.random.Generator,
    n_perm: int = 2_000,
    n_boot: int = 1_000,
    confidence: float = 0.95,
) -> PairedTest:
    """Test of quantile(cand) − quantile(base) on (prompts × repeats) NaN-padded matrices.

    Row ``i`` of both matrices holds the paired repeats of prompt ``i`` (NaN where missing).
    """
    base = np.asarray(base, dtype=float)
    cand = np.asarray(cand, dtype=float)
    n = base.shape[0]
    if n == 0 or np.all(np.isnan(base)):
        nan = float("nan")
        return PairedTest(0, nan, nan, nan, nan, nan, 1.0, 1.0)
    qb, qc = float(_quantile(base, q)), float(_quantile(cand, q))
    observed = qc - qb
    swap = rng.integers(0, 2, size=(n_perm, n, 1), dtype=np.int8).astype(bool)
    perm_b = np.where(swap, cand, base).reshape(n_perm, -1)
    perm_c = np.where(swap, base, cand).reshape(n_perm, -1)
    null = _quantile(perm_c, q, axis=1) - _quantile(perm_b, q, axis=1)
    idx = rng.integers(0, n, size=(n_boot, n))
    boot = _quantile(cand[idx].reshape(n_boot, -1), q, axis=1) - _quantile(
        base[idx].reshape(n_boot, -1), q, axis=1
    )
    low, high = _interval(boot, confidence)
    return PairedTest(
        n_prompts=n,
        base=qb,
        cand=qc,
        diff=observed,
        ci_low=low,
        ci_high=high,
        p_greater=_mc_pvalue(null, observed, greater=True),
        p_less=_mc_pvalue(null, observed, greater=False),
    )


def _quantile(x: np.ndarray, q: float, axis: int | None = None) -> np.ndarray:
    """Quantile ignoring NaN; the plain (much faster) path when there is none."""
    if np.isnan(x).any():
        return np.asarray(np.nanquantile(x, q, axis=axis))
    return np.asarray(np.quantile(x, q, axis=axis))


def _interval(boot: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(boot, [tail, 1.0 - tail])
    return float(low), float(high)


def adjust(pvalues: list[float] | np.ndarray, method: Correction) -> np.ndarray:
    """Adjusted p-values (Holm step-down or Benjamini–Hochberg step-up), same order as input."""
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "holm":
        factors: np.ndarray = m - np.arange(m)
        adjusted = np.maximum.accumulate(np.minimum(1.0, ranked * factors))
    elif method == "bh":
        factors = m / (np.arange(m) + 1)
        adjusted = np.minimum.accumulate((ranked * factors)[::-1])[::-1]
        adjusted = np.minimum(1.0, adjusted)
    else:  # pragma: no cover - guarded by the CLI's choices
        raise ValueError(f"unknown correction {method!r}")
    out = np.empty(m)
    out[order] = adjusted
    return out


def perm_count(n_tests: int, alpha: float, floor: int = 10_000, cap: int = 200_000) -> int:
    """Permutations enough to resolve Holm's smallest threshold alpha / n_tests (≥ 20 draws below it)."""
    needed = int(np.ceil(20 * max(n_tests, 1) / alpha))
    return int(min(cap, max(floor, needed)))


__all__ = [
    "Correction",
    "PairedTest",
    "adjust",
    "paired_mean_test",
    "paired_quantile_test",
    "perm_count",
]
