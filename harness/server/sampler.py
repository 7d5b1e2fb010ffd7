"""A pure numpy token sampler that works on any model's next-token logits.

Usage::

    sampler = Sampler(SamplingParams(temperature=0.7, top_p=0.9), seed=42)
    step = sampler.step(logits, generated=token_ids_so_far)
    step.token_id, step.logprob, step.top      # chosen token, its logprob, top candidates

Order of operations in `Sampler.step` (the same as vLLM's v1 sampler)::

    1. penalties     logits[t] -= frequency_penalty * count(t) + presence_penalty * (count(t) > 0)
                     over the tokens generated so far (OpenAI's definition; the prompt is not counted)
    2. temperature   temperature == 0 -> greedy: argmax of the penalized logits, steps 3-6 skipped
                     (top_k/top_p/min_p cannot change an argmax); otherwise logits /= temperature
    3. min_p         drop tokens whose probability is below min_p * (probability of the best token)
                     (a token exactly at the threshold stays, within float rounding)
    4. top_k         keep the k most likely of the survivors (top_k == -1 or >= vocab: off;
                     top_k == 1 is greedy at any temperature)
    5. top_p         renormalize the survivors and keep the smallest set of the most likely ones
                     whose mass reaches top_p (the token that crosses top_p is kept, and so are
                     tokens tied with it; at least one token always survives; a mass within 1e-6 of top_p counts as reaching it,
                     so 0.5 + 0.3 reaches 0.8 despite float rounding; top_p == 1: off)
    6. sample        one draw (inverse CDF) from the renormalized survivors with the sampler's
                     own `random.Random(seed)` (same seed + same logits = same tokens)

Ties are broken by the lower token id (greedy, top_logprobs) — deterministic.

Reported logprobs (`StepResult.logprob`, `StepResult.top`) come, by default
(`logprobs_mode="raw"`), from the model's *raw* distribution: log_softmax of the logits as given,
before penalties, temperature and truncation — what OpenAI's API and vLLM (default
`raw_logprobs`) report. So a token's logprob does not depend on the sampling parameters, only on
the context; `logprobs_mode="processed"` instead reports log_softmax after penalties and
temperature (before truncation; temperature 0 counts as 1 there).

Speed: no full sort and no Python loop over the vocabulary. For *read-only* logits arrays (a
model that caches its rows, like the built-in n-gram model) the per-array work — CDF of the
truncated distribution, log-normalizer, top candidates — is memoized (see `_ReadOnlyCache`). Candidates are found with
`argpartition` (top_k, top_logprobs, top_p's growing prefix) and a vectorized threshold
(min_p); a 262k-entry vocabulary costs a few milliseconds per step at most.
"""

from __future__ import annotations

import contextlib
import random
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np

__all__ = ["LogprobsMode", "Sampler", "SamplingParams", "StepResult"]

LogprobsMode = Literal["raw", "processed"]
_T = TypeVar("_T")
_MIN_P_TOLERANCE = 1e-6  # in log space: a token exactly at min_p * best survives
_TOP_P_TOLERANCE = 1e-6  # mass within this of top_p counts as reaching it (float32 sums)
_BLOCK = 1024  # tokens per block of the two-level CDF of large vocabularies
_TOP_P_FIRST_PREFIX = 1024  # candidates sorted before top_p grows its prefix (x16 each round)


@dataclass(frozen=True)
class SamplingParams:
    """The sampling parameters of one request (OpenAI names; defaults are "off")."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    top_logprobs: int = 0
    logprobs: bool = False
    logprobs_mode: LogprobsMode = "raw"

    @property
    def greedy(self) -> bool:
        """True when the choice is the argmax (temperature 0 or top_k 1)."""
        return self.temperature == 0.0 or self.top_k == 1

    @property
    def has_penalties(self) -> bool:
        """True when frequency or presence penalty changes the logits."""
        return self.frequency_penalty != 0.0 or self.presence_penalty != 0.0


@dataclass(frozen=True)
class StepResult:
    """One sampled token: its id, its logprob and the top candidates (best first)."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


class Sampler:
    """Samples one token per `step` from logits; holds the seeded random generator."""

    def __init__(self, params: SamplingParams, seed: int | None) -> None:
        self.params = params
        self._rng = random.Random(seed)
        p = params
        self._dist_key = ("dist", p.temperature, p.min_p, p.top_k, p.top_p)
        self._greedy = p.greedy

    def step(self, logits: np.ndarray, generated: Sequence[int]) -> StepResult:
        """Pick the next token from `logits` (not modified) given the tokens generated so far."""
        p = self.params
        raw = logits if type(logits) is np.ndarray else np.asarray(logits)
        penalized = self._penalized(raw, generated)
        token = self._choose(penalized)
        if not (p.logprobs or p.top_logprobs):
            return StepResult(token, 0.0)
        return self._report(raw, penalized, token)

    def sample(self, logits: np.ndarray, generated: Sequence[int]) -> int:
        """Like `step(...).token_id` (same draws), without computing logprobs."""
        raw = logits if type(logits) is np.ndarray else np.asarray(logits)
        return self._choose(self._penalized(raw, generated))

    def _penalized(self, raw: np.ndarray, generated: Sequence[int]) -> np.ndarray:
        p = self.params
        if generated and p.has_penalties:
            return apply_penalties(raw, generated, p.frequency_penalty, p.presence_penalty)
        return raw

    def _choose(self, penalized: np.ndarray) -> int:
        """Step 2-6: greedy argmax, or one draw from the truncated distribution."""
        if self._greedy:
            return argmax_first(penalized)
        ids, cdf, weights = _CACHE.get_or_make(penalized, self._dist_key, self._distribution)
        index = _draw_index(cdf, weights, self._rng.random())
        return index if ids is None else int(ids[index])

    def _distribution(self, penalized: np.ndarray) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        """Steps 2-5: temperature, min_p, top_k, top_p -> (survivor ids or None = all, CDF, weights)."""
        p = self.params
        scaled = penalized if p.temperature == 1.0 else penalized / np.float32(p.temperature)
        ids: np.ndarray | None = None  # None = every token
        values = scaled
        if p.min_p > 0.0:
            ids = min_p_candidates(scaled, p.min_p)
            values = scaled[ids]
        if 0 < p.top_k < values.shape[0]:
            keep = np.argpartition(-values, p.top_k - 1)[: p.top_k]
            ids = keep if ids is None else ids[keep]
            values = values[keep]
        if p.top_p < 1.0:
            keep = top_p_candidates(values, p.top_p)
            ids = keep if ids is None else ids[keep]
            values = values[keep]
        return (ids, *_cdf(values))

    def _report(self, raw: np.ndarray, penalized: np.ndarray, token: int) -> StepResult:
        """The chosen token's logprob and the top candidates from the documented distribution."""
        p = self.params
        source = raw
        if p.logprobs_mode == "processed":
            temperature = p.temperature if p.temperature > 0.0 else 1.0
            source = penalized / np.float32(temperature) if temperature != 1.0 else penalized
        log_z = _CACHE.get_or_make(source, ("logz",), logsumexp)
        logprob = float(source[token]) - log_z
        top_k = p.top_logprobs
        top = _CACHE.get_or_make(source, ("top", top_k), lambda v: _top_pairs(v, top_k, log_z))
        return StepResult(token_id=token, logprob=logprob, top=top)


def _cdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Cumulative weights of softmax(values), in float64.

    Small arrays: the CDF itself (weights None). Large ones: the CDF over blocks of
    _BLOCK tokens plus the float32 weights — a float64 cumsum over 262k entries costs more
    than the whole rest of a step; `_draw_index` refines inside the chosen block.
    """
    weights = values - values.max()
    np.exp(weights, out=weights)
    n = weights.shape[0]
    if n <= 4 * _BLOCK:
        return np.cumsum(weights, dtype=np.float64), None
    full = n // _BLOCK * _BLOCK
    sums = weights[:full].reshape(-1, _BLOCK).sum(axis=1, dtype=np.float64)
    if full < n:
        sums = np.append(sums, weights[full:].sum(dtype=np.float64))
    return np.cumsum(sums), weights


def _draw_index(cdf: np.ndarray, weights: np.ndarray | None, u: float) -> int:
    """Inverse CDF: the index whose cumulative weight first exceeds u * total (u in [0, 1))."""
    target = u * float(cdf[-1])
    index = min(int(cdf.searchsorted(target, side="right")), int(cdf.shape[0]) - 1)
    if weights is None:
        return index
    start = index * _BLOCK
    block = np.cumsum(weights[start : start + _BLOCK], dtype=np.float64)
    inner = target - (float(cdf[index - 1]) if index else 0.0)
    return start + min(int(block.searchsorted(inner, side="right")), int(block.shape[0]) - 1)


def _top_pairs(values: np.ndarray, k: int, log_z: float) -> tuple[tuple[int, float], ...]:
    return tuple((int(i), float(values[i]) - log_z) for i in top_ids(values, k))


class _ReadOnlyCache:
    """Memoizes per-array work for read-only logits (a model's cached rows).

    Only arrays with `flags.writeable == False` are cached: their content cannot change while
    they live, and a weak reference makes sure an entry belongs to that very array (ids of dead
    arrays are reused). Writable arrays (e.g. fresh llama.cpp logits) are computed every time.
    """

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._data: dict[tuple[Any, ...], tuple[weakref.ref[np.ndarray], Any, int]] = {}

    def get_or_make(self, array: np.ndarray, key: tuple[Any, ...], make: Callable[[np.ndarray], _T]) -> _T:
        """`make(array)`, memoized under `key` when `array` is read-only."""
        if array.flags.writeable:
            return make(array)
        full = (id(array), key)
        entry = self._data.get(full)
        if entry is not None and entry[0]() is array:
            return entry[1]
        value = make(array)
        size = _nbytes(value) + 200
        while self._bytes + size > self._max_bytes and self._data:  # FIFO eviction by bytes
            with contextlib.suppress(KeyError, StopIteration, RuntimeError):
                self._bytes -= self._data.pop(next(iter(self._data)))[2]
        self._data[full] = (weakref.ref(array), value, size)
        self._bytes += size
        return value


def _nbytes(value: object) -> int:
    """Bytes held by numpy arrays in a value (a tuple of arrays, floats, None...)."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, tuple):
        return sum(_nbytes(v) for v in value)
    return 0


_CACHE = _ReadOnlyCache()


def apply_penalties(
    logits: np.ndarray, generated: Sequence[int], frequency: float, presence: float
) -> np.ndarray:
    """OpenAI's frequency/presence penalties over `generated`; returns `logits` itself if none."""
    if (frequency == 0.0 and presence == 0.0) or len(generated) == 0:
        return logits
    ids, counts = np.unique(np.asarray(generated, dtype=np.int64), return_counts=True)
    out: np.ndarray = np.array(logits, dtype=np.float32 if logits.dtype == np.float32 else np.float64)
    np.subtract.at(out, ids, frequency * counts + presence)
    return out


def argmax_first(values: np.ndarray) -> int:
    """Index of the largest value; the lowest index among ties."""
    return int(np.argmax(values))


def min_p_candidates(scaled: np.ndarray, min_p: float) -> np.ndarray:
    """Ids whose probability is at least `min_p` times the best token's (never empty)."""
    threshold = scaled.max() + np.log(min_p) - _MIN_P_TOLERANCE
    return np.flatnonzero(scaled >= threshold)


def top_p_candidates(values: np.ndarray, top_p: float) -> np.ndarray:
    """Positions (ascending) of the smallest most-likely set whose renormalized mass reaches `top_p`.

    Sorts the values (not their positions) of a growing prefix of the largest ones, found with
    `np.partition`, until the mass is reached; then keeps every position at or above the cut
    value (tokens tied with the crossing token are kept too).
    """
    n = values.shape[0]
    log_z = np.float32(logsumexp(values))
    size = min(n, _TOP_P_FIRST_PREFIX)
    while True:
        top = values if size == n else np.partition(values, n - size)[n - size :]
        top = np.sort(top)[::-1]
        mass = np.cumsum(np.exp(top - log_z), dtype=np.float64)
        # keep tokens whose preceding mass is < top_p: the crossing token is kept.
        cut = int(np.searchsorted(mass, top_p - _TOP_P_TOLERANCE, side="left")) + 1
        if cut <= size or size == n:
            return np.flatnonzero(values >= top[min(cut, size) - 1])
        size = min(n, size * 16)


def sorted_top(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest values, best first, ties by lower position."""
    n = values.shape[0]
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    part = np.arange(n) if k >= n else np.argpartition(values, n - k)[n - k :]
    if k <= 64:  # small: exact tie-break by position
        return part[np.lexsort((part, -values[part]))]
    part.sort()  # ascending positions, so the stable sort breaks ties by position
    return part[np.argsort(-values[part], kind="stable")]


def top_ids(values: np.ndarray, k: int) -> np.ndarray:
    """Token ids of the k most likely entries, best first (ties: lower id first)."""
    return sorted_top(values, min(k, values.shape[0]))


def logsumexp(values: np.ndarray) -> float:
    """log(sum(exp(values))), stable; -inf entries are fine."""
    peak = float(values.max())
    if not np.isfinite(peak):
        return peak
    shifted = values - peak
    np.exp(shifted, out=shifted)
    return peak + float(np.log(shifted.sum(dtype=np.float64)))
