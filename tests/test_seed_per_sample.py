"""`seed: per_sample`: repeats of a cell get different, reproducible seeds; the row holds the seed sent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import SpecError
from harness.runner.body import build_body
from harness.spec.datasets import load_prompts
from harness.spec.grid import expand_points, plan_requests
from harness.spec.sweepspec import load_spec

BASE = """\
name: s
target: {{base_url: "{url}", model: harness/ngram}}
dataset: {{path: d.jsonl}}
params: {{max_tokens: 8, seed: {seed}}}
sweep: {{grid: {{temperature: [0.7, 1.0]}}, repeats: 3}}
"""


def spec_file(tmp_path: Path, seed: str, url: str = "http://127.0.0.1:9/v1") -> Path:
    (tmp_path / "d.jsonl").write_text('{"id": "a", "prompt": "Tell me about the sea."}\n{"id": "b", "prompt": "hi"}\n')
    path = tmp_path / "s.yaml"
    path.write_text(BASE.format(url=url, seed=seed))
    return path


def bodies(path: Path) -> list[tuple[str, int, dict]]:
    spec = load_spec(path)
    plans = plan_requests(spec, expand_points(spec), load_prompts(spec))
    return [(p.prompt.id, p.sample, build_body(spec, p)) for p in plans]


@pytest.mark.parametrize("seed,base", [("per_sample", 0), ("{per_sample: 1000}", 1000)])
def test_per_sample_seed_is_base_plus_repeat(tmp_path: Path, seed: str, base: int) -> None:
    sent = bodies(spec_file(tmp_path, seed))
    assert len(sent) == 2 * 2 * 3
    for _prompt, sample, body in sent:
        assert body["seed"] == base + sample
    assert {b["seed"] for _, _, b in sent} == {base, base + 1, base + 2}


def test_fixed_seed_is_the_same_for_every_repeat(tmp_path: Path) -> None:
    assert {b["seed"] for _, _, b in bodies(spec_file(tmp_path, "7"))} == {7}


def test_per_sample_is_reproducible_and_part_of_the_spec_hash(tmp_path: Path) -> None:
    from harness.spec.sweepspec import spec_hash

    a = spec_file(tmp_path, "per_sample")
    assert bodies(a) == bodies(a)
    h_per_sample = spec_hash(load_spec(a))
    assert h_per_sample != spec_hash(load_spec(spec_file(tmp_path, "0")))
    assert h_per_sample != spec_hash(load_spec(spec_file(tmp_path, "{per_sample: 5}")))


@pytest.mark.parametrize("seed", ["per_samples", "{per_sample: 1.5}", "{per_sample: 1, x: 2}", "[per_sample]"])
def test_bad_per_sample_forms_are_refused(tmp_path: Path, seed: str) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(spec_file(tmp_path, seed))
    assert (info.value.key or "").startswith("params.seed")


@pytest.mark.slow
def test_rows_hold_the_seed_sent(tmp_path: Path) -> None:
    """End to end on the reference server: the `seed` column is base + sample for every row."""
    pd = pytest.importorskip("pandas")
    from harness.server.app import ServerThread, reference_app

    with ServerThread(reference_app()) as server:
        spec = spec_file(tmp_path, "{per_sample: 40}", url=server.base_url)
        proc = subprocess.run(
            [sys.executable, "-m", "harness", "run", str(spec), "--out", str(tmp_path / "runs"), "--quiet"],
            check=False, capture_output=True, text=True, timeout=120,
        )
    assert proc.returncode == 0, proc.stderr
    run_dir = Path(proc.stdout.strip().splitlines()[-1])
    rows = pd.read_parquet(run_dir / "results")
    assert len(rows) == 12 and (rows["status"] == "ok").all()
    assert (rows["seed"] == 40 + rows["sample"]).all()
    assert rows["seed"].dtype == "int64"
