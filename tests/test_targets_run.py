"""Several targets in one run, over real sockets against `harness serve`: every (target, point,
prompt, sample) row exactly once, a target down for part of the run, resume, shards + merge, and
a replica killed mid-run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness.cli import main
from harness.runner import in_shard
from harness.server.app import ServerThread, create_app
from harness.server.faults import FaultSpec, Latency
from harness.server.ngram import NGramModel
from harness.spec.datasets import load_prompts
from harness.spec.grid import expand_points, plan_requests
from harness.spec.sweepspec import load_spec

KEY = "sk-harness-targets-5d1e7a93c0b24f68"
ENV = "HARNESS_TARGETS_KEY"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model() -> NGramModel:
    return NGramModel()


@pytest.fixture
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, KEY)


def serve(model: NGramModel, *, faults: str | None = None, latency_ms: float = 0, port: int = 0) -> ServerThread:
    app = create_app({"harness/ngram": model}, api_key=KEY, faults=FaultSpec.parse(faults) if faults else None,
                     fault_seed=1, latency=Latency.parse(str(latency_ms)) if latency_ms else None,
                     retry_after_s=0.02, timeout_cap_s=30)
    return ServerThread(app, port=port)


@contextlib.contextmanager
def serve_process(*args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    env = {**os.environ, ENV: KEY, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "serve", "--port", "0", "--api-key-env", ENV, "--retry-after", "0.02", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip(), proc
    finally:
        proc.terminate()
        proc.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_spec(folder: Path, targets: list[dict[str, Any]], *, prompts: int, temperatures: list[float], repeats: int,
               runner: dict[str, Any], name: str = "tg") -> Path:
    data = folder / "prompts.jsonl"
    with data.open("w") as fh:
        for i in range(prompts):
            fh.write(json.dumps({"id": f"q{i}", "prompt": f"Country: France\nCapital: Paris\n\nCountry: Land{i}\nCapital:",
                                 "reference": "Paris"}) + "\n")
    spec = {
        "name": name,
        "targets": [{"model": "harness/ngram", "api_key_env": ENV, **t} for t in targets],
        "dataset": {"path": "prompts.jsonl"},
        "params": {"max_tokens": 4, "logprobs": True, "top_logprobs": 2},
        "sweep": {"grid": {"temperature": temperatures}, "repeats": repeats},
        "runner": runner,
    }
    path = folder / "spec.yaml"
    path.write_text(json.dumps(spec))
    return path


def planned(spec_path: Path, shard: tuple[int, int] | None = None) -> set[tuple[str, str, str, int]]:
    spec = load_spec(spec_path)
    return {(p.target, p.point.point_json, p.prompt.id, p.sample)
            for p in plan_requests(spec, expand_points(spec), load_prompts(spec)) if in_shard(p.request_id, shard)}


def planned_ids(spec_path: Path, shard: tuple[int, int] | None = None) -> list[str]:
    spec = load_spec(spec_path)
    return [p.request_id for p in plan_requests(spec, expand_points(spec), load_prompts(spec)) if in_shard(p.request_id, shard)]


def results(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "results")


def keys(df: pd.DataFrame) -> list[tuple[str, str, str, int]]:
    return list(zip(df.target, df.point_json, df.prompt_id, df["sample"].astype(int), strict=True))


def last_line(text: str) -> Path:
    return Path(text.strip().splitlines()[-1])


def _start_when_rows(server: ServerThread, runs: Path, rows: int) -> None:
    """Start `server` once the run has journaled `rows` rows (so it is down when the run starts)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = next(iter(runs.glob("*/journal")), None)
        if found is not None and _journaled(found.parent) >= rows:
            break
        time.sleep(0.01)
    server.start()


@pytest.mark.slow
def test_three_targets_one_down_for_a_while_every_row_exactly_once_then_resume(
    tmp_path: Path, model: NGramModel, key_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    late_port = free_port()
    late = serve(model, port=late_port)
    with serve(model, faults="429=0.05,500=0.05") as fast, serve(model, latency_ms=120, faults="reset=0.03") as slow:
        targets = [
            {"name": "fast", "base_url": fast.base_url, "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}},
            {"name": "slow", "base_url": slow.base_url, "params": {"max_tokens": 6}, "runner": {"concurrency": 4}},
            {"name": "late", "base_url": f"http://127.0.0.1:{late_port}/v1", "runner": {"concurrency": 2}},  # down
        ]
        spec = write_spec(tmp_path, targets, prompts=12, temperatures=[0.0, 0.8], repeats=3,
                          runner={"concurrency": 8, "timeout_s": 5.0, "max_attempts": 3})
        threading.Thread(target=_start_when_rows, args=(late, tmp_path / "runs", 20), daemon=True).start()
        try:
            code = main(["run", str(spec), "--out", str(tmp_path / "runs"), "--quiet", "--no-preflight"])
            out, err = capsys.readouterr()
            assert code in (0, 1), err
            run_dir = last_line(out)
            df = results(run_dir)
            assert sorted(keys(df)) == sorted(planned(spec))  # every (target, point, prompt, sample) exactly once
            assert len(df) == 3 * 2 * 12 * 3 and df.request_id.is_unique
            assert "late" in err and "warning" in err  # the down target was named, the run went on
            by_target = df.groupby("target")
            assert (by_target.get_group("fast").status == "ok").all() and (by_target.get_group("slow").status == "ok").all()
            assert set(df[df.target == "slow"].max_tokens) == {6} and set(df[df.target == "fast"].max_tokens) == {4}
            assert set(df[df.target == "slow"].replica) == {slow.base_url}
            late_rows = df[df.target == "late"]
            assert (late_rows.status == "ok").any()  # it answered once it was up
            if (late_rows.status == "error").any():
                assert set(late_rows[late_rows.status == "error"].error_type) <= {"connection"}
            manifest = json.loads((run_dir / "manifest.json").read_text())
            assert set(manifest["targets"]) == {"fast", "slow", "late"}  # (sorted on disk; spec order: spec.targets)
            assert manifest["targets"]["fast"]["price"] == {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
            assert manifest["target"]["base_url"] == fast.base_url and manifest["target"]["dialect"] == "seed"
            assert {t["dialect"] for t in manifest["targets"].values()} == {"seed"}
            # resume sends the error rows again (now that every target is up) and nothing else
            assert main(["run", "--resume", str(run_dir), "--retry-errors", "--quiet"]) == 0
            after = results(run_dir)
            assert sorted(keys(after)) == sorted(planned(spec)) and (after.status == "ok").all()
            kept = df[df.status == "ok"].set_index("request_id").content
            assert after.set_index("request_id").content[kept.index].equals(kept)  # ok rows were not sent again
        finally:
            late.stop()
    assert KEY not in out + err


@pytest.mark.slow
def test_shards_and_merge_with_targets(tmp_path: Path, model: NGramModel, key_env: None,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with serve(model) as a, serve(model, latency_ms=20) as b:
        targets = [{"name": "a", "base_url": a.base_url}, {"name": "b", "base_url": b.base_url}]
        spec = write_spec(tmp_path, targets, prompts=6, temperatures=[0.0, 1.0], repeats=3, runner={"concurrency": 8})
        dirs = []
        for k in (1, 2, 3):
            assert main(["run", str(spec), "--out", str(tmp_path / "runs"), "--shard", f"{k}/3", "--quiet"]) == 0
            dirs.append(last_line(capsys.readouterr().out))
    shards = [set(results(d).request_id) for d in dirs]
    assert all(shards) and sum(map(len, shards)) == 72 and set.union(*shards) == set(planned_ids(spec))
    assert shards[1] == set(planned_ids(spec, (2, 3)))
    merged = tmp_path / "merged"
    assert main(["merge", *map(str, dirs), "--out", str(merged)]) == 0
    df = results(merged)
    assert sorted(keys(df)) == sorted(planned(spec)) and df.request_id.is_unique
    assert json.loads((merged / "manifest.json").read_text())["targets"].keys() == {"a", "b"}


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _journaled(run_dir: Path) -> int:
    lines = 0
    for f in (run_dir / "journal").glob("seg-*.jsonl"):
        with contextlib.suppress(FileNotFoundError):
            lines += f.read_bytes().count(b"\n")
    return lines + len(list((run_dir / "results").glob("part-*.parquet"))) * 20


@pytest.mark.slow
def test_kill_9_then_resume_with_targets(tmp_path: Path) -> None:
    env = {**os.environ, ENV: KEY, "HARNESS_SEAL_ROWS": "20", "PYTHONPATH": str(ROOT)}
    runs = tmp_path / "runs"
    with serve_process("--latency-ms", "10") as (url_a, _), serve_process("--latency-ms", "40") as (url_b, _):
        targets = [{"name": "a", "base_url": url_a}, {"name": "b", "base_url": url_b}]
        spec = write_spec(tmp_path, targets, prompts=10, temperatures=[0.0, 0.7], repeats=5, runner={"concurrency": 4})
        proc = _spawn(["run", str(spec), "--out", str(runs), "--quiet"], env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = next(iter(runs.glob("tg-*")), None)
            if found is not None and _journaled(found) >= 60:
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert found is not None
        done = _spawn(["run", "--resume", str(found), "--quiet"], env)
        out, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    assert last_line(out) == found
    df = results(found)
    assert sorted(keys(df)) == sorted(planned(spec)) and len(df) == 200 and (df.status == "ok").all()
    assert json.loads((found / "manifest.json").read_text())["sessions"] == 2


@pytest.mark.slow
def test_replica_killed_mid_run_the_sweep_completes(tmp_path: Path) -> None:
    env = {**os.environ, ENV: KEY, "PYTHONPATH": str(ROOT)}
    runs = tmp_path / "runs"
    with serve_process("--latency-ms", "5") as (u1, _), serve_process("--latency-ms", "5") as (u2, victim), \
            serve_process("--latency-ms", "5") as (u3, _):
        spec = write_spec(tmp_path, [{"name": "pool", "base_url": [u1, u2, u3]}], prompts=40,
                          temperatures=[0.0, 0.5, 1.0, 1.5, 2.0], repeats=10, runner={"concurrency": 24, "timeout_s": 5.0})
        proc = _spawn(["run", str(spec), "--out", str(runs), "--quiet", "--no-preflight"], env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = next(iter(runs.glob("tg-*")), None)
            if found is not None and _journaled(found) >= 300:
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.01)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        out, err = proc.communicate(timeout=300)
    assert proc.returncode in (0, 1), err
    run_dir = last_line(out)
    df = results(run_dir)
    expected = planned_ids(spec)
    assert len(expected) == 2000 and sorted(df.request_id) == sorted(expected)  # every request exactly once
    ok = (df.status == "ok").mean()
    assert ok >= 0.995, df[df.status == "error"].error_type.value_counts()
    answered = df[df.status == "ok"].replica.value_counts()
    assert set(answered.index) == {u1, u2, u3}  # all three answered, the killed one before it died
    after_kill = df[df.started_at > df[df.replica == u2].started_at.max()]
    assert len(after_kill) > 500 and set(after_kill.replica) <= {u1, u3}  # the dead one got no more answers


@pytest.mark.slow
def test_preflight_runs_per_target_and_names_the_refusing_one(tmp_path: Path, model: NGramModel, key_env: None,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from harness.server.misbehave import Misbehaviour

    strict = create_app({"harness/ngram": model}, api_key=KEY, misbehaviour=Misbehaviour.parse(refuse=["temperature=1.5"]))
    with serve(model) as ok, ServerThread(strict) as refusing:
        targets = [{"name": "ok", "base_url": ok.base_url}, {"name": "picky", "base_url": refusing.base_url}]
        spec = write_spec(tmp_path, targets, prompts=2, temperatures=[0.0, 1.5], repeats=1, runner={})
        assert main(["run", str(spec), "--out", str(tmp_path / "runs"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "target picky:" in err and "temperature=1.5" in err and err.count("\n") == 1
        # excluding the value for that target only lets the run through
        data = json.loads(spec.read_text())
        data["sweep"]["exclude"] = [{"target": "picky", "temperature": 1.5}]
        spec.write_text(json.dumps(data))
        assert main(["run", str(spec), "--out", str(tmp_path / "runs"), "--quiet"]) == 0
        df = results(last_line(capsys.readouterr().out))
        assert sorted(keys(df)) == sorted(planned(spec)) and len(df) == 6  # 2 prompts × (2 + 1) points


@pytest.mark.slow
def test_a_broken_target_opens_its_own_breaker_only(tmp_path: Path, model: NGramModel, key_env: None,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    with serve(model) as good, serve(model, faults="500=1.0") as broken:
        targets = [{"name": "good", "base_url": good.base_url}, {"name": "broken", "base_url": broken.base_url}]
        spec = write_spec(tmp_path, targets, prompts=20, temperatures=[0.0, 1.0], repeats=2,
                          runner={"concurrency": 4, "max_attempts": 3})
        assert main(["run", str(spec), "--out", str(tmp_path / "runs"), "--quiet", "--no-preflight"]) == 1
    out, err = capsys.readouterr()
    df = results(last_line(out))
    assert sorted(keys(df)) == sorted(planned(spec))
    assert (df[df.target == "good"].status == "ok").all()  # its lane never stopped
    bad = df[df.target == "broken"]
    assert (bad.status == "error").all() and (bad.error_type == "not_sent").sum() > 40
    assert bad[bad.error_type == "not_sent"].replica.isna().all() and bad[bad.error_type != "not_sent"].replica.notna().all()
    assert "target broken: stopped sending" in err and "target good" not in err


def test_a_targets_own_limits_win_over_the_runners() -> None:
    from harness.runner.dispatch import EngineConfig
    from harness.runner.lanes import lane_config
    from harness.spec.sweepspec import Target

    base = EngineConfig(run_id="r", concurrency=16, rps=50.0, tokens_per_min=None)
    plain = Target(base_url="http://a/v1", model="m")
    assert lane_config(base, plain) == base
    own = Target(base_url="http://a/v1", model="m", runner={"concurrency": 2, "tokens_per_min": 1000})  # type: ignore[arg-type]
    got = lane_config(base, own)
    assert (got.concurrency, got.rps, got.tokens_per_min) == (2, 50.0, 1000)


@pytest.mark.slow
def test_progress_sums_the_lanes_and_counts_each_target(tmp_path: Path, model: NGramModel, key_env: None) -> None:
    """The live line during a run of two targets: concurrency and requests in flight are the totals
    over both lanes (more than either lane alone can have), and each target has its own counts."""
    import io

    from rich.console import Console

    from harness.runner.dispatch import Stats
    from harness.runner.progress import RunProgress, lane_lines, summary
    from harness.runner.session import run_job
    from harness.runner.sweep import new_job

    with serve(model, latency_ms=60) as a, serve(model, latency_ms=60) as b:
        targets = [{"name": "a", "base_url": a.base_url, "runner": {"concurrency": 3}},
                   {"name": "bb", "base_url": b.base_url, "runner": {"concurrency": 5}}]  # fmt: skip
        spec = write_spec(tmp_path, targets, prompts=8, temperatures=[0.0, 1.0], repeats=3, runner={"concurrency": 16})
        job = new_job(load_spec(spec), out=tmp_path / "runs")
        stats = Stats(total=job.pending)
        seen: list[tuple[int, int | None, list[str], str]] = []
        done = threading.Thread(target=run_job, args=(job,), kwargs={"stats": stats, "handle_signals": False})
        done.start()
        while done.is_alive():
            seen.append((stats.limit, stats.inflight, lane_lines(stats), summary(stats)))
            time.sleep(0.005)
        done.join()
    assert job.result is not None and job.result.counts.ok == 2 * 2 * 8 * 3
    assert {limit for limit, inflight, *_ in seen if inflight} == {8}  # while sending: 3 + 5, not one lane's
    peak = max(inflight or 0 for _, inflight, *_ in seen)
    assert 5 < peak <= 8  # both lanes' requests at once: more than the larger lane's 5
    busy = next(line for _, inflight, _, line in seen if inflight == peak)
    assert f"concurrency 8 (in flight {peak})" in busy
    lanes = next(lines for _, inflight, lines, _ in seen if inflight == peak)
    assert [line.split()[0] for line in lanes] == ["a", "bb"]
    assert stats.lanes["a"].done == stats.lanes["bb"].done == 48 and stats.lanes["a"].ok == 48
    assert lane_lines(stats)[1] == "  bb  done 48  ok 48  error 0  concurrency 5 (in flight 0)"
    out = io.StringIO()
    with RunProgress(stats, console=Console(file=out, width=200)):
        pass
    assert "concurrency 8 (in flight 0)" in out.getvalue() and "  a   done 48  ok 48" in out.getvalue()
