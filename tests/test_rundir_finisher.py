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


def _row(i: int) -> dict[str, object]:
    return {"run_id": "r", "request_id": f"q{i}", "cell_id": "c", "prompt_id": "p", "sample": 0,
            "status": "ok", "attempts": 1, "started_at": datetime(2030, 1, 2, tzinfo=UTC)}


def test_a_watch_parses_complete_lines_as_the_journal_grows_and_seals_like_the_store(tmp_path: Path) -> None:
    from harness.rundir.finisher import _Watch

    store = RunStore(tmp_path)
    watch = _Watch(tmp_path)
    watch.poll()  # no segment yet: waits
    assert watch.usable and watch.segment is None
    for i in range(3):
        store.append(_row(i))
    store.flush()
    watch.poll()
    assert watch.segment is not None and sum(t.num_rows for t in watch.tables) == 3
    parsed = watch.offset
    assert parsed == watch.segment.stat().st_size
    with open(watch.segment, "ab") as fh:  # the run's buffer flushed in the middle of a line
        fh.write(b'{"run_id": "r", "request_id": "q3"')
    watch.poll()
    assert watch.offset == parsed  # half a line is left for later
    with open(watch.segment, "ab") as fh:
        fh.write(b', "cell_id": "c", "prompt_id": "p", "sample": 0, "status": "error", "attempts": 2,'
                 b' "started_at": "2030-01-02T00:00:00+00:00"}\n')
    store.append(_row(4))
    segment = store.rotate()
    watch.seal(store)
    assert segment is not None and not segment.exists()
    [part] = store.parts()
    table = pq.read_table(part)
    assert table.column("request_id").to_pylist() == ["q0", "q1", "q2", "q3", "q4"]
    assert table.column("status").to_pylist() == ["ok", "ok", "ok", "error", "ok"]
    store.recover()
    counts = store.compact()
    assert (counts.rows, counts.ok, counts.error) == (5, 4, 1)


def test_a_watch_leaves_a_segment_the_run_sealed_or_several_segments_to_recovery(tmp_path: Path) -> None:
    from harness.rundir.finisher import _Watch

    store = RunStore(tmp_path, seal_rows=2)
    watch = _Watch(tmp_path)
    store.append(_row(0))
    store.flush()
    watch.poll()
    store.append(_row(1))
    first = store.rotate()
    assert first is not None
    store.seal(first)  # the run sealed it itself (a session larger than one segment)
    store.append(_row(2))
    store.rotate()
    watch.poll()
    watch.seal(store)  # nothing: the segment it read is gone
    assert not watch.usable and len(list(store.journal.glob("seg-*"))) == 1
    store.recover()
    assert store.compact().rows == 3
    other = tmp_path / "other"
    two = RunStore(other, seal_rows=1)
    for i in range(2):  # two segments before the helper first looks: it leaves them to recover()
        two.append(_row(i))
        two.rotate()
    assert len(list(two.journal.glob("seg-*"))) == 2
    late = _Watch(other)
    late.poll()
    assert not late.usable


@pytest.mark.slow
def test_a_watching_helper_ends_with_every_row(tmp_path: Path) -> None:
    """The helper told to watch reads the journal while rows come in (its polls happen whenever they
    happen); what it seals at the end is every row, in order, as the store's own seal would."""
    import time

    finisher = Finisher.start()
    assert finisher is not None
    store = RunStore(tmp_path)
    finisher.watch(tmp_path)
    for batch in range(3):
        for i in range(batch * 40, batch * 40 + 40):
            store.append(_row(i))
        store.flush()
        time.sleep(0.3)  # let it poll (not asserted: the result is the same either way)
    store.rotate()
    counts = finisher.finish(tmp_path)
    assert counts is not None and (counts.rows, counts.ok, counts.error) == (120, 120, 0)
    [part] = store.parts()
    assert pq.read_table(part).column("request_id").to_pylist() == [f"q{i}" for i in range(120)]
    assert not list(store.journal.glob("seg-*"))
