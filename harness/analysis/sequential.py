"""Adaptive repeats: which cells get more samples, decided from the scores already stored.

Pure (no I/O, clock or randomness): the same scores always give the same decisions. That is what
makes an adaptive run resumable and reproducible — `harness.runner.adaptive` replays the rows a
run directory already holds through a `Schedule` and arrives at exactly the state it had.

**Rounds and looks.** Every cell (a sweep point) first gets `min` samples per prompt. When a
round's rows are all in, the schedule *looks*:

1. each cell's interval on the metric (below);
2. with `drop_worse`: each active cell significantly worse than the leader (the best mean among
   cells not dropped) stops, `dropped`;
3. each active cell whose half-width ≤ `half_width` stops, `converged`;
4. each active cell with `max` samples per prompt stops, `max`;

and every cell still active gets `step` more samples per prompt (capped at `max`) in the next
round. There are at most `looks = 1 + ceil((max − min) / step)` looks.

**Interval** (analytic, clustered by prompt — the large-sample twin of the report's cluster
bootstrap in `harness.analysis.bootstrap`, at a tiny fraction of its cost, computed at every look
for every cell): the mean is Σ sums / Σ counts over prompts; its variance is the cluster-robust
(CR1) sandwich `k/(k−1) · Σ_i (s_i − mean·c_i)² / N²` over the k prompts with a score (the repeats
of a prompt are not independent draws); the half-width is Student's t with k − 1 degrees of
freedom at `confidence` times its square root. When every score of a cell so far is 0 or 1 (all
built-in scorers), the variance is at least the binomial `m̃(1 − m̃)/N` with `m̃ = (Σs + 1)/(N + 2)`
(Laplace): a cell whose first samples all agree is not declared converged on a zero-width
interval. One prompt only: the samples are treated as independent (N − 1 degrees of freedom).

**Shared seeds** (`Rule.shared_seeds`, `seed: per_sample`: repeat j of every prompt and cell is
sent seed BASE + j): a seed's luck is shared by every prompt, so the repeats are a second
clustering. The variance is two-way (Cameron, Gelbach & Miller 2011): V_prompt + max(V_repeat −
V_each, 0) — V_repeat clustered by repeat, V_each with every score its own cluster — with
Welch–Satterthwaite degrees of freedom; never narrower than clustering by prompt alone. The drop
test adds the same two-way part computed on the difference of the two cells (a seed lucky in
both cancels). A variance part estimated from 2 or 3 repeats is too often near 0, so no cell is
judged (converged or dropped) before `MIN_SEED_REPEATS` repeats per prompt.

**Dropping** (`drop_worse: {alpha}`): cell c is compared to the leader L on the prompts both have
scores for: d_i = mean_c,i − mean_L,i (sign flipped when lower is better), one-sided paired t test
with k' − 1 degrees of freedom (standard error at least the binomial floor above for 0/1 metrics);
c is dropped when `mean(d) + t(1 − α') · se < 0`, with the Bonferroni level
`α' = alpha / ((cells − 1) · looks)`. Why that keeps the chance of dropping the truly best cell B
below `alpha`: B can only be dropped by one of at most (cells − 1) rivals at one of at most
`looks` looks; each such test has level α' when B is truly at least as good as the rival, so the
union has probability ≤ alpha whatever the leader turns out to be and however often we look.
Bonferroni over looks is conservative (a group-sequential or always-valid bound would drop
sooner), but it needs no assumption about the spacing of looks and no independence between
cells, and with the few looks adaptive repeats make (10 for min 2, max 20, step 2) it costs
little.

**Groups** (a spec of several targets): each (target, point) is a cell of its own — its own
interval, its own stop — and `groups` says which target it belongs to. Dropping happens within a
group only: the leader is the best cell *of that target*, a cell is compared with its own
target's leader, and the Bonferroni level counts that target's rivals,
`α' = alpha / ((cells of the target − 1) · looks)`. So for each target, the chance of dropping
that target's truly best cell is ≤ alpha, by the argument above applied to that target's cells
alone; a cell is never stopped because another target does better (that is a comparison of
targets, not a decision about this target's sampling). `stop_unreachable` with `drop_worse`
waits until a cell is the last one of its own target still sampling.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np

# shared seeds: the repeats a cell needs before it is judged (converged, or dropped): the seeds'
# part of the variance is estimated from the repeats, and from 2 or 3 it is too often near 0
MIN_SEED_REPEATS = 4

# halted: the cell's target stopped answering (its breaker tripped) while other targets go on
Reason = Literal["converged", "dropped", "max", "unreachable", "halted"]
REASONS: tuple[Reason, ...] = ("converged", "dropped", "max", "unreachable", "halted")


def _t_expansion(p: float, df: float) -> float:
    """Abramowitz & Stegun 26.7.5: Student's t quantile from the normal one (large df)."""
    x = NormalDist().inv_cdf(p)
    g1 = (x**3 + x) / 4
    g2 = (5 * x**5 + 16 * x**3 + 3 * x) / 96
    g3 = (3 * x**7 + 19 * x**5 + 17 * x**3 - 15 * x) / 384
    g4 = (79 * x**9 + 776 * x**7 + 1482 * x**5 - 1920 * x**3 - 945 * x) / 92160
    return x + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def _t_central(t: float, df: int) -> float:
    """P(|T| < t) for integer df (Abramowitz & Stegun 26.7.3-4, exact)."""
    theta = math.atan(t / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 0:
        term = total = 1.0
        for j in range(1, df // 2):
            term *= c2 * (2 * j - 1) / (2 * j)
            total += term
        return s * total
    if df == 1:
        return 2 * theta / math.pi
    c = math.cos(theta)
    term = total = c
    for j in range(1, (df - 1) // 2):
        term *= c2 * (2 * j) / (2 * j + 1)
        total += term
    return 2 / math.pi * (theta + s * total)


@functools.lru_cache(maxsize=4096)
def t_quantile(p: float, df: int) -> float:
    """The p-quantile (0.5 ≤ p < 1) of Student's t with `df` ≥ 1 degrees of freedom."""
    if not 0.5 <= p < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0.5 <= p < 1 and df >= 1, got {p}, {df}")
    if p == 0.5:  # the median (a one-sided test at level 0.5: drop_worse.alpha 0.5, one rival, one look)
        return 0.0
    if df > 300:
        return _t_expansion(p, df)
    target = 2 * p - 1
    lo, hi = 0.0, max(1.0, 2 * _t_expansion(p, max(df, 3)))
    while _t_central(hi, df) < target:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if _t_central(mid, df) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return (lo + hi) / 2


def _chi2_quantile(p: float, df: int) -> float:
    """The p-quantile of chi-square with `df` degrees of freedom (Wilson–Hilferty; within ~1% for df ≥ 3)."""
    z = NormalDist().inv_cdf(p)
    a = 2.0 / (9.0 * df)
    return df * (1.0 - a + z * math.sqrt(a)) ** 3


@dataclass(frozen=True)
class Rule:
    """The adaptive rule of a sweep (`sweep.repeats` as a mapping), in plain numbers."""

    min: int
    max: int
    step: int
    half_width: float
    confidence: float = 0.95
    higher_is_better: bool = True
    alpha: float | None = None  # drop_worse.alpha; None: never drop
    stop_unreachable: bool = False  # stop a cell whose spread between prompts alone exceeds half_width
    shared_seeds: bool = False  # `seed: per_sample`: repeat j of every prompt (and cell) is sent the same seed

    @property
    def looks(self) -> int:
        """The most looks a cell can have: at min, min + step, …, max."""
        return 1 + math.ceil((self.max - self.min) / self.step)


@dataclass(frozen=True)
class CellInterval:
    """A cell's mean on the metric with its interval (NaN when it has no score)."""

    mean: float
    lo: float
    hi: float
    half_width: float
    scored: int  # scores used (rows with a number)
    prompts: int  # prompts with at least one score
    seed_var: float = 0.0  # shared seeds: the variance of the mean due to the repeats' seeds (0 otherwise)
    repeats: int = 0  # shared seeds: repeats (seed clusters) with a score


def _binomial_floor(total: float, n: float) -> float:
    """Variance floor of a 0/1 mean: Laplace-smoothed binomial."""
    m = (total + 1.0) / (n + 2.0)
    return m * (1.0 - m) / n


@dataclass(frozen=True)
class SeedSums:
    """Scores summed per repeat (over prompts) and the sum of squares: for shared seeds."""

    sums: np.ndarray  # per repeat j: Σ over prompts of the scores of repeat j
    counts: np.ndarray  # per repeat j: scores of repeat j
    squares: float  # Σ score² over every score


def seed_component(seeds: SeedSums, mean: float, n: float) -> tuple[float, int]:
    """The part of the variance of the mean that the repeats' shared seeds add, and the repeats.

    Two-way cluster-robust (Cameron, Gelbach & Miller 2011): V = V_prompt + V_seed − V_each, where
    V_seed is the CR1 variance clustered by repeat and V_each the heteroskedastic one (each score
    its own cluster). Returned: max(V_seed − V_each, 0), so the interval is never narrower than
    the prompt-clustered one."""
    keep = seeds.counts > 0
    g = int(keep.sum())
    if g < 2 or n < 2:
        return 0.0, g
    s, c = seeds.sums[keep], seeds.counts[keep]
    v_seed = g / (g - 1) * float(((s - mean * c) ** 2).sum()) / n**2
    v_each = n / (n - 1) * max(seeds.squares - n * mean * mean, 0.0) / n**2
    return max(v_seed - v_each, 0.0), g


def satterthwaite(parts: list[tuple[float, int]]) -> int:
    """Welch–Satterthwaite degrees of freedom of a sum of variance estimates (variance, df), floored, ≥ 1."""
    total = sum(v for v, _ in parts)
    denom = sum(v * v / df for v, df in parts if df >= 1 and v > 0)
    if total <= 0 or denom <= 0:
        return max(1, min((df for _, df in parts if df >= 1), default=1))
    return max(1, int(total * total / denom))


def cell_interval(sums: np.ndarray, counts: np.ndarray, confidence: float, *, binary: bool,
                  seeds: SeedSums | None = None) -> CellInterval:
    """The clustered analytic interval of Σsums/Σcounts (per-prompt sums and counts of scores);
    with `seeds` (shared seeds) clustered by prompt and by repeat."""
    keep = counts > 0
    s, c = sums[keep], counts[keep]
    k, n = int(keep.sum()), float(c.sum())
    if n == 0:
        return CellInterval(math.nan, math.nan, math.nan, math.inf, 0, 0)
    mean = float(s.sum() / n)
    if n < 2:
        return CellInterval(mean, -math.inf, math.inf, math.inf, int(n), k)
    if k >= 2:
        var = k / (k - 1) * float(((s - mean * c) ** 2).sum()) / n**2
        df = k - 1
    else:  # one prompt: its samples as independent draws (sums of squares are not kept: 0/1 only)
        var = mean * (1 - mean) / (n - 1) if binary else math.inf
        df = int(n) - 1
    if seeds is None:
        seed_var, repeats = 0.0, 0
    elif k >= 2:
        seed_var, repeats = seed_component(seeds, mean, n)
    else:  # one prompt: a repeat is one score, nothing to add; its repeats still count for judging
        seed_var, repeats = 0.0, int((seeds.counts > 0).sum())
    if seed_var > 0:
        df = satterthwaite([(var, df), (seed_var, repeats - 1)])
        var += seed_var
    if binary:
        var = max(var, _binomial_floor(float(s.sum()), n))
    half = t_quantile((1 + confidence) / 2, df) * math.sqrt(var)
    return CellInterval(mean, mean - half, mean + half, half, int(n), k, seed_var, repeats)


@dataclass
class CellState:
    """Where one cell stands."""

    n: int = 0  # samples per prompt already looked at
    target: int = 0  # samples per prompt of the current round
    reason: Reason | None = None  # None while active
    look: int = 0  # looks made while active (the look it stopped at, once stopped)
    interval: CellInterval | None = None
    dropped_by: int | None = None  # the leader's cell index when dropped


class Schedule:
    """The adaptive state of a set of cells over a fixed list of prompts.

    Use: `round()` → the (cell, first sample, end sample) ranges to run for every prompt;
    `record(cell, prompt, sample, score)` for each result (NaN: no score, e.g. an error row);
    `close()` when the round is complete → the look. `done` when every cell has stopped.
    """

    def __init__(self, rule: Rule, cells: int, prompts: int, groups: Sequence[int] | None = None) -> None:
        if cells < 1 or prompts < 1:
            raise ValueError("a schedule needs at least one cell and one prompt")
        if groups is not None and len(groups) != cells:
            raise ValueError(f"groups: one per cell ({cells}), got {len(groups)}")
        self.rule = rule
        self.cells = cells
        self.prompts = prompts
        # the race each cell runs in (several targets: one per target); cells are compared, and
        # dropped, only against cells of their own group
        self.groups: tuple[int, ...] = tuple(groups) if groups is not None else (0,) * cells
        self._members: dict[int, list[int]] = {}
        for i, g in enumerate(self.groups):
            self._members.setdefault(g, []).append(i)
        self.sums = np.zeros((cells, prompts))
        self.counts = np.zeros((cells, prompts))
        self.squares = np.zeros((cells, prompts))
        # shared seeds: the scores of repeat j summed over prompts (the second clustering)
        self.seed_sums = np.zeros((cells, rule.max))
        self.seed_counts = np.zeros((cells, rule.max))
        self.binary = np.ones(cells, dtype=bool)
        self.states = [CellState(target=rule.min) for _ in range(cells)]
        self.looks = 0
        self._round: dict[int, np.ndarray] = {}

    # -- the round ------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return all(st.reason is not None for st in self.states)

    def active(self) -> list[int]:
        return [i for i, st in enumerate(self.states) if st.reason is None]

    def halt(self, cells: Iterable[int]) -> None:
        """Stop these cells where they are (their target is gone); other cells race on without them."""
        for i in cells:
            if self.states[i].reason is None:
                self.states[i].reason = "halted"

    def round(self) -> list[tuple[int, int, int]]:
        """(cell, first sample, end sample) for every active cell: the current round."""
        return [(i, st.n, st.target) for i, st in enumerate(self.states) if st.reason is None]

    def round_size(self) -> int:
        """Requests of the current round."""
        return sum(stop - start for _, start, stop in self.round()) * self.prompts

    def record(self, cell: int, prompt: int, sample: int, score: float) -> None:
        """One result of the current round (anything outside the round is ignored)."""
        st = self.states[cell]
        if st.reason is not None or not st.n <= sample < st.target:
            return
        block = self._round.get(cell)
        if block is None:
            block = self._round[cell] = np.full((self.prompts, st.target - st.n), np.nan)
        block[prompt, sample - st.n] = score

    def record_block(self, cell: int, start: int, scores: np.ndarray) -> None:
        """Scores of samples start, start + 1, … of every prompt at once (prompts × samples)."""
        st = self.states[cell]
        lo, hi = max(start, st.n), min(start + scores.shape[1], st.target)
        if st.reason is not None or lo >= hi:
            return
        block = self._round.get(cell)
        if block is None:
            block = self._round[cell] = np.full((self.prompts, st.target - st.n), np.nan)
        block[:, lo - st.n:hi - st.n] = scores[:, lo - start:hi - start]

    def close(self) -> None:
        """The round is complete: add its scores (in a fixed order), then look."""
        for i in self.active():
            st = self.states[i]
            block = self._round.pop(i, None)
            if block is not None:
                scored = ~np.isnan(block)
                self.sums[i] += np.where(scored, block, 0.0).sum(axis=1)
                self.squares[i] += np.where(scored, block * block, 0.0).sum(axis=1)
                self.counts[i] += scored.sum(axis=1)
                self.seed_sums[i, st.n:st.target] += np.where(scored, block, 0.0).sum(axis=0)
                self.seed_counts[i, st.n:st.target] += scored.sum(axis=0)
                if self.binary[i] and not np.isin(block[scored], (0.0, 1.0)).all():
                    self.binary[i] = False
            st.n = st.target
        self._round.clear()
        self._look()

    # -- the look -------------------------------------------------------------------------

    def _look(self) -> None:
        rule = self.rule
        self.looks += 1
        active = self.active()
        for i in active:
            st = self.states[i]
            st.look += 1
            st.interval = cell_interval(self.sums[i], self.counts[i], rule.confidence, binary=bool(self.binary[i]),
                                        seeds=self._seeds(i))
        if rule.alpha is not None:
            for group, members in self._members.items():
                leader = self.leader(group) if len(members) > 1 else None
                if leader is None:
                    continue
                for i in active:
                    if i != leader and self.groups[i] == group and self.significantly_worse(i, leader):
                        self.states[i].reason = "dropped"
                        self.states[i].dropped_by = leader
        for i in active:
            st = self.states[i]
            if st.reason is not None:
                continue
            assert st.interval is not None
            if st.interval.half_width <= rule.half_width and self._judged(st.interval):
                st.reason = "converged"
            elif st.n >= rule.max:
                st.reason = "max"
        going = [i for i in active if self.states[i].reason is None]
        if rule.stop_unreachable:
            # with drop_worse, a race still open needs the data of every runner: an unreachable
            # cell stops only when it is the last one of its group sampling
            racing = {g: sum(1 for i in going if self.groups[i] == g) for g in self._members}
            for i in going:
                if (rule.alpha is None or racing[self.groups[i]] == 1) and self.unreachable(i):
                    self.states[i].reason = "unreachable"
        for i in going:
            st = self.states[i]
            if st.reason is None:
                st.target = min(st.n + rule.step, rule.max)

    def _judged(self, interval: CellInterval | None) -> bool:
        """Enough repeats to judge the cell: always, unless seeds are shared (MIN_SEED_REPEATS)."""
        return not self.rule.shared_seeds or (interval is not None and interval.repeats >= MIN_SEED_REPEATS)

    def _seeds(self, cell: int) -> SeedSums | None:
        if not self.rule.shared_seeds:
            return None
        return SeedSums(self.seed_sums[cell], self.seed_counts[cell], float(self.squares[cell].sum()))

    def unreachable(self, cell: int) -> bool:
        """True when the spread *between* prompts alone keeps the interval wider than `half_width`
        however many repeats are added (judged at 95% confidence, so rarely by chance).

        With per-prompt means m_i (c_i ≥ 2 scores each) and within-prompt variances w_i:
        E[var(m)] = σ_b² + mean(σ_w²/c); the 95% lower bound of E[var(m)] is
        var(m)·(k−1)/χ²(0.95, k−1) (Wilson–Hilferty), minus the within part gives a lower bound on
        σ_b², and t·√(σ_b²/k) is the half-width infinitely many repeats would still have."""
        c, s, q = self.counts[cell], self.sums[cell], self.squares[cell]
        keep = c > 0
        k = int(keep.sum())
        if k < 3 or (c[keep] < 2).any():
            return False
        c, s, q = c[keep], s[keep], q[keep]
        means = s / c
        within = np.maximum(q - s * s / c, 0.0) / (c - 1)
        spread = float(means.var(ddof=1))
        low = spread * (k - 1) / _chi2_quantile(0.95, k - 1) - float((within / c).mean())
        if low <= 0:
            return False
        return t_quantile((1 + self.rule.confidence) / 2, k - 1) * math.sqrt(low / k) > self.rule.half_width

    def means(self) -> np.ndarray:
        """Each cell's current mean (NaN without scores)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sums.sum(axis=1) / self.counts.sum(axis=1)

    def leader(self, group: int = 0) -> int | None:
        """The best mean among the group's cells not dropped (ties: the first in plan order)."""
        means = self.means()
        best: int | None = None
        for i, st in enumerate(self.states):
            if self.groups[i] != group or st.reason == "dropped" or not np.isfinite(means[i]):
                continue
            if best is None or self._better(means[i], means[best]):
                best = i
        return best

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.rule.higher_is_better else a < b

    def group_size(self, group: int = 0) -> int:
        """Cells in the group (the cells a cell races against, itself included)."""
        return len(self._members.get(group, ()))

    def alpha_per_test(self, group: int = 0) -> float:
        """Bonferroni: alpha over (cells of the group − 1) rivals × looks."""
        assert self.rule.alpha is not None
        return self.rule.alpha / ((max(self.group_size(group), 2) - 1) * self.rule.looks)

    def significantly_worse(self, cell: int, leader: int) -> bool:
        """The one-sided paired test of `cell` against `leader` at the Bonferroni level."""
        both = (self.counts[cell] > 0) & (self.counts[leader] > 0)
        k = int(both.sum())
        if k < 2 or not all(self._judged(self.states[j].interval) for j in (cell, leader)):
            return False
        d = self.sums[cell][both] / self.counts[cell][both] - self.sums[leader][both] / self.counts[leader][both]
        if not self.rule.higher_is_better:
            d = -d
        mean = float(d.mean())
        if mean >= 0:
            return False
        var = float(d.var(ddof=1)) / k
        df = k - 1
        seed_var, repeats = self._seed_part(cell, leader)
        if seed_var > 0:
            df = satterthwaite([(var, df), (seed_var, repeats - 1)])
            var += seed_var
        if self.binary[cell] and self.binary[leader]:
            floor = sum(_binomial_floor(float(self.sums[j][both].sum()), float(self.counts[j][both].sum()))
                        for j in (cell, leader))
            var = max(var, floor)
        bound = mean + t_quantile(1 - self.alpha_per_test(self.groups[cell]), df) * math.sqrt(var)
        return bound < 0

    def _seed_part(self, cell: int, leader: int) -> tuple[float, int]:
        """Shared seeds: what the repeats' seeds add to the variance of mean(cell) − mean(leader),
        and the repeats it is estimated from. Two-way as in `seed_component`, on the difference:
        repeat j's influence is u_j = (S_cj − m_c·C_cj)/N_c − (S_Lj − m_L·C_Lj)/N_L, so a seed that
        is lucky in both cells (the same seed, the same luck) cancels, as it does in the difference."""
        if not self.rule.shared_seeds:
            return 0.0, 0
        u = np.zeros(self.rule.max)
        each = 0.0
        for j, sign in ((cell, 1.0), (leader, -1.0)):
            n = float(self.counts[j].sum())
            if n < 2:
                return 0.0, 0
            m = float(self.sums[j].sum()) / n
            u += sign * (self.seed_sums[j] - m * self.seed_counts[j]) / n
            each += n / (n - 1) * max(float(self.squares[j].sum()) - n * m * m, 0.0) / n**2
        used = (self.seed_counts[cell] > 0) | (self.seed_counts[leader] > 0)
        g = int(used.sum())
        if g < 2:
            return 0.0, g
        v_seed = g / (g - 1) * float((u[used] ** 2).sum())
        return max(v_seed - each, 0.0), g
