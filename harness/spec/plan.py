"""What a sweep will send, computed without sending anything (`harness plan`)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from harness.spec.datasets import Prompt, load_prompts
from harness.spec.grid import (
    DEFAULT_MAX_POINTS,
    Point,
    check_size,
    count_points,
    iter_points,
    point_table,
)
from harness.spec.sweepspec import AdaptiveRepeats, SweepSpec, spec_hash
from harness.spec.targets import TargetLoad, target_loads

CHARS_PER_TOKEN = 4  # a rough, documented heuristic for the estimate; servers report real counts


@dataclass(frozen=True)
class Plan:
    """The size of a sweep and a preview of its points."""

    spec: SweepSpec
    points: int
    prompts: int
    repeats: int
    preview: list[Point] = field(default_factory=list)
    prompt_chars: int = 0
    min_repeats: int | None = None  # adaptive repeats: the samples per prompt every cell gets first

    @cached_property
    def per_target(self) -> dict[str, TargetLoad]:
        """Requests (and prompt characters, max_tokens) per target, in spec order (harness.spec.targets)."""
        return target_loads(self.spec)

    @property
    def requests(self) -> int:
        """Requests the sweep sends (adaptive repeats: at most)."""
        if self.spec.multi_target:
            return sum(load.requests for load in self.per_target.values())
        return self.points * self.prompts * self.repeats

    @property
    def min_requests(self) -> int:
        """Requests the sweep sends at least (= `requests` with fixed repeats)."""
        if self.spec.multi_target:  # every (point, target) the spec sends
            return sum(self.target_min_requests(name) for name in self.per_target)
        return self.points * self.prompts * self._least

    @property
    def _least(self) -> int:
        return self.repeats if self.min_repeats is None else self.min_repeats

    def target_min_requests(self, name: str) -> int:
        """Requests one target gets at least (its points × prompts × the minimum repeats)."""
        return self.per_target[name].points * self.prompts * self._least

    @property
    def adaptive(self) -> AdaptiveRepeats | None:
        return self.spec.sweep.adaptive

    @property
    def est_prompt_tokens(self) -> int:
        if self.spec.multi_target:
            return sum(load.prompt_chars for load in self.per_target.values()) // CHARS_PER_TOKEN
        return (self.prompt_chars // CHARS_PER_TOKEN) * self.points * self.repeats

    @property
    def max_completion_tokens(self) -> int | None:
        """Upper bound: the largest max_tokens (fixed or swept) × requests; None when unbounded.
        With several targets: each target's max_tokens summed over its requests."""
        if self.spec.multi_target:
            loads = [load.max_tokens for load in self.per_target.values()]
            return None if any(v is None for v in loads) else sum(v or 0 for v in loads)
        sweep = self.spec.sweep
        swept = sweep.grid.get("max_tokens") or sweep.zip.get("max_tokens")
        per = max(swept) if swept else self.spec.params.get("max_tokens")
        return None if per is None else int(per) * self.requests

    def to_json(self) -> dict[str, Any]:
        columns, rows = point_table(self.preview)
        return {
            "name": self.spec.name,
            "spec_hash": spec_hash(self.spec),
            "model": self.spec.model_name,
            "target": self.spec.public_target(),
            "swept": list(self.spec.sweep.swept),
            "columns": columns,
            "seed": _seed_mode(self.spec),
            "points": self.points,
            "prompts": self.prompts,
            "repeats": self.repeats,
            "requests": self.requests,
            "min_requests": self.min_requests,
            "max_requests": self.requests,
            "adaptive": self.adaptive.model_dump(mode="json") if self.adaptive else None,
            "targets": {name: {"requests": load.requests, "min_requests": self.target_min_requests(name),
                               "max_requests": load.requests, "points": load.points,
                               "model": self.spec.target_named(name).model_name,
                               "target": self.spec.target_named(name).public()}
                        for name, load in self.per_target.items()},
            "est_prompt_tokens": self.est_prompt_tokens,
            "max_completion_tokens": self.max_completion_tokens,
            "preview": [dict(zip(columns, r)) for r in rows],
        }


def _chars(prompts: list[Prompt]) -> int:
    return sum(len(str(m.get("content", ""))) for p in prompts for m in p.messages)


def _seed_mode(spec: SweepSpec) -> str | int | None:
    """What seed the requests carry: a fixed int, "per_sample from B", "swept" or None (not sent)."""
    base = spec.params.seed_base
    if base is not None:
        return f"per_sample from {base}"
    if "seed" in spec.sweep.swept:
        return "swept"
    seed = spec.params.get("seed")
    return seed if isinstance(seed, int) else None


def make_plan(spec: SweepSpec, preview: int = 20, max_points: int = DEFAULT_MAX_POINTS) -> Plan:
    """Validate the dataset and count points; keep the first `preview` points for display.

    More than `max_points` points to visit (`grid.check_size`) is refused before anything is iterated."""
    check_size(spec.sweep, max_points, source=spec.source)
    prompts = load_prompts(spec)
    return Plan(
        spec=spec,
        points=count_points(spec.sweep),
        prompts=len(prompts),
        repeats=spec.sweep.max_repeats,
        min_repeats=spec.sweep.min_repeats if spec.sweep.adaptive else None,
        preview=list(itertools.islice(iter_points(spec.sweep), preview)),
        prompt_chars=_chars(prompts),
    )


__all__ = ["CHARS_PER_TOKEN", "Plan", "make_plan"]
