"""`targets:` in a spec: validation (one line, exit 2), the target axis, request ids, plan counts, manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.errors import SpecError
from harness.rundir.manifest import new_manifest
from harness.spec.datasets import load_prompts
from harness.spec.grid import expand_points, plan_requests, request_id_of
from harness.spec.plan import make_plan
from harness.spec.sweepspec import SweepSpec, parse_spec, spec_hash
from harness.spec.targets import target_axis, target_loads


def _spec(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"hi {i}"}) + "\n" for i in range(3)))
    data: dict[str, Any] = {
        "name": "t",
        "targets": [
            {"name": "fast", "base_url": "http://127.0.0.1:9/v1", "model": "m1",
             "price": {"input_per_mtok": 0.5, "output_per_mtok": 2.0}},
            {"name": "slow", "base_url": ["http://127.0.0.1:10/v1?key=sekrit", "http://127.0.0.1:11/v1"], "model": "m2",
             "params": {"max_tokens": 64}, "runner": {"concurrency": 2, "rps": 5}},
            {"name": "third", "base_url": "http://127.0.0.1:12/v1", "model": "m1", "dialect": "llama.cpp"},
        ],
        "dataset": {"path": "p.jsonl"},
        "params": {"max_tokens": 8},
        "sweep": {"grid": {"temperature": [0.0, 0.7], "top_p": [0.9, 1.0]}, "repeats": 2},
    }
    data.update(changes)
    return data


def _parse(tmp_path: Path, data: dict[str, Any]) -> SweepSpec:
    return parse_spec(data, source="s.yaml", base_dir=tmp_path)


def _error(tmp_path: Path, data: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as info:
        _parse(tmp_path, data)
    return str(info.value)


def test_targets_are_an_axis_with_ids_that_include_the_target(tmp_path: Path) -> None:
    spec = _parse(tmp_path, _spec(tmp_path))
    assert spec.target_names == ("fast", "slow", "third") and spec.target.label == "fast"
    plans = list(plan_requests(spec, expand_points(spec), load_prompts(spec)))
    assert len(plans) == 4 * 3 * 3 * 2
    keys = {(p.target, p.point.point_json, p.prompt.id, p.sample) for p in plans}
    assert len(keys) == len(plans) and len({p.request_id for p in plans}) == len(plans)
    first = plans[0]
    blob = json.dumps(["m1", first.point.point_json, first.prompt.id, first.sample, "fast"], separators=(",", ":"))
    assert first.request_id == hashlib.sha256(blob.encode()).hexdigest()[:24]
    # the same point of two targets has one cell id (they pair), not one request id
    by_target = {p.target: p for p in plans if p.prompt.id == "q0" and p.sample == 0 and p.point == first.point}
    assert {p.point.cell_id for p in by_target.values()} == {first.point.cell_id} and len(by_target) == 3
    assert [p.target for p in plans[:6]] == ["fast", "fast", "slow", "slow", "third", "third"]  # point → prompt → target → sample


def test_one_target_keeps_its_ids_and_hash(tmp_path: Path) -> None:
    data = _spec(tmp_path)
    one = {k: v for k, v in data.items() if k != "targets"} | {"target": {"base_url": "http://127.0.0.1:9/v1", "model": "m1"}}
    spec = _parse(tmp_path, one)
    assert spec.target_names == ("default",) and not spec.multi_target
    plans = list(plan_requests(spec, expand_points(spec), load_prompts(spec)))
    assert all(p.target == "default" for p in plans)
    assert plans[0].request_id == request_id_of("m1", plans[0].point.point_json, "q0", 0)
    assert "targets" not in spec.resolved_dict() and "name" not in spec.resolved_dict()["target"]
    named = _parse(tmp_path, one | {"target": {**one["target"], "name": "vllm"}})
    assert named.target_names == ("vllm",) and spec_hash(named) != spec_hash(spec)


def test_grid_target_and_exclude_restrict_pairs(tmp_path: Path) -> None:
    sweep = {"grid": {"target": ["slow", "third"], "temperature": [0.0, 0.7], "top_p": [0.9, 1.0]},
             "exclude": [{"target": "third", "temperature": 0.7}, {"target": ["slow"], "top_p": 0.9, "temperature": 0.0},
                         {"temperature": 0.7, "top_p": 0.9}],
             "repeats": 1}
    spec = _parse(tmp_path, _spec(tmp_path, sweep=sweep))
    assert [a.name for a in target_axis(spec)] == ["slow", "third"]
    plans = list(plan_requests(spec, expand_points(spec), load_prompts(spec)))
    pairs = {(p.target, p.point.point_json) for p in plans}
    assert pairs == {
        ("slow", '{"temperature":0.0,"top_p":1.0}'), ("slow", '{"temperature":0.7,"top_p":1.0}'),
        ("third", '{"temperature":0.0,"top_p":0.9}'), ("third", '{"temperature":0.0,"top_p":1.0}'),
    }
    loads = target_loads(spec)
    assert {n: v.requests for n, v in loads.items()} == {"slow": 6, "third": 6}
    assert loads["slow"].max_tokens == 6 * 64 and loads["third"].max_tokens == 6 * 8
    plan = make_plan(spec)
    assert plan.requests == len(plans) == 12
    assert json.loads(json.dumps(plan.to_json()))["targets"]["slow"]["requests"] == 6
    # the stored spec reads back to the same plan (resume, merge)
    again = _parse(tmp_path, spec.resolved_dict())
    assert spec_hash(again) == spec_hash(spec)
    assert [p.request_id for p in plan_requests(again, expand_points(again), load_prompts(again))] == [p.request_id for p in plans]
    only = _parse(tmp_path, _spec(tmp_path, sweep={"exclude": [{"target": "fast"}]}))
    assert [a.name for a in target_axis(only)] == ["slow", "third"]


def test_target_params_are_merged_and_sent(tmp_path: Path) -> None:
    from harness.runner.body import build_body

    spec = _parse(tmp_path, _spec(tmp_path))
    plans = list(plan_requests(spec, expand_points(spec), load_prompts(spec)))
    slow = next(p for p in plans if p.target == "slow")
    fast = next(p for p in plans if p.target == "fast" and p.point == slow.point)
    assert build_body(spec.for_target("slow"), slow)["max_tokens"] == 64
    assert build_body(spec.for_target("fast"), fast)["max_tokens"] == 8
    assert slow.point.point_json == fast.point.point_json  # the override is not part of the point


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda d: d | {"target": d["targets"][0]}, "targets: give target or targets, not both"),
        (lambda d: {k: v for k, v in d.items() if k != "targets"}, "target: required"),
        (lambda d: d | {"targets": [d["targets"][0], d["targets"][0]]}, "targets[1].name: 'fast' is used twice"),
        (lambda d: d | {"targets": [{**d["targets"][0], "name": None}]}, "targets[0].name: required"),
        (lambda d: d | {"targets": [{**d["targets"][0], "name": "a b"}]}, "targets[0].name"),
        (lambda d: d | {"targets": [{**d["targets"][0], "params": {"temperature": 3.5}}]}, "targets[0].params.temperature"),
        (lambda d: d | {"targets": [{**d["targets"][0], "params": {"top_p": 0.5}}]}, "targets[0].params.top_p: also swept"),
        (lambda d: d | {"targets": [{**d["targets"][0], "params": {"top_logprobs": 2}}]}, "needs logprobs"),
        (lambda d: d | {"targets": [{**d["targets"][0], "price": {"input_per_mtok": -1, "output_per_mtok": 1}}]},
         "targets[0].price.input_per_mtok"),
        (lambda d: d | {"targets": [{**d["targets"][0], "base_url": ["http://a/v1", "http://a/v1"]}]}, "listed twice"),
        (lambda d: d | {"targets": [{**d["targets"][0], "base_url": ["ftp://a/v1"]}]}, "must start with http"),
        (lambda d: d | {"targets": [{**d["targets"][0], "colour": 1}]}, "targets[0].colour: unknown key"),
        (lambda d: d | {"sweep": {"grid": {"target": ["nope"]}}}, "sweep.grid.target: 'nope' is not a target"),
        (lambda d: d | {"sweep": {"grid": {"target": []}}}, "sweep.grid.target: an empty list"),
        (lambda d: d | {"sweep": {"grid": {"top_k": [5]}, "exclude": [{"target": "zz", "top_k": 5}]}}, "exclude[0].target: 'zz'"),
        (lambda d: d | {"targets": [{**d["targets"][0], "dialect": "openai"}], "sweep": {"grid": {"top_k": [5]}}},
         "targets[0].dialect"),
    ],
)
def test_bad_targets_are_one_line(tmp_path: Path, change: Any, needle: str) -> None:
    message = _error(tmp_path, change(_spec(tmp_path)))
    assert needle in message and "\n" not in message


def test_bad_target_params_exit_2_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _spec(tmp_path)
    data["targets"][1]["params"] = {"max_tokens": -4}
    (tmp_path / "s.yaml").write_text(json.dumps(data))
    assert main(["plan", str(tmp_path / "s.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "targets[1].params.max_tokens" in err and "Traceback" not in err


def test_manifest_lists_every_target_redacted_with_its_price(tmp_path: Path) -> None:
    spec = _parse(tmp_path, _spec(tmp_path))
    manifest = new_manifest(run_id="r", spec=spec, requests=1, shard=None, limit=None, overrides={})
    assert list(manifest.targets) == ["fast", "slow", "third"]
    assert manifest.targets["fast"]["price"] == {"input_per_mtok": 0.5, "output_per_mtok": 2.0}
    assert manifest.targets["slow"]["price"] is None and manifest.targets["third"]["dialect"] == "llama.cpp"
    assert manifest.targets["slow"]["replicas"] == ["http://127.0.0.1:10/v1?key=***", "http://127.0.0.1:11/v1"]
    assert manifest.target.base_url == "http://127.0.0.1:9/v1"  # the first target, as before
    text = manifest.to_json().decode()
    assert "sekrit" not in text
    stored = manifest.spec["targets"][1]["base_url"]
    assert stored == ["http://127.0.0.1:10/v1?key=***", "http://127.0.0.1:11/v1"]
    with_dialect = manifest.with_target_dialect("fast", "vllm", first=True)
    assert with_dialect.targets["fast"]["dialect"] == "vllm" and with_dialect.target.dialect == "vllm"
    assert manifest.with_target_dialect("slow", "sglang", first=False).target.dialect is None


def test_probe_target_flag_names_a_target_of_the_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "s.yaml").write_text(json.dumps(_spec(tmp_path)))
    assert main(["probe", str(tmp_path / "s.yaml"), "--target", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--target" in err and "fast, slow, third" in err and err.count("\n") == 1
