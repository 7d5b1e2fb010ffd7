"""The numpy sampler: each parameter's documented effect, on hand-made and random logits."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.server.sampler import (
    Sampler,
    SamplingParams,
    apply_penalties,
    min_p_candidates,
    top_p_candidates,
)

PROBS = np.array([0.5, 0.3, 0.15, 0.05])
LOGITS = np.log(PROBS).astype(np.float32)


def draws(params: SamplingParams, logits: np.ndarray, n: int = 2000, seed: int = 0) -> Counter[int]:
    sampler = Sampler(params, seed)
    return Counter(sampler.step(logits, []).token_id for _ in range(n))


def entropy(counts: Counter[int]) -> float:
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values())


def random_logits(seed: int, size: int = 5000, scale: float = 3.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(size) * scale).astype(np.float32)


def test_greedy_is_argmax_and_deterministic() -> None:
    logits = random_logits(1)
    expected = int(np.argmax(logits))
    for seed in range(5):
        assert Sampler(SamplingParams(temperature=0.0), seed).step(logits, []).token_id == expected


def test_greedy_ties_go_to_lowest_id() -> None:
    logits = np.array([0.0, 2.0, 2.0, 1.0], dtype=np.float32)
    assert Sampler(SamplingParams(temperature=0.0), None).step(logits, []).token_id == 1


@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.0])
def test_top_k_1_equals_greedy_at_any_temperature(temperature: float) -> None:
    logits = random_logits(2)
    params = SamplingParams(temperature=temperature, top_k=1)
    assert set(draws(params, logits, n=200)) == {int(np.argmax(logits))}


def test_entropy_rises_with_temperature() -> None:
    logits = random_logits(3, size=200)
    entropies = [entropy(draws(SamplingParams(temperature=t), logits, n=3000)) for t in (0.2, 0.7, 1.2, 2.0)]
    assert entropies == sorted(entropies)
    assert entropies[-1] > entropies[0] + 1.0


@pytest.mark.slow
def test_temperature_one_matches_the_distribution() -> None:
    counts = draws(SamplingParams(), LOGITS, n=20000)
    for token, p in enumerate(PROBS):
        assert abs(counts[token] / 20000 - p) < 0.015


def test_same_seed_same_tokens_other_seed_other_tokens() -> None:
    logits = random_logits(4)
    params = SamplingParams(temperature=1.0)
    run = lambda seed: [Sampler(params, seed).step(logits, []).token_id for _ in range(1)] + [
        t for t in _sequence(params, logits, seed)
    ]
    assert run(7) == run(7)
    assert run(7) != run(8)


def _sequence(params: SamplingParams, logits: np.ndarray, seed: int, n: int = 30) -> list[int]:
    sampler = Sampler(params, seed)
    return [sampler.step(logits, []).token_id for _ in range(n)]


@pytest.mark.parametrize(
    ("top_p", "expected"),
    [(0.5, {0}), (0.50001, {0, 1}), (0.8, {0, 1}), (0.81, {0, 1, 2}), (0.95, {0, 1, 2}), (0.96, {0, 1, 2, 3})],
)
def test_top_p_keeps_the_smallest_set_reaching_p(top_p: float, expected: set[int]) -> None:
    assert set(top_p_candidates(LOGITS, top_p).tolist()) == expected
    assert set(draws(SamplingParams(top_p=top_p), LOGITS, n=3000)) == expected


@pytest.mark.parametrize(
    ("min_p", "expected"),
    [(0.09, {0, 1, 2, 3}), (0.11, {0, 1, 2}), (0.3, {0, 1, 2}), (0.31, {0, 1}), (0.61, {0}), (1.0, {0})],
)
def test_min_p_drops_tokens_below_min_p_times_the_best(min_p: float, expected: set[int]) -> None:
    assert set(min_p_candidates(LOGITS, min_p).tolist()) == expected
    assert set(draws(SamplingParams(min_p=min_p), LOGITS, n=3000)) == expected


def test_top_k_keeps_k_most_likely() -> None:
    assert set(draws(SamplingParams(top_k=2), LOGITS, n=3000)) == {0, 1}
    assert set(draws(SamplingParams(top_k=-1), LOGITS, n=3000)) == {0, 1, 2, 3}
    assert set(draws(SamplingParams(top_k=0), LOGITS, n=3000)) == {0, 1, 2, 3}  # 0 = off too


def test_min_p_applies_after_temperature() -> None:
    # at temperature 2 the distribution flattens: p3/p0 = sqrt(0.05/0.5) ~ 0.32 > 0.2
    assert set(draws(SamplingParams(temperature=2.0, min_p=0.2), LOGITS, n=3000)) == {0, 1, 2, 3}
    assert set(draws(SamplingParams(temperature=1.0, min_p=0.2), LOGITS, n=3000)) == {0, 1, 2}


def test_top_p_renormalizes_after_top_k() -> None:
    # top_k=2 leaves {0: 0.625, 1: 0.375}; top_p 0.6 then keeps only token 0
    assert set(draws(SamplingParams(top_k=2, top_p=0.6), LOGITS, n=2000)) == {0}


def test_frequency_and_presence_penalties_follow_openai() -> None:
    logits = np.zeros(5, dtype=np.float32)
    out = apply_penalties(logits, [1, 1, 3], frequency=0.5, presence=0.25)
    np.testing.assert_allclose(out, [0.0, -1.25, 0.0, -0.75, 0.0])
    assert not np.shares_memory(out, logits) and logits.sum() == 0.0
    assert apply_penalties(logits, [1], 0.0, 0.0) is logits


def test_penalties_lower_repetition() -> None:
    logits = random_logits(5, size=50)

    def repeats(params: SamplingParams) -> int:
        sampler, generated = Sampler(params, 0), []
        for _ in range(40):
            generated.append(sampler.step(logits, generated).token_id)
        return len(generated) - len(set(generated))

    base = repeats(SamplingParams(temperature=0.7))
    assert repeats(SamplingParams(temperature=0.7, frequency_penalty=2.0)) < base
    assert repeats(SamplingParams(temperature=0.7, presence_penalty=2.0)) < base
    assert repeats(SamplingParams(temperature=0.7, frequency_penalty=-2.0)) >= base


def test_greedy_with_presence_penalty_moves_on() -> None:
    sampler = Sampler(SamplingParams(temperature=0.0, presence_penalty=2.0), None)
    assert sampler.step(LOGITS, [0]).token_id == 1  # log 0.5 - 2 < log 0.3


def test_raw_logprobs_ignore_temperature_and_penalties() -> None:
    params = SamplingParams(temperature=0.0, frequency_penalty=2.0, logprobs=True, top_logprobs=3)
    step = Sampler(params, None).step(LOGITS, [0])
    assert step.token_id == 1
    assert step.logprob == pytest.approx(math.log(0.3), abs=1e-6)
    assert [t for t, _ in step.top] == [0, 1, 2]
    assert [lp for _, lp in step.top] == pytest.approx(np.log(PROBS[:3]).tolist(), abs=1e-6)


def test_processed_logprobs_include_temperature_and_penalties() -> None:
    params = SamplingParams(temperature=2.0, logprobs=True, top_logprobs=1, logprobs_mode="processed")
    step = Sampler(params, 0).step(LOGITS, [])
    flat = np.sqrt(PROBS) / np.sqrt(PROBS).sum()
    assert step.top[0][1] == pytest.approx(math.log(flat[0]), abs=1e-6)


def test_minus_infinity_logits_are_never_sampled() -> None:
    logits = np.array([-np.inf, 0.0, -np.inf, 1.0], dtype=np.float32)
    for params in (SamplingParams(), SamplingParams(top_p=0.99), SamplingParams(min_p=0.01), SamplingParams(temperature=2.0)):
        assert set(draws(params, logits, n=500)) <= {1, 3}
    step = Sampler(SamplingParams(logprobs=True, top_logprobs=4), 0).step(logits, [])
    assert step.top[-1][1] == -np.inf


def test_read_only_logits_give_the_same_draws_as_writable_ones() -> None:
    logits = random_logits(6, size=300)
    frozen = logits.copy()
    frozen.flags.writeable = False
    for params in (SamplingParams(), SamplingParams(temperature=0.5, top_p=0.9, min_p=0.02, top_k=50, logprobs=True, top_logprobs=5)):
        a, b = Sampler(params, 3), Sampler(params, 3)
        assert [a.step(logits, []) for _ in range(50)] == [b.step(frozen, []) for _ in range(50)]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), top_p=st.floats(0.01, 0.999), size=st.sampled_from([10, 3000, 20000]))
def test_top_p_matches_a_full_sort(seed: int, top_p: float, size: int) -> None:
    logits = random_logits(seed, size=size, scale=2.0)
    order = np.argsort(-logits.astype(np.float64), kind="stable")
    probs = np.exp(logits[order].astype(np.float64) - logits.max())
    probs /= probs.sum()
    before = np.concatenate([[0.0], np.cumsum(probs)[:-1]])
    expected = set(order[before < top_p - 1e-6].tolist())
    got = set(top_p_candidates(logits, top_p).tolist())
    assert got == expected or abs(len(got) - len(expected)) <= 1  # float rounding at the boundary


def test_a_gemma_sized_vocabulary_works() -> None:
    logits = random_logits(7, size=262_144)
    params = SamplingParams(temperature=0.8, top_p=0.95, top_k=64, min_p=0.01, logprobs=True, top_logprobs=20)
    step = Sampler(params, 1).step(logits, [5, 5, 9])
    assert 0 <= step.token_id < 262_144 and len(step.top) == 20
    assert [lp for _, lp in step.top] == sorted((lp for _, lp in step.top), reverse=True)


@pytest.mark.slow
def test_large_vocabularies_sample_the_right_frequencies() -> None:
    # > 4 blocks: the two-level CDF path
    probs = np.full(10_000, 0.5 / 9_998)
    probs[7], probs[9_000] = 0.3, 0.2
    counts = draws(SamplingParams(), np.log(probs).astype(np.float32), n=6000)
    assert abs(counts[7] / 6000 - 0.3) < 0.03 and abs(counts[9_000] / 6000 - 0.2) < 0.03
    assert abs(sum(c for t, c in counts.items() if t not in (7, 9_000)) / 6000 - 0.5) < 0.03
