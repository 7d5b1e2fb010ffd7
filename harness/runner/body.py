"""Pure request-body builder: (spec, planned request) → the JSON body. Sends only what is set.

No hidden defaults: a parameter appears in the body only when the spec's `params` or the sweep
point sets it. `params.extra_body` is merged last (server-specific fields, e.g. vLLM's
`repetition_penalty`); it cannot silently override a swept parameter. With `seed: per_sample`
the body's `seed` is the spec's base + the repeat index (`RequestPlan.sample`), so repeats of a
cell differ and a rerun sends the same seeds.
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


__all__ = ["build_body"]
