"""Metrics: result rows → one summary row per (run_id, target, cell_id). Pure DataFrame → DataFrame.

Every metric, per cell (a sweep point of a target in a run). "ok rows" are rows with `status == "ok"`.

Counts and errors
  n                      rows (requests) in the cell, ok or not
  n_ok                   ok rows
  error_rate[_lo,_hi]    share of rows with status "error"; interval: cluster bootstrap (below)
  attempts_mean          mean attempts per request (1.0 = no retries)
  finish_<reason>        share of ok rows whose finish_reason is <reason> (stop, length, …;
                         "none" when the server sent none; odd names are folded into "other")
Length and speed (ok rows)
  completion_tokens_mean mean `completion_tokens`
  latency_p50/p95/p99    percentiles of `latency_s` (linear interpolation), seconds
  ttft_p50/p95           percentiles of `ttft_s` (NaN unless streamed)
  tpot_p50/p95           percentiles of the time per output token of each request: the mean
                         of its `inter_token_s` gaps, else (latency_s − ttft_s) ÷
                         (completion_tokens − 1) (streamed requests with ≥ 2 tokens)
  itl_mean               inter-token latency: Σ gaps ÷ number of gaps, pooled over the cell
  tokens_per_s           Σ completion_tokens / Σ latency_s: the per-request generation rate
Quality (one block per scorer, see harness.analysis.scoring)
  <name>_mean            mean score over ok rows that could be scored (NaN scores are skipped)
  <name>_lo, <name>_hi   95% percentile bootstrap interval, resampling *prompts* (the repeats
                         of one prompt are not independent), 1000 resamples, seeded per cell
Diversity (ok rows; words = lowercase, whitespace-separated)
  distinct_1, distinct_2 distinct word 1-/2-grams ÷ all word 1-/2-grams, pooled over every
                         output of the cell (all prompts and repeats)
  unique_share           per prompt with ≥2 outputs: distinct outputs ÷ outputs; mean over prompts
                         (1 = every repeat differs, 1/r = all r repeats identical)
  pairwise_similarity    per prompt with ≥2 outputs: mean Jaccard similarity of the word sets of
                         every pair of its outputs (two empty outputs count as identical); mean
                         over prompts. Capped at the first 200 prompts and 16 repeats per cell.
  repetition             per output: 1 − distinct word bigrams ÷ word bigrams (0 for < 2 words),
                         i.e. the share of bigrams that repeat an earlier one; mean over outputs
Logprobs (ok rows with logprobs; natural log, nats)
  logprob_mean           mean logprob of the sampled tokens, pooled over all tokens of the cell
  perplexity             exp(−logprob_mean)
  entropy_mean           mean per-position entropy estimated from `top_logprobs`: with p_i the
                         top-k probabilities and tail mass m = max(0, 1 − Σp_i), the estimate is
                         −Σ p_i ln p_i plus the *least* entropy the tail can have: every unseen
                         token has p ≤ p_min (the smallest top-k probability), so the tail is
                         packed into ⌊m/p_min⌋ tokens of p_min and one remainder. The estimate is
                         therefore a lower bound of the true entropy; it is exact when m = 0.
  tail_mass_mean         mean m over positions
  entropy_truncated_share share of positions with m > 0.05 (TAIL_FLAG): there the lower bound
                         may be loose, and the report marks the entropy as truncated
  nonargmax_share        share of sampled tokens whose logprob is below the best top-k logprob
                         (by more than 1e-6): the sampler picked something other than the argmax
Cost (when the rows carry `cost`, see harness.analysis.cost; no interval)
  cost_total, cost_per_request, <scorer>_cost_per_correct

Targets: a run with several targets (rows with a `target` column) has one cell per (target,
point); `target` is then the first parameter column, and the trade-off helpers below compare the
cells of every target of a run with each other.

Intervals: every summarized number X has X_lo and X_hi (95%; for a `<base>_mean` column they are
`<base>_lo`/`<base>_hi`, e.g. entropy_lo), from a percentile bootstrap that resamples *prompts*
(see harness.analysis.bootstrap), seeded per (run, cell): ratios (means, rates, tokens/s, entropy, logprob,
perplexity = exp(−logprob), diversity shares) exactly as defined above on each resample;
quantiles (latency, TTFT, TPOT) as weighted quantiles of the resampled prompts' rows.
distinct_1/2 (pooled n-gram sets, which a with-replacement resample would bias) use the
delete-one-prompt jackknife instead: estimate ± 1.96 × jackknife standard error, clipped to [0, 1].
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from harness.analysis.bootstrap import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    Interval,
    bootstrap_mean,
    bootstrap_quantiles,
    cluster_weights,
    rng_for,
    weighted_ratios,
)
from harness.analysis.cost import cell_costs, target_series
from harness.analysis.scoring import Scorer, score_frame
from harness.rundir.records import SWEEPABLE, TOKEN_LOGPROB

TAIL_FLAG = 0.05
ARGMAX_EPS = 1e-6
MAX_SIMILARITY_PROMPTS = 200
MAX_SIMILARITY_REPEATS = 16
KEYS = ("run_id", "cell_id")  # plus `target` when the rows have it
TARGET = "target"
LP_COLUMNS = ("lp_tokens", "lp_sum", "ent_positions", "ent_sum", "tail_sum", "trunc_positions", "nonargmax_tokens")
ITL_COLUMNS = ("itl_n", "itl_sum")
# ratio metrics with intervals: column, interval base, (numerator, denominator) per row
_RATIOS = (
    ("completion_tokens_mean", "completion_tokens", "completion_tokens", "_one"),
    ("tokens_per_s", "tokens_per_s", "completion_tokens", "latency_s"),
    ("logprob_mean", "logprob", "lp_sum", "lp_tokens"),
    ("entropy_mean", "entropy", "ent_sum", "ent_positions"),
    ("nonargmax_share", "nonargmax_share", "nonargmax_tokens", "ent_positions"),
    ("itl_mean", "itl", "itl_sum", "itl_n"),
    ("repetition", "repetition", "_repetition", "_one"),
)
_QUANTILES = (("latency_s", "latency", (0.5, 0.95, 0.99)), ("ttft_s", "ttft", (0.5, 0.95)), ("_tpot", "tpot", (0.5, 0.95)))
_REASON_ORDER = {"finish_stop": (0, ""), "finish_length": (1, "")}
_REASON_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


# --- logprobs, vectorised on Arrow ---------------------------------------------------------------


def _segment_reduce(ufunc: np.ufunc, values: np.ndarray, parents: np.ndarray, size: int, fill: float) -> np.ndarray:
    """ufunc-reduce `values` per parent index (parents sorted ascending); `fill` where none."""
    out = np.full(size, fill, dtype=np.float64)
    if len(values):
        starts = np.flatnonzero(np.r_[True, parents[1:] != parents[:-1]])
        out[parents[starts]] = ufunc.reduceat(values, starts)
    return out


def _tail_entropy(tail: np.ndarray, p_min: np.ndarray) -> np.ndarray:
    """Least entropy of mass `tail` spread over tokens of probability ≤ `p_min` each."""
    out = np.zeros_like(tail)
    live = (tail > 1e-12) & (p_min > 0)
    t, p = tail[live], p_min[live]
    full = np.floor(t / p)
    rest = t - full * p
    h = -full * p * np.log(p)
    h -= np.where(rest > 1e-15, rest * np.log(np.where(rest > 1e-15, rest, 1.0)), 0.0)
    out[live] = h
    return out


def _parents(lists: pa.ListArray) -> np.ndarray:
    """For each item of lists.flatten(), the index of its list (faster than list_parent_indices)."""
    sizes = np.diff(np.asarray(lists.offsets))
    if lists.null_count:  # a null list may still span offsets; flatten() skips its items
        sizes = np.where(np.asarray(lists.is_null()), 0, sizes)
    return np.repeat(np.arange(len(lists)), sizes)


def _uniform_width(lists: pa.ListArray, total: int) -> int:
    """k when every list holds exactly k > 0 non-null items with no nulls, else 0."""
    n = len(lists)
    if n == 0 or total == 0 or total % n or lists.null_count:
        return 0
    offsets = np.asarray(lists.offsets)
    k = total // n
    values = lists.flatten()
    if values.null_count or pc.struct_field(values, "logprob").null_count:
        return 0
    return k if bool((np.diff(offsets) == k).all()) else 0


def _as_list_array(column: Any) -> pa.ListArray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if not isinstance(column, pa.Array):
        column = pa.array(list(column), type=pa.list_(TOKEN_LOGPROB))
    return column


def logprob_row_stats(column: Any) -> pd.DataFrame:
    """Per-row sums of the logprob statistics (LP_COLUMNS) from an Arrow (or Python) logprobs column."""
    arr = _as_list_array(column)
    rows = len(arr)
    tokens = arr.flatten()
    tok_row = _parents(arr)
    lp = np.asarray(pc.struct_field(tokens, "logprob").to_numpy(zero_copy_only=False), dtype=np.float64)
    tops = pc.struct_field(tokens, "top_logprobs")
    ntok = len(lp)
    top_lp = np.asarray(pc.struct_field(tops.flatten(), "logprob").to_numpy(zero_copy_only=False), dtype=np.float64)
    k = _uniform_width(tops, len(top_lp))
    if k:  # every position has exactly k top logprobs (the usual case): plain 2-D arithmetic
        grid = np.ascontiguousarray(top_lp.reshape(ntok, k).T)  # (k, ntok): reductions over rows are fast
        p_grid = np.exp(grid)
        has_top = np.ones(ntok, dtype=bool)
        mass, plogp = p_grid.sum(axis=0), np.einsum("ij,ij->j", p_grid, grid)
        p_min, best = p_grid.min(axis=0), grid.max(axis=0)
    else:
        top_tok = _parents(tops)
        keep = ~np.isnan(top_lp)
        top_tok, top_lp = top_tok[keep], top_lp[keep]
        p = np.exp(top_lp)
        has_top = np.bincount(top_tok, minlength=ntok) > 0
        mass = np.bincount(top_tok, weights=p, minlength=ntok)
        plogp = np.bincount(top_tok, weights=p * top_lp, minlength=ntok)
        p_min = _segment_reduce(np.minimum, p, top_tok, ntok, np.nan)
        best = _segment_reduce(np.maximum, top_lp, top_tok, ntok, np.nan)
    tail = np.clip(1.0 - mass, 0.0, 1.0)
    entropy = -plogp + _tail_entropy(tail, np.nan_to_num(p_min, nan=0.0))
    valid = ~np.isnan(lp)
    judged = has_top & valid
    nonargmax = judged & (lp < np.nan_to_num(best, nan=np.inf) - ARGMAX_EPS)

    def per_row(mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        w = None if weights is None else weights[mask]
        return np.bincount(tok_row[mask], weights=w, minlength=rows).astype(np.float64)

    return pd.DataFrame(
        {
            "lp_tokens": per_row(valid),
            "lp_sum": per_row(valid, lp),
            "ent_positions": per_row(has_top),
            "ent_sum": per_row(has_top, entropy),
            "tail_sum": per_row(has_top, tail),
            "trunc_positions": per_row(has_top & (tail > TAIL_FLAG)),
            "nonargmax_tokens": per_row(nonargmax),
        }
    )


def itl_row_stats(column: Any) -> pd.DataFrame:
    """Per row: number and sum of the inter-token gaps (`inter_token_s`, a list column)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not isinstance(arr, pa.Array):
        arr = pa.array([None if v is None or (isinstance(v, float) and math.isnan(v)) else list(v) for v in arr],
                       type=pa.list_(pa.float64()))
    gaps = np.asarray(arr.flatten().to_numpy(zero_copy_only=False), dtype=np.float64)
    parents = _parents(arr)
    valid = ~np.isnan(gaps)
    return pd.DataFrame({
        "itl_n": np.bincount(parents[valid], minlength=len(arr)).astype(np.float64),
        "itl_sum": np.bincount(parents[valid], weights=gaps[valid], minlength=len(arr)),
    })


def tpot_per_row(df: pd.DataFrame) -> np.ndarray:
    """Time per output token of each row: mean inter-token gap, else (latency − ttft) ÷ (tokens − 1)."""
    n = len(df)

    def col(name: str) -> np.ndarray:
        return df[name].to_numpy(dtype=np.float64, na_value=np.nan) if name in df else np.full(n, np.nan)

    itl_n, itl_sum = col("itl_n"), col("itl_sum")
    if "itl_n" not in df and "inter_token_s" in df:
        stats = itl_row_stats(df["inter_token_s"].to_numpy(dtype=object))
        itl_n, itl_sum = stats["itl_n"].to_numpy(), stats["itl_sum"].to_numpy()
    tokens = col("completion_tokens")
    with np.errstate(invalid="ignore", divide="ignore"):
        from_gaps = np.where(itl_n > 0, itl_sum / np.where(itl_n > 0, itl_n, 1), np.nan)
        from_ttft = np.where(tokens >= 2, (col("latency_s") - col("ttft_s")) / (tokens - 1), np.nan)
    return np.where(np.isnan(from_gaps), from_ttft, from_gaps)


def with_itl_stats(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with ITL_COLUMNS present (from `inter_token_s` unless already there; 0 without it)."""
    return _with_row_stats(df, ITL_COLUMNS, "inter_token_s", itl_row_stats)


def with_logprob_stats(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with LP_COLUMNS present (computed from `logprobs` unless already there)."""
    return _with_row_stats(df, LP_COLUMNS, "logprobs", logprob_row_stats)


def _with_row_stats(
    df: pd.DataFrame, columns: Sequence[str], source: str, compute: Callable[[Any], pd.DataFrame]
) -> pd.DataFrame:
    """`df` with `columns` present: computed per row from the `source` column (0 without it)."""
    if all(c in df.columns for c in columns):
        return df
    if source in df.columns:
        stats = compute(df[source].to_numpy(dtype=object))
    else:
        stats = pd.DataFrame(0.0, index=range(len(df)), columns=list(columns))
    stats.index = df.index
    return pd.concat([df.drop(columns=[c for c in columns if c in df.columns]), stats], axis=1)


# --- swept parameters ---------------------------------------------------------------------------


def swept_params(df: pd.DataFrame, prefer: Iterable[str] = ()) -> list[str]:
    """Parameters that define the cells: keys of `point_json`, then request columns that vary
    between cells of a run (`target` too, when a run has several). Order: `prefer` first, then
    `target`, then the order of harness.rundir.records.SWEEPABLE
    (temperature, top_p, min_p, penalties, …; point_json keys are sorted, so they carry no
    order), then any other point_json keys as they appear."""
    names: list[str] = []
    if "point_json" in df.columns:
        for text in pd.unique(df["point_json"].dropna()):
            for key in _parse_point(text):
                if key not in names:
                    names.append(key)
    if len(df) and "cell_id" in df.columns and "run_id" in df.columns:
        cells = cell_codes(df)
        first_rows = np.unique(cells, return_index=True)[1]
        run_of_cell = pd.factorize(df["run_id"])[0][first_rows]
        for col in (TARGET, *SWEEPABLE):
            if col in df.columns and col not in names and _varies_between_cells(df, col, cells, run_of_cell):
                names.append(col)
    rank = {name: i for i, name in enumerate([*prefer, TARGET, *SWEEPABLE])}
    return sorted(names, key=lambda n: rank.get(n, len(rank)))  # stable: others keep their order


def cell_codes(df: pd.DataFrame) -> np.ndarray:
    """An int per row numbering its (run_id, target, cell_id) in order of first appearance.

    A run with several targets shares cell ids between them (`cell_id` is the sweep point
    without the target); `target` keeps their cells apart. Rows without it are one target."""
    if not len(df):
        return np.zeros(0, dtype=np.int64)
    runs = pd.factorize(df["run_id"])[0].astype(np.int64)
    if "target" in df.columns:
        targets = pd.factorize(target_series(df))[0].astype(np.int64)
        runs = pd.factorize(runs * (int(targets.max()) + 1) + targets)[0].astype(np.int64)
    cells = pd.factorize(df["cell_id"])[0].astype(np.int64)
    return pd.factorize(runs * (int(cells.max()) + 1) + cells)[0].astype(np.int64)


def _varies_between_cells(df: pd.DataFrame, col: str, cells: np.ndarray, run_of_cell: np.ndarray) -> bool:
    """Constant inside every cell, and not the same in every cell of some run."""
    grouped = df[col].groupby(cells, sort=False)
    if grouped.nunique(dropna=False).max() > 1:
        return False
    firsts = grouped.first().sort_index()
    return bool((firsts.groupby(run_of_cell).nunique(dropna=False) > 1).any())


def _parse_point(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _cell_params(first: pd.DataFrame, params: list[str]) -> pd.DataFrame:
    """Parameter values per cell from the first row of each cell."""
    out = pd.DataFrame(index=first.index)
    points = first["point_json"].map(_parse_point) if "point_json" in first.columns else None
    for name in params:
        if name in first.columns:
            out[name] = first[name]
        elif points is not None:
            out[name] = points.map(lambda p, k=name: _scalar(p.get(k)))
        else:
            out[name] = None
    return out


def _scalar(value: Any) -> Any:
    return value if value is None or isinstance(value, (int, float, str, bool)) else json.dumps(value)


# --- text diversity -----------------------------------------------------------------------------


def _bigrams(words: list[str]) -> list[tuple[str, str]]:
    return list(itertools.pairwise(words))


def _diversity(texts: list[str], counts: np.ndarray) -> dict[str, float]:
    """distinct_1, distinct_2 and repetition over the distinct `texts` seen `counts` times."""
    unigrams: set[str] = set()
    bigrams: set[tuple[str, str]] = set()
    total1 = total2 = 0.0
    rep_sum = 0.0
    for text, count in zip(texts, counts.tolist()):
        words = text.lower().split()
        pairs = _bigrams(words)
        unigrams.update(words)
        bigrams.update(pairs)
        total1 += count * len(words)
        total2 += count * len(pairs)
        if pairs:
            rep_sum += count * (1.0 - len(set(pairs)) / len(pairs))
    n = float(counts.sum())
    return {
        "distinct_1": len(unigrams) / total1 if total1 else math.nan,
        "distinct_2": len(bigrams) / total2 if total2 else math.nan,
        "repetition": rep_sum / n if n else math.nan,
    }


def _jaccard_mean(texts: list[str]) -> float:
    sets = [frozenset(t.lower().split()) for t in texts]
    total, pairs = 0.0, 0
    for i in range(len(sets)):
        a = sets[i]
        for b in sets[i + 1 :]:
            union = len(a | b)
            total += len(a & b) / union if union else 1.0
            pairs += 1
    return total / pairs if pairs else math.nan


@dataclass(frozen=True)
class _Similarity:
    """Per prompt with ≥ 2 outputs: its code, distinct share and mean pairwise similarity."""

    prompts: np.ndarray
    shares: np.ndarray
    sims: np.ndarray  # NaN past MAX_SIMILARITY_PROMPTS

    def means(self) -> tuple[float, float]:
        if not len(self.prompts):
            return math.nan, math.nan
        sims = self.sims[~np.isnan(self.sims)]
        return float(np.mean(self.shares)), float(np.mean(sims)) if len(sims) else math.nan


def _similarity(prompts: np.ndarray, codes: np.ndarray, uniques: list[str]) -> _Similarity:
    """Repeat agreement per prompt with ≥2 outputs; rows sorted by prompt."""
    empty = _Similarity(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0))
    if len(prompts) < 2:
        return empty
    starts = np.flatnonzero(np.r_[True, prompts[1:] != prompts[:-1]])
    sizes = np.diff(np.r_[starts, len(prompts)])
    multi = sizes >= 2
    if not multi.any():
        return empty
    group = np.repeat(np.arange(len(starts)), sizes)
    distinct_pairs = np.unique(group.astype(np.int64) * (int(codes.max()) + 1) + codes)
    distinct = np.bincount(distinct_pairs // (int(codes.max()) + 1), minlength=len(starts))
    sims = np.full(int(multi.sum()), np.nan)
    for i, (s, n) in enumerate(list(zip(starts[multi], sizes[multi]))[:MAX_SIMILARITY_PROMPTS]):
        chosen = codes[s : s + min(n, MAX_SIMILARITY_REPEATS)]
        sims[i] = _jaccard_mean([uniques[c] for c in chosen.tolist()])
    return _Similarity(prompts[starts[multi]], distinct[multi] / sizes[multi], sims)


def _repetition_of(text: str) -> float:
    pairs = _bigrams(text.lower().split())
    return 1.0 - len(set(pairs)) / len(pairs) if pairs else 0.0


@dataclass(frozen=True)
class _GramTable:
    """For every distinct output text: its distinct word n-gram ids (concatenated, with offsets)
    and its number of n-grams. Built once per summary, shared by every cell."""

    ids: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray

    @classmethod
    def build(cls, texts: list[str], n: int) -> _GramTable:
        vocab: dict[Any, int] = {}
        ids: list[int] = []
        offsets = [0]
        lengths = []
        for text in texts:
            words = text.lower().split()
            grams = words if n == 1 else _bigrams(words)
            ids.extend({vocab.setdefault(g, len(vocab)) for g in grams})
            offsets.append(len(ids))
            lengths.append(len(grams))
        return cls(np.asarray(ids, dtype=np.int64), np.asarray(offsets, dtype=np.int64),
                   np.asarray(lengths, dtype=np.float64))


def _distinct_intervals(group: np.ndarray, codes: np.ndarray, tables: dict[int, _GramTable], m: int,
                        estimates: dict[str, float]) -> dict[str, float]:
    """distinct_1/2 intervals by the delete-one-prompt jackknife: θ̂ ± 1.96·SE.

    Leaving prompt i out removes the n-grams found only in its outputs and its n-gram total,
    so all m leave-one-out values cost one pass over the (prompt, n-gram) pairs."""
    out: dict[str, float] = {}
    base = int(codes.max()) + 1 if len(codes) else 1
    keys, counts = np.unique(group.astype(np.int64) * base + codes, return_counts=True)
    pair_group, pair_code = keys // base, keys % base
    for n, table in tables.items():
        name = f"distinct_{n}"
        out[f"{name}_lo"] = out[f"{name}_hi"] = math.nan
        totals = np.bincount(pair_group, weights=counts * table.lengths[pair_code], minlength=m)
        sizes = np.diff(table.offsets)[pair_code]
        if m < 2 or not sizes.sum() or not math.isfinite(estimates.get(name, math.nan)):
            continue
        starts = np.repeat(table.offsets[pair_code] - np.r_[0, np.cumsum(sizes)[:-1]], sizes) + np.arange(int(sizes.sum()))
        gram_prompt = np.unique(table.ids[starts] * m + np.repeat(pair_group, sizes))
        grams, prompts = gram_prompt // m, gram_prompt % m
        _, first, per_gram = np.unique(grams, return_inverse=True, return_counts=True)
        only_here = np.bincount(prompts, weights=(per_gram[first] == 1).astype(np.float64), minlength=m)
        with np.errstate(invalid="ignore", divide="ignore"):
            loo = (len(per_gram) - only_here) / (totals.sum() - totals)
        loo = loo[np.isfinite(loo)]
        if len(loo) < 2:
            continue
        se = math.sqrt((len(loo) - 1) / len(loo) * float(np.sum((loo - loo.mean()) ** 2)))
        est = estimates[name]
        out[f"{name}_lo"], out[f"{name}_hi"] = max(0.0, est - 1.96 * se), min(1.0, est + 1.96 * se)
    return out


def _groups(prompts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start of each prompt's rows, group index per row) for rows sorted by prompt."""
    if not len(prompts):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, prompts[1:] != prompts[:-1]])
    return starts, np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(prompts)]))


def _interval_cols(base: str, iv: Interval) -> dict[str, float]:
    return {f"{base}_lo": iv.lo, f"{base}_hi": iv.hi}


def _cell_intervals(ctx: _CellData, idx: np.ndarray, sim: _Similarity, rng: np.random.Generator,
                    resamples: int) -> dict[str, float]:
    """Intervals of the ratio, diversity and quantile metrics of one cell (one shared resampling)."""
    prompts = ctx.prompts[idx]
    starts, group = _groups(prompts)
    m = len(starts)
    row: dict[str, float] = {}
    if m == 0:
        return row
    weights = cluster_weights(m, resamples, rng)
    num = np.add.reduceat(ctx.num[idx], starts, axis=0)
    den = np.add.reduceat(ctx.den[idx], starts, axis=0)
    positions = np.searchsorted(prompts[starts], sim.prompts)
    for values in (sim.shares, np.nan_to_num(sim.sims)):
        col_n, col_d = np.zeros(m), np.zeros(m)
        has = ~np.isnan(sim.sims) if values is not sim.shares else np.ones(len(values), dtype=bool)
        col_n[positions[has]], col_d[positions[has]] = values[has], 1.0
        num, den = np.column_stack([num, col_n]), np.column_stack([den, col_d])
    ivs = weighted_ratios(num, den, weights)
    names = [base for _, base, _, _ in _RATIOS] + ["unique_share", "pairwise_similarity"]
    for base, iv in zip(names, ivs):
        row.update(_interval_cols(base, iv))
    row.update(perplexity_lo=math.exp(-row["logprob_hi"]) if not math.isnan(row["logprob_hi"]) else math.nan,
               perplexity_hi=math.exp(-row["logprob_lo"]) if not math.isnan(row["logprob_lo"]) else math.nan)
    ok_idx = ctx.ok[idx]
    if ok_idx.any():
        if ctx.grams is None:
            ctx.grams = {n: _GramTable.build(ctx.uniques, n) for n in (1, 2)}
        row.update(_distinct_intervals(group[ok_idx], ctx.codes[idx][ok_idx], ctx.grams, m, ctx.distinct))
    for column, base, qs in _QUANTILES:
        values = ctx.quantile_values[column][idx][ok_idx]
        if np.isnan(values).all():
            continue
        for q, iv in zip(qs, bootstrap_quantiles(values, prompts[ok_idx], qs, resamples=resamples, rng=rng)):
            row.update(_interval_cols(f"{base}_p{round(q * 100)}", iv))
    return row


# --- the summary --------------------------------------------------------------------------------


def _finish_name(reason: Any) -> str:
    if reason is None or (isinstance(reason, float) and math.isnan(reason)) or reason is pd.NA:
        return "finish_none"
    text = str(reason).lower()
    return f"finish_{text}" if _REASON_RE.match(text) else "finish_other"


def _finish_names(reasons: pd.Series) -> pd.Series:
    """finish_<reason> per row, naming each distinct reason once."""
    codes, uniques = pd.factorize(reasons, use_na_sentinel=False)
    names = np.array([_finish_name(u) for u in uniques] or ["finish_none"], dtype=object)
    return pd.Series(names[codes], index=reasons.index)


def _percentiles(values: pd.Series, cells: np.ndarray, qs: tuple[float, ...], prefix: str, m: int) -> pd.DataFrame:
    """Per-cell percentiles (linear interpolation) of the non-null `values`."""
    out = pd.DataFrame(index=pd.RangeIndex(m))
    keep = values.notna().to_numpy()
    if keep.any():
        table = values[keep].groupby(cells[keep], sort=False).quantile(np.asarray(qs)).unstack()
    else:
        table = pd.DataFrame()
    for q in qs:
        out[f"{prefix}_p{round(q * 100)}"] = table[q].reindex(out.index) if q in table.columns else np.nan
    return out


def _per_cell(values: Any, cells: np.ndarray, m: int, how: str) -> pd.Series:
    return pd.Series(values).groupby(cells, sort=False).agg(how).reindex(pd.RangeIndex(m))


def _basic(w: pd.DataFrame, ok: np.ndarray, m: int) -> pd.DataFrame:
    """Counts, finish mix, tokens, latency, speed. `w` has a `_cell` column; `ok` masks ok rows."""
    cells = w["_cell"].to_numpy()
    oc = cells[ok]
    out = pd.DataFrame(index=pd.RangeIndex(m))
    out["n"] = np.bincount(cells, minlength=m)
    out["n_ok"] = np.bincount(oc, minlength=m)
    out["attempts_mean"] = _per_cell(w["attempts"].to_numpy(dtype=float), cells, m, "mean")
    if ok.any():
        codes, names = pd.factorize(_finish_names(w["finish_reason"][ok]))
        counts = np.zeros((m, len(names)))
        np.add.at(counts, (oc, codes), 1.0)
        shares = counts / np.maximum(out["n_ok"].to_numpy(), 1)[:, None]
        for j in sorted(range(len(names)), key=lambda j: _REASON_ORDER.get(str(names[j]), (2, str(names[j])))):
            out[names[j]] = np.where(out["n_ok"] > 0, shares[:, j], np.nan)
    tokens = w["completion_tokens"].to_numpy(dtype=float)[ok]
    latency = w["latency_s"].to_numpy(dtype=float)[ok]
    out["completion_tokens_mean"] = _per_cell(tokens, oc, m, "mean")
    out = out.join(_percentiles(pd.Series(latency), oc, (0.5, 0.95, 0.99), "latency", m))
    out = out.join(_percentiles(pd.Series(w["ttft_s"].to_numpy(dtype=float)[ok]), oc, (0.5, 0.95), "ttft", m))
    out = out.join(_percentiles(pd.Series(w["_tpot"].to_numpy(dtype=float)[ok]), oc, (0.5, 0.95), "tpot", m))
    with np.errstate(invalid="ignore", divide="ignore"):
        gaps = _per_cell(w["itl_n"].to_numpy(dtype=float)[ok], oc, m, "sum")
        out["itl_mean"] = (_per_cell(w["itl_sum"].to_numpy(dtype=float)[ok], oc, m, "sum") / gaps).where(gaps > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        speed = _per_cell(tokens, oc, m, "sum") / _per_cell(np.nan_to_num(latency), oc, m, "sum")
    out["tokens_per_s"] = speed.replace([np.inf, -np.inf], np.nan)
    return out


def _logprob_block(w: pd.DataFrame, ok: np.ndarray, m: int) -> pd.DataFrame:
    cells = w["_cell"].to_numpy()[ok]
    sums = {c: np.bincount(cells, weights=w[c].to_numpy(dtype=float)[ok], minlength=m) for c in LP_COLUMNS}
    out = pd.DataFrame(index=pd.RangeIndex(m))
    with np.errstate(invalid="ignore", divide="ignore"):
        tokens = np.where(sums["lp_tokens"] > 0, sums["lp_tokens"], np.nan)
        positions = np.where(sums["ent_positions"] > 0, sums["ent_positions"], np.nan)
        out["logprob_mean"] = sums["lp_sum"] / tokens
        out["perplexity"] = np.exp(-out["logprob_mean"])
        out["entropy_mean"] = sums["ent_sum"] / positions
        out["tail_mass_mean"] = sums["tail_sum"] / positions
        out["entropy_truncated_share"] = sums["trunc_positions"] / positions
        out["nonargmax_share"] = sums["nonargmax_tokens"] / positions
    return out


@dataclass
class _CellData:
    """Row arrays sorted by (cell, prompt, sample), shared by the per-cell loop."""

    prompts: np.ndarray
    codes: np.ndarray
    uniques: list[str]
    ok: np.ndarray
    num: np.ndarray
    den: np.ndarray
    quantile_values: dict[str, np.ndarray]
    distinct: dict[str, float]
    grams: dict[int, _GramTable] | None = None


def _ratio_inputs(w: pd.DataFrame, ok: np.ndarray, repetition: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows × len(_RATIOS)) numerators and denominators; 0 for error rows and missing values."""
    cols = {c: w[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in w.columns if c in
            {"completion_tokens", "latency_s", *LP_COLUMNS, *ITL_COLUMNS}}
    cols["_one"] = np.ones(len(w))
    cols["_repetition"] = repetition
    num, den = np.zeros((len(w), len(_RATIOS))), np.zeros((len(w), len(_RATIOS)))
    for j, (_, _, a, b) in enumerate(_RATIOS):
        x, y = cols.get(a, np.zeros(len(w))), cols.get(b, np.zeros(len(w)))
        keep = ok & ~np.isnan(x) & ~np.isnan(y)
        num[keep, j], den[keep, j] = x[keep], y[keep]
    return num, den


def _cell_loop(
    w: pd.DataFrame, scores: pd.DataFrame, scorers: list[Scorer], keys: pd.DataFrame, resamples: int, seed: int
) -> pd.DataFrame:
    """Per-cell work that needs the rows themselves: bootstrap intervals and diversity."""
    content = w["content"].fillna("") if "content" in w else pd.Series("", index=w.index)
    codes, uniques_arr = pd.factorize(content)
    uniques = [str(u) for u in uniques_arr]
    prompt_codes = pd.factorize(w["prompt_id"])[0] if "prompt_id" in w else np.zeros(len(w), dtype=np.int64)
    sample = w["sample"].to_numpy() if "sample" in w else np.zeros(len(w))
    cells = w["_cell"].to_numpy()
    order = np.lexsort((sample, prompt_codes, cells))
    ok = (w["status"] == "ok").to_numpy()[order]
    codes, prompt_codes, cells = codes[order], prompt_codes[order], cells[order]
    errors = (~ok).astype(np.float64)
    score_values = {s.name: scores[s.name].to_numpy()[order] for s in scorers}
    rep_of_code = np.array([_repetition_of(u) for u in uniques]) if uniques else np.zeros(0)
    num, den = _ratio_inputs(w.iloc[order], ok, rep_of_code[codes] if len(codes) else np.zeros(0))
    quantile_values = {c: (w[c].to_numpy(dtype=np.float64, na_value=np.nan)[order] if c in w else np.full(len(w), np.nan))
                       for c, _, _ in _QUANTILES}
    ctx = _CellData(prompt_codes, codes, uniques, ok, num, den, quantile_values, {})
    bounds = np.r_[np.searchsorted(cells, np.arange(len(keys))), len(cells)]
    records = []
    for cell, (run_id, cell_id) in enumerate(zip(keys["run_id"], keys["cell_id"])):
        idx = np.arange(bounds[cell], bounds[cell + 1])
        row: dict[str, float] = {}
        prompts = prompt_codes[idx]

        def interval(values: np.ndarray, metric: str, run_id: str = run_id, cell_id: str = cell_id,
                     idx: np.ndarray = idx, prompts: np.ndarray = prompts) -> Interval:
            rng = rng_for(run_id, cell_id, metric, seed=seed)
            return bootstrap_mean(values[idx], prompts, resamples=resamples, rng=rng)

        err = interval(errors, "error_rate")
        row.update(error_rate=err.mean, error_rate_lo=err.lo, error_rate_hi=err.hi)
        for name, values in score_values.items():
            iv = interval(values, name)
            row.update({f"{name}_mean": iv.mean, f"{name}_lo": iv.lo, f"{name}_hi": iv.hi, f"{name}_n": float(iv.n)})
        ok_idx = idx[ok[idx]]
        cell_codes_, counts = np.unique(codes[ok_idx], return_counts=True)
        diversity = _diversity([uniques[c] for c in cell_codes_.tolist()], counts)
        row.update(diversity)
        sim = _similarity(prompt_codes[ok_idx], codes[ok_idx], uniques)
        share, similarity = sim.means()
        row.update(unique_share=share, pairwise_similarity=similarity)
        ctx.distinct = diversity
        row.update(_cell_intervals(ctx, idx, sim, rng_for(run_id, cell_id, "shared", seed=seed), resamples))
        records.append(row)
    if not records:
        return pd.DataFrame(index=pd.RangeIndex(0))
    return pd.DataFrame.from_records(records, index=pd.RangeIndex(len(keys)))


_DIVERSITY = ("distinct_1", "distinct_2", "unique_share", "pairwise_similarity", "repetition")
_NEEDED = ("run_id", "cell_id", "prompt_id", "sample", "model", "status", "attempts", "finish_reason",
           "completion_tokens", "latency_s", "ttft_s", "content", "point_json", *SWEEPABLE, *LP_COLUMNS,
           *ITL_COLUMNS, TARGET, "cost")


def summarize(
    df: pd.DataFrame,
    scorers: list[Scorer] | None = None,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    scores: pd.DataFrame | None = None,
    prefer: Iterable[str] = (),
) -> pd.DataFrame:
    """One row per (run_id, target, cell_id): swept parameters, then every metric in the module
    docstring, and the cost columns of harness.analysis.cost when the rows carry `cost`.

    `target` is a column of the summary whenever the rows have one (a parameter, first, when a
    run has several targets). `scores` (from `score_frame`) may be passed to avoid scoring twice;
    `prefer` orders the parameter columns (see `swept_params`). Rows are ordered by run (first
    appearance) and then by the swept parameter values.
    """
    scorers = list(scorers or [])
    df = df.reset_index(drop=True)
    scores = score_frame(df, scorers) if scores is None else scores.reset_index(drop=True)
    w = with_logprob_stats(df[[c for c in _NEEDED + ("logprobs", "inter_token_s") if c in df.columns]])
    w = with_itl_stats(w).drop(columns=["logprobs", "inter_token_s"], errors="ignore")
    for col in ("attempts", "completion_tokens", "latency_s", "ttft_s", "finish_reason"):
        if col not in w:
            w[col] = np.nan
    w["_tpot"] = tpot_per_row(w)
    params = swept_params(w, prefer)
    w["_cell"] = cell_codes(w)
    firsts = w.iloc[np.unique(w["_cell"].to_numpy(), return_index=True)[1]].reset_index(drop=True)
    m = len(firsts)
    ok = (w["status"] == "ok").to_numpy()
    parts = [firsts[["run_id", "cell_id"]], _cell_params(firsts, params)]
    if TARGET in firsts and TARGET not in params:
        parts.append(pd.DataFrame({TARGET: target_series(firsts)}))
    if "model" in firsts:
        parts.append(firsts[["model"]])
    parts += [_basic(w, ok, m), _cell_loop(w, scores, scorers, firsts, resamples, seed), _logprob_block(w, ok, m)]
    if "cost" in w and w["cost"].notna().any():
        cells = w["_cell"].to_numpy()
        parts.append(cell_costs(w["cost"].to_numpy(dtype=float, na_value=np.nan), cells, m,
                                {s.name: scores[s.name].to_numpy(dtype=float) for s in scorers}))
    summary = pd.concat(parts, axis=1)
    summary = _order_columns(summary, params, scorers)
    return _sort_cells(summary, params)


def interval_columns(column: str) -> tuple[str, str]:
    """The (lo, hi) columns of a metric: `<base>_lo/_hi` where base drops a `_mean` suffix."""
    base = column.removesuffix("_mean")
    return f"{base}_lo", f"{base}_hi"


INTERVAL_METRICS = (
    "error_rate", "completion_tokens_mean", "latency_p50", "latency_p95", "latency_p99", "ttft_p50", "ttft_p95",
    "tpot_p50", "tpot_p95", "itl_mean", "tokens_per_s", "distinct_1", "distinct_2", "unique_share",
    "pairwise_similarity", "repetition", "logprob_mean", "perplexity", "entropy_mean", "nonargmax_share",
)


def _order_columns(summary: pd.DataFrame, params: list[str], scorers: list[Scorer]) -> pd.DataFrame:
    for name in [*_DIVERSITY, *INTERVAL_METRICS, *(f"{s.name}_{part}" for s in scorers for part in ("mean", "n"))]:
        if name not in summary.columns:
            summary[name] = np.nan
    for name in [*INTERVAL_METRICS, *(f"{s.name}_mean" for s in scorers)]:
        for col in interval_columns(name):
            if col not in summary.columns:
                summary[col] = np.nan
    metrics = ["error_rate", "attempts_mean", *[c for c in summary.columns if str(c).startswith("finish_")]]
    metrics += ["completion_tokens_mean", "latency_p50", "latency_p95", "latency_p99", "ttft_p50", "ttft_p95"]
    metrics += ["tpot_p50", "tpot_p95", "itl_mean", "tokens_per_s", "cost_total", "cost_per_request"]
    for s in scorers:
        metrics += [f"{s.name}_mean", f"{s.name}_n", f"{s.name}_cost_per_correct"]
    metrics += [*_DIVERSITY, "logprob_mean", "perplexity", "entropy_mean", "nonargmax_share", "tail_mass_mean",
                "entropy_truncated_share"]
    first = ["run_id", "cell_id", *params, TARGET, "model", "n", "n_ok"]
    for name in metrics:
        first.append(name)
        if name in INTERVAL_METRICS or (name.endswith("_mean") and name[:-5] in {s.name for s in scorers}):
            first += list(interval_columns(name))
    cols = [c for c in dict.fromkeys(first) if c in summary.columns]
    cols += [c for c in summary.columns if c not in cols]
    return summary[cols]


def _sort_cells(summary: pd.DataFrame, params: list[str]) -> pd.DataFrame:
    run_order = {r: i for i, r in enumerate(pd.unique(summary["run_id"]))}
    keys = pd.DataFrame({"_run": summary["run_id"].map(run_order)})
    by = ["_run"]
    for p in params:
        col = summary[p]
        keys[p] = col if pd.api.types.is_numeric_dtype(col) else col.astype(str)
        by.append(p)
    order = keys.sort_values(by, na_position="first", kind="stable").index
    return summary.loc[order].reset_index(drop=True)


# --- trade-offs ---------------------------------------------------------------------------------


def pareto_front(summary: pd.DataFrame, quality: str, cost: str) -> pd.Series:
    """True for cells no other cell of the same run beats on both higher `quality` and lower `cost`."""
    flags = pd.Series(False, index=summary.index)
    for _, part in summary.groupby("run_id", sort=False):
        part = part.dropna(subset=[quality, cost]).sort_values([cost, quality], ascending=[True, False])
        best = -np.inf
        for idx, q in zip(part.index, part[quality]):
            if q > best:
                flags[idx] = True
                best = q
    return flags


def pareto_set(summary: pd.DataFrame, objectives: Sequence[tuple[str, bool]]) -> pd.Series:
    """True for cells that no other cell of the same run dominates on every objective.

    `objectives` are (column, higher is better) pairs, e.g. quality up, latency and cost per
    request down: a cell is dominated when another is at least as good on all of them and better
    on one. Cells missing a value of some objective are never on the front (False)."""
    flags = pd.Series(False, index=summary.index)
    cols = [c for c, _ in objectives]
    for _, part in summary.groupby("run_id", sort=False):
        part = part.dropna(subset=cols)
        if not len(part):
            continue
        # every objective as "lower is better"
        values = np.column_stack([(-1.0 if up else 1.0) * part[c].to_numpy(dtype=float) for c, up in objectives])
        for i, idx in enumerate(part.index):
            no_worse = (values <= values[i] + 1e-12).all(axis=1)
            better = (values < values[i] - 1e-12).any(axis=1)
            flags[idx] = not bool((no_worse & better).any())
    return flags


def best_tradeoff(summary: pd.DataFrame, quality: str, cost: str) -> pd.Series:
    """Per run, the index of the best trade-off cell. No choice rests on a difference inside an
    interval: (1) the cells whose `quality` mean is not below the best cell's interval
    (`<quality base>_lo` of the highest-mean cell) tie on quality; (2) of those, the cells whose
    cost interval (`<cost>_lo`) reaches down to the cheapest tied cell's upper bound
    (`<cost>_hi`) tie on cost too; (3) of the cells tied on both, the highest quality mean, then
    the first in table order (parameters ascending: the simplest setting)."""
    lo_col = interval_columns(quality)[0] if quality.endswith("_mean") else quality
    cost_lo, cost_hi = f"{cost}_lo", f"{cost}_hi"
    picks = {}
    for run, part in summary.groupby("run_id", sort=False):
        part = part.dropna(subset=[quality, cost])
        if not len(part):
            continue
        q = part[quality].astype(float)
        floors = part[lo_col].astype(float).fillna(q) if lo_col in part else q
        good = part[q >= float(floors.to_numpy()[int(np.argmax(q.to_numpy()))]) - 1e-12]
        c = good[cost].astype(float)
        ceilings = good[cost_hi].astype(float).fillna(c) if cost_hi in good else c
        lows = good[cost_lo].astype(float).fillna(c) if cost_lo in good else c
        tied = good[lows <= float(ceilings.to_numpy()[int(np.argmin(c.to_numpy()))]) + 1e-12]
        picks[run] = tied.sort_values(quality, ascending=False, kind="stable").index[0]
    return pd.Series(picks, dtype=object)


__all__ = [
    "INTERVAL_METRICS",
    "ITL_COLUMNS",
    "KEYS",
    "LP_COLUMNS",
    "TAIL_FLAG",
    "best_tradeoff",
    "interval_columns",
    "itl_row_stats",
    "logprob_row_stats",
    "pareto_front",
    "pareto_set",
    "summarize",
    "swept_params",
    "tpot_per_row",
    "with_itl_stats",
    "with_logprob_stats",
]
