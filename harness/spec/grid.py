"""Spec → ordered, deduplicated sweep points and the requests they make.

Semantics:
- `grid` axes form a Cartesian product in the order they are written (the last varies fastest);
  `zip` axes advance together and multiply the grid (zip rows vary fastest).
- Each axis's values are deduplicated on load and identical zip rows are dropped, so the product
  has no duplicate points by construction.
- `exclude` drops a point when it matches every key of a rule (a list value means "any of").
- `sample: N` keeps N points chosen with `random.Random(sample_seed)`, in their grid order.

Identity recipes (stable across processes, machines and Python versions):
- `point_json` = `json.dumps(point, sort_keys=True, separators=(",", ":"))` where floats are
  Python floats (shortest round-trip repr, e.g. `0.7`, `1.0`) and integer parameters
  (top_k, max_tokens, seed) are ints. The empty point is `{}`.
- `cell_id` = first 16 hex digits of `sha256(point_json)`.
- `request_id` = first 24 hex digits of
  `sha256(json.dumps([model, point_json, prompt_id, sample], separators=(",", ":"), ensure_ascii=False))`;
  with `targets:` the target's name is appended: `[model, point_json, prompt_id, sample, target]`
  (`request_id_for_target`). `point_json` and `cell_id` never include the target.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import UsageError
from harness.spec.datasets import Prompt
from harness.spec.parameters import PARAM_COLUMNS, check_value
from harness.spec.sweepspec import DEFAULT_TARGET, Sweep, SweepSpec
from harness.spec.targets import target_axis

Value = float | int


@dataclass(frozen=True)
class Point:
    """One sweep point: the swept parameter values of a cell."""

    params: dict[str, Value]
    point_json: str
    cell_id: str


@dataclass(frozen=True)
class RequestPlan:
    """One request to send: a point, a prompt, a repeat index and the target it goes to."""

    request_id: str
    point: Point
    prompt: Prompt
    sample: int
    target: str = DEFAULT_TARGET


def canonical_point(params: dict[str, Value]) -> str:
    """The canonical JSON of a point (see the module docstring)."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def cell_id_of(point_json: str) -> str:
    return hashlib.sha256(point_json.encode()).hexdigest()[:16]


def request_id_of(model: str, point_json: str, prompt_id: str, sample: int) -> str:
    blob = json.dumps([model, point_json, prompt_id, sample], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def make_point(params: dict[str, Value]) -> Point:
    ordered = dict(sorted(params.items()))
    pj = canonical_point(ordered)
    return Point(params=ordered, point_json=pj, cell_id=cell_id_of(pj))


def _axis_keys(sweep: Sweep) -> list[str]:
    return [*sweep.grid, *sweep.zip]


def _exclude_rules(sweep: Sweep) -> list[tuple[tuple[int, frozenset[Value]], ...]]:
    """Each rule as (position in the point tuple, allowed values) pairs."""
    position = {key: i for i, key in enumerate(_axis_keys(sweep))}
    rules = []
    for rule in sweep.exclude:
        if "target" in rule:
            continue  # a rule about targets drops (target, point) pairs: harness.spec.targets
        norm = []
        for key, value in rule.items():
            values = value if isinstance(value, list) else [value]
            norm.append((position[key], frozenset(check_value(key, v) for v in values)))
        rules.append(tuple(norm))
    return rules


def _zip_rows(sweep: Sweep) -> list[tuple[Value, ...]]:
    if not sweep.zip:
        return [()]
    rows = list(zip(*sweep.zip.values()))
    return list(dict.fromkeys(rows))


def _iter_tuples(sweep: Sweep) -> Iterator[tuple[Value, ...]]:
    """Point values as tuples aligned with `_axis_keys`, excluded points dropped."""
    zip_rows = _zip_rows(sweep)
    rules = _exclude_rules(sweep)
    combos = itertools.product(*sweep.grid.values())
    tuples = (c + r for c in combos for r in zip_rows) if sweep.zip else combos
    if not rules:
        yield from tuples
        return
    for values in tuples:
        if not any(all(values[i] in allowed for i, allowed in rule) for rule in rules):
            yield values


def iter_point_params(sweep: Sweep) -> Iterator[dict[str, Value]]:
    """Every point's parameters in grid order, excluded points dropped (no sampling)."""
    keys = _axis_keys(sweep)
    for values in _iter_tuples(sweep):
        yield dict(zip(keys, values))


DEFAULT_MAX_POINTS = 1_000_000
MAX_EXCLUDE_RULES = 1_000
MAX_EXCLUDE_WORK = 20_000_000  # points × rules checked: about 10-20 s of CPU at worst


def grid_size(sweep: Sweep) -> int:
    """Points of the grid × zip product before `exclude` and `sample` (computed, never iterated)."""
    total = len(_zip_rows(sweep))
    for values in sweep.grid.values():
        total *= len(values)
    return total


def check_size(sweep: Sweep, max_points: int = DEFAULT_MAX_POINTS, *, source: str = "") -> int:
    """The points that will be visited, or a UsageError when more than `max_points` (nothing hangs).

    A `sample` without `exclude` visits only the sampled points (they are decoded from their
    index, never enumerated), so a random search over a 10^12-point grid is fine; with `exclude`
    every point of the product is visited, so the product is what counts."""
    size = grid_size(sweep)
    visited = min(size, sweep.sample) if sweep.sample and not sweep.exclude else size
    if visited > max_points:
        what = "the grid has" if visited == size else "the sample keeps"
        raise UsageError(
            f"{what} {visited:,} points (before exclude); at most {max_points:,} allowed "
            "(raise the cap with --max-points N)",
            file=source or None,
            key="sweep",
        )
    rules = len(sweep.exclude)
    if rules > MAX_EXCLUDE_RULES or visited * rules > MAX_EXCLUDE_WORK:
        raise UsageError(
            f"{rules:,} rules × {visited:,} points is too much to check (at most {MAX_EXCLUDE_RULES:,} rules "
            f"and {MAX_EXCLUDE_WORK:,} rule checks); merge rules with lists of values, or shrink the grid",
            file=source or None,
            key="sweep.exclude",
        )
    return visited


def count_points(sweep: Sweep) -> int:
    """How many points the sweep has, without building them when it can."""
    total = sum(1 for _ in _iter_tuples(sweep)) if sweep.exclude else grid_size(sweep)
    return min(total, sweep.sample) if sweep.sample else total


def _sampled(sweep: Sweep, total: int) -> set[int] | None:
    if not sweep.sample or sweep.sample >= total:
        return None
    return set(random.Random(sweep.sample_seed).sample(range(total), sweep.sample))


def _point_at(sweep: Sweep, index: int) -> dict[str, Value]:
    """The point at position `index` of the grid × zip product (exclude not applied)."""
    rows = _zip_rows(sweep)
    index, row = divmod(index, len(rows))
    values: list[Value] = []
    for axis in reversed(list(sweep.grid.values())):
        index, j = divmod(index, len(axis))
        values.append(axis[j])
    values.reverse()
    return dict(zip(_axis_keys(sweep), (*values, *rows[row]), strict=True))


def iter_points(sweep: Sweep) -> Iterator[Point]:
    """Points in deterministic order, with the random subset applied."""
    if sweep.sample and not sweep.exclude:  # decode the sampled indices: no walk over the product
        chosen = _sampled(sweep, grid_size(sweep))
        if chosen is not None:
            for index in sorted(chosen):
                yield make_point(_point_at(sweep, index))
            return
    keep = _sampled(sweep, count_points(sweep.model_copy(update={"sample": None}))) if sweep.sample else None
    for i, params in enumerate(iter_point_params(sweep)):
        if keep is None or i in keep:
            yield make_point(params)


def expand_points(spec: SweepSpec | Sweep) -> list[Point]:
    """All points of a spec (or of its sweep section)."""
    sweep = spec.sweep if isinstance(spec, SweepSpec) else spec
    return list(iter_points(sweep))


def plan_requests(
    spec: SweepSpec, points: Sequence[Point], prompts: Sequence[Prompt], model: str | None = None
) -> Iterator[RequestPlan]:
    """Requests in order point → prompt → (target →) sample (consecutive requests share a prompt prefix).

    With `targets:` each request also has a target (the targets a point is not excluded for, in
    spec order) and its id includes the target's name (`request_id_for_target`)."""
    if spec.multi_target:
        yield from _plan_targets(spec, points, prompts)
        return
    name = model if model is not None else spec.model_name
    label = spec.target.label
    for point in points:
        for prompt in prompts:
            for sample in range(spec.sweep.repeats):
                rid = request_id_of(name, point.point_json, prompt.id, sample)
                yield RequestPlan(request_id=rid, point=point, prompt=prompt, sample=sample, target=label)


def request_id_for_target(target: str, model: str, point_json: str, prompt_id: str, sample: int) -> str:
    """The id of a request of a `targets:` spec: `request_id_of`'s recipe with the target's name appended."""
    blob = json.dumps([model, point_json, prompt_id, sample, target], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _plan_targets(spec: SweepSpec, points: Sequence[Point], prompts: Sequence[Prompt]) -> Iterator[RequestPlan]:
    axis = target_axis(spec)
    repeats = range(spec.sweep.repeats)
    for point in points:
        here = [t for t in axis if t.allows(point)]
        for prompt in prompts:
            for t in here:
                for sample in repeats:
                    rid = request_id_for_target(t.name, t.model, point.point_json, prompt.id, sample)
                    yield RequestPlan(request_id=rid, point=point, prompt=prompt, sample=sample, target=t.name)


def point_table(points: Sequence[Point]) -> tuple[list[str], list[list[Any]]]:
    """Columns (swept parameters, in the canonical `PARAM_COLUMNS` order) and rows for display."""
    present = {k for p in points for k in p.params}
    columns = [c for c in PARAM_COLUMNS if c in present] + sorted(present - set(PARAM_COLUMNS))
    return columns, [[p.params.get(c) for c in columns] for p in points]


__all__ = [
    "DEFAULT_MAX_POINTS",
    "MAX_EXCLUDE_RULES",
    "MAX_EXCLUDE_WORK",
    "Point",
    "RequestPlan",
    "canonical_point",
    "cell_id_of",
    "check_size",
    "count_points",
    "expand_points",
    "grid_size",
    "iter_point_params",
    "iter_points",
    "make_point",
    "plan_requests",
    "point_table",
    "request_id_for_target",
    "request_id_of",
]
