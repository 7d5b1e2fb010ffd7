"""Paired statistics: sign-flip test, quantile test, bootstrap intervals, Holm / BH."""

from __future__ import annotations

import numpy as np
import pytest

from harness.compare.options import CompareOptions, Threshold
from harness.compare.paired import adjust, paired_mean_test, paired_quantile_test, perm_count
from harness.errors import UsageError


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_identical_sides_give_p_one_and_zero_interval() -> None:
    x = rng().random(50)
    t = paired_mean_test(x, x.copy(), rng=rng())
    assert t.diff == 0 and t.ci_low == 0 and t.ci_high == 0
    assert t.p_less == 1.0 and t.p_greater == 1.0


def test_sign_flip_matches_exact_binomial_tail() -> None:
    # 6 prompts lost, none gained: exact one-sided p = 2**-6 = 0.015625
    base = np.array([1.0] * 6 + [1.0] * 94)
    cand = np.array([0.0] * 6 + [1.0] * 94)
    t = paired_mean_test(base, cand, rng=rng(), n_perm=40_000)
    assert t.p_less == pytest.approx(2**-6, abs=0.003)
    assert t.p_greater > 0.99
    assert t.diff == pytest.approx(-0.06)
    assert t.ci_low < -0.06 < t.ci_high <= 0.0


def test_mean_test_detects_a_clear_drop_and_interval_covers_it() -> None:
    r = rng(1)
    base = r.random(200)
    cand = base - 0.1 + r.normal(0, 0.05, 200)
    t = paired_mean_test(base, cand, rng=r)
    assert t.p_less < 1e-3 < 0.5 < t.p_greater
    assert t.ci_low < -0.1 < t.ci_high < 0


def test_mean_test_is_calibrated_under_the_null() -> None:
    r = rng(7)
    rejections = 0
    trials = 400
    for _ in range(trials):
        p = r.beta(0.5, 0.5, size=60)  # heterogeneous prompt difficulty
        base = r.binomial(3, p) / 3
        cand = r.binomial(3, p) / 3
        rejections += paired_mean_test(base, cand, rng=r, n_perm=2_000, n_boot=10).p_less < 0.05
    assert 0.02 <= rejections / trials <= 0.08


def test_quantile_test_sees_a_slower_candidate() -> None:
    r = rng(2)
    base = r.gamma(4.0, 0.05, size=(100, 3))
    slow = base * 1.5
    t = paired_quantile_test(base, slow, q=0.95, rng=r)
    assert t.diff > 0 and t.p_greater < 0.01 and t.p_less > 0.5
    same = paired_quantile_test(base, base.copy(), q=0.95, rng=r)
    assert same.diff == 0 and same.p_greater == 1.0


def test_quantile_test_ignores_missing_cells() -> None:
    r = rng(3)
    base = r.gamma(4.0, 0.05, size=(50, 3))
    base[::5, 2] = np.nan
    t = paired_quantile_test(base, base * 2, q=0.95, rng=r, n_perm=500, n_boot=200)
    assert np.isfinite(t.diff) and t.p_greater < 0.01


def test_holm_and_bh_against_hand_computed_values() -> None:
    p = [0.01, 0.04, 0.03, 0.5]
    assert adjust(p, "holm").tolist() == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert adjust(p, "bh").tolist() == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.5])
    assert adjust([], "holm").size == 0
    assert adjust([0.9, 0.8], "holm").max() <= 1.0


def test_perm_count_resolves_the_smallest_holm_threshold() -> None:
    assert perm_count(1, 0.05) == 10_000
    n = perm_count(100, 0.05)
    assert 1 / (n + 1) < 0.05 / 100 / 10


@pytest.mark.parametrize(
    ("text", "value", "relative"), [("0.05", 0.05, False), ("5%", 0.05, True), (" 0 ", 0.0, False)]
)
def test_threshold_parse(text: str, value: float, relative: bool) -> None:
    t = Threshold.parse(text, "--max-drop")
    assert t.value == pytest.approx(value) and t.relative is relative


@pytest.mark.parametrize("text", ["abc", "-0.1", "nan", "5%%", ""])
def test_threshold_parse_refuses_bad_values_naming_the_flag(text: str) -> None:
    with pytest.raises(UsageError, match="--max-drop"):
        Threshold.parse(text, "--max-drop")


def test_relative_threshold_scales_with_base() -> None:
    assert Threshold(0.1, relative=True).absolute(0.8) == pytest.approx(0.08)
    assert Threshold(0.1).absolute(0.8) == pytest.approx(0.1)


def test_options_refuse_out_of_range_values() -> None:
    with pytest.raises(UsageError, match="--alpha"):
        CompareOptions(alpha=0.7)
    with pytest.raises(UsageError, match="--max-latency-ratio"):
        CompareOptions(max_latency_ratio=0.5)
    with pytest.raises(UsageError, match="--max-error-rate"):
        CompareOptions(max_error_rate=Threshold(3.0))


def test_row_permutation_is_exact_on_one_prompt() -> None:
    # base 3/3 right, candidate 0/3: of the C(6,3) = 20 splits of the six rows, one is as extreme
    b, c = np.ones((1, 3)), np.zeros((1, 3))
    rows = paired_mean_test(b.mean(1), c.mean(1), rng=rng(), n_perm=40_000, rows=(b, c))
    assert rows.p_less == pytest.approx(1 / 20, abs=0.004)
    flips = paired_mean_test(b.mean(1), c.mean(1), rng=rng(), n_perm=40_000)
    assert flips.p_less == pytest.approx(1 / 2, abs=0.01)  # one prompt: a coin flip


@pytest.mark.slow
def test_row_permutation_handles_missing_rows_and_is_calibrated() -> None:
    r = rng(11)
    rejections, trials = 0, 300
    for _ in range(trials):
        p = r.beta(0.7, 0.3, size=80)
        b = (r.random((80, 3)) < p[:, None]).astype(float)
        c = (r.random((80, 3)) < p[:, None]).astype(float)
        b[::5, 2] = c[::5, 2] = np.nan
        t = paired_mean_test(np.nanmean(b, 1), np.nanmean(c, 1), rng=r, n_perm=1_000, n_boot=10, rows=(b, c))
        rejections += t.p_less < 0.05
    assert 0.015 <= rejections / trials <= 0.08


def test_public_surface_is_declared_and_sorted() -> None:
    import harness.compare as compare

    assert compare.__all__ == sorted(compare.__all__)
    assert all(hasattr(compare, name) for name in compare.__all__)
