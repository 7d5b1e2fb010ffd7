"""Bootstrap intervals, seeded and vectorised.

The interval of a mean is a percentile bootstrap. When rows come in clusters (the repeats of
one prompt are not independent draws), clusters are resampled whole: each resample draws as
many clusters as there are, with replacement, and its statistic is Σ sums / Σ counts.

Speed: the statistic depends only on *how many times each distinct (sum, count) pair* is drawn,
so a resample is one multinomial draw over the distinct pairs, exactly equivalent to drawing
indices. For 0/1 scores with equal repeats there are at most repeats+1 distinct pairs, so a
cell of a million rows costs as little as a cell of ten. Many distinct pairs (continuous scores)
fall back to drawing indices, in chunks that bound memory.

Many statistics of one cell share one set of resamples (`cluster_weights`): each resample is a
row of cluster counts, so a ratio statistic Σsums/Σcounts of every resample is one matrix
product (`weighted_ratios`), and a quantile is a weighted quantile of the sorted values
(`weighted_quantiles`). Quantile intervals of cells with more than QUANTILE_MAX_CLUSTERS
clusters are computed on an evenly spaced subset of whole clusters and their spread rescaled by
√(subset/all) (rescaled subsampling), which keeps a million-row report within seconds.
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
QUANTILE_MAX_CLUSTERS = 2_000
QUANTILE_MAX_VALUES = 2_000


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


def _cluster_counts(m: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    draws = rng.integers(0, m, size=(resamples, m))
    flat = (draws + (np.arange(resamples) * m)[:, None]).reshape(-1)
    return np.bincount(flat, minlength=resamples * m).reshape(resamples, m)


def cluster_weights(m: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples × m) float counts: how often each of m clusters is drawn in each resample."""
    if m == 0:
        return np.zeros((resamples, 0))
    return _cluster_counts(m, resamples, rng).astype(np.float64)


def percentile_interval(estimate: float, stats: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """(lo, hi) percentile interval of the finite bootstrap `stats`, widened to hold `estimate`."""
    finite = stats[np.isfinite(stats)]
    if not np.isfinite(estimate) or not len(finite):
        return np.nan, np.nan
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(finite, [tail, 1.0 - tail])
    return float(min(lo, estimate)), float(max(hi, estimate))


def weighted_ratios(sums: np.ndarray, counts: np.ndarray, weights: np.ndarray, level: float = DEFAULT_LEVEL
                    ) -> list[Interval]:
    """Per column k of the (m × k) cluster `sums`/`counts`: Σsums/Σcounts with a percentile
    interval over the resamples in `weights` (resamples × m, from `cluster_weights`)."""
    total_s, total_c = sums.sum(axis=0), counts.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        estimates = np.where(total_c > 0, total_s / np.where(total_c > 0, total_c, 1), np.nan)
        boot = (weights @ sums) / (weights @ counts)
    out = []
    for k in range(sums.shape[1]):
        lo, hi = percentile_interval(float(estimates[k]), boot[:, k], level)
        out.append(Interval(float(estimates[k]), lo, hi, int(total_c[k])))
    return out


def _quantiles_from_cum(sorted_values: np.ndarray, cum: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    """(rows × len(qs)): per row of `cum` (cumulative integer weights over sorted values), the
    linear-interpolation quantiles of the sample that repeats value i weight_i times."""
    rows, n = cum.shape
    total = cum[:, -1].astype(np.float64)
    stride = int(total.max()) + 2
    offset = np.arange(rows, dtype=np.int64) * stride
    flat = (cum.astype(np.int64) + offset[:, None]).reshape(-1)
    base = np.arange(rows) * n
    last = len(sorted_values) - 1
    out = np.empty((rows, len(qs)))
    for j, q in enumerate(qs):
        h = q * np.maximum(total - 1, 0)
        k = np.floor(h)
        lo_idx = np.searchsorted(flat, k.astype(np.int64) + offset, side="right") - base
        hi_idx = np.searchsorted(flat, k.astype(np.int64) + 1 + offset, side="right") - base
        lo_v = sorted_values[np.minimum(lo_idx, last)]
        hi_v = sorted_values[np.minimum(hi_idx, last)]
        out[:, j] = np.where(total > 0, lo_v + (h - k) * (hi_v - lo_v), np.nan)
    return out


def bootstrap_quantiles(
    values: np.ndarray,
    clusters: np.ndarray,
    qs: tuple[float, ...],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    rng: np.random.Generator | None = None,
) -> list[Interval]:
    """Quantiles qs of the non-NaN `values` (linear interpolation) with prompt-clustered
    percentile-bootstrap intervals (large cells: rescaled subsampling, see the module docstring)."""
    values = np.asarray(values, dtype=np.float64)
    keep = ~np.isnan(values)
    values, clusters = values[keep], np.asarray(clusters)[keep]
    n = len(values)
    if n == 0:
        return [Interval(np.nan, np.nan, np.nan, 0) for _ in qs]
    estimates = np.quantile(values, qs)
    codes = np.unique(clusters, return_inverse=True)[1].reshape(-1)
    m = int(codes.max()) + 1
    scale = 1.0
    if m > QUANTILE_MAX_CLUSTERS or n > QUANTILE_MAX_VALUES:
        per = max(1.0, n / m)
        keep_m = max(2, min(m, QUANTILE_MAX_CLUSTERS, int(QUANTILE_MAX_VALUES / per)))
        chosen = np.zeros(m, dtype=bool)
        chosen[np.linspace(0, m - 1, keep_m).round().astype(np.int64)] = True
        sub = chosen[codes]
        values, codes = values[sub], np.unique(codes[sub], return_inverse=True)[1].reshape(-1)
        scale, m = float(np.sqrt(keep_m / m)), keep_m
    order = np.argsort(values, kind="stable")
    sorted_values, sorted_codes = values[order], codes[order]
    centre = np.quantile(values, qs)
    rng = rng if rng is not None else np.random.default_rng(DEFAULT_SEED)
    boot = np.empty((resamples, len(qs)))
    step = max(1, _CHUNK_ELEMENTS // max(len(values), m, 1))
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        counts = _cluster_counts(m, stop - start, rng).astype(np.int32)
        cum = np.cumsum(counts[:, sorted_codes], axis=1, dtype=np.int32)
        boot[start:stop] = _quantiles_from_cum(sorted_values, cum, qs)
    out = []
    for j in range(len(qs)):
        stats = float(estimates[j]) + (boot[:, j] - centre[j]) * scale
        lo, hi = percentile_interval(float(estimates[j]), stats, level)
        out.append(Interval(float(estimates[j]), lo, hi, n))
    return out


__all__ = [
    "DEFAULT_LEVEL",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "Interval",
    "bootstrap_mean",
    "bootstrap_quantiles",
    "bootstrap_ratio",
    "cluster_weights",
    "percentile_interval",
    "rng_for",
    "weighted_ratios",
]
