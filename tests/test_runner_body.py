"""BodyBuilder (the runner's per-point body template) gives exactly `build_body`'s bodies, key order included."""

from __future__ import annotations

from typing import Any

import pytest

from harness.runner.body import BodyBuilder, build_body
from harness.spec.datasets import Prompt
from harness.spec.grid import expand_points, plan_requests
from harness.spec.sweepspec import SweepSpec

PROMPTS = [
    Prompt("a", ({"role": "system", "content": "be brief"}, {"role": "user", "content": "x"}), reference="r"),
    Prompt("b", ({"role": "user", "content": "y"},)),
]


def _spec(**over: Any) -> SweepSpec:
    data = {"name": "t", "target": {"base_url": "http://127.0.0.1:1/v1", "model": "m"},
            "dataset": {"path": "x.jsonl"}, **over}
    return SweepSpec.model_validate(data)


SPECS = {
    "plain": _spec(),
    "params and a grid": _spec(params={"max_tokens": 8, "logprobs": True, "top_logprobs": 3},
                               sweep={"grid": {"temperature": [0.0, 0.7], "top_p": [0.5, 1.0]}, "repeats": 2}),
    "per-sample seed": _spec(params={"seed": {"per_sample": 1000}, "max_tokens": 4},
                             sweep={"grid": {"temperature": [0.5, 1.0]}, "repeats": 3}),
    "fixed seed, extra_body": _spec(params={"seed": 7, "extra_body": {"repetition_penalty": 1.1, "tags": ["a"]}},
                                    sweep={"grid": {"top_k": [1, 40]}}),
    "swept seed with per_sample": _spec(params={"seed": "per_sample"}, sweep={"grid": {"temperature": [0.3]}, "repeats": 2}),
    "streamed": _spec(runner={"stream": True}, sweep={"zip": {"temperature": [0.1, 0.9], "top_p": [0.8, 0.95]}}),
}


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("model", [None, "served-name"])
def test_builder_matches_build_body(name: str, model: str | None) -> None:
    spec = SPECS[name]
    build = BodyBuilder(spec, model)
    plans = list(plan_requests(spec, expand_points(spec), PROMPTS))
    assert len(plans) >= 2
    for plan in plans:
        want = build_body(spec, plan, model)
        got = build(plan)
        assert list(got.items()) == list(want.items())  # same keys, values and order


def test_bodies_share_no_mutable_part() -> None:
    """A body changed after it was built (a dialect translating it) leaves the next ones alone."""
    spec = SPECS["streamed"]
    build = BodyBuilder(spec)
    first, second = (build(p) for p in list(plan_requests(spec, expand_points(spec), PROMPTS))[:2])
    first["messages"][0]["content"] = "changed"
    first["stream_options"]["include_usage"] = False
    first["temperature"] = 2.0
    assert PROMPTS[0].messages[-1]["content"] == "x"
    third = build(next(iter(plan_requests(spec, expand_points(spec), PROMPTS))))
    assert third["stream_options"] == {"include_usage": True} and third["temperature"] == 0.1
    assert second["messages"] == [{"role": "user", "content": "y"}]


def test_plans_of_points_out_of_order() -> None:
    """Plans interleaving points (not the plan order) still get their own point's values."""
    spec = SPECS["params and a grid"]
    plans = list(plan_requests(spec, expand_points(spec), PROMPTS))
    build = BodyBuilder(spec)
    for plan in plans[::-3] + plans[1::2]:
        assert build(plan) == build_body(spec, plan)
