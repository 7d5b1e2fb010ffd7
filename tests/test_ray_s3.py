"""The Ray executor writing to object storage: `--out s3://…` against a local S3 server (moto),
the shards' run directories and the merged run all on the bucket, each request exactly once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from s3_helpers import BUCKET, SECRET, LocalS3, moto_server

from harness.rundir.manifest import read_manifest
from harness.rundir.results import read_results
from harness.runner.cluster import run_on_ray
from harness.server.app import ServerThread, create_app
from harness.server.ngram import NGramModel
from harness.spec.datasets import load_prompts
from harness.spec.grid import expand_points, plan_requests
from harness.spec.sweepspec import load_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def s3_and_ray() -> Iterator[tuple[LocalS3, Any]]:
    ray = pytest.importorskip("ray")
    with moto_server() as s3:  # first: the workers inherit its AWS_* environment from ray.init
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        try:
            yield s3, ray
        finally:
            ray.shutdown()


def test_a_ray_sweep_to_s3_has_every_request_once_and_leaves_only_the_merged_run(
        tmp_path: Path, s3_and_ray: tuple[LocalS3, Any], model: NGramModel) -> None:
    s3, _ = s3_and_ray
    with (tmp_path / "prompts.jsonl").open("w") as fh:
        for i in range(6):
            fh.write(json.dumps({"id": f"q{i}", "prompt": f"Country: Land{i}\nCapital:", "reference": "Paris"}) + "\n")
    with ServerThread(create_app({"harness/ngram": model})) as server:
        spec_path = tmp_path / "spec.yaml"
        spec_path.write_text(json.dumps({
            "name": "ray-s3", "target": {"base_url": server.base_url, "model": "harness/ngram"},
            "dataset": {"path": "prompts.jsonl"}, "params": {"max_tokens": 4},
            "sweep": {"grid": {"temperature": [0.0, 1.0]}, "repeats": 2},
            "runner": {"concurrency": 4, "executor": "ray", "ray": {"shards": 2}},
        }))
        result = run_on_ray(spec_path, out=f"s3://{BUCKET}/ray-runs")
    assert result.exit_code == 0 and str(result.run_dir).startswith(f"s3://{BUCKET}/ray-runs/ray-s3-")
    spec = load_spec(spec_path)
    planned = sorted(p.request_id for p in plan_requests(spec, expand_points(spec), load_prompts(spec)))
    assert sorted(read_results(result.run_dir)["request_id"]) == planned and len(planned) == 24
    manifest = read_manifest(result.run_dir)
    assert manifest.executor == "ray" and manifest.shards == 2 and manifest.status == "completed"
    keys = s3.keys("ray-runs")
    assert keys and all(k.startswith(f"ray-runs/{result.run_dir.name}/") for k in keys), keys  # store removed
    assert not any(SECRET in s3.fs().open_input_stream(f"{BUCKET}/{k}").read().decode("utf-8", "replace")
                   for k in keys)
