"""The Parquet store: explicit schema, crash-safe journal, atomic parts, compaction."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harness.rundir.journal import read_segment
from harness.rundir.records import SCHEMA
from harness.rundir.store import RunStore


def row(rid: str, status: str = "ok", **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "run_id": "r",
        "request_id": rid,
        "cell_id": "c",
        "prompt_id": "p",
        "sample": 0,
        "status": status,
        "attempts": 1,
        "started_at": datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    }
    base.update(extra)
    return base


def test_all_null_batch_keeps_the_explicit_schema(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.append(row("a", "error", error_type="timeout"))
    store.close()
    [part] = store.parts()
    assert pq.read_schema(part).remove_metadata().equals(SCHEMA.remove_metadata())
    assert pq.read_schema(part).metadata[b"harness_schema_version"] == b"1"
    table = pq.read_table(part)
    assert table.schema.field("temperature").type == pa.float64()
    assert table.schema.field("logprobs").type == SCHEMA.field("logprobs").type


def test_values_round_trip(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    logprobs = [{"token": "a\u2028b", "logprob": -0.5, "top_logprobs": [{"token": "x", "logprob": -1.0}]}]
    store.append(row("a", temperature=0.0, top_k=0, content="<b>é\n</b>", logprobs=logprobs, inter_token_s=[0.1]))
    store.close()
    got = pq.read_table(store.parts()[0]).to_pylist()[0]
    assert got["temperature"] == 0.0 and isinstance(got["temperature"], float)
    assert got["top_k"] == 0 and got["content"] == "<b>é\n</b>" and got["logprobs"] == logprobs
    assert got["started_at"] == datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def test_torn_last_journal_line_is_dropped(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    for rid in "abc":
        store.append(row(rid))
    store.flush()
    segment = next((tmp_path / "journal").iterdir())
    data = segment.read_bytes()
    segment.write_bytes(data[: len(data) - 7])  # kill -9 in the middle of writing "c"
    assert read_segment(segment).column("request_id").to_pylist() == ["a", "b"]
    fresh = RunStore(tmp_path)
    fresh.recover()
    assert sorted(fresh.statuses()) == ["a", "b"]
    assert not list((tmp_path / "journal").iterdir())


def test_segment_already_sealed_is_not_doubled(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.append(row("a"))
    segment = store.rotate()
    assert segment is not None
    copy = segment.read_bytes()
    store.seal(segment)
    segment.write_bytes(copy)  # crash between rename of the part and unlink of the segment
    (tmp_path / "results" / ".part-000009.parquet.tmp").write_bytes(b"half a file")
    RunStore(tmp_path).recover()
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["part-000001.parquet"]
    assert pd.read_parquet(tmp_path / "results").request_id.tolist() == ["a"]


def test_compaction_keeps_the_last_row_per_request(tmp_path: Path) -> None:
    store = RunStore(tmp_path, seal_rows=2)
    for r in (row("a", "error"), row("b"), row("c", "error"), row("d")):
        if store.append(r):
            store.seal(store.rotate())  # type: ignore[arg-type]
    store.append(row("a", "ok"))  # --retry-errors replaced a's error row
    store.close()
    assert len(store.parts()) == 3
    counts = store.compact()
    assert (counts.rows, counts.ok, counts.error) == (4, 3, 1)
    [_part] = store.parts()
    df = pd.read_parquet(tmp_path / "results")
    assert sorted(df.request_id) == ["a", "b", "c", "d"]
    assert df.set_index("request_id").status.to_dict() == {"a": "ok", "b": "ok", "c": "error", "d": "ok"}
    got = duckdb.sql(f"select count(*) from read_parquet('{tmp_path}/results/*.parquet')").fetchall()[0]
    assert got == (4,)
    # appending after compaction keeps numbering monotonic, so later rows still win
    store.append(row("c", "ok"))
    store.close()
    assert store.compact().error == 0


def test_empty_run_is_still_a_readable_dataset(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.close()
    assert store.compact().rows == 0
    df = pd.read_parquet(tmp_path / "results")
    assert len(df) == 0 and list(df.columns) == SCHEMA.names
    assert duckdb.sql(f"select count(*) from read_parquet('{tmp_path}/results/*.parquet')").fetchall()[0] == (0,)


def test_crash_during_compaction_is_repaired_by_the_next_compaction(tmp_path: Path) -> None:
    store = RunStore(tmp_path, seal_rows=2)
    for rid in "abcde":
        if store.append(row(rid)):
            store.seal(store.rotate())  # type: ignore[arg-type]
    store.close()
    old = {p.name: p.read_bytes() for p in store.parts()}
    store.compact()
    for name, data in old.items():  # killed after the rename, before the old parts were removed
        (tmp_path / "results" / name).write_bytes(data)
    fresh = RunStore(tmp_path)
    fresh.recover()
    assert fresh.counts().rows == 5
    fresh.compact()
    assert len(fresh.parts()) == 1 and sorted(pd.read_parquet(tmp_path / "results").request_id) == list("abcde")
