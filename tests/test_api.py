"""The public Python API: a declared surface, cheap to import, a sweep run from Python; signals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rundir_helpers import Recorder, write_spec
from serve_helpers import serve_process

import harness
from harness.server.app import ServerThread, create_app
from harness.server.ngram import NGramModel

ROOT = Path(__file__).resolve().parents[1]


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert harness.__all__ == sorted(harness.__all__)
    for name in harness.__all__:
        assert getattr(harness, name) is not None, name
    assert {"run_sweep", "run_sweep_async", "resume_sweep", "load_spec", "plan_sweep", "read_results",
            "summarize_run", "compare_runs"} <= set(harness.__all__)
    with pytest.raises(AttributeError):
        harness.not_a_name  # noqa: B018


def test_import_harness_is_cheap() -> None:
    code = "import sys, harness; print(sorted(m for m in ('pandas', 'pyarrow', 'httpx', 'pydantic', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.fixture(scope="module")
def server(model: NGramModel) -> Iterator[ServerThread]:
    with ServerThread(create_app({"harness/ngram": model})) as thread:
        yield thread


@pytest.mark.slow
def test_a_sweep_from_python_against_harness_serve(tmp_path: Path, server: ServerThread) -> None:
    spec_path = write_spec(tmp_path, prompts=4, repeats=2, base_url=server.base_url,
                           target={"base_url": server.base_url, "model": "harness/ngram"}, scoring=["contains"])
    spec = harness.load_spec(spec_path)
    assert harness.plan_sweep(spec).requests == 16
    seen: list[int] = []
    stats = harness.Stats()
    result = harness.run_sweep(spec, out=tmp_path / "runs", stats=stats,
                               before_first_request=lambda job, endpoint: seen.append(job.pending))
    assert seen == [16] and stats.done == 16 and stats.ok == 16  # the hook ran before the first request
    assert isinstance(result, harness.RunResult) and result.status == "completed" and result.exit_code == 0
    df = harness.read_results(result.run_dir)
    assert len(df) == 16 and df.request_id.is_unique and (df.status == "ok").all()
    summary = harness.summarize_run(result.run_dir)
    assert len(summary) == 2 and "contains_mean" in summary.columns
    verdict = harness.compare_runs(result.run_dir, result.run_dir)
    assert not verdict.failed
    again = asyncio.run(harness.run_sweep_async(spec, out=tmp_path / "runs"))
    assert again.exit_code == 0 and again.run_dir != result.run_dir
    assert harness.read_manifest(again.run_dir).counts.ok == 16


@pytest.mark.slow
def test_cancelling_the_async_run_keeps_rows(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, prompts=50)
    started = asyncio.Event()

    class Slow(Recorder):
        async def handle(self, request: object) -> object:
            started.set()
            await asyncio.sleep(0.05)
            return self.handler(request)  # type: ignore[arg-type]

    import httpx

    slow = Slow()

    async def main() -> None:
        task = asyncio.create_task(harness.run_sweep_async(
            spec, out=tmp_path / "runs", transport=httpx.MockTransport(slow.handle)))  # type: ignore[arg-type]
        await started.wait()
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    run_dir = next((tmp_path / "runs").iterdir())
    manifest = harness.read_manifest(run_dir)
    kept = harness.read_results(run_dir)
    assert manifest.status == "interrupted" and 0 < len(kept) < 300 and manifest.counts.ok == len(kept)
    finished = harness.resume_sweep(run_dir, transport=Recorder().transport())
    assert finished.exit_code == 0 and len(harness.read_results(run_dir)) == 300


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signals_stop_a_run_even_when_sigint_was_ignored(tmp_path: Path, sig: signal.Signals) -> None:
    with serve_process("--latency-ms", "30", keyed=False) as (base_url, _):
        spec = write_spec(tmp_path, prompts=40, base_url=base_url, target={"base_url": base_url, "model": "harness/ngram"})
        command = f'trap "" INT; exec "{sys.executable}" -m harness run "{spec}" --out "{tmp_path / "runs"}"'
        proc = subprocess.Popen(  # `trap "" INT`: SIGINT ignored, as for `cmd &` in a script
            ["sh", "-c", command],
            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 60
        while not list((tmp_path / "runs").glob("t-*/journal/seg-*.jsonl")) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    run_dir = Path(out.strip().splitlines()[-1])
    first = err.splitlines()[0]
    assert str(run_dir) in first and f"harness run --resume {run_dir}" in first  # said when the run starts
    assert f"finish with: harness run --resume {run_dir}" in err.splitlines()[-1]  # and again when stopped
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and 0 < manifest["counts"]["ok"] < 240
    assert "Traceback" not in err


@pytest.mark.slow
def test_report_without_a_folder_goes_inside_the_run_directory(
    tmp_path: Path, server: ServerThread, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    spec = write_spec(tmp_path, prompts=2, repeats=1, target={"base_url": server.base_url, "model": "harness/ngram"})
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(spec), "--out", str(tmp_path / "runs"), "--report", "--quiet"]) == 0
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert (run_dir / "report" / "index.html").exists() and not (tmp_path / "reports").exists()
    assert len(harness.read_results(run_dir)) == 4  # the report folder is not mistaken for results


def test_disk_full_in_the_cli_is_one_line_exit_2(
    tmp_path: Path, server: ServerThread, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    from harness.cli import main
    from harness.rundir.store import RunStore

    real, written = RunStore.append, []

    def append(self: RunStore, row: dict) -> bool:
        written.append(1)
        if len(written) > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, row)

    monkeypatch.setattr(RunStore, "append", append)
    spec = write_spec(tmp_path, prompts=10, target={"base_url": server.base_url, "model": "harness/ngram"})
    assert main(["run", str(spec), "--out", str(tmp_path / "runs"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot write (disk full)" in err and "Traceback" not in err
    run_dir = next((tmp_path / "runs").iterdir())
    manifest = harness.read_manifest(run_dir)
    assert manifest.status == "interrupted" and manifest.reason == "disk full"
