"""The decision core of adaptive repeats (harness/analysis/sequential.py): intervals, looks, drops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.analysis.sequential import MIN_SEED_REPEATS, CellInterval, Rule, Schedule, SeedSums, cell_interval, t_quantile

RULE = Rule(min=2, max=20, step=2, half_width=0.05, confidence=0.95, alpha=0.05)


def feed(schedule: Schedule, p: np.ndarray, rng: np.random.Generator) -> int:
    """Run a schedule to the end on 0/1 draws with per-(cell, prompt) success probabilities `p`."""
    sent = 0
    while not schedule.done:
        for cell, start, stop in schedule.round():
            draws = rng.random((schedule.prompts, stop - start)) < p[cell][:, None]
            sent += draws.size
            schedule.record_block(cell, start, draws.astype(np.float64))
        schedule.close()
    return sent


@pytest.mark.parametrize(("p", "df", "want"), [
    (0.975, 1, 12.7062), (0.975, 2, 4.3027), (0.975, 5, 2.5706), (0.975, 10, 2.2281), (0.975, 30, 2.0423),
    (0.995, 4, 4.6041), (0.999, 20, 3.5518), (0.9995, 3, 12.9240), (0.975, 1000, 1.9623),
])
def test_t_quantile_matches_the_table(p: float, df: int, want: float) -> None:
    assert t_quantile(p, df) == pytest.approx(want, abs=2e-4)


@pytest.mark.slow  # importing scipy takes seconds
def test_t_quantile_matches_scipy_in_the_far_tail() -> None:
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 7, 19, 120, 299, 301, 5000):
        for p in (0.6, 0.975, 0.999, 1 - 1e-5, 1 - 1e-7):
            assert t_quantile(p, df) == pytest.approx(float(stats.t.ppf(p, df)), rel=1e-6), (p, df)


def test_interval_is_the_cluster_robust_one() -> None:
    sums = np.array([3.0, 1.0, 4.0, 0.0])  # 4 prompts, 4 samples each
    counts = np.array([4.0, 4.0, 4.0, 4.0])
    iv = cell_interval(sums, counts, 0.95, binary=False)
    mean = 8 / 16
    var = 4 / 3 * sum((s - mean * 4) ** 2 for s in sums) / 16**2
    assert iv.mean == pytest.approx(mean)
    assert iv.half_width == pytest.approx(t_quantile(0.975, 3) * math.sqrt(var))
    assert (iv.lo, iv.hi) == pytest.approx((mean - iv.half_width, mean + iv.half_width))
    assert (iv.scored, iv.prompts) == (16, 4)


def test_agreeing_first_samples_do_not_give_a_zero_width_interval() -> None:
    iv = cell_interval(np.full(20, 2.0), np.full(20, 2.0), 0.95, binary=True)  # 40 of 40 right
    assert iv.mean == 1.0 and iv.half_width > 0.04
    assert cell_interval(np.full(20, 2.0), np.full(20, 2.0), 0.95, binary=False).half_width == 0.0
    assert math.isinf(cell_interval(np.zeros(3), np.zeros(3), 0.95, binary=True).half_width)


def test_rounds_go_min_then_step_to_max() -> None:
    sch = Schedule(Rule(min=3, max=8, step=2, half_width=1e-9), cells=2, prompts=2)
    seen = []
    while not sch.done:
        seen.append(sch.round())
        for cell, start, stop in sch.round():
            for prompt in range(2):
                for s in range(start, stop):
                    sch.record(cell, prompt, s, float((cell + prompt + s) % 2))
        sch.close()
    assert seen == [[(0, 0, 3), (1, 0, 3)], [(0, 3, 5), (1, 3, 5)], [(0, 5, 7), (1, 5, 7)], [(0, 7, 8), (1, 7, 8)]]
    assert [st.reason for st in sch.states] == ["max", "max"] and sch.looks == 4 == sch.rule.looks


def test_a_narrow_cell_converges_and_a_far_worse_one_is_dropped_at_the_first_look() -> None:
    sch = Schedule(RULE, cells=3, prompts=40)
    p = np.array([[0.97] * 40, [0.2] * 40, [0.6] * 40])
    feed(sch, p, np.random.default_rng(1))
    best, bad, middle = sch.states
    assert best.reason == "converged" and best.interval is not None and best.interval.half_width <= 0.05
    assert bad.reason == "dropped" and bad.look == 1 and bad.n == 2 and bad.dropped_by == 0
    assert middle.reason == "dropped"


def test_cells_race_only_within_their_group() -> None:
    """Several targets: group 1's cells are all far worse than group 0's leader, yet none is dropped
    for it; within each group the worse cell is dropped by that group's own leader."""
    sch = Schedule(RULE, cells=4, prompts=40, groups=[0, 0, 1, 1])
    p = np.array([[0.97] * 40, [0.2] * 40, [0.15] * 40, [0.0] * 40])
    feed(sch, p, np.random.default_rng(1))
    a_best, a_bad, b_best, b_bad = sch.states
    assert a_best.reason == "converged" and a_bad.reason == "dropped" and a_bad.dropped_by == 0
    assert b_best.reason != "dropped" and b_bad.reason == "dropped" and b_bad.dropped_by == 2
    assert sch.leader(0) == 0 and sch.leader(1) == 2
    # the same cells in one race: group 1's best is dropped by group 0's leader
    one = Schedule(RULE, cells=4, prompts=40)
    feed(one, p, np.random.default_rng(1))
    assert one.states[2].reason == "dropped" and one.states[2].dropped_by == 0


def test_bonferroni_counts_the_rivals_of_the_group() -> None:
    sch = Schedule(RULE, cells=5, prompts=10, groups=[0, 0, 0, 1, 1])
    assert sch.alpha_per_test(0) == pytest.approx(0.05 / (2 * RULE.looks))
    assert sch.alpha_per_test(1) == pytest.approx(0.05 / (1 * RULE.looks))
    with pytest.raises(ValueError, match="groups"):
        Schedule(RULE, cells=2, prompts=10, groups=[0])


def test_the_largest_alpha_with_one_look_and_two_rivals_tests_at_the_median() -> None:
    """drop_worse.alpha 0.5 (the spec's upper bound), min = max (one look), two cells in the race:
    the test's level is 0.5, whose t quantile is 0 (was a ValueError: an internal error, exit 70)."""
    assert t_quantile(0.5, 3) == 0.0
    rule = Rule(min=3, max=3, step=3, half_width=0.05, alpha=0.5)
    sch = Schedule(rule, cells=4, prompts=20, groups=[0, 0, 1, 1])
    feed(sch, np.array([[0.9] * 20, [0.1] * 20, [0.9] * 20, [0.1] * 20]), np.random.default_rng(2))
    assert [st.reason for st in sch.states] == ["max", "dropped", "max", "dropped"]


def test_a_lone_cell_of_its_group_is_never_dropped_and_may_stop_unreachable() -> None:
    rule = Rule(min=2, max=20, step=2, half_width=0.05, alpha=0.05, stop_unreachable=True)
    sch = Schedule(rule, cells=3, prompts=40, groups=[0, 0, 1])
    p = np.array([[0.97] * 40, [0.9] * 40, [1.0] * 20 + [0.0] * 20])  # group 1: prompts disagree, alone
    feed(sch, p, np.random.default_rng(4))
    assert sch.states[2].reason == "unreachable" and sch.states[2].look == 1


def test_lower_is_better_flips_the_leader() -> None:
    sch = Schedule(Rule(min=2, max=4, step=2, half_width=1e-9, higher_is_better=False, alpha=0.05), cells=2, prompts=30)
    feed(sch, np.array([[0.9] * 30, [0.1] * 30]), np.random.default_rng(2))
    assert sch.leader() == 1 and sch.states[0].reason == "dropped"


def test_record_order_does_not_change_decisions() -> None:
    rng = np.random.default_rng(3)
    scores = {(c, q, s): float(rng.random() < 0.3 + 0.2 * c) for c in range(3) for q in range(10) for s in range(20)}

    def run(order: int) -> list[tuple[str | None, int]]:
        sch = Schedule(Rule(min=2, max=20, step=3, half_width=0.08, alpha=0.1), cells=3, prompts=10)
        while not sch.done:
            keys = [(c, q, s) for c, a, b in sch.round() for q in range(10) for s in range(a, b)]
            for key in (keys if order == 0 else reversed(keys)):
                sch.record(*key, scores[key])
            sch.close()
        return [(st.reason, st.n) for st in sch.states]

    assert run(0) == run(1)


@pytest.mark.slow  # seconds
def test_the_truly_best_cell_is_dropped_at_most_alpha_of_the_time() -> None:
    """Five equally good cells (the null for every pair): any drop of cell 0 is a false one."""
    rule = Rule(min=2, max=20, step=2, half_width=0.01, alpha=0.05)
    dropped = 0
    for seed in range(100):
        sch = Schedule(rule, cells=5, prompts=10)
        feed(sch, np.full((5, 10), 0.6), np.random.default_rng(seed))
        dropped += sch.states[0].reason == "dropped"
    assert dropped <= 0.05 * 100
    assert rule.looks == 10 and Schedule(rule, cells=5, prompts=10).alpha_per_test() == pytest.approx(0.05 / 40)


@pytest.mark.slow  # seconds
def test_without_the_correction_the_same_check_fails() -> None:
    """The check above can fail: testing each look at the full alpha drops equal cells far more often."""

    class Uncorrected(Schedule):
        def alpha_per_test(self, group: int = 0) -> float:
            return 0.2

    dropped = 0
    for seed in range(100):
        sch = Uncorrected(Rule(min=2, max=20, step=2, half_width=0.01, alpha=0.05), cells=5, prompts=10)
        feed(sch, np.full((5, 10), 0.6), np.random.default_rng(seed))
        dropped += sch.states[0].reason == "dropped"
    assert dropped > 0.05 * 100


def test_scores_outside_the_round_are_ignored() -> None:
    sch = Schedule(Rule(min=2, max=4, step=2, half_width=0.5), cells=1, prompts=1)
    sch.record(0, 0, 3, 1.0)  # sample 3 is not in round 1 (samples 0-1)
    sch.record(0, 0, 0, 0.0)
    sch.record(0, 0, 1, math.nan)  # an error row: no score
    sch.close()
    assert sch.counts[0, 0] == 1 and sch.sums[0, 0] == 0
    sch.record_block(0, 1, np.array([[5.0, 1.0, 1.0, 1.0]]))  # samples 1-4: only 2 and 3 are in round 2
    sch.close()
    assert sch.counts[0, 0] == 3 and sch.sums[0, 0] == 2 and bool(sch.binary[0])


def test_record_block_equals_record() -> None:
    rng = np.random.default_rng(5)
    scores = (rng.random((2, 8, 20)) < 0.5).astype(np.float64)
    one, many = (Schedule(Rule(min=2, max=20, step=3, half_width=0.1, alpha=0.1), cells=2, prompts=8) for _ in range(2))
    while not one.done:
        for cell, start, stop in one.round():
            for q in range(8):
                for s in range(start, stop):
                    one.record(cell, q, s, scores[cell, q, s])
            many.record_block(cell, start, scores[cell][:, start:stop])
        one.close()
        many.close()
    assert [(a.reason, a.n, a.interval) for a in one.states] == [(b.reason, b.n, b.interval) for b in many.states]


def test_report_headline_gives_the_range_of_repeats_of_an_adaptive_run() -> None:
    import pandas as pd

    from harness.report.headline import _swept

    summary = pd.DataFrame({"run_id": ["r", "r"], "temperature": [0.3, 1.0]})
    rows = pd.DataFrame({"cell_id": ["a"] * 4 + ["b"] * 2, "prompt_id": ["p", "p", "q", "q", "p", "q"],
                         "sample": [0, 1, 0, 1, 0, 0]})
    assert "(2 prompts × 1–2 (adaptive) repeats per cell)" in _swept(summary, rows, ["temperature"])
    assert "(2 prompts × 2 repeats per cell)" in _swept(summary, rows.iloc[:4], ["temperature"])


def test_the_analytic_interval_agrees_with_the_reports_cluster_bootstrap() -> None:
    """The same cell, both ways: the half-widths agree within 15% (the analytic one uses t, not z)."""
    from harness.analysis.bootstrap import bootstrap_mean

    rng = np.random.default_rng(11)
    p = 1 / (1 + np.exp(-(0.8 + rng.normal(0, 1.0, 60))))  # 60 prompts of differing difficulty
    scores = (rng.random((60, 8)) < p[:, None]).astype(np.float64)
    boot = bootstrap_mean(scores.reshape(-1), np.repeat(np.arange(60), 8), resamples=4000)
    ours = cell_interval(scores.sum(axis=1), np.full(60, 8.0), 0.95, binary=True)
    assert ours.mean == pytest.approx(boot.mean)
    assert ours.half_width == pytest.approx((boot.hi - boot.lo) / 2, rel=0.15)


def test_a_cell_whose_prompts_disagree_is_unreachable_and_stops_early() -> None:
    """Each prompt always right or always wrong (a near-greedy cell): repeats cannot narrow it."""
    rule = Rule(min=2, max=20, step=2, half_width=0.05, stop_unreachable=True)
    sch = Schedule(rule, cells=1, prompts=40)
    feed(sch, np.array([[1.0] * 34 + [0.0] * 6]), np.random.default_rng(0))
    assert sch.states[0].reason == "unreachable" and sch.states[0].n == 2
    off = Schedule(Rule(min=2, max=20, step=2, half_width=0.05), cells=1, prompts=40)
    feed(off, np.array([[1.0] * 34 + [0.0] * 6]), np.random.default_rng(0))
    assert off.states[0].reason == "max" and off.states[0].n == 20


def test_a_cell_of_alike_prompts_is_rarely_called_unreachable() -> None:
    """Prompts of equal accuracy: the spread between them is noise, and the 95% bound rarely errs."""
    rule = Rule(min=2, max=20, step=2, half_width=0.05, stop_unreachable=True)
    wrong = 0
    for seed in range(100):
        sch = Schedule(rule, cells=1, prompts=40)
        feed(sch, np.full((1, 40), 0.6), np.random.default_rng(seed))
        wrong += sch.states[0].reason == "unreachable"
    assert wrong <= 5


# ---------------------------------------------------------------- shared seeds (seed: per_sample)


def seeded_scores(rng: np.random.Generator, k: int, n: int, share: float) -> np.ndarray:
    """0/1 scores (prompts × repeats) where repeat j's seed carries a luck u_j shared by every prompt
    (`share` of the draw; the rest is the request's own noise), prompt difficulty a_i ~ U(0.2, 0.9)."""
    a = rng.uniform(0.2, 0.9, k)
    u = rng.random(n)
    v = rng.random((k, n))
    return ((share * u[None, :] + (1 - share) * v) < a[:, None]).astype(float)


def truth(share: float) -> float:
    rng = np.random.default_rng(99)
    a, u, v = rng.uniform(0.2, 0.9, 1_000_000), rng.random(1_000_000), rng.random(1_000_000)
    return float(((share * u + (1 - share) * v) < a).mean())


def intervals(x: np.ndarray) -> tuple[CellInterval, CellInterval]:
    k, n = x.shape
    by_prompt = cell_interval(x.sum(1), np.full(k, float(n)), 0.95, binary=True)
    two_way = cell_interval(x.sum(1), np.full(k, float(n)), 0.95, binary=True,
                            seeds=SeedSums(x.sum(0), np.full(n, float(k)), float((x * x).sum())))  # fmt: skip
    return by_prompt, two_way


def test_shared_seeds_need_the_repeats_as_a_second_clustering() -> None:
    """A seed that is lucky for every prompt: the prompt-clustered interval covers the true mean in
    well under half of the runs; clustered by repeat too, in about 95%."""
    mean = truth(1.0)
    rng = np.random.default_rng(5)
    hits = np.zeros(2)
    for _ in range(300):
        for j, iv in enumerate(intervals(seeded_scores(rng, 40, 8, 1.0))):
            hits[j] += iv.lo <= mean <= iv.hi
    assert hits[0] / 300 < 0.6 and hits[1] / 300 >= 0.9


def test_without_a_seed_effect_the_second_clustering_costs_little() -> None:
    rng = np.random.default_rng(6)
    widths = np.array([[iv.half_width for iv in intervals(seeded_scores(rng, 40, 8, 0.0))] for _ in range(200)])
    assert widths[:, 1].mean() <= 1.1 * widths[:, 0].mean()
    assert (widths[:, 1] >= widths[:, 0] - 1e-12).all()  # never narrower than clustered by prompt alone


def test_with_shared_seeds_no_cell_is_judged_before_min_seed_repeats() -> None:
    rule = Rule(min=2, max=20, step=2, half_width=0.2, alpha=0.05, shared_seeds=True)
    sch = Schedule(rule, cells=2, prompts=40)
    feed(sch, np.array([[0.97] * 40, [0.02] * 40]), np.random.default_rng(1))  # independent draws
    assert [(st.reason, st.n) for st in sch.states] == [("converged", MIN_SEED_REPEATS), ("dropped", MIN_SEED_REPEATS)]
    plain = Schedule(Rule(min=2, max=20, step=2, half_width=0.2, alpha=0.05), cells=2, prompts=40)
    feed(plain, np.array([[0.97] * 40, [0.02] * 40]), np.random.default_rng(1))
    assert [st.n for st in plain.states] == [2, 2]


def test_with_shared_seeds_a_one_prompt_cell_converges_after_min_seed_repeats() -> None:
    """One prompt: the repeats are the only clustering (each repeat one score), so the cell is judged
    once it has MIN_SEED_REPEATS of them, not run to max for want of a second clustering."""
    rule = Rule(min=2, max=20, step=2, half_width=0.3, confidence=0.9, shared_seeds=True)
    sch = Schedule(rule, cells=1, prompts=1)
    feed(sch, np.array([[1.0]]), np.random.default_rng(0))
    assert (sch.states[0].reason, sch.states[0].n) == ("converged", 6)
    assert sch.states[0].interval is not None and sch.states[0].interval.repeats == 6


def feed_seeded(sch: Schedule, a: np.ndarray, luck: np.ndarray, noise: np.ndarray) -> None:
    """Each cell c's repeat j has luck[c, j] for every prompt (the same row for every cell: cells share it)."""
    while not sch.done:
        for c, lo, hi in sch.round():
            u = luck[c % len(luck), lo:hi]
            sch.record_block(c, lo, ((u[None, :] * 0.8 + 0.2 * noise[c, :, lo:hi]) < a[:, None]).astype(float))
        sch.close()


@pytest.mark.slow  # seconds
def test_with_shared_seeds_an_equal_cell_is_dropped_about_alpha_of_the_time() -> None:
    """Five equal cells, each seed's luck shared by the prompts but not by the cells (the worst case:
    nothing cancels in the difference). Clustered by prompt alone, cell 0 is dropped far more often
    than alpha; clustered by repeat too, about alpha."""
    dropped = {False: 0, True: 0}
    for shared in (False, True):
        rule = Rule(min=2, max=20, step=2, half_width=0.01, alpha=0.05, shared_seeds=shared)
        for seed in range(100):
            rng = np.random.default_rng(seed)
            sch = Schedule(rule, cells=5, prompts=10)
            feed_seeded(sch, rng.uniform(0.3, 0.9, 10), rng.random((5, 20)), rng.random((5, 10, 20)))
            dropped[shared] += sch.states[0].reason == "dropped"
    assert dropped[False] > 20 and dropped[True] <= 10


def test_a_seed_lucky_in_both_cells_cancels_in_the_drop_test() -> None:
    """The cells share the seeds' luck (as temperatures of one server do): most of it cancels in the
    difference, so the drop test counts far less seed variance than the two cells have apart."""
    rng = np.random.default_rng(3)
    a, luck = rng.uniform(0.5, 0.9, 30), rng.random(20)
    sch = Schedule(Rule(min=2, max=20, step=2, half_width=0.01, alpha=0.05, shared_seeds=True), cells=2, prompts=30)
    while not sch.done:
        for c, lo, hi in sch.round():
            need = luck[lo:hi] + (0.0 if c == 0 else 0.3)  # cell 1 needs more luck: worse, same seeds
            sch.record_block(c, lo, (need[None, :] < a[:, None]).astype(float))
        sch.close()
    assert sch.states[1].reason == "dropped"
    apart = [iv.seed_var for iv in (sch.states[0].interval, sch.states[1].interval) if iv]
    assert sch._seed_part(1, 0)[0] < 0.5 * (math.sqrt(apart[0]) + math.sqrt(apart[1])) ** 2
