"""`--shard auto`: K and N from a Kubernetes Indexed Job, a Slurm array, or HARNESS_SHARD_INDEX/COUNT."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from rundir_helpers import Recorder, forget_rows, write_spec
from serve_helpers import ENV, KEY, planned_ids, serve
from serve_helpers import write_spec as sweep_spec

from harness.cli import main
from harness.errors import UsageError
from harness.rundir.manifest import Shard, read_manifest
from harness.runner.jobarray import shard_from_env
from harness.runner.session import run_sweep
from harness.server.ngram import NGramModel


@pytest.mark.parametrize(("env", "shard"), [
    ({"JOB_COMPLETION_INDEX": "0", "HARNESS_SHARD_COUNT": "4"}, (1, 4)),
    ({"JOB_COMPLETION_INDEX": "3", "HARNESS_SHARD_COUNT": "4"}, (4, 4)),
    ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "7"}, (1, 8)),
    ({"SLURM_ARRAY_TASK_ID": "10", "SLURM_ARRAY_TASK_COUNT": "10", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "10"}, (10, 10)),
    ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3"}, (3, 3)),  # no MIN/MAX: 0-based
    ({"HARNESS_SHARD_INDEX": "2", "HARNESS_SHARD_COUNT": "5", "JOB_COMPLETION_INDEX": "0"}, (2, 5)),  # explicit wins
])
def test_the_scheduler_index_becomes_shard_k_of_n(env: dict[str, str], shard: tuple[int, int]) -> None:
    assert shard_from_env(env) == Shard(index=shard[0], count=shard[1])


@pytest.mark.parametrize(("env", "message"), [
    ({}, "no job-array index in the environment; set one of: HARNESS_SHARD_INDEX"),
    ({"JOB_COMPLETION_INDEX": "2"}, "HARNESS_SHARD_COUNT is not set"),
    ({"JOB_COMPLETION_INDEX": "4", "HARNESS_SHARD_COUNT": "4"}, "shard 5 of 4 is past the last one"),
    ({"JOB_COMPLETION_INDEX": "x", "HARNESS_SHARD_COUNT": "4"}, "JOB_COMPLETION_INDEX='x' is not a whole number"),
    ({"HARNESS_SHARD_INDEX": "0", "HARNESS_SHARD_COUNT": "4"}, "HARNESS_SHARD_INDEX=0 is out of range"),
    ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "8"},
     "stepped or listed --array has gaps"),
    ({"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "2"},
     "SLURM_ARRAY_TASK_ID=9 is outside the array 0-2"),
    ({"SLURM_ARRAY_TASK_ID": "1"}, "SLURM_ARRAY_TASK_COUNT is not set"),
])
def test_a_missing_or_inconsistent_environment_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match="--shard auto") as err:
        shard_from_env(env)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_run_shard_auto_is_one_line_exit_2_without_an_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("HARNESS_SHARD_INDEX", "JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    spec = write_spec(tmp_path)
    assert main(["run", str(spec), "--out", str(tmp_path / "runs"), "--shard", "auto", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("harness: error: --shard auto: no job-array index") and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()
    assert main(["run", str(spec), "--shard", "auto/2"]) == 2  # not K/N, not auto


def test_an_indexed_job_array_merges_from_its_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, prompts=12)
    monkeypatch.setenv("HARNESS_SHARD_COUNT", "3")
    for index in range(3):  # what the three pods of a Kubernetes Indexed Job see
        monkeypatch.setenv("JOB_COMPLETION_INDEX", str(index))
        shard = shard_from_env()
        result = run_sweep(spec, out=tmp_path / "array", shard=shard, transport=Recorder().transport(), check_endpoint=False)
        assert read_manifest(result.run_dir).shard == Shard(index=index + 1, count=3)
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "array"), "--out", str(tmp_path / "merged")]) == 0
    assert "merged 3 runs: 72 requests" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "merged" / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["counts"]["ok"] == 72


@pytest.mark.slow
def test_a_retried_task_resumes_what_its_earlier_attempt_left(
    tmp_path: Path, model: NGramModel, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV, KEY)
    monkeypatch.setenv("HARNESS_SHARD_COUNT", "2")
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "0")
    with serve(model) as server:
        spec = sweep_spec(tmp_path, server.base_url, prompts=10, temperatures=[0.0, 1.0], repeats=2, runner={})
        out = tmp_path / "array"
        assert main(["run", str(spec), "--shard", "auto", "--out", str(out), "--quiet"]) == 0
        first = Path(capsys.readouterr().out.strip().splitlines()[-1])
        kept = forget_rows(first, keep=3)  # as if the pod had been killed after 3 rows
        other = run_sweep(spec, out=out, shard=(2, 2), check_endpoint=False).run_dir  # shard 2 of 2: not this task's
        forget_rows(other, keep=1)
        assert main(["run", str(spec), "--shard", "auto", "--out", str(out)]) == 0  # the retried pod
        captured = capsys.readouterr()
    assert f"shard 1/2: resuming {first}, left unfinished by an earlier attempt" in captured.err
    assert Path(captured.out.strip().splitlines()[-1]) == first
    manifest = read_manifest(first)
    assert manifest.status == "completed" and manifest.sessions == 2 and manifest.shard == Shard(index=1, count=2)
    df = pd.read_parquet(first / "results")
    assert sorted(df.request_id) == sorted(planned_ids(spec, (1, 2))) and set(kept) <= set(df.request_id)
    assert sorted(p.name for p in out.iterdir()) == sorted([first.name, other.name])  # no third run directory
