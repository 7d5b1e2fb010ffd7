"""`harness run` / `--resume` / `merge` over real sockets against `harness serve` (in-process).

The fault sweep, the kill -9 + resume cycle, shards + merge, Ctrl-C, bad input and the key search.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import pytest
from serve_helpers import (
    ENV,
    KEY,
    assert_no_key,
    harness_env,
    last_line,
    planned_ids,
    results,
    serve,
    serve_process,
    spawn,
    wait_for_rows,
    write_spec,
)

from harness.cli import main
from harness.server.ngram import NGramModel

FAULTS = "429=0.1,500=0.05,reset=0.02,timeout=0.01,garbage=0.01"


@pytest.mark.slow
def test_fault_sweep_every_request_exactly_once(
    tmp_path: Path, model: NGramModel, key_env: None, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    with serve_process("--faults", FAULTS, "--fault-seed", "3") as (base_url, _):
        runner = {"concurrency": 64, "timeout_s": 1.0, "max_attempts": 6}
        spec = write_spec(tmp_path, base_url, prompts=50, temperatures=[0.0, 0.5, 1.0, 1.5, 2.0], repeats=20, runner=runner)
        code = main(["run", str(spec), "--out", str(tmp_path / "runs"), "--quiet"])
    out, err = capsys.readouterr()
    run_dir = last_line(out)
    assert code in (0, 1) and err == ""
    df = results(run_dir)
    expected = planned_ids(spec)
    assert len(expected) == 5000
    assert sorted(df.request_id) == sorted(expected)  # every id exactly once
    ok = (df.status == "ok").sum()
    assert ok >= 0.995 * 5000, df[df.status == "error"].error_type.value_counts()
    errors = df[df.status == "error"]
    assert errors.error_type.notna().all() and errors.error_message.notna().all()
    assert (df.attempts >= 1).all() and (df.attempts > 1).sum() > 500  # the faults were met and retried
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["counts"] == {"requests": 5000, "ok": int(ok), "error": len(errors)}
    assert manifest["status"] == "completed" and code == (0 if len(errors) == 0 else 1)
    got = duckdb.sql(f"select count(distinct request_id), count(*) from read_parquet('{run_dir}/results/*.parquet')").fetchall()
    assert got == [(5000, 5000)]
    assert_no_key(run_dir, out, err, caplog.text)


@pytest.mark.slow
def test_streaming_sweep_with_cut_streams(tmp_path: Path, model: NGramModel, key_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    with serve(model, faults="stream_cut=0.1,garbage=0.05,429=0.05") as server:
        runner = {"concurrency": 16, "timeout_s": 2.0, "stream": True}
        spec = write_spec(tmp_path, server.base_url, prompts=20, temperatures=[0.0, 1.0], repeats=5, runner=runner)
        code = main(["run", str(spec), "--out", str(tmp_path / "runs"), "--quiet"])
    df = results(last_line(capsys.readouterr().out))
    assert code == 0 and len(df) == 200 and df.request_id.is_unique
    spoke = df[df.content != ""]  # (a sampled end-of-text as first token gives no token at all)
    assert len(spoke) > 150 and spoke.ttft_s.notna().all() and (spoke.ttft_s > 0).all()
    assert all(0 < len(lp) <= n for lp, n in zip(spoke.logprobs, spoke.completion_tokens))  # the server counts EOS too
    assert all(len(gaps) == len(lp) - 1 for gaps, lp in zip(spoke.inter_token_s, spoke.logprobs))  # per token, not chunk
    assert (df.attempts > 1).any()


def _kill_when(proc: subprocess.Popen[str], runs: Path, at_least: int, run_dir: Path | None = None) -> Path:
    found = wait_for_rows(runs, at_least, 50, proc, run_dir)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return found


@pytest.mark.slow
def test_kill_9_at_three_moments_then_resume(tmp_path: Path) -> None:
    env = harness_env(HARNESS_SEAL_ROWS="50")
    runs = tmp_path / "runs"
    with serve_process("--latency-ms", "15") as (base_url, _):
        runner = {"concurrency": 8, "timeout_s": 5.0}
        spec = write_spec(tmp_path, base_url, prompts=30, temperatures=[0.0, 0.7, 1.4], repeats=10, runner=runner)
        run_dir = _kill_when(spawn(["run", str(spec), "--out", str(runs), "--quiet"], env), runs, 1)
        for at_least in (120, 400):
            _kill_when(spawn(["run", "--resume", str(run_dir), "--quiet"], env), runs, at_least, run_dir)
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert manifest["status"] == "running"  # it never got to finish
        done = spawn(["-v", "-v", "run", "--resume", str(run_dir)], env)
        out, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    assert last_line(out) == run_dir
    expected = planned_ids(spec)
    df = results(run_dir)
    assert len(expected) == 900 and sorted(df.request_id) == sorted(expected)
    assert (df.status == "ok").all()
    assert duckdb.sql(f"select count(*) from read_parquet('{run_dir}/results/*.parquet')").fetchall() == [(900,)]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["sessions"] == 4
    assert manifest["counts"] == {"requests": 900, "ok": 900, "error": 0}
    assert_no_key(run_dir, out, err)


@pytest.mark.slow
def test_ctrl_c_keeps_rows_exit_130_and_resume_finishes(tmp_path: Path) -> None:
    env = harness_env()
    runs = tmp_path / "runs"
    with serve_process("--latency-ms", "20") as (base_url, _):
        spec = write_spec(tmp_path, base_url, prompts=20, temperatures=[0.0, 1.0], repeats=5, runner={"concurrency": 4})
        proc = spawn(["run", str(spec), "--out", str(runs)], env)
        deadline = time.monotonic() + 60
        while not list(runs.glob("t-*/journal/seg-*.jsonl")) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        run_dir = last_line(out)
        manifest = json.loads((run_dir / "manifest.json").read_text())
        kept = len(results(run_dir))
        assert manifest["status"] == "interrupted" and 0 < kept < 200
        assert manifest["counts"]["ok"] == kept
        assert "Traceback" not in err
        proc = spawn(["run", "--resume", str(run_dir), "--quiet"], env)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and err == ""
    assert sorted(results(run_dir).request_id) == sorted(planned_ids(spec))


@pytest.mark.slow
def test_retry_errors_replaces_error_rows(
    tmp_path: Path, model: NGramModel, key_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve(model, faults="400=0.3") as server:
        spec = write_spec(tmp_path, server.base_url, prompts=10, temperatures=[0.5], repeats=10, runner={"concurrency": 8})
        assert main(["run", str(spec), "--out", str(tmp_path / "runs"), "--quiet", "--no-preflight"]) == 1
        port = server.port
    run_dir = last_line(capsys.readouterr().out)
    before = results(run_dir)
    assert len(before) == 100 and (before.status == "error").sum() > 10
    assert (before[before.status == "error"].attempts == 1).all()  # a 400 is not retried
    with serve(model, port=port):
        assert main(["run", "--resume", str(run_dir), "--quiet"]) == 1  # errors are rows: nothing to send
        assert main(["run", "--resume", str(run_dir), "--retry-errors", "--quiet"]) == 0
    after = results(run_dir)
    assert len(after) == 100 and after.request_id.is_unique and (after.status == "ok").all()
    kept = before[before.status == "ok"].set_index("request_id").content
    assert after.set_index("request_id").content[kept.index].equals(kept)  # ok rows were not re-sent


@pytest.mark.slow
def test_shards_partition_the_sweep_and_merge(
    tmp_path: Path, model: NGramModel, key_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve(model) as server:
        spec = write_spec(tmp_path, server.base_url, prompts=10, temperatures=[0.0, 1.0], repeats=6, runner={"concurrency": 8})
        dirs = []
        for k in (1, 2, 3):
            assert main(["run", str(spec), "--out", str(tmp_path / "runs"), "--shard", f"{k}/3", "--quiet"]) == 0
            dirs.append(last_line(capsys.readouterr().out))
        other = write_spec(tmp_path / "..", server.base_url, prompts=3, temperatures=[0.3], repeats=1, runner={})
        assert main(["run", str(other), "--out", str(tmp_path / "runs"), "--quiet"]) == 0
        other_dir = last_line(capsys.readouterr().out)
    shards = [set(results(d).request_id) for d in dirs]
    assert all(shards) and sum(map(len, shards)) == 120 and set.union(*shards) == set(planned_ids(spec))
    assert shards[1] == set(planned_ids(spec, (2, 3)))
    merged = tmp_path / "merged"
    assert main(["merge", *map(str, dirs), "--out", str(merged)]) == 0
    assert last_line(capsys.readouterr().out) == merged
    df = results(merged)
    assert len(df) == 120 and df.request_id.is_unique and (df.run_id == "merged").all()
    manifest = json.loads((merged / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["counts"] == {"requests": 120, "ok": 120, "error": 0}
    assert main(["merge", str(dirs[0]), str(other_dir), "--out", str(tmp_path / "bad")]) == 2
    assert "spec_hash" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    assert main(["merge", str(dirs[0]), str(dirs[0]), "--out", str(tmp_path / "twice")]) == 2
    assert "given twice" in capsys.readouterr().err and not (tmp_path / "twice").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--resume", "{tmp}/nope"], "no such folder"),
        (["{spec}", "--shard", "0/2"], "--shard"),
        (["{spec}", "--resume", "{tmp}"], "no manifest.json"),  # SPEC beside --resume: the spec given again
        (["{spec}", "--retry-errors"], "--retry-errors"),
        ([], "SPEC"),
        (["{spec}"], ENV),  # the key's variable is not set
        (["{spec}", "--key"], "cannot connect to 127.0.0.1:9"),  # nothing listens there
    ],
)
def test_bad_input_is_one_line_exit_2(
    tmp_path: Path, args: list[str], needle: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    if "--key" in args:
        monkeypatch.setenv(ENV, KEY)
        args = [a for a in args if a != "--key"]
    spec = write_spec(tmp_path, "http://127.0.0.1:9/v1", prompts=1, temperatures=[0.0], repeats=1, runner={})
    filled = [a.format(tmp=tmp_path, spec=spec) for a in args]
    assert main(["run", *filled, "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_limit_and_overrides_are_kept_for_resume(
    tmp_path: Path, model: NGramModel, key_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve(model) as server:
        spec = write_spec(tmp_path, server.base_url, prompts=10, temperatures=[0.0], repeats=3, runner={})
        assert main(["run", str(spec), "--out", str(tmp_path), "--limit", "7", "--concurrency", "2", "--quiet"]) == 0
        run_dir = last_line(capsys.readouterr().out)
        assert main(["run", "--resume", str(run_dir), "--quiet"]) == 0
    assert sorted(results(run_dir).request_id) == sorted(planned_ids(spec)[:7])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["limit"] == 7 and manifest["overrides"] == {"concurrency": 2}
    assert manifest["counts"]["requests"] == 7 and "api_key" not in json.dumps(manifest).replace("api_key_env", "")
