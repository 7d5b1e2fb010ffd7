"""Adaptive repeats in the runner: send a round, score it, let the schedule decide the next.

    run = AdaptiveRun.start(spec, points, prompts, done={})      # or with the rows a run holds
    while (plans := run.next_plans()):                             # rows already stored are absorbed
        ... send plans; run.observe(row) for each row ...
    run.summary()                                                  # the manifest's `adaptive` section

The decisions are those of `harness.analysis.sequential.Schedule`, fed only with scores of rows
that exist: a resumed run replays its stored rows round by round through a fresh schedule and
reaches the state the interrupted session had, then sends what the current round still lacks.
Rows are scored with `harness.analysis.scoring.score_frame` (the report's scorer code), a round
at a time, in plan order, so the same rows always give the same decisions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.analysis.scoring import Scorer, resolve_scorers, score_frame
from harness.analysis.sequential import REASONS, Rule, Schedule
from harness.errors import SpecError, UsageError
from harness.spec.datasets import Prompt
from harness.spec.grid import Point, RequestPlan, plan_samples, request_id_for_target
from harness.spec.sweepspec import ROW_METRICS, AdaptiveRepeats, SweepSpec

# columns a round keeps of each row for scoring (custom scorers get every column but logprobs);
# `target` too with several targets (TARGET_COLUMNS)
ROUND_COLUMNS = ("request_id", "cell_id", "prompt_id", "sample", "status", "content", "reference", *ROW_METRICS)
TARGET_COLUMNS = (*ROUND_COLUMNS, "target")


def round_columns(spec: SweepSpec) -> tuple[str, ...]:
    """The columns a round keeps of each row (a run of one target may predate the `target` column)."""
    return TARGET_COLUMNS if spec.multi_target else ROUND_COLUMNS


@dataclass(frozen=True)
class Arm:
    """One cell of the schedule: a sweep point, and with several targets the target it is sent to
    (its own interval and stop; it races only against the cells of its own target)."""

    point: Point
    target: str | None = None  # None: a spec of one target
    model: str | None = None

    @property
    def key(self) -> str:
        """Its key in the manifest's `adaptive.cells`: the cell_id, `TARGET/cell_id` with several targets."""
        return self.point.cell_id if self.target is None else f"{self.target}/{self.point.cell_id}"


def arms_of(spec: SweepSpec, points: Sequence[Point]) -> list[Arm]:
    """The schedule's cells in plan order: each point, and with several targets each (point, target)
    the spec sends (`grid.target` and `exclude` rules naming a target applied)."""
    if not spec.multi_target:
        return [Arm(p) for p in points]
    from harness.spec.targets import target_axis

    axis = target_axis(spec)
    return [Arm(p, t.name, t.model) for p in points for t in axis if t.allows(p)]


def rule_of(adaptive: AdaptiveRepeats, *, shared_seeds: bool = False) -> Rule:
    """The spec's adaptive mapping as the decision core's plain numbers (`shared_seeds`: see `shares_seeds`)."""
    return Rule(
        shared_seeds=shared_seeds,
        min=adaptive.min,
        max=adaptive.max,
        step=adaptive.rounds_step,
        half_width=adaptive.until.half_width,
        confidence=adaptive.until.confidence,
        higher_is_better=adaptive.until.better == "higher",
        alpha=adaptive.drop_worse.alpha if adaptive.drop_worse else None,
        stop_unreachable=adaptive.until.stop_unreachable,
    )


def shares_seeds(spec: SweepSpec) -> bool:
    """True when repeat j of every prompt is sent the same seed (`seed: per_sample`, in the spec's
    params or a target's): then the repeats are a second clustering of the scores."""
    if spec.params.seed_base is not None:
        return True
    return spec.multi_target and any(spec.for_target(name).params.seed_base is not None for name in spec.target_names)


def metric_scorer(spec: SweepSpec, *, allow_custom: bool | Sequence[str] = True) -> Scorer | None:
    """The scorer of the adaptive metric (None for a row column such as completion_tokens)."""
    rule = spec.sweep.adaptive
    assert rule is not None
    if rule.until.metric in ROW_METRICS:
        return None
    for i, item in enumerate(spec.scoring):  # only the metric's scorer is resolved (and maybe imported)
        if _item_name(item) != rule.until.metric:
            continue
        try:
            (scorer,) = resolve_scorers([item], allow_custom=allow_custom)
        except SpecError as err:
            key = (err.key or "scoring").replace("scoring[0]", f"scoring[{i}]", 1)
            raise UsageError(f"the adaptive metric needs it: {err.detail}", file=spec.source, key=key) from None
        return scorer
    raise UsageError(f"{rule.until.metric!r} is not a scorer of this spec", file=spec.source,
                     key="sweep.repeats.until.metric")


def _item_name(item: str | Mapping[str, Any]) -> str:
    """The metric name a `scoring` item defines, without resolving (importing) it."""
    if isinstance(item, Mapping):
        name = item.get("name") or item.get("type") or ""
    else:
        name = item
    return str(name).partition(":")[2] if ":" in str(name) else str(name)


def score_rows(rows: Sequence[Mapping[str, Any]], metric: str, scorer: Scorer | None) -> list[float]:
    """The metric of each row (NaN for an error row or a missing value), as the report scores it."""
    import pandas as pd

    if not rows:
        return []
    frame = pd.DataFrame(list(rows))
    if scorer is not None:
        return [float(v) for v in score_frame(frame, [scorer])[scorer.name].tolist()]
    out = []
    for status, value in zip(frame["status"].tolist(), frame[metric].tolist(), strict=True):
        ok = status == "ok" and value is not None and not (isinstance(value, float) and math.isnan(value))
        out.append(float(value) if ok else math.nan)
    return out


class AdaptiveRun:
    """The feedback loop of one session over the cells of a run (or of its shard)."""

    def __init__(self, spec: SweepSpec, points: Sequence[Point], prompts: Sequence[Prompt],
                 scorer: Scorer | None, stored: Mapping[str, float]) -> None:
        adaptive = spec.sweep.adaptive
        assert adaptive is not None
        self.spec = spec
        self.adaptive = adaptive
        self.points = list(points)
        self.arms = arms_of(spec, self.points)
        self.prompts = list(prompts)
        self.scorer = scorer
        self.metric = adaptive.until.metric
        self._multi = spec.multi_target
        self._stored = dict(stored)  # request_id -> score of a row already in the run directory
        self._cell = {(a.target, a.point.cell_id): i for i, a in enumerate(self.arms)}
        self._prompt = {p.id: i for i, p in enumerate(self.prompts)}
        names = list(dict.fromkeys(a.target for a in self.arms))
        groups = [names.index(a.target) for a in self.arms] or None  # one race per target
        self.schedule = Schedule(rule_of(adaptive, shared_seeds=shares_seeds(spec)), max(1, len(self.arms)), max(1, len(self.prompts)), groups)
        self.scheduled = 0  # requests of every round begun so far
        self._missing: set[str] = set()
        self._rows: list[dict[str, Any]] = []
        self._open = False
        if not self.arms or not self.prompts:  # an empty shard: nothing to decide
            for st in self.schedule.states:
                st.reason = "max"

    @property
    def min_requests(self) -> int:
        return len(self.arms) * len(self.prompts) * self.adaptive.min

    @property
    def max_requests(self) -> int:
        return len(self.arms) * len(self.prompts) * self.adaptive.max

    @property
    def done(self) -> bool:
        return self.schedule.done

    def next_plans(self) -> list[RequestPlan]:
        """The requests of the current round that have no row yet ([] when every cell stopped).

        Rounds whose rows are all stored are scored and closed on the way."""
        while not self.schedule.done:
            if not self._open:
                self._begin_round()
            if self._missing:
                return [p for p in self._round_plans() if p.request_id in self._missing]
            self.close_round()
        return []

    def halt_target(self, target: str) -> None:
        """Stop the cells of `target` (its server refuses everything); the other targets' cells go
        on. Call between rounds."""
        self.schedule.halt(i for i, arm in enumerate(self.arms) if arm.target == target)

    def _round_plans(self) -> list[RequestPlan]:
        if not self._multi:
            ranges = [(self.arms[i].point, start, stop) for i, start, stop in self.schedule.round()]
            return list(plan_samples(self.spec, ranges, self.prompts))
        return list(self._target_plans())

    def _target_plans(self) -> Iterator[RequestPlan]:
        """The round's requests of a spec of several targets: ids as `plan_requests` gives them."""
        for i, start, stop in self.schedule.round():
            arm = self.arms[i]
            assert arm.target is not None and arm.model is not None
            for prompt in self.prompts:
                for sample in range(start, stop):
                    rid = request_id_for_target(arm.target, arm.model, arm.point.point_json, prompt.id, sample)
                    yield RequestPlan(request_id=rid, point=arm.point, prompt=prompt, sample=sample, target=arm.target)

    def _begin_round(self) -> None:
        plans = self._round_plans()
        self.scheduled += len(plans)
        self._open = True
        self._missing = set()
        for plan in plans:
            score = self._stored.get(plan.request_id)
            if score is None:
                self._missing.add(plan.request_id)
            else:
                self._record(plan.target if self._multi else None, plan.point.cell_id, plan.prompt.id, plan.sample, score)

    def observe(self, row: Mapping[str, Any]) -> None:
        """A row of the current round has been written (scored when the round closes)."""
        rid = row.get("request_id")
        if rid in self._missing:
            self._missing.discard(rid)
            if self.scorer is not None and not self.scorer.builtin:
                self._rows.append({k: v for k, v in row.items() if k != "logprobs"})
            else:
                self._rows.append({k: row.get(k) for k in TARGET_COLUMNS})

    def _arm(self, row: Mapping[str, Any]) -> int:
        return self._cell[(row.get("target") if self._multi else None, row["cell_id"])]

    def close_round(self) -> None:
        """Score the round's new rows (in plan order) and let the schedule look."""
        rows = sorted(self._rows, key=lambda r: (self._arm(r), self._prompt[r["prompt_id"]], r["sample"]))
        for row, score in zip(rows, score_rows(rows, self.metric, self.scorer), strict=True):
            self._stored[row["request_id"]] = score
            self.schedule.record(self._arm(row), self._prompt[row["prompt_id"]], int(row["sample"]), score)
        self._rows = []
        self._missing = set()
        self._open = False
        self.schedule.close()

    def _record(self, target: str | None, cell_id: str, prompt_id: str, sample: int, score: float) -> None:
        self.schedule.record(self._cell[(target, cell_id)], self._prompt[prompt_id], sample, score)

    # -- the manifest's account -------------------------------------------------------------

    def _alpha_per_test(self) -> float | dict[str, float | None] | None:
        """The Bonferroni level of each drop test; with several targets one per target (its own race)."""
        sch = self.schedule
        if sch.rule.alpha is None:
            return None
        if not self._multi:
            return sch.alpha_per_test() if sch.cells > 1 else None
        names = list(dict.fromkeys(a.target for a in self.arms))
        return {str(name): sch.alpha_per_test(g) if sch.group_size(g) > 1 else None for g, name in enumerate(names)}

    def summary(self, shard: str | None = None) -> dict[str, Any]:
        """The manifest's `adaptive` section: the rule, the request bounds and every cell's state."""
        sch = self.schedule
        cells: dict[str, Any] = {}
        prompts = len(self.prompts)
        for i, arm in enumerate(self.arms):
            st = sch.states[i]
            iv = st.interval
            cells[arm.key] = {
                **({"target": arm.target, "cell_id": arm.point.cell_id} if arm.target is not None else {}),
                "point": arm.point.params,
                "reason": st.reason,
                "samples": st.n,
                "requests": st.n * prompts,
                "scored": iv.scored if iv else 0,
                "mean": _num(iv.mean) if iv else None,
                "lo": _num(iv.lo) if iv else None,
                "hi": _num(iv.hi) if iv else None,
                "half_width": _num(iv.half_width) if iv else None,
                "looks": st.look,
                "dropped_by": self.arms[st.dropped_by].key if st.dropped_by is not None else None,
            }
        rule = sch.rule
        return {
            "metric": self.metric,
            "better": self.adaptive.until.better,
            "half_width": rule.half_width,
            "confidence": rule.confidence,
            "min": rule.min,
            "max": rule.max,
            "step": rule.step,
            "alpha": rule.alpha,
            "alpha_per_test": self._alpha_per_test(),
            "clustered_by": ["prompt", "repeat"] if rule.shared_seeds else ["prompt"],
            "looks": sch.looks,
            "shard_rule": "cells" if shard else None,
            "requests": {"min": self.min_requests, "max": self.max_requests, "scheduled": self.scheduled},
            "stopped": {reason: sum(1 for c in cells.values() if c["reason"] == reason) for reason in REASONS},
            "cells": cells,
        }


def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def stored_scores(rows: Iterable[Mapping[str, Any]], metric: str, scorer: Scorer | None) -> dict[str, float]:
    """request_id → metric of rows already in a run directory."""
    listed = list(rows)
    return {str(r["request_id"]): s for r, s in zip(listed, score_rows(listed, metric, scorer), strict=True)}


__all__ = ["ROUND_COLUMNS", "TARGET_COLUMNS", "AdaptiveRun", "Arm", "arms_of", "metric_scorer", "round_columns", "rule_of",
           "score_rows", "stored_scores"]
