"""Per-token evidence from logprobs: is the sampled token allowed by a truncation rule, and how
likely would it have been allowed by chance if the server ignored the rule?

Every judge sees one position of a completion: the sampled token's logprob and the top
candidates (best first). It returns a `Judgement`: `violates` is True when the token could not
have been drawn had the rule been applied (with a tolerance for float rounding), and
`p_allowed` is an upper bound on the probability that a server *ignoring* the rule (sampling the
full distribution at temperature 1) draws an allowed token there. The bound renormalizes over
the candidates shown, so a server that applies its own default truncation (llama.cpp's top_k 40,
min_p 0.05) cannot make an ignored parameter look honoured: the chance is overstated, never
understated.

The product of `p_allowed` over positions is the likelihood ratio of "ignored" to "honoured"
for the observed tokens; stopping when it falls below alpha bounds the chance of calling an
ignored parameter honoured by alpha (Ville's inequality), however many requests are sent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Judge",
    "Judgement",
    "Position",
    "greedy_judge",
    "min_p_judge",
    "positions",
    "top_k_judge",
    "top_p_judge",
]

LOG_TOL = 1e-3  # logprobs are float32 on most servers, rounded by some
MASS_TOL = 0.01  # top_p: a cut within this of the boundary is not held against the server


@dataclass(frozen=True)
class Position:
    """One generated token: its text, its logprob and the top candidates (best first)."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...]

    @property
    def rank(self) -> int:
        """1 + candidates clearly more likely than the token (ties count in its favour)."""
        return 1 + sum(1 for _, lp in self.top if lp > self.logprob + LOG_TOL)

    @property
    def shown(self) -> bool:
        """True when the token is among the candidates (by rank: its logprob reaches the last)."""
        return bool(self.top) and self.logprob >= self.top[-1][1] - LOG_TOL

    @property
    def mass(self) -> float:
        """Probability mass of the candidates shown."""
        return sum(math.exp(lp) for _, lp in self.top)


@dataclass(frozen=True)
class Judgement:
    violates: bool
    p_allowed: float
    why: str = ""


Judge = Callable[[Position], Judgement]


def positions(logprobs: Sequence[dict[str, Any]] | None) -> list[Position]:
    """Positions with candidates from a completion's normalized logprobs (others are skipped)."""
    out = []
    for item in logprobs or ():
        top = tuple((str(t.get("token")), float(t.get("logprob", -math.inf))) for t in item.get("top_logprobs") or ())
        if top:
            out.append(Position(str(item.get("token")), float(item.get("logprob", -math.inf)), top))
    return out


def _share(pos: Position, keep: Callable[[int, float], bool], temperature: float = 1.0) -> float:
    """Mass of the kept candidates over the mass shown, at `temperature` (an upper bound of the
    true share when the kept ones are the most likely)."""
    best = pos.top[0][1]
    weights = [math.exp((lp - best) / temperature) for _, lp in pos.top]
    total = sum(weights)
    if total <= 0:
        return 1.0
    kept = sum(w for i, (w, (_, lp)) in enumerate(zip(weights, pos.top)) if keep(i, lp))
    return min(1.0, kept / total)


def greedy_judge(pos: Position, null_temperature: float = 1.0) -> Judgement:
    """Greedy (temperature 0, top_k 1, min_p 1...): the token must be the most likely one.
    `null_temperature`: the temperature an ignoring server would sample at (its default)."""
    best = pos.top[0][1]
    p = _share(pos, lambda _i, lp: lp >= best - LOG_TOL, null_temperature)
    if pos.rank > 1:
        return Judgement(True, p, f"{pos.token!r} was drawn at rank {pos.rank} (logprob {pos.logprob:.3f} < best {best:.3f})")
    return Judgement(False, p)


def top_k_judge(k: int) -> Judge:
    def judge(pos: Position) -> Judgement:
        kth = pos.top[min(k, len(pos.top)) - 1][1]
        p = _share(pos, lambda _i, lp: lp >= kth - LOG_TOL)
        if pos.rank > k:
            return Judgement(True, p, f"{pos.token!r} was drawn at rank {pos.rank} > top_k={k}")
        return Judgement(False, p)

    return judge


def min_p_judge(min_p: float, temperature: float = 1.0) -> Judge:
    """min_p on the distribution at `temperature` (reported logprobs are raw: scaled here)."""
    log_ratio = math.log(min_p)

    def judge(pos: Position) -> Judgement:
        best = pos.top[0][1]
        floor = best + log_ratio * temperature - LOG_TOL
        p = _share(pos, lambda _i, lp: lp >= floor)
        if pos.logprob < floor:
            ratio = math.exp((pos.logprob - best) / temperature)
            return Judgement(True, p, f"{pos.token!r} was drawn at p/p_max={ratio:.3g} < min_p={min_p:g}")
        return Judgement(False, p)

    return judge


def top_p_judge(top_p: float) -> Judge:
    """top_p at temperature 1: a token is kept while the mass strictly above it is below top_p."""

    def above(pos: Position, logprob: float) -> float:
        return sum(math.exp(lp) for _, lp in pos.top if lp > logprob + LOG_TOL)

    def judge(pos: Position) -> Judgement:
        p = _share(pos, lambda _i, lp: above(pos, lp) < top_p + MASS_TOL)
        mass_above = above(pos, pos.logprob) if pos.shown else pos.mass
        if mass_above >= top_p + MASS_TOL:
            return Judgement(True, p, f"{pos.token!r} was drawn with {mass_above:.3f} of the mass above it (top_p={top_p:g})")
        return Judgement(False, p)

    return judge
