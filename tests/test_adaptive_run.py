"""Adaptive repeats end to end on `harness serve`: plan, run, resume, shards + merge, bad input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness.analysis.sequential import MIN_SEED_REPEATS
from harness.cli import main
from harness.errors import UsageError
from harness.rundir.manifest import read_manifest
from harness.runner.dispatch import Stats
from harness.runner.session import prepare_resume, prepare_run, resume_sweep, run_job_async, run_sweep
from harness.server.app import ServerThread, create_app
from harness.server.ngram import NGramModel
from harness.spec.grid import request_id_of

ROOT = Path(__file__).resolve().parents[1]
RULE = {"min": 2, "max": 12, "step": 2, "until": {"metric": "accuracy", "half_width": 0.05},
        "drop_worse": {"alpha": 0.05}}


@pytest.fixture(scope="module")
def base_url(model: NGramModel) -> Iterator[str]:
    with ServerThread(create_app({"harness/ngram": model})) as server:
        yield server.base_url


def write_spec(folder: Path, base_url: str, repeats: Any = None, **extra: Any) -> Path:
    spec = {
        "name": "adaptive",
        "target": {"base_url": base_url, "model": "harness/ngram"},
        "dataset": {"path": str(ROOT / "datasets" / "capitals.jsonl"), "limit": 30},
        "params": {"max_tokens": 4, "seed": {"per_sample": 7}},
        "scoring": [{"type": "exact_match", "name": "accuracy"}],
        "sweep": {"grid": {"temperature": [0.3, 0.8, 1.0, 1.6]}, "repeats": RULE if repeats is None else repeats},
        "runner": {"concurrency": 8},
        **extra,
    }
    path = folder / "spec.yaml"
    path.write_text(json.dumps(spec))
    return path


def run_cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def rows(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "results").sort_values("request_id").reset_index(drop=True)


def decisions(run_dir: Path) -> dict[str, tuple[Any, ...]]:
    cells = read_manifest(run_dir).adaptive["cells"]  # type: ignore[index]
    return {cid: (c["reason"], c["samples"], c["mean"], c["half_width"], c["dropped_by"]) for cid, c in cells.items()}


@pytest.mark.slow
def test_adaptive_run_end_to_end(base_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, base_url)
    code, out, _ = run_cli("plan", str(spec), "--json", capsys=capsys)
    plan = json.loads(out)
    assert code == 0 and (plan["min_requests"], plan["max_requests"], plan["requests"]) == (240, 1440, 1440)
    code, out, err = run_cli("run", str(spec), "--out", str(tmp_path / "runs"), "--quiet", capsys=capsys)
    assert code == 0 and err == ""
    run_dir = Path(out.strip().splitlines()[-1])
    manifest = read_manifest(run_dir)
    df = rows(run_dir)
    adaptive = manifest.adaptive
    assert adaptive is not None and adaptive["metric"] == "accuracy"
    cells = adaptive["cells"]
    assert len(cells) == 4 and all(c["reason"] in ("converged", "dropped", "max", "unreachable") for c in cells.values())
    # what the manifest says each cell got is what the results hold, and it is a prefix of samples
    per_cell = df.groupby("cell_id")["sample"].agg(["count", "max"])
    for cid, cell in cells.items():
        assert per_cell.loc[cid, "count"] == cell["requests"] == cell["samples"] * 30
        assert per_cell.loc[cid, "max"] == cell["samples"] - 1
        acc = (df[df.cell_id == cid].content.str.strip() == df[df.cell_id == cid].reference).mean()
        assert cell["mean"] == pytest.approx(acc)
        assert cell["reason"] != "converged" or cell["half_width"] <= 0.05
    assert manifest.counts.requests == len(df) == adaptive["requests"]["scheduled"] < 1440
    # the hot cell (T 1.6) is worse than T 0.3. With seed: per_sample a seed's luck is shared by
    # every prompt (on harness serve, T 1.6's repeats 0 and 1 get 3 and 0 of 30 right, repeats 2
    # and 3 get 24 and 29): no cell is judged before MIN_SEED_REPEATS repeats (clustered by repeat too)
    assert adaptive["clustered_by"] == ["prompt", "repeat"]
    hot = next(c for c in cells.values() if c["point"] == {"temperature": 1.6})
    assert hot["reason"] == "dropped" and hot["samples"] >= MIN_SEED_REPEATS
    assert all(c["samples"] >= MIN_SEED_REPEATS for c in cells.values())
    hot_rows = df[df.temperature == 1.6]
    right = hot_rows.content.str.strip().str.lower() == hot_rows.reference.str.lower()
    assert right[hot_rows["sample"] < 2].mean() < 0.2 < right.mean()  # the first two seeds were unlucky ones
    best = max(cells.values(), key=lambda c: c["mean"])
    assert best["point"] == {"temperature": 0.3} and best["reason"] != "dropped"
    # request ids are the fixed-repeats ones: (model, point, prompt, sample)
    row = df.iloc[0]
    assert row.request_id == request_id_of("harness/ngram", row.point_json, row.prompt_id, int(row["sample"]))


@pytest.mark.slow
def test_resume_of_an_interrupted_adaptive_run_gives_the_same_rows_and_decisions(base_url: str, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, base_url)
    whole = run_sweep(spec, out=tmp_path / "a", check_endpoint=False)
    assert whole.status == "completed" and whole.counts.rows == whole.manifest.counts.requests
    again = prepare_resume(whole.run_dir)  # a finished adaptive run: the replay finds nothing to send
    assert again.pending == 0 and again.total == whole.manifest.counts.requests
    again.release()

    job = prepare_run(spec, out=tmp_path / "b", check_endpoint=False)

    stats = Stats()
    first_round = 4 * 30 * 2
    stop_at = first_round + (whole.counts.rows - first_round) // 2  # in the middle of a later round
    assert whole.counts.rows > first_round + 30  # the sweep has later rounds to interrupt

    async def interrupted() -> None:
        task = asyncio.create_task(run_job_async(job, stats=stats))
        while stats.done < stop_at and not task.done():
            await asyncio.sleep(0.002)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupted())
    stopped = read_manifest(job.run_dir)
    assert stopped.status == "interrupted" and 0 < rows(job.run_dir).shape[0] < whole.counts.rows
    resumed = resume_sweep(job.run_dir)
    assert resumed.status == "completed" and resumed.exit_code == 0
    a, b = rows(whole.run_dir), rows(job.run_dir)
    assert list(a.request_id) == list(b.request_id)
    assert list(a.content) == list(b.content)
    assert decisions(whole.run_dir) == decisions(job.run_dir)
    assert read_manifest(job.run_dir).counts.requests == whole.manifest.counts.requests


@pytest.mark.slow
def test_shards_adapt_their_own_cells_and_merge(base_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, base_url)
    shards = []
    for k in (1, 2):
        code, out, _ = run_cli("run", str(spec), "--out", str(tmp_path / "runs"), "--shard", f"{k}/2", "--quiet",
                               capsys=capsys)
        assert code == 0
        shards.append(Path(out.strip().splitlines()[-1]))
    cells = [set(read_manifest(s).adaptive["cells"]) for s in shards]  # type: ignore[index]
    assert cells[0] and cells[1] and not cells[0] & cells[1]  # a cell lives in one shard
    for shard, own in zip(shards, cells, strict=True):
        assert set(rows(shard).cell_id) == own
        assert read_manifest(shard).adaptive["shard_rule"] == "cells"  # type: ignore[index]
    code, out, _ = run_cli("merge", *map(str, shards), "--out", str(tmp_path / "merged"), capsys=capsys)
    assert code == 0
    merged = read_manifest(tmp_path / "merged")
    assert merged.adaptive is not None and set(merged.adaptive["cells"]) == cells[0] | cells[1]
    assert merged.adaptive["requests"]["scheduled"] == merged.counts.requests == len(rows(tmp_path / "merged"))
    assert sum(merged.adaptive["stopped"].values()) == 4


def test_adaptive_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = "http://127.0.0.1:9/v1"
    cases = [
        ({**RULE, "min": 5, "max": 3}, "sweep.repeats.max: 3 is below min 5"),
        ({**RULE, "until": {"metric": "acuracy", "half_width": 0.1}}, "did you mean accuracy?"),
        ({**RULE, "until": {"metric": "accuracy", "half_width": -1}}, "sweep.repeats.until.half_width"),
        ({**RULE, "until": {"metric": "accuracy", "half_width": 0.1, "confidence": 1.5}}, "until.confidence"),
        ({**RULE, "drop_worse": {"alpha": 0.9}}, "sweep.repeats.drop_worse.alpha"),
        ({"min": 2, "max": 4}, "sweep.repeats.until: required key is missing"),
        ({**RULE, "untill": {}}, "sweep.repeats.untill: unknown key; did you mean until?"),
        (0, "sweep.repeats: 0: Input should be greater than or equal to 1"),
        ("many", "is not an integer or a mapping"),
    ]
    for repeats, message in cases:
        code, out, err = run_cli("plan", str(write_spec(tmp_path, url, repeats)), capsys=capsys)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and message in err, (repeats, err)
        assert "Traceback" not in err
    code, _, err = run_cli("run", str(write_spec(tmp_path, url)), "--limit", "5", "--out", str(tmp_path / "r"),
                           "--quiet", "--no-preflight", capsys=capsys)
    assert code == 2 and "--limit" in err and len(err.strip().splitlines()) == 1


def test_plan_shows_minimum_and_maximum_requests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli("plan", str(write_spec(tmp_path, "http://127.0.0.1:9/v1")), capsys=capsys)
    assert code == 0
    assert "requests  240 … 1,440" in out and "adaptive 2 … 12 per prompt" in out and "until accuracy ±0.05" in out
    code, out, _ = run_cli("plan", str(write_spec(tmp_path, "http://127.0.0.1:9/v1", 3)), "--json", capsys=capsys)
    plan = json.loads(out)
    assert (plan["requests"], plan["min_requests"], plan["max_requests"], plan["adaptive"]) == (360, 360, 360, None)


def test_plan_warns_that_per_sample_seeds_correlate_the_prompts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli("plan", str(write_spec(tmp_path, "http://127.0.0.1:9/v1")), capsys=capsys)
    assert code == 0 and "note      seed: per_sample" in out and "clustered by prompt and by repeat" in out
    spec = json.loads((tmp_path / "spec.yaml").read_text())
    del spec["params"]["seed"]
    (tmp_path / "spec.yaml").write_text(json.dumps(spec))
    code, out, _ = run_cli("plan", str(tmp_path / "spec.yaml"), capsys=capsys)
    assert code == 0 and "note" not in out


def test_allow_scorer_only_with_resume_and_a_custom_metric_is_not_imported_from_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli("run", str(write_spec(tmp_path, "http://127.0.0.1:9/v1")), "--allow-scorer", "m:f",
                           capsys=capsys)
    assert code == 2 and "--allow-scorer" in err and "only with --resume" in err
    from harness.runner.rounds import metric_scorer
    from harness.spec.sweepspec import parse_spec

    data = json.loads(write_spec(tmp_path, "http://127.0.0.1:9/v1",
                                 repeats={**RULE, "until": {"metric": "brevity", "half_width": 0.1}}).read_text())
    data["scoring"] = ["nowhere_module_xyz:brevity"]
    stored = parse_spec({k: v for k, v in data.items() if k != "scoring"}, source="manifest.json", base_dir=tmp_path,
                        check_metric=False).model_copy(update={"scoring": data["scoring"]})
    with pytest.raises(UsageError, match="--allow-scorer nowhere_module_xyz:brevity"):
        metric_scorer(stored, allow_custom=())  # refused before anything is imported


@pytest.mark.slow
def test_a_shard_without_cells_sends_nothing(base_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.runner import in_shard
    from harness.spec.grid import expand_points
    from harness.spec.sweepspec import load_spec

    spec = write_spec(tmp_path, base_url)
    cells = [p.cell_id for p in expand_points(load_spec(spec))]
    empty = next(k for k in range(1, 9) if not any(in_shard(c, (k, 8)) for c in cells))
    code, out, _ = run_cli("run", str(spec), "--out", str(tmp_path / "runs"), "--shard", f"{empty}/8", "--quiet",
                           capsys=capsys)
    run_dir = Path(out.strip().splitlines()[-1])
    manifest = read_manifest(run_dir)
    assert code == 0 and manifest.status == "completed" and manifest.counts.requests == 0
    assert manifest.adaptive is not None and manifest.adaptive["cells"] == {} and len(rows(run_dir)) == 0


def two_targets(folder: Path, base_url: str) -> Path:
    """Targets `a` (the server as is) and `b` (answers cut at the first a, e, i or o: every answer wrong)."""
    path = write_spec(folder, base_url)
    data = json.loads(path.read_text())
    del data["target"]
    data["targets"] = [{"name": "a", "base_url": base_url, "model": "harness/ngram"},
                       {"name": "b", "base_url": base_url, "model": "harness/ngram",
                        "params": {"stop": ["a", "e", "i", "o"]}}]  # fmt: skip
    data["sweep"]["exclude"] = [{"target": "b", "temperature": 1.6}]  # b races 3 cells, a 4
    path.write_text(json.dumps(data))
    return path


def test_plan_of_adaptive_repeats_with_several_targets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli("plan", str(two_targets(tmp_path, "http://127.0.0.1:9/v1")), "--json", capsys=capsys)
    plan = json.loads(out)
    assert code == 0 and (plan["min_requests"], plan["max_requests"]) == (7 * 30 * 2, 7 * 30 * 12)
    per_target = {name: (t["min_requests"], t["max_requests"], t["points"]) for name, t in plan["targets"].items()}
    assert per_target == {"a": (4 * 30 * 2, 4 * 30 * 12, 4), "b": (3 * 30 * 2, 3 * 30 * 12, 3)}
    code, out, _ = run_cli("plan", str(two_targets(tmp_path, "http://127.0.0.1:9/v1")), capsys=capsys)
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("requests  420 … 2,520"))
    assert lines[at + 1:at + 3] == ["  a            240 … 1,440 requests (4 points)",
                                    "  b            180 … 1,080 requests (3 points)"]


@pytest.mark.slow
def test_adaptive_repeats_with_several_targets_race_within_each_target(base_url: str, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    spec = two_targets(tmp_path, base_url)
    code, out, err = run_cli("run", str(spec), "--out", str(tmp_path / "runs"), "--quiet", capsys=capsys)
    assert code == 0, err
    run_dir = Path(out.strip().splitlines()[-1])
    adaptive = read_manifest(run_dir).adaptive
    assert adaptive is not None
    cells = adaptive["cells"]
    assert sorted(c["target"] for c in cells.values()) == ["a"] * 4 + ["b"] * 3  # each (target, point) its own cell
    assert all(key == f"{c['target']}/{c['cell_id']}" for key, c in cells.items())
    for c in cells.values():  # a cell is only ever dropped by a leader of its own target
        assert c["dropped_by"] is None or cells[c["dropped_by"]]["target"] == c["target"]
    b = [c for c in cells.values() if c["target"] == "b"]
    assert all(c["mean"] == 0 for c in b) and not any(c["reason"] == "dropped" for c in b)  # far below a, never dropped for it
    assert set(adaptive["alpha_per_test"]) == {"a", "b"}
    assert adaptive["alpha_per_test"]["b"] == pytest.approx(0.05 / (2 * 6))  # b's 2 rivals, not a's
    df = rows(run_dir)
    got = df.groupby(["target", "cell_id"]).size().to_dict()
    assert got == {(c["target"], c["cell_id"]): c["requests"] for c in cells.values()}  # the manifest is the rows
    assert adaptive["requests"]["scheduled"] == len(df) == read_manifest(run_dir).counts.requests
    # a resume replays the rows to the same decisions and sends nothing
    code, out, _ = run_cli("run", "--resume", str(run_dir), "--quiet", capsys=capsys)
    assert code == 0 and len(rows(run_dir)) == len(df) and read_manifest(run_dir).adaptive["cells"] == cells  # type: ignore[index]


@pytest.mark.slow
def test_without_shared_seeds_a_far_worse_cell_is_dropped_at_the_first_look(base_url: str, tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, base_url)
    data = json.loads(spec.read_text())
    del data["params"]["seed"]  # each request its own randomness: the repeats of a prompt are independent draws
    spec.write_text(json.dumps(data))
    code, out, err = run_cli("run", str(spec), "--out", str(tmp_path / "runs"), "--quiet", capsys=capsys)
    assert code == 0, err
    adaptive = read_manifest(Path(out.strip().splitlines()[-1])).adaptive
    assert adaptive is not None and adaptive["clustered_by"] == ["prompt"]
    hot = next(c for c in adaptive["cells"].values() if c["point"] == {"temperature": 1.6})
    assert hot["reason"] == "dropped" and hot["samples"] == 2


@pytest.mark.slow
def test_a_target_that_refuses_everything_halts_its_cells_and_the_others_race_on(
        base_url: str, model: NGramModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Target b answers every request with a 500: its breaker stops its sending in the first round,
    its cells stop as "halted", and target a's cells go on to a decision of their own (before,
    no round started for any target once one target was gone)."""
    from harness.server.faults import FaultSpec

    spec = two_targets(tmp_path, base_url)
    with ServerThread(create_app({"harness/ngram": model}, faults=FaultSpec.parse("500=1.0"), fault_seed=1)) as broken:
        data = json.loads(spec.read_text())
        data["targets"][1]["base_url"] = broken.base_url
        data["runner"]["max_attempts"] = 1
        spec.write_text(json.dumps(data))
        code, out, err = run_cli("run", str(spec), "--out", str(tmp_path / "runs"), "--quiet", "--no-preflight", capsys=capsys)
    assert code == 1, err
    run_dir = Path(out.strip().splitlines()[-1])
    adaptive = read_manifest(run_dir).adaptive
    assert adaptive is not None
    cells = adaptive["cells"]
    assert {c["reason"] for c in cells.values() if c["target"] == "b"} == {"halted"}
    a = [c for c in cells.values() if c["target"] == "a"]
    assert all(c["reason"] in ("converged", "dropped", "max", "unreachable") for c in a), a
    assert max(c["samples"] for c in a) > RULE["min"]  # a sampled past the round in which b went down
    assert adaptive["stopped"]["halted"] == 3
    df = rows(run_dir)
    assert (df[df.target == "a"].status == "ok").all() and (df[df.target == "b"].status == "error").all()
    assert len(df) == df.request_id.nunique() == adaptive["requests"]["scheduled"]
