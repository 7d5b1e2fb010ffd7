"""Targets as an axis of the sweep: which (target, point) pairs are sent, and how many requests each target gets.

A spec's targets are `target:` (one, named `target.name` or `default`) or `targets:` (a list of
named ones). `sweep.grid.target: [names]` keeps only those targets; an `exclude` rule with a
`target:` key drops the points matching its other keys for those targets only (a rule with only
`target:` drops the targets). Points are the same for every target — the point set (`sample`
included) is computed without target rules — so rows of two targets pair on
(point_json, prompt_id, sample).

    target_axis(spec)            the targets swept, each with `allows(point)`
    target_loads(spec)           requests per target, with prompt characters and max_tokens (for cost)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.spec.parameters import check_value

if TYPE_CHECKING:
    from harness.spec.datasets import Prompt
    from harness.spec.grid import Point
    from harness.spec.sweepspec import Price, SweepSpec

Rule = tuple[tuple[str, frozenset[Any]], ...]


@dataclass(frozen=True)
class TargetAxis:
    """One swept target: its name, the model it is sent, and the exclude rules that apply to it."""

    name: str
    model: str
    rules: tuple[Rule, ...] = ()

    def allows(self, point: Point) -> bool:
        """Whether (this target, point) is sent."""
        params = point.params
        return not any(all(params.get(key) in allowed for key, allowed in rule) for rule in self.rules)


def _names(value: Any) -> list[str]:
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def target_axis(spec: SweepSpec) -> list[TargetAxis]:
    """The targets of the sweep in spec order, restricted by `grid.target` and target-only exclude rules."""
    only = spec.sweep.only_targets
    out = []
    for target in spec.target_list:
        name = target.label
        if only is not None and name not in only:
            continue
        rules: list[Rule] = []
        dropped = False
        for rule in spec.sweep.exclude:
            if "target" not in rule or name not in _names(rule["target"]):
                continue
            rest = {k: v for k, v in rule.items() if k != "target"}
            if not rest:
                dropped = True
                break
            rules.append(tuple((k, frozenset(check_value(k, v) for v in (vs if isinstance(vs, list) else [vs])))
                               for k, vs in rest.items()))
        if not dropped:
            out.append(TargetAxis(name, target.model_name, tuple(rules)))
    return out


@dataclass(frozen=True)
class TargetLoad:
    """What one target is sent: requests, prompt characters and max_tokens summed over its requests."""

    name: str
    requests: int
    points: int
    prompt_chars: int  # message characters of the prompts, summed over this target's requests
    max_tokens: int | None  # max_tokens sent, summed over its requests; None when some request sends none
    price: Price | None


def target_loads(spec: SweepSpec, points: Iterable[Point] | None = None,
                 prompts: Sequence[Prompt] | None = None) -> dict[str, TargetLoad]:
    """Requests per target (in spec order): one pass over the points, no request ids computed."""
    from harness.spec.datasets import load_prompts
    from harness.spec.grid import iter_points

    prompts = load_prompts(spec) if prompts is None else prompts
    chars = sum(len(str(m.get("content", ""))) for p in prompts for m in p.messages)
    repeats, n_prompts = spec.sweep.repeats, len(prompts)
    axes = target_axis(spec)
    views = {a.name: spec.for_target(a.name) for a in axes}
    fixed = {name: v.params.get("max_tokens") or v.params.extra_body.get("max_tokens") for name, v in views.items()}
    count = dict.fromkeys(views, 0)
    tokens: dict[str, int | None] = dict.fromkeys(views, 0)
    for point in iter_points(spec.sweep) if points is None else points:
        for a in axes:
            if not a.allows(point):
                continue
            count[a.name] += 1
            per = point.params.get("max_tokens", fixed[a.name])
            so_far = tokens[a.name]
            tokens[a.name] = None if per is None or so_far is None else so_far + int(per)
    return {
        a.name: TargetLoad(
            name=a.name,
            requests=count[a.name] * n_prompts * repeats,
            points=count[a.name],
            prompt_chars=chars * count[a.name] * repeats,
            max_tokens=None if tokens[a.name] is None else int(tokens[a.name] or 0) * n_prompts * repeats,
            price=views[a.name].target.price,
        )
        for a in axes
    }


def sent_values(spec: SweepSpec, name: str, points: Sequence[Point]) -> SweepSpec:
    """`spec.for_target(name)` with its grid and zip cut to the values that target is sent (for the
    preflight: a value excluded for a target is not asked of it)."""
    axis = next((a for a in target_axis(spec) if a.name == name), None)
    view = spec.for_target(name)
    if axis is None or not axis.rules:
        return view
    kept = [p for p in points if axis.allows(p)]
    grid = {k: tuple(v for v in vs if any(p.params.get(k) == v for p in kept)) for k, vs in view.sweep.grid.items()}
    rows = list(zip(*view.sweep.zip.values())) if view.sweep.zip else []
    keys = list(view.sweep.zip)
    rows = [r for r in rows if any(all(p.params.get(k) == v for k, v in zip(keys, r)) for p in kept)]
    zipped = {k: tuple(r[i] for r in rows) for i, k in enumerate(keys)}
    sweep = view.sweep.model_copy(update={"grid": {k: v for k, v in grid.items() if v},
                                          "zip": zipped if rows else {}})
    return view.model_copy(update={"sweep": sweep})


__all__ = ["TargetAxis", "TargetLoad", "sent_values", "target_axis", "target_loads"]
