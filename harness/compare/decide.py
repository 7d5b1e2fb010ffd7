"""Compare two runs: pair rows, score both sides, test every metric × cell, correct, decide.

Decisions (documented in docs/compare.md):

- Rows pair on (point_json, prompt_id, sample); the model name plays no part. A side may be one
  target of a run (``base_target``/``cand_target``, see ``sides``): two targets of one run pair
  the same way as two runs.
- The scorers are the union of both runs' ``spec.scoring`` (candidate's first) and are applied
  to *both* runs, so a scorer added in the candidate's spec still compares like with like.
- An error row scores 0 on quality metrics (a failure to answer is a quality loss) unless
  ``error_score="exclude"``, which drops the pair. Latency uses ok rows of both sides only.
- The family for the multiple-testing correction is the gated tests (metric × cell, plus the
  pooled row when several points are shared); informational metrics form a second family.
"""

from __future__ import annotations

import functools
import json
import logging
import zlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.metrics import tpot_per_row
from harness.errors import HarnessError, RunDirError, SpecError, UsageError
from harness.rundir.layout import MANIFEST
from harness.rundir.results import Run

from .options import (
    BUILTIN_METRICS,
    ERROR_RATE,
    LATENCY_P95,
    QUANTILE_METRICS,
    TPOT_P95,
    TTFT_P95,
    CompareOptions,
    Gate,
    Threshold,
)
from .paired import (
    PairedTest,
    adjust,
    paired_mean_test,
    paired_quantile_test,
    perm_count,
)
from .pairing import (
    BASE_SUFFIX,
    CAND_SUFFIX,
    Pairing,
    dedupe,
    pair,
    point_keys,
    point_label,
)
from .result import (
    ALL_POINTS,
    CeilingCheck,
    CellResult,
    Comparison,
    MetricSummary,
    RunInfo,
    Verdict,
)
from .sides import select_target, target_model

log = logging.getLogger(__name__)

ScoreFn = Callable[[pd.DataFrame, list[Any]], pd.DataFrame]
DEFAULT_MARGIN = Threshold(0.02)
DEFAULT_LATENCY_MARGIN = Threshold(0.10, relative=True)
LATENCY_QUANTILE = 0.95


def default_score(results: pd.DataFrame, items: list[Any], allow: Collection[str] = ()) -> pd.DataFrame:
    """Score with harness.analysis.scoring (one float column per metric, NaN for error rows).

    `items` come from run directories: a custom scorer is imported only when named in `allow`.
    """
    from harness.analysis import scoring  # imported late: compare works on runs with no scorers too

    return scoring.score_frame(results, scoring.resolve_scorers(items, allow_custom=allow))


@dataclass(frozen=True)
class _Plan:
    """Which metric is gated with what tolerance."""

    metric: str
    gated: bool
    max_drop: Threshold | None
    higher_is_better: bool


def compare_runs(
    base: Run, cand: Run, options: CompareOptions | None = None, *, score: ScoreFn | None = None,
    base_target: str | None = None, cand_target: str | None = None,
) -> Comparison:
    """Paired comparison of ``cand`` against ``base``; see the module docstring.

    ``base_target`` / ``cand_target`` restrict a side to one target of its run (harness.compare.sides);
    both may name targets of the same run. A side with several targets must name one."""
    options = options or CompareOptions()
    base = select_target(base, base_target, "--base-target")
    cand = select_target(cand, cand_target, "--cand-target")
    if score is None:  # custom scorers: those the user allowed, and gate metrics the user named
        allow = (*options.allow_scorers, *(g.metric for g in options.gates))
        score = functools.partial(default_score, allow=allow)
    items, notes = scoring_items(base, cand)
    scores_b, scores_c = _score_both(base, cand, items, options, score)
    metrics = list(scores_c.columns)
    values_b, values_c = _values(base.results, scores_b, options), _values(cand.results, scores_c, options)
    measured = {m for m in QUANTILE_METRICS if values_b[m].notna().any() and values_c[m].notna().any()}
    plans = _plans(metrics, options, measured)
    names = [p.metric for p in plans]
    pairing = pair(values_b, values_c, names)
    _check_overlap(pairing, base, cand)
    cells = _test_all(pairing, plans, options)
    return Comparison(
        base=_info(base, base_target),
        cand=_info(cand, cand_target),
        options=options,
        shared_points=pairing.shared_points,
        only_base=pairing.only_base,
        only_cand=pairing.only_cand,
        n_pairs=pairing.n_pairs,
        unpaired_base=pairing.unpaired_base,
        unpaired_cand=pairing.unpaired_cand,
        cells=cells,
        metrics=tuple(_summarize(p, cells) for p in plans),
        ceilings=_ceilings(values_c, pairing, options),
        notes=tuple(notes),
    )


def scoring_items(base: Run, cand: Run) -> tuple[list[Any], list[str]]:
    """Union of both specs' ``scoring`` lists, candidate's first, and a note if they differ."""
    cand_items = list(cand.spec.get("scoring") or [])
    base_items = list(base.spec.get("scoring") or [])
    seen = {json.dumps(i, sort_keys=True) for i in cand_items}
    extra = [i for i in base_items if json.dumps(i, sort_keys=True) not in seen]
    notes = []
    if extra or len(seen) != len({json.dumps(i, sort_keys=True) for i in base_items}):
        notes.append("the runs' `scoring` lists differ; both runs were scored with their union")
    return cand_items + extra, notes


def _score_both(
    base: Run, cand: Run, items: list[Any], options: CompareOptions, score: ScoreFn
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score both runs with the same scorers, adding any gated metric named only on the CLI."""
    scores_b = _score(score, base.results, items, base)
    scores_c = _score(score, cand.results, items, cand)
    known = set(scores_c.columns)
    for gate in options.gates:
        if gate.metric in known or gate.metric in BUILTIN_METRICS:
            continue
        try:
            more_b = _score(score, base.results, [gate.metric], None)
            more_c = _score(score, cand.results, [gate.metric], None)
        except HarnessError:
            available = ", ".join(sorted(known | set(BUILTIN_METRICS)))
            raise UsageError(
                f"unknown metric {gate.metric!r}; these runs have: {available} (or any scorer name)",
                key="--metric",
            ) from None
        new = [c for c in more_c.columns if c not in known]
        scores_b = pd.concat([scores_b, more_b[new]], axis=1)
        scores_c = pd.concat([scores_c, more_c[new]], axis=1)
        known |= set(new)
        if gate.metric not in known:
            raise UsageError(f"scorer {gate.metric!r} yields no metric of that name", key="--metric")
    return scores_b, scores_c


def _score(score: ScoreFn, results: pd.DataFrame, items: list[Any], run: Run | None) -> pd.DataFrame:
    """Scores of one run; a bad `scoring` entry is blamed on that run's manifest."""
    if not items:
        return pd.DataFrame(index=results.index)
    try:
        frame = score(results, items)
    except SpecError as err:
        if run is None:
            raise
        raise SpecError(err.detail, file=str(run.path / MANIFEST), key=f"spec.{err.key}" if err.key else None) from None
    clash = [c for c in frame.columns if c in BUILTIN_METRICS]
    if clash:
        raise UsageError(f"a scorer's metric is named {clash[0]!r}, which is built in", key="scoring")
    return frame.astype(float)


def _plans(metrics: list[str], options: CompareOptions, measured: set[str] | None = None) -> list[_Plan]:
    """Gated metrics first (in flag order), then the rest as information (timing quantiles only
    where both runs measured them: TTFT and TPOT need streamed requests)."""
    gates: dict[str, Gate] = {g.metric: g for g in options.gates}
    if not gates:
        gates = {m: Gate(m, options.default_max_drop) for m in metrics}
    if options.max_latency_ratio is not None:
        gates[LATENCY_P95] = Gate(LATENCY_P95, Threshold(options.max_latency_ratio - 1.0, relative=True))
    if options.max_tpot_ratio is not None:
        gates[TPOT_P95] = Gate(TPOT_P95, Threshold(options.max_tpot_ratio - 1.0, relative=True))
    if not gates and options.max_error_rate is None:
        raise UsageError(
            "nothing to gate: the runs' spec has no `scoring`; name a metric with --metric "
            "(a scorer, error_rate, latency_p95, ttft_p95 or tpot_p95) or use --max-error-rate / "
            "--max-latency-ratio / --max-tpot-ratio",
            key="--metric",
        )
    plans = [_Plan(m, True, g.max_drop, m not in BUILTIN_METRICS) for m, g in gates.items()]
    shown = set(QUANTILE_METRICS) if measured is None else measured | {LATENCY_P95}
    builtins = [m for m in BUILTIN_METRICS if m not in QUANTILE_METRICS or m in shown]
    rest = [m for m in list(metrics) + builtins if m not in gates]
    return plans + [_Plan(m, False, None, m not in BUILTIN_METRICS) for m in rest]


def _values(results: pd.DataFrame, scores: pd.DataFrame, options: CompareOptions) -> pd.DataFrame:
    """Per row: the pairing key, ``_ok``, every scorer metric, error_rate and latency."""
    is_error = results["status"].astype(str) != "ok"
    out = pd.DataFrame(
        {
            "point": point_keys(results),
            "prompt_id": results["prompt_id"].astype(str),
            "sample": results["sample"].astype("int64"),
            "_ok": ~is_error,
        },
        index=results.index,
    )
    for name in scores.columns:
        column = scores[name].astype(float)
        if options.error_score == "zero":
            column = column.mask(is_error & column.isna(), 0.0)
        out[name] = column
    out[ERROR_RATE] = is_error.astype(float)
    out[LATENCY_P95] = pd.to_numeric(results["latency_s"], errors="coerce").where(~is_error)
    ttft = results["ttft_s"] if "ttft_s" in results else pd.Series(np.nan, index=results.index)
    out[TTFT_P95] = pd.to_numeric(ttft, errors="coerce").where(~is_error)
    out[TPOT_P95] = pd.Series(tpot_per_row(results), index=results.index).where(~is_error)
    return out


def _check_overlap(pairing: Pairing, base: Run, cand: Run) -> None:
    for run in (base, cand):
        if not len(run.results):
            raise RunDirError("the run has no result rows yet; nothing to compare", file=str(run.path))
    if not pairing.shared_points:
        raise RunDirError(
            "the runs share no sweep point (point_json); nothing to compare", file=str(cand.path)
        )
    if pairing.n_pairs == 0:
        raise RunDirError(
            f"no (prompt_id, sample) in common with {base.path}; were they run on the same dataset?",
            file=str(cand.path),
        )


def _test_all(pairing: Pairing, plans: list[_Plan], options: CompareOptions) -> tuple[CellResult, ...]:
    """Run every test, correct per family (gated / informational), then decide each cell."""
    points: list[str] = list(pairing.shared_points)
    if len(points) > 1:
        points.append(ALL_POINTS)
    jobs = [(plan, point) for plan in plans for point in points]
    sizes = {True: sum(p.gated for p in plans) * len(points), False: sum(not p.gated for p in plans) * len(points)}
    tests = [_run_test(pairing, plan, point, options, sizes[plan.gated]) for plan, point in jobs]
    adjusted = _adjust_families(jobs, tests, options)
    return tuple(
        _decide(plan, point, pairing, test, adj, options)
        for (plan, point), test, adj in zip(jobs, tests, adjusted)
    )


def _run_test(pairing: Pairing, plan: _Plan, point: str, options: CompareOptions, family: int) -> PairedTest:
    frame = pairing.frame if point == ALL_POINTS else pairing.frame[pairing.frame["point"] == point]
    b, c = plan.metric + BASE_SUFFIX, plan.metric + CAND_SUFFIX
    frame = frame[frame[b].notna() & frame[c].notna()]
    rng = np.random.default_rng([options.seed, zlib.crc32(plan.metric.encode()), zlib.crc32(point.encode())])
    confidence = 1.0 - options.alpha
    if plan.metric in QUANTILE_METRICS:
        mb, mc = _matrices(frame, b, c)
        # quantiles of resampled matrices are costly: informational latency gets fewer draws
        n_perm = min(perm_count(family, options.alpha, floor=2_000), 20_000) if plan.gated else 1_000
        return paired_quantile_test(
            mb, mc, q=LATENCY_QUANTILE, rng=rng, n_perm=n_perm,
            n_boot=min(options.n_boot, 1_000 if plan.gated else 500), confidence=confidence,
        )
    means = frame.groupby("prompt_id", sort=True)[[b, c]].mean()
    n_perm = perm_count(family, options.alpha)
    rows = _matrices(frame, b, c) if options.permute == "row" else None
    return paired_mean_test(
        means[b].to_numpy(), means[c].to_numpy(), rng=rng,
        n_perm=n_perm if rows is None else min(n_perm, 20_000),
        n_boot=options.n_boot, confidence=confidence, rows=rows,
    )


def _matrices(frame: pd.DataFrame, b: str, c: str) -> tuple[np.ndarray, np.ndarray]:
    """(prompts × paired rows) NaN-padded matrices of base and candidate values."""
    codes, _ = pd.factorize(frame["prompt_id"], sort=True)
    if codes.size == 0:
        return np.empty((0, 1)), np.empty((0, 1))
    pos = frame.groupby(codes).cumcount().to_numpy()
    shape = (int(codes.max()) + 1, int(pos.max()) + 1)
    mb, mc = np.full(shape, np.nan), np.full(shape, np.nan)
    mb[codes, pos] = frame[b].to_numpy(dtype=float)
    mc[codes, pos] = frame[c].to_numpy(dtype=float)
    return mb, mc


def _adjust_families(
    jobs: Sequence[tuple[_Plan, str]], tests: Sequence[PairedTest], options: CompareOptions
) -> list[tuple[float, float]]:
    """(adjusted p_worse, adjusted p_better) per test; each direction corrected per family."""
    out: list[tuple[float, float]] = [(1.0, 1.0)] * len(tests)
    for gated in (True, False):
        idx = [i for i, (plan, _) in enumerate(jobs) if plan.gated is gated]
        if not idx:
            continue
        worse = [_p_worse(jobs[i][0], tests[i]) for i in idx]
        better = [_p_better(jobs[i][0], tests[i]) for i in idx]
        aw, ab = adjust(worse, options.correction), adjust(better, options.correction)
        for k, i in enumerate(idx):
            out[i] = (float(aw[k]), float(ab[k]))
    return out


def _p_worse(plan: _Plan, test: PairedTest) -> float:
    return test.p_less if plan.higher_is_better else test.p_greater


def _p_better(plan: _Plan, test: PairedTest) -> float:
    return test.p_greater if plan.higher_is_better else test.p_less


def _decide(
    plan: _Plan, point: str, pairing: Pairing, test: PairedTest, adj: tuple[float, float], options: CompareOptions
) -> CellResult:
    tolerance = plan.max_drop.absolute(test.base) if plan.max_drop else 0.0
    default = DEFAULT_LATENCY_MARGIN if plan.metric in QUANTILE_METRICS else DEFAULT_MARGIN
    margin = tolerance if tolerance > 0 else (options.margin or default).absolute(test.base)
    frame = pairing.frame if point == ALL_POINTS else pairing.frame[pairing.frame["point"] == point]
    return CellResult(
        metric=plan.metric,
        point=point,
        label="all shared points" if point == ALL_POINTS else point_label(point),
        n_pairs=int((frame[plan.metric + BASE_SUFFIX].notna() & frame[plan.metric + CAND_SUFFIX].notna()).sum()),
        test=test,
        higher_is_better=plan.higher_is_better,
        tolerance=tolerance,
        margin=margin,
        p_worse=adj[0],
        p_better=adj[1],
        gated=plan.gated,
        verdict=_verdict(test, plan.higher_is_better, tolerance, margin, adj, options.alpha),
    )


def _verdict(
    test: PairedTest, higher_is_better: bool, tolerance: float, margin: float,
    adj: tuple[float, float], alpha: float,
) -> Verdict:
    """regressed: significantly worse by more than the tolerance; improved: significantly
    better; no change: the interval rules out a worsening beyond the margin; else inconclusive."""
    if test.n_prompts == 0 or not np.isfinite(test.diff):
        return "inconclusive"
    worsening = -test.diff if higher_is_better else test.diff
    if adj[0] < alpha and worsening > tolerance:
        return "regressed"
    if adj[1] < alpha:
        return "improved"
    worst = -test.ci_low if higher_is_better else test.ci_high
    return "no change" if worst <= margin + 1e-12 else "inconclusive"


def _summarize(plan: _Plan, cells: tuple[CellResult, ...]) -> MetricSummary:
    """The metric's verdict (regressed > improved > inconclusive > no change over its cells) and
    the cell that decides it, whose numbers are shown with it: the pooled row when it has that
    verdict, else the most extreme cell with it (the largest worsening or improvement)."""
    own = [c for c in cells if c.metric == plan.metric]
    verdicts = {c.verdict for c in own}
    verdict: Verdict
    if "regressed" in verdicts:
        verdict = "regressed"
    elif "improved" in verdicts:
        verdict = "improved"
    elif verdicts == {"no change"}:
        verdict = "no change"
    else:
        verdict = "inconclusive"
    deciding = [c for c in own if c.verdict == verdict]
    pooled = [c for c in deciding if c.point == ALL_POINTS]
    if pooled:
        point = pooled[0].point
    elif deciding:
        sign = -1.0 if verdict == "improved" else 1.0
        point = max(deciding, key=lambda c: sign * _finite(c.worsening)).point
    else:
        point = own[0].point if own else ALL_POINTS
    return MetricSummary(plan.metric, plan.gated, verdict, plan.higher_is_better, point)


def _finite(value: float) -> float:
    return value if np.isfinite(value) else -np.inf


def _ceilings(values_c: pd.DataFrame, pairing: Pairing, options: CompareOptions) -> tuple[CeilingCheck, ...]:
    """--max-error-rate: the candidate's error rate over its rows at the shared points."""
    limit = options.ceiling_error_rate()
    if limit is None:
        return ()
    rows = dedupe(values_c[values_c["point"].isin(set(pairing.shared_points))])
    rate = float(1.0 - rows["_ok"].mean()) if len(rows) else 0.0
    return (CeilingCheck(ERROR_RATE, rate, limit, len(rows)),)


def _info(run: Run, target: str | None = None) -> RunInfo:
    model = target_model(run, target) if target is not None else run.manifest.target.model
    if not model and "model" in run.results.columns and len(run.results):
        model = ", ".join(sorted({str(m) for m in run.results["model"].dropna().unique()}))
    return RunInfo(path=str(run.path), run_id=run.run_id, model=str(model or "?"), target=target)


__all__ = ["ScoreFn", "compare_runs", "default_score", "scoring_items"]
