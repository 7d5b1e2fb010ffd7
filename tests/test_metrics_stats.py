"""Bootstrap helpers: the fast multinomial path agrees with index resampling; clusters widen."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.analysis import bootstrap as stats
from harness.analysis.bootstrap import bootstrap_mean, bootstrap_ratio, rng_for


def test_binary_interval_matches_normal_approximation():
    values = np.array([1.0] * 120 + [0.0] * 280)  # p = 0.3, n = 400
    iv = bootstrap_mean(values, resamples=4000, rng=np.random.default_rng(1))
    half = 1.96 * math.sqrt(0.3 * 0.7 / 400)
    assert iv.mean == pytest.approx(0.3) and iv.n == 400
    assert iv.lo == pytest.approx(0.3 - half, abs=0.01) and iv.hi == pytest.approx(0.3 + half, abs=0.01)


def test_multinomial_path_agrees_with_index_path(monkeypatch):
    rng = np.random.default_rng(3)
    sums = rng.integers(0, 4, 300).astype(float)
    counts = np.full(300, 3.0)
    sums = np.minimum(sums, counts)
    paths: list[str] = []
    for name in ("_resample_means_multinomial", "_resample_means_indices"):
        real = getattr(stats, name)
        monkeypatch.setattr(stats, name, lambda *a, _real=real, _name=name, **k: paths.append(_name) or _real(*a, **k))
    fast = bootstrap_ratio(sums, counts, resamples=3000, rng=np.random.default_rng(5))
    monkeypatch.setattr(stats, "_MULTINOMIAL_MAX_CATEGORIES", 0)
    slow = bootstrap_ratio(sums, counts, resamples=3000, rng=np.random.default_rng(5))
    assert paths == ["_resample_means_multinomial", "_resample_means_indices"]  # both paths really ran
    assert fast.mean == pytest.approx(sums.sum() / counts.sum())
    assert fast.lo < fast.mean < fast.hi
    assert fast.lo == pytest.approx(slow.lo, abs=0.01) and fast.hi == pytest.approx(slow.hi, abs=0.01)


def test_clusters_widen_the_interval_when_repeats_agree():
    values = np.repeat(np.array([1.0] * 30 + [0.0] * 30), 5)  # 60 prompts × 5 identical repeats
    clusters = np.repeat(np.arange(60), 5)
    naive = bootstrap_mean(values, rng=np.random.default_rng(0))
    clustered = bootstrap_mean(values, clusters, rng=np.random.default_rng(0))
    assert (clustered.hi - clustered.lo) > 1.8 * (naive.hi - naive.lo)


def test_edge_cases_nan_constant_and_seeding():
    empty = bootstrap_mean(np.array([np.nan, np.nan]))
    assert empty.n == 0 and math.isnan(empty.mean) and math.isnan(empty.lo)
    const = bootstrap_mean(np.array([1.0, 1.0, np.nan]))
    assert (const.mean, const.lo, const.hi, const.n) == (1.0, 1.0, 1.0, 2)
    a = rng_for("run", "cell", "m").random(3)
    assert np.array_equal(a, rng_for("run", "cell", "m").random(3))
    assert not np.array_equal(a, rng_for("run", "cell2", "m").random(3))
