"""Grid semantics and identity: property tests (hypothesis) and exact examples."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.runner.body import build_body
from harness.spec.datasets import Prompt
from harness.spec.grid import (
    count_points,
    expand_points,
    make_point,
    plan_requests,
    request_id_of,
)
from harness.spec.sweepspec import Sweep, SweepSpec

REPO = Path(__file__).resolve().parents[1]

temps = st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.7, 1.0, 1.5, 2.0]), min_size=1, max_size=5)
top_ps = st.lists(st.sampled_from([0.1, 0.5, 0.9, 1.0]), min_size=1, max_size=4)
top_ks = st.lists(st.integers(-1, 50), min_size=1, max_size=4)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(temps, top_ps, top_ks, st.lists(st.tuples(st.sampled_from([0.0, 0.5, 0.7]), st.sampled_from([0.1, 0.9])), max_size=3))
def test_count_is_product_minus_excluded(t: list, p: list, k: list, excl: list) -> None:
    sweep = Sweep(grid={"temperature": t, "top_p": p, "top_k": k},
                  exclude=[{"temperature": a, "top_p": b} for a, b in excl])
    points = expand_points(sweep)
    full = list(itertools.product(dict.fromkeys(t), dict.fromkeys(p), dict.fromkeys(k)))
    expected = [c for c in full if (c[0], c[1]) not in set(excl)]
    assert len(points) == len(expected) == count_points(sweep)
    assert len({pt.cell_id for pt in points}) == len(points)  # no duplicates
    assert [(pt.params["temperature"], pt.params["top_p"], pt.params["top_k"]) for pt in points] == expected


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 30), st.integers(0, 10_000))
def test_sample_is_reproducible_subset(n: int, seed: int) -> None:
    base = Sweep(grid={"temperature": [0.0, 0.5, 1.0, 1.5], "top_k": [1, 5, 10, 20, 40]})
    sweep = base.model_copy(update={"sample": n, "sample_seed": seed})
    a, b = expand_points(sweep), expand_points(sweep)
    all_ids = [p.cell_id for p in expand_points(base)]
    assert [p.cell_id for p in a] == [p.cell_id for p in b]
    assert len(a) == min(n, 20) == count_points(sweep)
    assert [p.cell_id for p in a] == [c for c in all_ids if c in {p.cell_id for p in a}]  # grid order kept


def test_zip_advances_together_and_multiplies_grid() -> None:
    sweep = Sweep(grid={"temperature": [0.5, 1.0]},
                  zip={"frequency_penalty": [0, 0.5, 0.5], "presence_penalty": [0, 0.5, 0.5]})
    pts = [p.params for p in expand_points(sweep)]
    assert pts == [
        {"frequency_penalty": 0.0, "presence_penalty": 0.0, "temperature": 0.5},
        {"frequency_penalty": 0.5, "presence_penalty": 0.5, "temperature": 0.5},
        {"frequency_penalty": 0.0, "presence_penalty": 0.0, "temperature": 1.0},
        {"frequency_penalty": 0.5, "presence_penalty": 0.5, "temperature": 1.0},
    ]


def test_exclude_any_of_list() -> None:
    sweep = Sweep(grid={"temperature": [0, 1], "top_p": [0.5, 0.9, 1]}, exclude=[{"temperature": 0, "top_p": [0.5, 0.9]}])
    assert [tuple(p.params.values()) for p in expand_points(sweep)] == [
        (0.0, 1.0), (1.0, 0.5), (1.0, 0.9), (1.0, 1.0)]


def test_empty_sweep_is_one_point() -> None:
    (p,) = expand_points(Sweep())
    assert p.point_json == "{}" and p.params == {}


def test_identity_recipes_are_documented_exactly() -> None:
    p = make_point({"top_p": 0.9, "temperature": 0.7, "top_k": 5})
    assert p.point_json == '{"temperature":0.7,"top_k":5,"top_p":0.9}'
    import hashlib
    assert p.cell_id == hashlib.sha256(p.point_json.encode()).hexdigest()[:16]
    rid = request_id_of("m", p.point_json, "q1", 2)
    blob = json.dumps(["m", p.point_json, "q1", 2], separators=(",", ":"))
    assert rid == hashlib.sha256(blob.encode()).hexdigest()[:24]


@pytest.mark.slow
def test_ids_stable_across_processes() -> None:
    code = (
        "from harness.spec.grid import make_point, request_id_of;"
        "p = make_point({'temperature': 0.7, 'top_p': 0.9});"
        "print(p.cell_id, request_id_of('m', p.point_json, 'q', 1))"
    )
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": str(s), "PATH": "/usr/bin:/bin"}).stdout for s in (0, 1, 2)}
    p = make_point({"temperature": 0.7, "top_p": 0.9})
    assert outs == {f"{p.cell_id} {request_id_of('m', p.point_json, 'q', 1)}\n"}
    # pinned values: a change to the recipe breaks resume of every existing run
    assert p.cell_id == "727999bdb20caa73"


def _spec(**over: object) -> SweepSpec:
    data = {"name": "t", "target": {"base_url": "http://127.0.0.1:1/v1", "model": "m"},
            "dataset": {"path": "x.jsonl"}, **over}
    return SweepSpec.model_validate(data)


def test_plan_requests_order_and_ids() -> None:
    spec = _spec(sweep={"grid": {"temperature": [0.0, 1.0]}, "repeats": 2})
    prompts = [Prompt("a", ({"role": "user", "content": "x"},)), Prompt("b", ({"role": "user", "content": "y"},))]
    plans = list(plan_requests(spec, expand_points(spec), prompts))
    assert [(p.point.params["temperature"], p.prompt.id, p.sample) for p in plans][:4] == [
        (0.0, "a", 0), (0.0, "a", 1), (0.0, "b", 0), (0.0, "b", 1)]
    assert len({p.request_id for p in plans}) == 8


def test_body_sends_only_what_is_set() -> None:
    spec = _spec(params={"max_tokens": 8, "logprobs": True, "top_logprobs": 3, "extra_body": {"repetition_penalty": 1.1}},
                 sweep={"grid": {"temperature": [0.5]}})
    (plan,) = plan_requests(spec, expand_points(spec), [Prompt("a", ({"role": "user", "content": "x"},))])
    assert build_body(spec, plan) == {
        "model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 8, "logprobs": True,
        "top_logprobs": 3, "temperature": 0.5, "repetition_penalty": 1.1}
    streamed = _spec(runner={"stream": True})
    (plan,) = plan_requests(streamed, expand_points(streamed), [Prompt("a", ({"role": "user", "content": "x"},))])
    assert build_body(streamed, plan) == {
        "model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True,
        "stream_options": {"include_usage": True}}


def test_plan_json_cli() -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", "plan", "--json", str(REPO / "sweeps/temperature-top-p.yaml")],
                          capture_output=True, text=True, check=True, timeout=60)
    data = json.loads(proc.stdout)
    assert (data["points"], data["prompts"], data["repeats"], data["requests"]) == (10, 20, 3, 600)


def test_plan_token_bound_uses_the_largest_swept_max_tokens(tmp_path) -> None:
    from harness.spec.plan import make_plan

    (tmp_path / "d.jsonl").write_text('{"prompt": "abcdefgh"}\n')
    spec = _spec(dataset={"path": str(tmp_path / "d.jsonl")}, sweep={"grid": {"max_tokens": [4, 16]}, "repeats": 2})
    plan = make_plan(spec)
    assert (plan.requests, plan.max_completion_tokens, plan.est_prompt_tokens) == (4, 64, 8)  # 8 chars ≈ 2 tokens × 2 points × 2 repeats
    assert make_plan(_spec(dataset={"path": str(tmp_path / "d.jsonl")})).max_completion_tokens is None
