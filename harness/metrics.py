"""Metrics: result rows → one summary row per (run_id, cell_id). Pure DataFrame → DataFrame.

Every metric, per cell (a sweep point of a run). "ok rows" are rows with `status == "ok"`.

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
  tokens_per_s           Σ completion_tokens / Σ latency_s: the per-request generation rate
Quality (one block per scorer, see harness.scoring)
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
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from harness.records import SWEEPABLE, TOKEN_LOGPROB
from harness.scoring import Scorer, score_frame
from harness.stats import DEFAULT_RESAMPLES, DEFAULT_SEED, bootstrap_mean, rng_for

TAIL_FLAG = 0.05
ARGMAX_EPS = 1e-6
MAX_SIMILARITY_PROMPTS = 200
MAX_SIMILARITY_REPEATS = 16
KEYS = ("run_id", "cell_id")
LP_COLUMNS = ("lp_tokens", "lp_sum", "ent_positions", "ent_sum", "tail_sum", "trunc_positions", "nonargmax_tokens")
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
    tok_row = pc.list_parent_indices(arr).to_numpy()
    lp = pc.struct_field(tokens, "logprob").to_numpy(zero_copy_only=False).astype(np.float64)
    tops = pc.struct_field(tokens, "top_logprobs")
    top_tok = pc.list_parent_indices(tops).to_numpy()
    top_lp = pc.struct_field(tops.flatten(), "logprob").to_numpy(zero_copy_only=False).astype(np.float64)
    keep = ~np.isnan(top_lp)
    top_tok, top_lp = top_tok[keep], top_lp[keep]
    ntok = len(lp)
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


def with_logprob_stats(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with LP_COLUMNS present (computed from `logprobs` unless already there)."""
    if all(c in df.columns for c in LP_COLUMNS):
        return df
    if "logprobs" in df.columns:
        stats = logprob_row_stats(df["logprobs"].to_numpy(dtype=object))
    else:
        stats = pd.DataFrame(0.0, index=range(len(df)), columns=list(LP_COLUMNS))
    stats.index = df.index
    return pd.concat([df.drop(columns=[c for c in LP_COLUMNS if c in df.columns]), stats], axis=1)


# --- swept parameters ---------------------------------------------------------------------------


def swept_params(df: pd.DataFrame) -> list[str]:
    """Parameters that define the cells: keys of `point_json`, then request columns that vary
    between cells of a run. Order: as they appear in point_json, then harness.records.SWEEPABLE."""
    names: list[str] = []
    if "point_json" in df.columns:
        for text in pd.unique(df["point_json"].dropna()):
            for key in _parse_point(text):
                if key not in names:
                    names.append(key)
    if len(df) and "cell_id" in df.columns and "run_id" in df.columns:
        for col in SWEEPABLE:
            if col in df.columns and col not in names and _varies_between_cells(df, col):
                names.append(col)
    return names


def _varies_between_cells(df: pd.DataFrame, col: str) -> bool:
    """Constant inside every cell, and not the same in every cell of some run."""
    within = df.groupby(list(KEYS), sort=False)[col].nunique(dropna=False)
    if within.max() > 1:
        return False
    firsts = df.groupby(list(KEYS), sort=False)[col].first()
    return bool((firsts.groupby(level="run_id").nunique(dropna=False) > 1).any())


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
    return list(zip(words, words[1:]))


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


def _similarity(prompts: np.ndarray, codes: np.ndarray, uniques: list[str]) -> tuple[float, float]:
    """(unique_share, pairwise_similarity) over prompts with ≥2 outputs; rows sorted by prompt."""
    if len(prompts) < 2:
        return math.nan, math.nan
    starts = np.flatnonzero(np.r_[True, prompts[1:] != prompts[:-1]])
    ends = np.r_[starts[1:], len(prompts)]
    sizes = ends - starts
    multi = sizes >= 2
    if not multi.any():
        return math.nan, math.nan
    shares = [len(np.unique(codes[s:e])) / (e - s) for s, e in zip(starts[multi], ends[multi])]
    sims = []
    for s, e in list(zip(starts[multi], ends[multi]))[:MAX_SIMILARITY_PROMPTS]:
        group = codes[s : min(e, s + MAX_SIMILARITY_REPEATS)]
        sims.append(_jaccard_mean([uniques[c] for c in group.tolist()]))
    return float(np.mean(shares)), float(np.mean(sims))


# --- the summary --------------------------------------------------------------------------------


def _finish_name(reason: Any) -> str:
    if reason is None or (isinstance(reason, float) and math.isnan(reason)) or reason is pd.NA:
        return "finish_none"
    text = str(reason).lower()
    return f"finish_{text}" if _REASON_RE.match(text) else "finish_other"


def _percentiles(ok: pd.DataFrame, col: str, qs: Iterable[float], prefix: str, index: pd.Index) -> pd.DataFrame:
    qs = list(qs)
    out = pd.DataFrame(index=index)
    if not len(ok):
        for q in qs:
            out[f"{prefix}_p{round(q * 100)}"] = np.nan
        return out
    table = ok.groupby(list(KEYS), sort=False)[col].quantile(qs).unstack()
    for q in qs:
        out[f"{prefix}_p{round(q * 100)}"] = table[q].reindex(index) if q in table.columns else np.nan
    return out


def _basic(df: pd.DataFrame, ok: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    """Counts, finish mix, tokens, latency, speed."""
    g = df.groupby(list(KEYS), sort=False)
    out = pd.DataFrame(index=index)
    out["n"] = g.size().reindex(index)
    out["n_ok"] = ok.groupby(list(KEYS), sort=False).size().reindex(index).fillna(0).astype(np.int64)
    out["attempts_mean"] = g["attempts"].mean().reindex(index) if "attempts" in df else np.nan
    reasons = ok["finish_reason"].map(_finish_name) if "finish_reason" in ok else pd.Series(dtype=str)
    if len(ok):
        mix = pd.crosstab([ok[k] for k in KEYS], reasons, normalize="index")
        mix = mix.reindex(index)
        for name in sorted(mix.columns, key=lambda c: (c != "finish_stop", c != "finish_length", c)):
            out[name] = mix[name].fillna(0.0).to_numpy()
    og = ok.groupby(list(KEYS), sort=False)
    out["completion_tokens_mean"] = og["completion_tokens"].mean().reindex(index) if len(ok) else np.nan
    out = out.join(_percentiles(ok, "latency_s", (0.5, 0.95, 0.99), "latency", index))
    out = out.join(_percentiles(ok.dropna(subset=["ttft_s"]), "ttft_s", (0.5, 0.95), "ttft", index))
    if len(ok):
        speed = og["completion_tokens"].sum().reindex(index) / og["latency_s"].sum().reindex(index)
        out["tokens_per_s"] = speed.replace([np.inf, -np.inf], np.nan)
    else:
        out["tokens_per_s"] = np.nan
    return out


def _logprob_block(ok: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    sums = ok.groupby(list(KEYS), sort=False)[list(LP_COLUMNS)].sum().reindex(index)
    out = pd.DataFrame(index=index)
    with np.errstate(invalid="ignore", divide="ignore"):
        tokens = sums["lp_tokens"].where(sums["lp_tokens"] > 0)
        positions = sums["ent_positions"].where(sums["ent_positions"] > 0)
        out["logprob_mean"] = sums["lp_sum"] / tokens
        out["perplexity"] = np.exp(-out["logprob_mean"])
        out["entropy_mean"] = sums["ent_sum"] / positions
        out["tail_mass_mean"] = sums["tail_sum"] / positions
        out["entropy_truncated_share"] = sums["trunc_positions"] / positions
        out["nonargmax_share"] = sums["nonargmax_tokens"] / positions
    return out


def _cell_loop(
    df: pd.DataFrame, scores: pd.DataFrame, scorers: list[Scorer], index: pd.Index, resamples: int, seed: int
) -> pd.DataFrame:
    """Per-cell work that needs the rows themselves: bootstrap intervals and diversity."""
    content = df["content"].fillna("") if "content" in df else pd.Series("", index=df.index)
    codes, uniques_arr = pd.factorize(content)
    uniques = [str(u) for u in uniques_arr]
    prompt_codes = pd.factorize(df["prompt_id"])[0] if "prompt_id" in df else np.zeros(len(df), dtype=np.int64)
    order = np.lexsort((df["sample"].to_numpy() if "sample" in df else np.zeros(len(df)), prompt_codes))
    frame = pd.DataFrame({"run_id": df["run_id"].to_numpy(), "cell_id": df["cell_id"].to_numpy()}).iloc[order]
    ok = (df["status"] == "ok").to_numpy()[order]
    codes, prompt_codes = codes[order], prompt_codes[order]
    errors = (~ok).astype(np.float64)
    score_values = {s.name: scores[s.name].to_numpy()[order] for s in scorers}
    records: dict[tuple[str, str], dict[str, float]] = {}
    for key, idx in frame.groupby(list(KEYS), sort=False).indices.items():
        idx = np.sort(idx)
        row: dict[str, float] = {}
        prompts = prompt_codes[idx]
        err = bootstrap_mean(errors[idx], prompts, resamples=resamples, rng=rng_for(*key, "error_rate", seed=seed))
        row.update(error_rate=err.mean, error_rate_lo=err.lo, error_rate_hi=err.hi)
        for name, values in score_values.items():
            iv = bootstrap_mean(values[idx], prompts, resamples=resamples, rng=rng_for(*key, name, seed=seed))
            row.update({f"{name}_mean": iv.mean, f"{name}_lo": iv.lo, f"{name}_hi": iv.hi, f"{name}_n": float(iv.n)})
        ok_idx = idx[ok[idx]]
        cell_codes, counts = np.unique(codes[ok_idx], return_counts=True)
        row.update(_diversity([uniques[c] for c in cell_codes.tolist()], counts))
        share, sim = _similarity(prompt_codes[ok_idx], codes[ok_idx], uniques)
        row.update(unique_share=share, pairwise_similarity=sim)
        records[key] = row
    out = pd.DataFrame.from_dict(records, orient="index")
    if not len(out):
        return pd.DataFrame(index=index)
    out.index = pd.MultiIndex.from_tuples(out.index, names=list(KEYS))
    return out.reindex(index)


_DIVERSITY = ("distinct_1", "distinct_2", "unique_share", "pairwise_similarity", "repetition")


def summarize(
    df: pd.DataFrame,
    scorers: list[Scorer] | None = None,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    scores: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per (run_id, cell_id): swept parameters, then every metric in the module docstring.

    `scores` (from `score_frame`) may be passed to avoid scoring twice. Rows are ordered by
    run (first appearance) and then by the swept parameter values.
    """
    scorers = list(scorers or [])
    df = with_logprob_stats(df.reset_index(drop=True))
    if scores is None:
        scores = score_frame(df, scorers)
    else:
        scores = scores.reset_index(drop=True)
    params = swept_params(df)
    firsts = df.groupby(list(KEYS), sort=False).head(1).set_index(list(KEYS))
    index = firsts.index
    ok = df[df["status"] == "ok"]
    parts = [_cell_params(firsts, params)]
    if "model" in firsts:
        parts.append(firsts[["model"]])
    parts += [_basic(df, ok, index), _cell_loop(df, scores, scorers, index, resamples, seed)]
    parts.append(_logprob_block(ok, index))
    summary = pd.concat(parts, axis=1)
    summary = _order_columns(summary, params, scorers)
    summary = summary.reset_index()
    return _sort_cells(summary, params)


def _order_columns(summary: pd.DataFrame, params: list[str], scorers: list[Scorer]) -> pd.DataFrame:
    first = [*params, "model", "n", "n_ok", "error_rate", "error_rate_lo", "error_rate_hi", "attempts_mean"]
    first += [c for c in summary.columns if str(c).startswith("finish_")]
    first += ["completion_tokens_mean", "latency_p50", "latency_p95", "latency_p99", "ttft_p50", "ttft_p95"]
    first += ["tokens_per_s"]
    for s in scorers:
        first += [f"{s.name}_mean", f"{s.name}_lo", f"{s.name}_hi", f"{s.name}_n"]
    first += list(_DIVERSITY)
    cols = [c for c in dict.fromkeys(first) if c in summary.columns]
    cols += [c for c in summary.columns if c not in cols]
    for name in _DIVERSITY + ("error_rate", "error_rate_lo", "error_rate_hi"):
        if name not in summary.columns:
            summary[name] = np.nan
            cols.append(name)
    return summary[list(dict.fromkeys(cols))]


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


def best_tradeoff(summary: pd.DataFrame, quality: str, cost: str) -> pd.Series:
    """Per run: the index of the cheapest cell whose `quality` mean is not below the best cell's
    interval (`<quality base>_lo` of the highest-mean cell), i.e. indistinguishable from the best."""
    lo_col = quality[: -len("_mean")] + "_lo" if quality.endswith("_mean") else quality
    picks = {}
    for run, part in summary.groupby("run_id", sort=False):
        part = part.dropna(subset=[quality, cost])
        if not len(part):
            continue
        top = part[quality].idxmax()
        floor = part.at[top, lo_col] if lo_col in part else part.at[top, quality]
        good = part[part[quality] >= floor]
        picks[run] = good.sort_values([cost, quality], ascending=[True, False]).index[0]
    return pd.Series(picks, dtype=object)


__all__ = [
    "KEYS",
    "LP_COLUMNS",
    "TAIL_FLAG",
    "best_tradeoff",
    "logprob_row_stats",
    "pareto_front",
    "summarize",
    "swept_params",
    "with_logprob_stats",
]
