"""Run directories on object storage, against a local S3 server (moto's server mode, 127.0.0.1).

`--out s3://…` keeps the crash-safe protocol (journal segments → sealed parts → manifest last),
runs read back with pandas and DuckDB equal to local ones, summarize/report/compare/merge read
them, kill -9 + resume loses and doubles nothing, and the lease lock keeps a second writer off.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.dataset as pads
import pytest
from rundir_helpers import Recorder
from rundir_helpers import write_spec as write_small_spec
from s3_helpers import BUCKET, SECRET, LocalS3, moto_server
from serve_helpers import KEY, harness_env, planned_ids, serve_process, spawn, write_spec

from harness.cli import main
from harness.errors import RunDirError, UsageError
from harness.rundir.fs import ObjectPath, ObjectStoreError, _guard, as_run_path, redact_location
from harness.rundir.lock import ObjectLock
from harness.rundir.manifest import read_manifest
from harness.rundir.results import read_results
from harness.rundir.store import ObjectRunStore
from harness.runner.session import run_sweep

DROP = ["run_id", "started_at", "latency_s", "ttft_s", "inter_token_s"]  # differ between any two runs


@pytest.fixture(scope="module")
def s3() -> Iterator[LocalS3]:
    with moto_server() as server:
        yield server


def s3_frame(s3: LocalS3, run_dir: str) -> pd.DataFrame:
    """The results of an s3 run as pandas reads them (pyarrow's S3 filesystem, no harness code)."""
    key = run_dir.removeprefix("s3://")
    return pd.read_parquet(f"{key}/results", filesystem=s3.fs())


def rows_equal(a: pd.DataFrame, b: pd.DataFrame) -> None:
    a = a.drop(columns=DROP).sort_values("request_id").reset_index(drop=True)
    b = b.drop(columns=DROP).sort_values("request_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_urls_parse_and_credentials_in_them_are_refused() -> None:
    path = as_run_path("s3://bucket/runs/x/")
    assert isinstance(path, ObjectPath) and str(path) == "s3://bucket/runs/x"
    assert str(path / "results" / "part-000001.parquet") == "s3://bucket/runs/x/results/part-000001.parquet"
    assert path.name == "x" and str(path.parent) == "s3://bucket/runs" and (path / "a.json").suffix == ".json"
    assert isinstance(as_run_path("runs/x"), Path)
    with pytest.raises(UsageError, match="credentials or options") as err:
        as_run_path("s3://AKIAXX:topsecret@bucket/runs")
    assert "topsecret" not in str(err.value) and "AKIAXX" not in str(err.value)
    with pytest.raises(UsageError, match="not a storage harness knows"):
        as_run_path("ftp://host/x")
    with pytest.raises(UsageError, match="'..' is not allowed"):
        as_run_path("s3://bucket/a/../b")
    assert redact_location("s3://k:s@b/x?token=1") == "s3://b/x"


def test_a_store_error_is_one_line_exit_2_without_credentials(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    def refused() -> None:
        raise OSError("When getting information for key 'r' in bucket 'b': AWS Error ACCESS_DENIED during "
                      "HeadObject operation: Credential=AKIAEXAMPLE/20261202 Signature=abcdef; Details: more\nline 2")

    with pytest.raises(ObjectStoreError) as err:
        _guard("s3://b/r", refused)
    text = str(err.value)
    assert text.startswith("s3://b/r: When getting information") and "ACCESS_DENIED" in text
    assert "AKIAEXAMPLE" not in text and "abcdef" not in text and "Details" not in text and "\n" not in text
    monkeypatch.setattr(ObjectPath, "is_dir", lambda self: _guard(str(self), refused))
    assert main(["summarize", "s3://b/r"]) == 2
    out = capsys.readouterr().err
    assert out.startswith("harness: error: s3://b/r: When getting") and out.count("\n") == 1 and "AKIA" not in out


@pytest.mark.slow
def test_a_run_on_s3_equals_the_local_run_read_with_pandas_and_duckdb(s3: LocalS3, tmp_path: Path) -> None:
    spec = write_small_spec(tmp_path)
    local = run_sweep(spec, out=tmp_path / "runs", transport=Recorder().transport(), check_endpoint=False)
    remote = run_sweep(spec, out=f"s3://{BUCKET}/equal", transport=Recorder().transport(), check_endpoint=False)
    assert isinstance(remote.run_dir, ObjectPath) and remote.status == "completed"
    key = str(remote.run_dir).removeprefix(f"s3://{BUCKET}/")
    assert s3.keys(key) == [f"{key}/manifest.json", f"{key}/results/part-000001.parquet"]  # no journal, no lock left
    via_pandas = s3_frame(s3, str(remote.run_dir))
    rows_equal(via_pandas, pd.read_parquet(local.run_dir / "results"))
    dataset = pads.dataset(f"{BUCKET}/{key}/results", filesystem=s3.fs(), format="parquet")  # noqa: F841 - DuckDB reads it
    got = duckdb.sql("select status, count(*), count(distinct request_id) from dataset group by 1").fetchall()
    assert got == [("ok", 60, 60)]
    rows_equal(read_results(str(remote.run_dir)), read_results(local.run_dir))
    manifest = read_manifest(str(remote.run_dir))
    assert manifest.counts.requests == 60 and manifest.counts.ok == 60 and manifest.status == "completed"
    assert manifest.spec_hash == read_manifest(local.run_dir).spec_hash
    assert manifest.storage == str(remote.run_dir) and read_manifest(local.run_dir).storage is None


@pytest.mark.slow
def test_summarize_report_compare_read_an_s3_run_as_its_local_copy(
    s3: LocalS3, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_small_spec(tmp_path)
    remote = str(run_sweep(spec, out=f"s3://{BUCKET}/tools", transport=Recorder().transport(), check_endpoint=False).run_dir)
    copy = tmp_path / "copy"
    s3.download(remote.removeprefix(f"s3://{BUCKET}/"), str(copy))
    assert main(["summarize", remote, "--csv", str(tmp_path / "s3.csv")]) == 0
    assert main(["summarize", str(copy), "--csv", str(tmp_path / "local.csv")]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "s3.csv"), pd.read_csv(tmp_path / "local.csv"))
    assert main(["report", remote, "--out", str(tmp_path / "rep-s3")]) == 0
    assert main(["report", str(copy), "--out", str(tmp_path / "rep-local")]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "rep-s3" / "summary.csv"),
                                  pd.read_csv(tmp_path / "rep-local" / "summary.csv"))
    capsys.readouterr()
    assert main(["compare", str(copy), remote, "--metric", "error_rate", "--markdown", str(tmp_path / "cmp.md")]) == 0
    assert "regress" not in capsys.readouterr().out.lower().replace("no regression", "")
    assert main(["report", remote, "--out", f"s3://{BUCKET}/r"]) == 2  # reports go to a local folder
    assert "local folder" in capsys.readouterr().err


@pytest.mark.slow
def test_merge_takes_a_prefix_of_shards_on_s3_and_locally(s3: LocalS3, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_small_spec(tmp_path, prompts=20)
    for k in (1, 2, 3):
        run_sweep(spec, out=f"s3://{BUCKET}/array", shard=(k, 3), transport=Recorder().transport(), check_endpoint=False)
        run_sweep(spec, out=tmp_path / "array", shard=(k, 3), transport=Recorder().transport(), check_endpoint=False)
    capsys.readouterr()
    assert main(["merge", f"s3://{BUCKET}/array", "--out", f"s3://{BUCKET}/array/merged"]) == 0
    out = capsys.readouterr().out
    assert "merged 3 runs: 120 requests" in out and last_line(out) == f"s3://{BUCKET}/array/merged"
    merged = s3_frame(s3, f"s3://{BUCKET}/array/merged")
    assert sorted(merged.request_id) == sorted(planned_ids(spec)) and (merged.run_id == "merged").all()
    manifest = read_manifest(f"s3://{BUCKET}/array/merged")
    assert manifest.status == "completed" and len(manifest.merged_from or []) == 3
    # the merged run sits in the prefix now: a second merge of the prefix skips its own output only
    assert main(["merge", str(tmp_path / "array"), "--out", str(tmp_path / "array" / "all")]) == 0
    assert sorted(pd.read_parquet(tmp_path / "array" / "all" / "results").request_id) == sorted(merged.request_id)
    assert main(["merge", str(tmp_path), "--out", str(tmp_path / "m2")]) == 2  # no run directories one level down
    assert "not a run directory nor a prefix" in capsys.readouterr().err


def test_a_report_of_an_s3_run_goes_to_a_local_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_small_spec(tmp_path)
    assert main(["run", str(spec), "--out", f"s3://{BUCKET}/r", "--report", "--quiet"]) == 2
    assert "give a local folder: --report DIR" in capsys.readouterr().err


@pytest.mark.slow  # a moto server (seconds)
def test_a_missing_bucket_or_run_is_one_line_exit_2(s3: LocalS3, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summarize", "s3://no-such-bucket-h/run"]) == 2
    assert main(["run", "--resume", f"s3://{BUCKET}/nothing-here"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "Traceback" not in err and SECRET not in err
    assert "not a run directory" in err


@pytest.mark.slow
def test_the_lease_lock_keeps_a_second_writer_off_and_frees_a_dead_ones(s3: LocalS3) -> None:
    run_dir = ObjectPath(f"s3://{BUCKET}/locks/a")
    first = ObjectLock(run_dir, lease_s=30)
    with pytest.raises(RunDirError, match="another harness process is running this run"):
        ObjectLock(run_dir, lease_s=30)
    first.release()
    assert not (run_dir / ".lock").exists()
    # a process on this host that died holding the lock: taken over at once
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (run_dir / ".lock").write_bytes(json.dumps({"owner": "x", "host": os.uname().nodename, "pid": int(dead.stdout),
                                                "expires": time.time() + 600}).encode())
    ObjectLock(run_dir, lease_s=30).release()
    # another host's lease that ran out: taken over; one still running: refused, naming it
    (run_dir / ".lock").write_bytes(json.dumps({"owner": "y", "host": "elsewhere", "pid": 1, "expires": time.time() - 1}).encode())
    taken = ObjectLock(run_dir, lease_s=1.5)
    (run_dir / ".lock").write_bytes(json.dumps({"owner": "z", "host": "elsewhere", "pid": 1, "expires": time.time() + 60}).encode())
    time.sleep(0.8)  # the renewal (every lease/3) finds another owner
    with pytest.raises(RunDirError, match="took over this run"):
        taken.check()
    taken.release()
    assert json.loads((run_dir / ".lock").read_bytes())["owner"] == "z"  # not ours: left in place
    with pytest.raises(RunDirError, match="host elsewhere, pid 1"):
        ObjectLock(run_dir, lease_s=30)
    # a retried task waits out a dead owner's lease on another host; a live owner renews it and is kept
    (run_dir / ".lock").write_bytes(json.dumps({"owner": "w", "host": "elsewhere", "pid": 1, "expires": time.time() + 1}).encode())
    start = time.monotonic()
    ObjectLock(run_dir, lease_s=30, wait=True).release()
    assert 0.9 < time.monotonic() - start < 10
    live = ObjectLock(run_dir, lease_s=1.5)
    with pytest.raises(RunDirError, match="another harness process is running this run"):
        ObjectLock(run_dir, lease_s=30, wait=True)
    assert live.held
    live.release()


@pytest.mark.slow  # a moto server (seconds)
def test_segments_are_grouped_into_one_part_and_recovery_never_doubles(s3: LocalS3) -> None:
    run_dir = ObjectPath(f"s3://{BUCKET}/store/a")
    store = ObjectRunStore(run_dir, seal_rows=10**6, flush_rows=3, flush_s=3600)
    for i in range(7):
        store.append({"run_id": "r", "request_id": f"id{i}", "cell_id": "c", "prompt_id": "p", "sample": 0,
                      "model": "m", "status": "ok", "attempts": 1})
    store.flush()
    time.sleep(0.5)
    assert [p.name for p in (run_dir / "journal").iterdir()] == ["seg-000001.jsonl", "seg-000002.jsonl"]  # 6 rows out, 1 buffered
    segment = store.rotate()
    assert segment is not None and segment.name == "seg-000003.jsonl"
    part = store.seal(segment)
    assert part is not None and part.name == "part-000003.parquet" and not list((run_dir / "journal").iterdir())
    # a crash after sealing, before the segments were deleted: recovery deletes them, not seals them again
    (run_dir / "journal" / "seg-000002.jsonl").write_bytes(b'{"request_id": "id3"}\n')
    (run_dir / "journal" / "seg-000004.jsonl").write_bytes(
        json.dumps({"run_id": "r", "request_id": "id7", "cell_id": "c", "prompt_id": "p", "sample": 0, "model": "m",
                    "status": "ok", "attempts": 1}).encode() + b"\n{\"torn")
    ObjectRunStore(run_dir).recover()
    assert sorted(p.name for p in (run_dir / "results").iterdir()) == ["part-000003.parquet", "part-000004.parquet"]
    assert not list((run_dir / "journal").iterdir())
    assert ObjectRunStore(run_dir).counts().rows == 8


def _journaled(s3: LocalS3, prefix: str) -> int:
    """Rows this run has put on the store so far (segments' lines; each part counts 50)."""
    fs = s3.fs()
    total = 0
    for key in s3.keys(prefix):
        if "/journal/seg-" in key:
            try:
                with fs.open_input_stream(f"{BUCKET}/{key}") as fh:
                    total += fh.read().count(b"\n")
            except OSError:  # sealed and deleted since the listing
                pass
        elif "/results/part-" in key:
            total += 50
    return total


def _kill_when(s3: LocalS3, proc: subprocess.Popen[str], prefix: str, at_least: int) -> str:
    """SIGKILL `proc` once the run under `prefix` has `at_least` rows on the store; its run prefix."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        keys = s3.keys(prefix)
        runs = sorted({k.split("/")[1] for k in keys if k.endswith("/manifest.json") and k.count("/") == 2})
        if runs and _journaled(s3, f"{prefix}/{runs[0]}") >= at_least:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return f"{prefix}/{runs[0]}"
        if proc.poll() is not None:
            raise AssertionError(f"finished before the kill: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)
    raise AssertionError("no progress")


@pytest.mark.slow
def test_kill_9_then_resume_on_s3_loses_and_doubles_nothing(s3: LocalS3, tmp_path: Path) -> None:
    env = harness_env(**s3.env, HARNESS_SEAL_ROWS="50", HARNESS_OBJECT_FLUSH_S="0.2")
    prefix = "kill"
    with serve_process("--latency-ms", "15") as (base_url, _):
        spec = write_spec(tmp_path, base_url, prompts=30, temperatures=[0.0, 0.7, 1.4], repeats=10,
                          runner={"concurrency": 8, "timeout_s": 5.0})
        run_key = _kill_when(s3, spawn(["run", str(spec), "--out", f"s3://{BUCKET}/{prefix}", "--quiet"], env), prefix, 30)
        run_dir = f"s3://{BUCKET}/{run_key}"
        assert any(k.endswith("/.lock") for k in s3.keys(run_key))  # the dead process's lock is still there
        _kill_when(s3, spawn(["run", "--resume", run_dir, "--quiet"], env), prefix, 300)
        assert read_manifest(run_dir).status == "running"  # it never got to finish
        done = spawn(["run", "--resume", run_dir], env)
        out, err = done.communicate(timeout=180)
    assert done.returncode == 0, err
    assert last_line(out) == run_dir
    expected = planned_ids(spec)
    df = s3_frame(s3, run_dir)
    assert len(expected) == 900 and sorted(df.request_id) == sorted(expected)  # each exactly once
    assert (df.status == "ok").all()
    manifest = read_manifest(run_dir)
    assert manifest.status == "completed" and manifest.sessions == 3
    assert manifest.counts.requests == 900 and manifest.counts.ok == 900
    keys = s3.keys(run_key)
    assert keys == [f"{run_key}/manifest.json", f"{run_key}/results/part-{keys[-1][-14:-8]}.parquet"]
    for place in (out, err, json.dumps(manifest.model_dump())):
        assert KEY not in place and SECRET not in place
    fs = s3.fs()
    for key in keys:  # nothing stored on the bucket holds the API key or the store's secret
        with fs.open_input_stream(f"{BUCKET}/{key}") as fh:
            data = fh.read()
        assert KEY.encode() not in data and SECRET.encode() not in data, key
