"""The generated positions of a run, as arrays: what top_logprobs say about each sampling step.

For every generated token of every ok row with logprobs: the returned top candidates'
probabilities (best first, padded with 0), how many were returned (k), the sampled token's
probability and its rank among them (-1: it was not among the top k, so it lies in the tail).
The probabilities are the model's raw distribution (what OpenAI, vLLM and `harness serve`
report): before temperature, penalties and truncation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Positions", "extract_positions"]


@dataclass(frozen=True)
class Positions:
    """Per-position arrays (n positions); `row` indexes the rows they came from."""

    row: np.ndarray  # int64 (n,)
    top: np.ndarray  # float64 (n, K): returned candidates' probabilities, best first, 0-padded
    k: np.ndarray  # int64 (n,): how many candidates were returned
    sampled: np.ndarray  # float64 (n,): the sampled token's probability
    rank: np.ndarray  # int64 (n,): its index in `top`, or -1 when in the tail

    def __len__(self) -> int:
        return int(self.row.shape[0])

    @property
    def index(self) -> np.ndarray:
        """Each position's index within its row (0 = the first generated token)."""
        n = len(self)
        if not n:
            return np.zeros(0, dtype=np.int64)
        starts = np.flatnonzero(np.r_[True, self.row[1:] != self.row[:-1]])
        return np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))

    @property
    def tail(self) -> np.ndarray:
        """Probability mass beyond the returned candidates (>= 0)."""
        return np.clip(1.0 - self.top.sum(axis=1), 0.0, 1.0)

    @property
    def smallest(self) -> np.ndarray:
        """The k-th candidate's probability: an upper bound on any tail token's."""
        return self.top[np.arange(len(self)), np.maximum(self.k - 1, 0)]


def _items(value: Any) -> Iterable[Any]:
    if value is None:
        return ()
    if isinstance(value, float) and math.isnan(value):
        return ()
    return value


def _rank(token: Any, logprob: float, tops: list[tuple[Any, float]]) -> int:
    """Index of the sampled token among the candidates (same text, same logprob first)."""
    same_text = [i for i, (text, _) in enumerate(tops) if text == token]
    for i in same_text:
        if abs(tops[i][1] - logprob) <= 1e-6:
            return i
    return same_text[0] if same_text else -1


def extract_positions(logprobs: Iterable[Any]) -> Positions:
    """Positions of every row's logprobs (a row with none contributes nothing)."""
    rows: list[int] = []
    tops: list[list[float]] = []
    sampled: list[float] = []
    ranks: list[int] = []
    for r, entries in enumerate(logprobs):
        for entry in _items(entries):
            candidates = [(c["token"], float(c["logprob"])) for c in _items(entry.get("top_logprobs"))]
            candidates = [c for c in candidates if math.isfinite(c[1])]
            if not candidates:
                continue
            candidates.sort(key=lambda c: -c[1])
            logprob = float(entry["logprob"])
            rows.append(r)
            tops.append([math.exp(lp) for _, lp in candidates])
            sampled.append(math.exp(logprob) if math.isfinite(logprob) else 0.0)
            ranks.append(_rank(entry["token"], logprob, candidates))
    width = max((len(t) for t in tops), default=0)
    top = np.zeros((len(tops), width), dtype=np.float64)
    for i, t in enumerate(tops):
        top[i, : len(t)] = t
    return Positions(
        row=np.asarray(rows, dtype=np.int64),
        top=top,
        k=np.asarray([len(t) for t in tops], dtype=np.int64),
        sampled=np.asarray(sampled, dtype=np.float64),
        rank=np.asarray(ranks, dtype=np.int64),
    )
