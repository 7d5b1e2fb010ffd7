"""The Ray executor (harness.runner.cluster): limits split among shards, the CLI's checks, and a
sweep on a local Ray cluster (2 CPUs) against `harness serve` with one shard's worker killed -9
mid-run: Ray re-runs the task, it resumes the shard's run directory, every request ends exactly once;
and a Ray sweep to object storage (a local S3 server, moto's server mode on 127.0.0.1).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from s3_helpers import BUCKET, SECRET, LocalS3, moto_server
from serve_helpers import ENV, KEY, planned_ids, serve, write_spec

from harness.cli import main
from harness.rundir.manifest import read_manifest
from harness.rundir.results import read_results, read_table
from harness.runner.cluster import run_on_ray, shard_count, split_limits
from harness.server.ngram import NGramModel
from harness.spec.sweepspec import load_spec, spec_hash


def write_ray_spec(folder: Path, base_url: str, *, prompts: int, repeats: int, runner: dict[str, Any]) -> Path:
    return write_spec(folder, base_url, prompts=prompts, temperatures=[0.0, 0.7, 1.4], repeats=repeats, runner=runner,
                      name="ray", params={"max_tokens": 4})


# -- without a cluster ------------------------------------------------------------------------


@pytest.mark.parametrize("shards", [1, 2, 3, 7, 16])
def test_shares_of_the_limits_never_add_up_to_more_than_the_run(shards: int) -> None:
    shares = split_limits(shards, 16, 10.0, 1000)
    assert sum(s.concurrency for s in shares) == 16 and min(s.concurrency for s in shares) >= 1
    assert sum(s.rps or 0 for s in shares) == pytest.approx(10.0)
    assert sum(s.tokens_per_min or 0 for s in shares) <= 1000
    assert [s.rps for s in split_limits(shards, 16, None, None)] == [None] * shards


def test_shard_count_follows_the_cluster_within_the_concurrency_and_the_requests() -> None:
    assert shard_count(None, 8.0, 1.0, 16, 1000) == 8
    assert shard_count(None, 8.0, 2.0, 16, 1000) == 4
    assert shard_count(None, 8.0, 1.0, 3, 1000) == 3  # each shard sends at least one at a time
    assert shard_count(5, 64.0, 1.0, 16, 2) == 2  # no shard without a request
    assert shard_count(None, 0.5, 1.0, 16, 10) == 1
    with pytest.raises(ValueError):
        split_limits(5, 4, None, None)


def test_where_a_sweep_runs_is_not_part_of_its_hash(tmp_path: Path) -> None:
    plain = write_ray_spec(tmp_path, "http://127.0.0.1:9/v1", prompts=2, repeats=1, runner={})
    on_ray = tmp_path / "ray.yaml"
    data = json.loads(plain.read_text())
    on_ray.write_text(json.dumps({**data, "runner": {"executor": "ray", "ray": {"shards": 4}}}))
    assert load_spec(on_ray).runner.ray.shards == 4
    assert spec_hash(load_spec(plain)) == spec_hash(load_spec(on_ray))  # ray shards merge with plain runs


@pytest.mark.parametrize(("args", "flag"), [
    (["--shard", "1/2"], "--shard"),
    (["--probe"], "--probe"),
    (["--limit", "3"], "--limit"),
])
def test_flags_a_ray_run_cannot_honour_are_refused(tmp_path: Path, args: list[str], flag: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_ray_spec(tmp_path, "http://127.0.0.1:9/v1", prompts=2, repeats=1, runner={})
    code = main(["run", str(spec), "--ray", "local", "--out", str(tmp_path / "runs"), *args])
    err = capsys.readouterr().err
    assert code == 2 and flag in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_without_ray_installed_the_run_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    spec = write_ray_spec(tmp_path, "http://127.0.0.1:9/v1", prompts=2, repeats=1, runner={"executor": "ray"})
    code = main(["run", str(spec), "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and "harness[ray]" in err and "Traceback" not in err


def test_ray_is_imported_only_when_a_ray_run_starts() -> None:
    import subprocess

    code = ("import sys, harness, harness.api, harness.cli.run, harness.runner.cluster, harness.runner.raytask, "
            "harness.runner.session; print('ray' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "False"


# -- on a local Ray cluster -------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[LocalS3]:
    with moto_server() as server:
        yield server


@pytest.fixture(scope="module")
def ray_cluster(s3: LocalS3) -> Iterator[Any]:
    """One local Ray cluster (2 CPUs) for the module: starting one takes ~10 s. Started after the
    S3 server, as its workers (children of this process's raylet) take the environment of
    `ray.init`: the S3 server's AWS_* variables and the key."""
    ray = pytest.importorskip("ray")
    os.environ[ENV] = KEY
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        os.environ.pop(ENV, None)


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _worker_of(task_name: str) -> int | None:
    """The pid of the Ray worker running `task_name` (Ray titles it `ray::NAME`), in our own cluster."""
    for pid in _descendants(os.getpid()):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if title.strip() == f"ray::{task_name}".encode():
            return pid
    return None


class Killer(threading.Thread):
    """Kills -9 the worker of shard 1 once its run directory holds `after` rows."""

    def __init__(self, store: Path, after: int) -> None:
        super().__init__(daemon=True)
        self.store, self.after = store, after
        self.killed: tuple[int, int, int] | None = None  # (pid, rows then, shard's requests)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            try:
                first = next(p for p in self.store.glob("*/*")
                             if (p / "manifest.json").is_file() and str(read_manifest(p).shard) == "1/2")
                manifest = read_manifest(first)
                rows = read_table(first, ["request_id"]).num_rows
            except Exception:  # not made yet, or being written
                continue
            pid = _worker_of("harness-shard-1")
            if pid is not None and rows >= self.after:
                os.kill(pid, signal.SIGKILL)
                self.killed = (pid, rows, manifest.counts.requests)
                return


@pytest.mark.slow
@pytest.mark.parametrize("max_retries", [3, 0], ids=["ray-retries-the-task", "driver-resubmits-it"])
def test_sweep_on_ray_with_a_worker_killed_mid_run_has_every_request_once(tmp_path: Path, ray_cluster: Any,
                                                                          max_retries: int, model: NGramModel) -> None:
    with serve(model, latency_ms=40) as server:
        runner = {"concurrency": 2, "executor": "ray", "ray": {"max_retries": max_retries}}
        spec_path = write_ray_spec(tmp_path, server.base_url, prompts=10, repeats=4, runner=runner)
        out = tmp_path / "runs"
        killer = Killer(out / ".shards", after=8)
        killer.start()
        try:
            result = run_on_ray(spec_path, out=out)
        finally:
            killer.stop.set()
            killer.join()

    assert killer.killed is not None, "the worker of shard 1 was never seen running"
    _, rows_then, shard_requests = killer.killed
    assert 8 <= rows_then < shard_requests  # killed mid-run
    planned = planned_ids(spec_path)
    assert result.exit_code == 0 and result.status == "completed"
    frame = pd.read_parquet(result.run_dir / "results")
    assert len(frame) == len(planned) == 120
    assert sorted(frame["request_id"]) == sorted(planned)  # each exactly once
    assert (frame["status"] == "ok").all() and (frame["run_id"] == result.run_dir.name).all()
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["executor"] == "ray" and manifest["shards"] == 2 and len(manifest["merged_from"]) == 2
    assert manifest["counts"] == {"requests": 120, "ok": 120, "error": 0}
    assert manifest["overrides"] == {}  # the run's own, not a shard's share
    assert not (out / ".shards").exists()  # the shards' store is dropped once merged complete
    assert KEY.encode() not in b"".join(f.read_bytes() for f in result.run_dir.rglob("*") if f.is_file())


@pytest.mark.slow
def test_a_stopped_ray_run_is_finished_by_resuming_its_store(tmp_path: Path, ray_cluster: Any, model: NGramModel,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from harness.runner.cluster import plan_ray_run
    from harness.runner.session import resume_sweep
    from harness.spec.grid import DEFAULT_MAX_POINTS

    with serve(model) as server:
        spec_path = write_ray_spec(tmp_path, server.base_url, prompts=4, repeats=2, runner={"ray": {"shards": 2}})
        spec = load_spec(spec_path)
        # a driver that died after shard 1 finished and before shard 2 ran
        run = plan_ray_run(spec, out=tmp_path / "runs", ray=ray_cluster, concurrency=None, rps=None,
                           check_endpoint=True, preflight=True, max_points=DEFAULT_MAX_POINTS)
        assert resume_sweep(run.shard_dirs[0]).status == "completed"
        code = main(["run", "--resume", str(run.store), "--quiet"])
    out = capsys.readouterr().out
    final = Path(out.strip().splitlines()[-1])
    assert code == 0 and final == (tmp_path / "runs" / run.run_id).absolute()
    planned = planned_ids(spec_path)
    frame = pd.read_parquet(final / "results")
    assert sorted(frame["request_id"]) == sorted(planned) and len(planned) == 24
    manifest = read_manifest(final)
    assert manifest.executor == "ray" and manifest.shards == 2 and manifest.status == "completed"
    assert not run.store.exists()


@pytest.mark.slow
def test_a_ray_sweep_to_s3_has_every_request_once_and_leaves_only_the_merged_run(
        tmp_path: Path, s3: LocalS3, ray_cluster: Any, model: NGramModel) -> None:
    """`--out s3://…`: the shards' run directories and the merged run all on the bucket."""
    with serve(model) as server:
        spec_path = write_ray_spec(tmp_path, server.base_url, prompts=4, repeats=2,
                                   runner={"concurrency": 4, "executor": "ray", "ray": {"shards": 2}})
        result = run_on_ray(spec_path, out=f"s3://{BUCKET}/ray-runs")
    assert result.exit_code == 0 and str(result.run_dir).startswith(f"s3://{BUCKET}/ray-runs/ray-")
    planned = planned_ids(spec_path)
    assert sorted(read_results(result.run_dir)["request_id"]) == sorted(planned) and len(planned) == 24
    manifest = read_manifest(result.run_dir)
    assert manifest.executor == "ray" and manifest.shards == 2 and manifest.status == "completed"
    keys = s3.keys("ray-runs")
    assert keys and all(k.startswith(f"ray-runs/{result.run_dir.name}/") for k in keys), keys  # store removed
    for key in keys:  # neither the store's secret nor the API key on the bucket
        data = s3.fs().open_input_stream(f"{BUCKET}/{key}").read()
        assert SECRET.encode() not in data and KEY.encode() not in data, key
