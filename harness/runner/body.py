"""Pure request-body builder: (spec, planned request) → the JSON body. Sends only what is set.

No hidden defaults: a parameter appears in the body only when the spec's `params` or the sweep
point sets it. `params.extra_body` is merged last (server-specific fields, e.g. vLLM's
`repetition_penalty`); it cannot silently override a swept parameter. With `seed: per_sample`
the body's `seed` is the spec's base + the repeat index (`RequestPlan.sample`), so repeats of a
cell differ and a rerun sends the same seeds.

`BodyBuilder` builds the same bodies for a whole sweep: the per-point part (model, the spec's
params, the point's, `extra_body`, streaming) is computed once per point instead of once per
request (a pydantic walk over every parameter), so a request costs a dict copy, its messages
and its seed. `tests/test_runner_body.py` checks it against `build_body`, key order included.
"""

from __future__ import annotations

from typing import Any

from harness.spec.grid import RequestPlan
from harness.spec.sweepspec import SweepSpec


def build_body(spec: SweepSpec, plan: RequestPlan, model: str | None = None) -> dict[str, Any]:
    """The body of one Chat Completions request."""
    body: dict[str, Any] = {
        "model": model if model is not None else spec.model_name,
        "messages": [dict(m) for m in plan.prompt.messages],
    }
    body.update(spec.params.sent())
    body.update(plan.point.params)
    seed = spec.params.seed_for(plan.sample)
    if seed is not None:
        body["seed"] = seed
    for key, value in spec.params.extra_body.items():
        if key not in plan.point.params:
            body[key] = value
    if spec.runner.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


class BodyBuilder:
    """`build_body(spec, plan, model)` for every request of a sweep, the point's part computed once.

    Plans come point by point (`plan_requests`), so the template of the last point is kept; a
    plan of another point rebuilds it (one template in memory whatever the sweep's size)."""

    def __init__(self, spec: SweepSpec, model: str | None = None) -> None:
        self._model = model if model is not None else spec.model_name
        self._sent = spec.params.sent()
        self._extra = dict(spec.params.extra_body)
        self._seed_base = spec.params.seed_base
        self._stream = spec.runner.stream
        self._point: object = None
        self._template: dict[str, Any] = {}

    def _make(self, params: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self._model, "messages": None, **self._sent, **params}
        if self._seed_base is not None:
            body["seed"] = None  # its place in the body; each request sets its own
        for key, value in self._extra.items():
            if key not in params:
                body[key] = value
        if self._stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def __call__(self, plan: RequestPlan) -> dict[str, Any]:
        point = plan.point
        if point is not self._point:
            self._template = self._make(point.params)
            self._point = point
        body = self._template.copy()
        body["messages"] = [dict(m) for m in plan.prompt.messages]
        if self._seed_base is not None:
            body["seed"] = self._seed_base + plan.sample
        if self._stream:
            body["stream_options"] = {"include_usage": True}
        return body


__all__ = ["BodyBuilder", "build_body"]
