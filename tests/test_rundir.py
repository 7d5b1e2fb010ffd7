"""The run directory: typed manifest, shard resume, `$${VAR}` across resume, foreign files, keys, disk."""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError
from rundir_helpers import Recorder, forget_rows, write_spec

from harness.cli import main
from harness.errors import RunDirError
from harness.rundir.layout import StorageError
from harness.rundir.manifest import Manifest, Shard, read_manifest
from harness.rundir.merge import merge_runs
from harness.rundir.results import read_results, read_table
from harness.rundir.store import RunStore
from harness.runner.session import prepare_resume, run_job, run_sweep
from harness.runner.sweep import in_shard
from harness.spec.datasets import load_prompts
from harness.spec.grid import expand_points, plan_requests
from harness.spec.sweepspec import load_spec


def planned(spec_path: Path, shard: tuple[int, int] | None = None) -> list[str]:
    spec = load_spec(spec_path)
    return [p.request_id for p in plan_requests(spec, expand_points(spec), load_prompts(spec)) if in_shard(p.request_id, shard)]


def test_manifest_is_typed_and_frozen(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    result = run_sweep(spec, out=tmp_path / "runs", shard=(2, 3), transport=Recorder().transport(), check_endpoint=False)
    manifest = read_manifest(result.run_dir)
    assert isinstance(manifest, Manifest) and manifest.shard == Shard(index=2, count=3)
    assert manifest.status == "completed" and manifest.counts.requests == len(planned(spec, (2, 3)))
    with pytest.raises(ValidationError, match="frozen"):
        manifest.status = "failed"  # type: ignore[misc]
    raw = json.loads((result.run_dir / "manifest.json").read_text())
    assert raw["manifest_version"] == 2 and raw["shard"] == {"count": 3, "index": 2}


def test_a_version_1_manifest_still_opens_and_a_newer_one_is_one_line(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    run_dir = run_sweep(spec, out=tmp_path / "runs", transport=Recorder().transport(), check_endpoint=False).run_dir
    raw = json.loads((run_dir / "manifest.json").read_text())
    for key in ("manifest_version", "redacted", "reason", "merged_from"):
        raw.pop(key)
    (run_dir / "manifest.json").write_text(json.dumps(raw))
    assert read_manifest(run_dir).manifest_version == 1
    assert len(read_results(run_dir)) == 60
    raw["manifest_version"] = 99
    (run_dir / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(RunDirError, match="manifest_version: 99 is not a manifest version"):
        read_manifest(run_dir)


@pytest.mark.parametrize(("k", "n"), [(1, 3), (2, 3), (3, 3), (1, 2), (4, 4)])
def test_resume_of_a_shard_sends_only_its_missing_requests(tmp_path: Path, k: int, n: int) -> None:
    spec = write_spec(tmp_path)
    first = run_sweep(spec, out=tmp_path / "runs", shard=(k, n), transport=Recorder().transport(), check_endpoint=False)
    mine = planned(spec, (k, n))
    assert len(planned(spec)) == 60 and sorted(read_results(first.run_dir).request_id) == sorted(mine)
    kept = forget_rows(first.run_dir, keep=len(mine) // 2)
    job = prepare_resume(first.run_dir)
    sent = [p.request_id for p in job.plans()]
    assert sorted(sent) == sorted(set(mine) - set(kept))  # before the fix: all 60 of the sweep
    recorder = Recorder()
    result = run_job(job, transport=recorder.transport())
    assert len(recorder.bodies) == len(sent) and result.exit_code == 0
    assert sorted(read_results(first.run_dir).request_id) == sorted(mine)


@pytest.mark.slow
@pytest.mark.parametrize("n", [2, 3])
def test_merge_of_resumed_shards_has_every_request_once(tmp_path: Path, n: int) -> None:
    spec = write_spec(tmp_path)
    dirs = []
    for k in range(1, n + 1):
        run = run_sweep(spec, out=tmp_path / "runs", shard=(k, n), transport=Recorder().transport(), check_endpoint=False)
        forget_rows(run.run_dir, keep=3)
        run_job(prepare_resume(run.run_dir), transport=Recorder().transport())
        dirs.append(run.run_dir)
    manifest, counts = merge_runs(dirs, tmp_path / "merged")
    df = pd.read_parquet(tmp_path / "merged" / "results")
    assert sorted(df.request_id) == sorted(planned(spec)) and df.request_id.is_unique
    assert manifest.status == "completed" and counts.rows == 60 and manifest.counts.requests == 60


def test_escaped_dollar_sends_the_literal_before_and_after_a_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X", "boom")
    spec = write_spec(tmp_path, params={"max_tokens": 4, "stop": ["$${X}", "${X}"]})
    recorder = Recorder()
    run = run_sweep(spec, out=tmp_path / "runs", transport=recorder.transport(), check_endpoint=False)
    assert {tuple(b["stop"]) for b in recorder.bodies} == {("${X}", "boom")}
    forget_rows(run.run_dir, keep=10)
    monkeypatch.setenv("X", "changed")  # the resumed run sends what the first session sent
    again = Recorder()
    run_job(prepare_resume(run.run_dir), transport=again.transport())
    assert len(again.bodies) == 50 and {tuple(b["stop"]) for b in again.bodies} == {("${X}", "boom")}


def test_the_key_never_enters_what_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_KEY", "ollama")
    monkeypatch.setenv("TOKEN", "s3cr3t-t0ken")
    spec = write_spec(tmp_path, target={
        "base_url": "http://127.0.0.1:9/v1?api-key=${TOKEN}", "model": "x-ollama", "api_key_env": "OLLAMA_KEY",
        "headers": {"X-Auth": "${TOKEN}", "X-Auth-Secret": "${TOKEN}", "X-Title": "ollama-demo"},
    })
    run = run_sweep(spec, out=tmp_path / "runs", transport=Recorder().transport(), check_endpoint=False)
    manifest = read_manifest(run.run_dir)
    assert manifest.target.model == "x-ollama" and manifest.spec["target"]["model"] == "x-ollama"
    assert manifest.spec["target"]["headers"] == {"X-Auth": "***", "X-Auth-Secret": "***", "X-Title": "ollama-demo"}
    assert manifest.target.base_url == "http://127.0.0.1:9/v1?api-key=***"
    for file in run.run_dir.rglob("*"):
        if file.is_file():
            assert b"s3cr3t-t0ken" not in file.read_bytes(), file
    with pytest.raises(RunDirError, match="stored redacted.*harness run SPEC --resume RUN_DIR"):  # one line
        prepare_resume(run.run_dir)


def test_a_redacted_run_resumes_with_its_spec_given_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOKEN", "s3cr3t-t0ken")
    target = {"base_url": "http://127.0.0.1:9/v1", "model": "m", "headers": {"X-Auth": "${TOKEN}"}}
    spec = write_spec(tmp_path, target=target)
    run = run_sweep(spec, out=tmp_path / "runs", transport=Recorder().transport(), check_endpoint=False)
    kept = forget_rows(run.run_dir, keep=10)
    again = Recorder()
    result = run_job(prepare_resume(run.run_dir, spec=spec), transport=again.transport())
    assert result.exit_code == 0 and len(again.bodies) == 50
    rows = read_results(run.run_dir)
    assert len(rows) == 60 and rows["request_id"].is_unique and set(kept) <= set(rows["request_id"])
    for file in run.run_dir.rglob("*"):
        if file.is_file():
            assert b"s3cr3t-t0ken" not in file.read_bytes(), file
    other = write_spec(tmp_path / "other", target=target, temperatures=(0.0, 0.5))
    forget_rows(run.run_dir, keep=10)
    assert main(["run", str(other), "--resume", str(run.run_dir), "--quiet"]) == 2  # another sweep: refused
    err = capsys.readouterr().err
    assert "sends other requests than this run" in err and len(err.strip().splitlines()) == 1
    assert len(read_results(run.run_dir)) == 10  # nothing written


def test_a_key_interpolated_anywhere_is_not_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LONG_KEY", "sk-0123456789abcdef")
    spec = write_spec(tmp_path, target={"base_url": "http://127.0.0.1:9/${LONG_KEY}/v1", "model": "m",
                                        "api_key_env": "LONG_KEY"})
    run = run_sweep(spec, out=tmp_path / "runs", transport=Recorder().transport(), check_endpoint=False)
    manifest = read_manifest(run.run_dir)
    assert manifest.spec["target"]["base_url"] == "***" and manifest.redacted == ["target.base_url"]
    assert b"0123456789abcdef" not in (run.run_dir / "manifest.json").read_bytes()
    assert manifest.target.base_url != "http://127.0.0.1:9/sk-0123456789abcdef/v1"


def test_a_foreign_file_in_results_is_refused_by_name(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    run = run_sweep(spec, out=tmp_path / "runs", transport=Recorder().transport(), check_endpoint=False)
    (run.run_dir / "results" / "notes.txt").write_text("mine")
    for attempt in (lambda: read_results(run.run_dir), lambda: prepare_resume(run.run_dir),
                    lambda: merge_runs([run.run_dir], tmp_path / "m")):
        with pytest.raises(RunDirError, match=r"notes.txt: not a file harness wrote"):
            attempt()
    (run.run_dir / "results" / "notes.txt").unlink()
    pd.DataFrame({"x": [1]}).to_parquet(run.run_dir / "results" / "part-000099.parquet")
    with pytest.raises(RunDirError, match="part-000099.parquet: not a harness results file"):
        prepare_resume(run.run_dir)


@pytest.mark.slow
def test_rows_still_in_the_journal_are_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path)
    run = run_sweep(spec, out=tmp_path / "runs", transport=Recorder().transport(), check_endpoint=False)
    rows = read_table(run.run_dir).to_pylist()
    for part in (run.run_dir / "results").iterdir():
        part.unlink()
    store = RunStore(run.run_dir)  # as a crashed run leaves it: every row only in the journal
    for row in rows:
        store.append(row)
    store.flush()
    assert len(read_results(run.run_dir)) == 60
    assert main(["summarize", str(run.run_dir)]) == 0
    out = capsys.readouterr().out
    assert "no results yet" not in out and "temperature" in out


def test_disk_full_is_one_line_and_the_manifest_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = write_spec(tmp_path, prompts=40)
    written = 0
    real = RunStore.append

    def append(self: RunStore, row: dict) -> bool:
        nonlocal written
        written += 1
        if written > 100:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, row)

    monkeypatch.setattr(RunStore, "append", append)
    monkeypatch.setattr("harness.rundir.store.SEAL_ROWS", 25)
    with pytest.raises(StorageError, match=r"cannot write \(disk full\)"):
        run_sweep(spec, out=tmp_path / "runs", transport=Recorder().transport(), check_endpoint=False)
    run_dir = next((tmp_path / "runs").iterdir())
    manifest = read_manifest(run_dir)
    assert manifest.status == "interrupted" and manifest.reason == "disk full"
    kept = read_results(run_dir)
    assert 0 < len(kept) <= 100 and kept.request_id.is_unique and manifest.counts.ok == len(kept)
    monkeypatch.setattr(RunStore, "append", real)
    result = run_job(prepare_resume(run_dir), transport=Recorder().transport())
    assert result.exit_code == 0 and len(read_results(run_dir)) == 240


def test_unwritable_out_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    spec = write_spec(tmp_path)
    monkeypatch.setattr("harness.runner.session.check_reachable", lambda *a, **k: None)  # no server needed

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Path, "mkdir", refuse)
    code = main(["run", str(spec), "--out", str(tmp_path / "ro")])
    err = capsys.readouterr().err
    assert code == 2 and "read-only file system" in err and len(err.strip().splitlines()) == 1


def test_an_internal_error_is_not_exit_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import summarize

    def boom(args: object) -> int:
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(summarize, "handle", boom)
    code = main(["summarize", "x"])
    err = capsys.readouterr().err
    assert code not in (0, 1, 2, 130) and "internal error" in err and len(err.strip().splitlines()) == 1


EVIL = '''
from pathlib import Path
Path("{marker}").write_text("imported")
def fn(content, reference, row):
    return 1.0
'''


@pytest.mark.parametrize("command", ["summarize", pytest.param("report", marks=pytest.mark.slow), "compare"])
def test_analysis_never_imports_a_scorer_named_by_a_run_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    spec = write_spec(tmp_path)
    run = run_sweep(spec, out=tmp_path / "runs", transport=Recorder().transport(), check_endpoint=False)
    module = f"evil_{command}"
    marker = tmp_path / f"{module}.marker"
    (tmp_path / f"{module}.py").write_text(EVIL.format(marker=marker))
    raw = json.loads((run.run_dir / "manifest.json").read_text())
    raw["spec"]["scoring"] = ["exact_match", f"{module}:fn"]
    (run.run_dir / "manifest.json").write_text(json.dumps(raw))
    monkeypatch.chdir(tmp_path)
    args = {"summarize": ["summarize", str(run.run_dir)],
            "report": ["report", str(run.run_dir), "--out", str(tmp_path / "rep")],
            "compare": ["compare", str(run.run_dir), str(run.run_dir)]}[command]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"--allow-scorer {module}:fn" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists() and module not in sys.modules
    assert main([*args, "--allow-scorer", f"{module}:fn"]) == 0
    assert marker.exists()


def test_resume_in_a_read_only_run_directory_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path)
    run = run_sweep(spec, out=tmp_path / "runs", transport=Recorder().transport(), check_endpoint=False)
    forget_rows(run.run_dir, keep=10)
    before = (run.run_dir / "manifest.json").read_bytes()

    def refuse(path: Path, data: bytes) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("harness.rundir.manifest.write_bytes_atomic", refuse)
    assert main(["run", "--resume", str(run.run_dir), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "read-only file system" in err and len(err.strip().splitlines()) == 1
    assert (run.run_dir / "manifest.json").read_bytes() == before and len(read_results(run.run_dir)) == 10


def test_a_version_1_manifest_with_a_masked_header_is_not_resumed_with_stars(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    run = run_sweep(spec, out=tmp_path / "runs", transport=Recorder().transport(), check_endpoint=False)
    forget_rows(run.run_dir, keep=10)
    raw = json.loads((run.run_dir / "manifest.json").read_text())
    for key in ("manifest_version", "redacted"):
        raw.pop(key)
    raw["spec"]["target"]["headers"] = {"X-Api-Key": "***"}  # what version 1 wrote for a secret header
    (run.run_dir / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(RunDirError, match=r"spec.target.headers.X-Api-Key: was stored redacted"):
        prepare_resume(run.run_dir)


def test_resume_does_not_import_a_scorer_named_by_the_run_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_spec(tmp_path)
    run = run_sweep(spec, out=tmp_path / "runs", transport=Recorder().transport(), check_endpoint=False)
    forget_rows(run.run_dir, keep=10)
    marker = tmp_path / "evil_resume.marker"
    (tmp_path / "evil_resume.py").write_text(EVIL.format(marker=marker))
    raw = json.loads((run.run_dir / "manifest.json").read_text())
    raw["spec"]["scoring"] = ["evil_resume:fn"]
    (run.run_dir / "manifest.json").write_text(json.dumps(raw))
    monkeypatch.chdir(tmp_path)
    result = run_job(prepare_resume(run.run_dir), transport=Recorder().transport())
    assert result.exit_code == 0 and not marker.exists() and "evil_resume" not in sys.modules
    assert read_manifest(run.run_dir).spec["scoring"] == ["evil_resume:fn"]  # kept as stored
