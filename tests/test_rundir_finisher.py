"""harness.rundir.finisher: sealing and compaction in a helper process, with the run's process as
the fallback; `harness run` itself never imports pyarrow for a small run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from harness.rundir.finisher import Finisher
from harness.rundir.store import RunStore

REPO = Path(__file__).resolve().parents[1]


def _journal(run_dir: Path, n: int, *, seal_rows: int = 10_000) -> RunStore:
    store = RunStore(run_dir, seal_rows=seal_rows)
    for i in range(n):
        store.append({"run_id": "r", "request_id": f"q{i}", "cell_id": "c", "prompt_id": "p", "sample": 0,
                      "status": "error" if i % 4 == 0 else "ok", "attempts": 1,
                      "started_at": datetime(2030, 1, 2, tzinfo=UTC)})
    store.rotate()
    return store


def test_the_helper_seals_compacts_and_counts(tmp_path: Path) -> None:
    store = _journal(tmp_path, 10)
    finisher = Finisher.start(tmp_path)
    assert finisher is not None
    counts = finisher.finish()
    assert counts is not None and (counts.rows, counts.ok, counts.error) == (10, 7, 3)
    [part] = store.parts()
    assert pq.read_table(part).column("request_id").to_pylist() == [f"q{i}" for i in range(10)]
    assert not list(store.journal.glob("seg-*"))


def test_a_dead_helper_leaves_the_work_to_the_run(tmp_path: Path) -> None:
    store = _journal(tmp_path, 5)
    finisher = Finisher.start(tmp_path)
    assert finisher is not None
    finisher._proc.kill()
    finisher._proc.wait()
    assert finisher.finish() is None
    assert list(store.journal.glob("seg-*")) and not store.parts()  # untouched: the run does it
    store.recover()
    counts = store.compact()
    assert (counts.rows, counts.ok, counts.error) == (5, 3, 2)


def test_an_abandoned_helper_touches_nothing(tmp_path: Path) -> None:
    """The run's process gone (stdin closed) or the finisher not used: the journal stays for --resume."""
    store = _journal(tmp_path, 3)
    finisher = Finisher.start(tmp_path)
    assert finisher is not None
    assert finisher._proc.stdin is not None
    finisher._proc.stdin.close()
    assert finisher._proc.wait(timeout=60) == 0
    assert list(store.journal.glob("seg-*")) and not store.parts()
    Finisher.start(tmp_path).abandon()  # type: ignore[union-attr]
    assert list(store.journal.glob("seg-*")) and not store.parts()


@pytest.mark.slow
def test_harness_run_never_imports_pyarrow_for_a_small_run(tmp_path: Path) -> None:
    from harness.server.app import ServerThread, reference_app

    (tmp_path / "d.jsonl").write_text("".join(f'{{"prompt": "{i} + 5 ="}}\n' for i in range(30)))
    with ServerThread(reference_app()) as server:
        spec = tmp_path / "s.yaml"
        spec.write_text(f"name: f\ntarget: {{base_url: '{server.base_url}', model: harness/ngram}}\n"
                        "dataset: {path: d.jsonl}\nparams: {max_tokens: 2}\nsweep: {grid: {temperature: [0.0, 1.0]}}\n")
        code = textwrap.dedent(f"""
            import sys
            from harness.cli import main  # main, not run(): `harness run` ends with os._exit (cli.exit_now)
            print("EXIT", main(["run", {str(spec)!r}, "--out", {str(tmp_path / "runs")!r}, "--quiet"]), file=sys.stderr)
            print("IMPORTED", *[m for m in ("pyarrow", "numpy", "pandas") if m in sys.modules], file=sys.stderr)
        """)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert "EXIT 0" in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "IMPORTED"
    [run_dir] = (tmp_path / "runs").iterdir()
    table = pq.read_table(run_dir / "results")
    assert table.num_rows == 60 and set(table.column("status").to_pylist()) == {"ok"}
    assert not (run_dir / "journal").exists()


def test_a_helper_started_before_the_run_directory_exists_is_told_it_at_the_end(tmp_path: Path) -> None:
    """`harness run` starts the helper before loading the spec (its imports overlap the run's start-up)."""
    finisher = Finisher.start()
    assert finisher is not None
    run_dir = tmp_path / "made later"  # a space: the folder is passed as JSON
    store = _journal(run_dir, 6)
    counts = finisher.finish(run_dir)
    assert counts is not None and (counts.rows, counts.ok, counts.error) == (6, 4, 2)
    [part] = store.parts()
    assert pq.read_table(part).num_rows == 6 and not list(store.journal.glob("seg-*"))


def test_a_helper_without_a_run_directory_fails_over_to_the_run(tmp_path: Path) -> None:
    finisher = Finisher.start()
    assert finisher is not None
    assert finisher.finish() is None  # no folder named at start or at the end: the run does the work


def test_the_early_helper_is_stopped_when_the_job_wants_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A session too large for one segment seals as it goes, in its own process: the helper started
    early (before the plan was known) is stopped, not kept."""
    from types import SimpleNamespace

    from harness.runner import sweep

    store = _journal(tmp_path, 2)
    job = SimpleNamespace(finisher=None, store=store, run_dir=tmp_path, pending=5)
    monkeypatch.setattr(sweep, "SEAL_ROWS", 4)
    helper = Finisher.start()
    assert helper is not None
    sweep.start_finisher(job, helper)  # type: ignore[arg-type]
    assert job.finisher is None and helper._proc.poll() is not None  # stopped
    monkeypatch.setattr(sweep, "SEAL_ROWS", 10)
    helper = Finisher.start()
    sweep.start_finisher(job, helper)  # type: ignore[arg-type]
    assert job.finisher is helper and helper is not None and helper._proc.poll() is None  # kept, still waiting
    helper.abandon()
