"""Bootstrap intervals, seeded and vectorised.

The interval of a mean is a percentile bootstrap. When rows come in clusters (the repeats of
one prompt are not independent draws), clusters are resampled whole: each resample draws as
many clusters as there are, with replacement, and its statistic is Σ sums / Σ counts.

Speed: the statistic depends only on *how many times each distinct (sum, count) pair* is drawn,
so a resample is one multinomial draw over the distinct pairs, exactly equivalent to drawing
indices. For 0/1 scores with equal repeats there are at most repeats+1 distinct pairs, so a
cell of a million rows costs as little as a cell of ten. Many distinct pairs (continuous scores)
fall back to drawing indices, in chunks that bound memory.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
DEFAULT_SEED = 20240601
_MULTINOMIAL_MAX_CATEGORIES = 256
_CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval; all NaN when there is no data."""

    mean: float
    lo: float
    hi: float
    n: int


def rng_for(*keys: str | int, seed: int = DEFAULT_SEED) -> np.random.Generator:
    """A generator seeded by `seed` and stable hashes of `keys` (independent of processing order)."""
    entropy = [seed] + [zlib.crc32(str(k).encode("utf-8")) for k in keys]
    return np.random.default_rng(entropy)


def _resample_means_multinomial(
    sums: np.ndarray, counts: np.ndarray, m: int, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    pairs, weight = np.unique(np.stack([sums, counts], axis=1), axis=0, return_counts=True)
    draws = rng.multinomial(m, weight / weight.sum(), size=resamples).astype(np.float64)
    return (draws @ pairs[:, 0]) / (draws @ pairs[:, 1])


def _resample_means_indices(
    sums: np.ndarray, counts: np.ndarray, m: int, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    out = np.empty(resamples, dtype=np.float64)
    step = max(1, _CHUNK_ELEMENTS // max(m, 1))
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        idx = rng.integers(0, m, size=(stop - start, m))
        out[start:stop] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    return out


def bootstrap_ratio(
    sums: np.ndarray,
    counts: np.ndarray,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    rng: np.random.Generator | None = None,
) -> Interval:
    """Σsums/Σcounts with a percentile interval from resampling clusters (sum_i, count_i)."""
    sums = np.asarray(sums, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    keep = counts > 0
    sums, counts = sums[keep], counts[keep]
    n = int(counts.sum())
    if n == 0:
        return Interval(np.nan, np.nan, np.nan, 0)
    mean = float(sums.sum() / counts.sum())
    m = len(sums)
    rng = rng if rng is not None else np.random.default_rng(DEFAULT_SEED)
    distinct = len(np.unique(np.stack([sums, counts], axis=1), axis=0))
    if distinct == 1:
        return Interval(mean, mean, mean, n)
    if distinct <= _MULTINOMIAL_MAX_CATEGORIES:
        stats = _resample_means_multinomial(sums, counts, m, resamples, rng)
    else:
        stats = _resample_means_indices(sums, counts, m, resamples, rng)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(stats, [tail, 1.0 - tail])
    return Interval(mean, float(min(lo, mean)), float(max(hi, mean)), n)


def bootstrap_mean(
    values: np.ndarray,
    clusters: np.ndarray | None = None,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    rng: np.random.Generator | None = None,
) -> Interval:
    """Mean of the non-NaN `values` with a bootstrap interval (clustered when `clusters` given)."""
    values = np.asarray(values, dtype=np.float64)
    keep = ~np.isnan(values)
    values = values[keep]
    if clusters is None:
        return bootstrap_ratio(values, np.ones_like(values), resamples=resamples, level=level, rng=rng)
    codes = np.unique(np.asarray(clusters)[keep], return_inverse=True)[1].reshape(-1)
    sums = np.bincount(codes, weights=values)
    counts = np.bincount(codes).astype(np.float64)
    return bootstrap_ratio(sums, counts, resamples=resamples, level=level, rng=rng)


__all__ = [
    "DEFAULT_LEVEL",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "Interval",
    "bootstrap_mean",
    "bootstrap_ratio",
    "rng_for",
]
