"""What a sampling setting would do at each stored position, with the unseen tail bounded.

A position's raw distribution is known only for the k returned candidates (and the sampled
token); the rest, mass r = 1 - sum(top), is spread over tokens no likelier than the k-th
candidate. Each quantity is computed under the two extreme tails:

- "few":  r in as few tokens as possible (floor(r / p_k) tokens of probability p_k and one
          remainder), the rest of the vocabulary at probability ~0;
- "many": r spread evenly over every other token of the vocabulary (`vocab` - k).

Truncation follows `harness serve`'s sampler (and vLLM's): temperature, then min_p (keep
p >= min_p^T * p_max, in raw probabilities), then top_k, then top_p (the smallest most-likely set
whose renormalized mass reaches top_p; the crossing token is kept). Temperature 0 is greedy.
Penalties are not modelled (they depend on the text generated so far).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.whatif.positions import Positions

__all__ = ["Effect", "Resolved", "evaluate"]

_TOP_P_TOL = 1e-6
_MIN_P_TOL = 1e-9


@dataclass(frozen=True)
class Resolved:
    """A complete sampling setting ("off" values: top_p 1, top_k <= 0, min_p 0)."""

    temperature: float
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0


@dataclass(frozen=True)
class Effect:
    """Per-position effects of one setting under one tail scenario."""

    cut: np.ndarray  # 1.0 when the sampled token would have been cut
    removed: np.ndarray  # probability mass (at the setting's temperature) truncation removes
    candidates: np.ndarray  # tokens left to sample from
    entropy: np.ndarray  # nats, of the distribution sampled from (after truncation)
    entropy_before: np.ndarray  # nats, at the setting's temperature, before truncation
    expected_logprob: np.ndarray  # E[raw logprob of the token drawn] under the setting


def evaluate(pos: Positions, setting: Resolved, vocab: int) -> tuple[Effect, Effect]:
    """The effect at every position under the "few" and the "many" tail."""
    return _scenario(pos, setting, vocab, few=True), _scenario(pos, setting, vocab, few=False)


def _columns(pos: Positions, vocab: int, few: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities, counts, sampled column) per position, columns sorted by probability."""
    n, width = pos.top.shape
    in_tail = pos.rank < 0
    sampled_col = np.where(in_tail, pos.sampled, 0.0)
    rest = np.clip(pos.tail - sampled_col, 0.0, 1.0)
    p_k = np.maximum(pos.smallest, 1e-300)
    others = np.maximum(vocab - pos.k - in_tail, 1).astype(np.float64)
    if few:
        full = np.minimum(np.floor(rest / p_k), others)
        remainder = np.clip(rest - full * p_k, 0.0, None)
        bins_p = [p_k, remainder, np.zeros(n)]
        bins_c = [full, (remainder > 0).astype(np.float64), np.maximum(others - full - (remainder > 0), 0.0)]
    else:
        bins_p = [rest / others, np.zeros(n), np.zeros(n)]
        bins_c = [others, np.zeros(n), np.zeros(n)]
    known_c = (np.arange(width)[None, :] < pos.k[:, None]).astype(np.float64)
    probs = np.column_stack([pos.top, sampled_col, *bins_p])
    counts = np.column_stack([known_c, in_tail.astype(np.float64), *bins_c])
    counts = np.where(probs > 0, counts, np.where(np.arange(probs.shape[1]) >= width + 3, counts, 0.0))
    order = np.argsort(-probs, axis=1, kind="stable")
    probs = np.take_along_axis(probs, order, axis=1)
    counts = np.take_along_axis(counts, order, axis=1)
    target = np.where(in_tail, width, np.maximum(pos.rank, 0))
    sampled_at = np.argmax(order == target[:, None], axis=1)
    return probs, counts, sampled_at


def _scenario(pos: Positions, s: Resolved, vocab: int, *, few: bool) -> Effect:
    probs, counts, sampled_at = _columns(pos, vocab, few)
    n = probs.shape[0]
    if s.temperature <= 0.0:
        return _greedy(pos, probs, sampled_at)
    with np.errstate(divide="ignore"):
        logp = np.where(probs > 0, np.log(np.where(probs > 0, probs, 1.0)), -np.inf)
    w = np.where(probs > 0, np.exp(logp / s.temperature), 0.0)
    z0 = (counts * w).sum(axis=1)
    keep = counts.copy()
    if s.min_p > 0.0:
        threshold = probs[:, :1] * s.min_p**s.temperature * (1.0 - _MIN_P_TOL)
        keep = np.where(probs >= threshold, keep, 0.0)
    if s.top_k > 0:
        before = np.cumsum(keep, axis=1) - keep
        keep = np.clip(np.minimum(keep, s.top_k - before), 0.0, None)
    if s.top_p < 1.0:
        mass = keep * w
        z = mass.sum(axis=1, keepdims=True)
        before = (np.cumsum(mass, axis=1) - mass) / z
        room = np.clip(s.top_p - _TOP_P_TOL - before, 0.0, None) * z
        need = np.ceil(np.divide(room, w, out=np.zeros_like(w), where=w > 0) - 1e-12)
        keep = np.where(before < s.top_p - _TOP_P_TOL, np.minimum(keep, need), 0.0)
    kept_mass = (keep * w).sum(axis=1)
    q = w / kept_mass[:, None]
    q0 = w / z0[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(keep * q > 0, keep * q * np.log(q), 0.0).sum(axis=1)
        entropy_before = -np.where(counts * q0 > 0, counts * q0 * np.log(q0), 0.0).sum(axis=1)
        expected = np.where(keep * q > 0, keep * q * logp, 0.0).sum(axis=1)
    cut = (keep[np.arange(n), sampled_at] <= 0).astype(np.float64)
    return Effect(cut, 1.0 - kept_mass / z0, keep.sum(axis=1), entropy, entropy_before, expected)


def _greedy(pos: Positions, probs: np.ndarray, sampled_at: np.ndarray) -> Effect:
    """Temperature 0: the single likeliest token; everything else is cut."""
    n = probs.shape[0]
    zeros = np.zeros(n)
    with np.errstate(divide="ignore"):
        best = np.log(probs[:, 0])
    return Effect((sampled_at != 0).astype(np.float64), zeros, np.ones(n), zeros, zeros.copy(), best)
