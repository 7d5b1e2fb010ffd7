"""harness.rundir.kernels: the Arrow operations of sealing and compaction, checked against
pyarrow.compute / pq.read_table, and the end of a fresh run without pandas or pyarrow.compute."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harness.rundir import kernels
from harness.rundir.records import SCHEMA
from harness.rundir.store import RunStore

REPO = Path(__file__).resolve().parents[1]


def test_kernels_match_pyarrow_compute() -> None:
    ids = pa.chunked_array([["a", "b"], ["c", "a"]], pa.string())
    assert kernels.int64_range(3, 7).equals(pa.array(range(3, 7), pa.int64()))
    assert kernels.int64_range(5, 5).equals(pa.array([], pa.int64()))
    assert kernels.all_distinct(ids) is False
    assert kernels.all_distinct(pa.chunked_array([["a"], ["b", "c"]], pa.string())) is True
    assert kernels.value_counts(ids) == {"a": 2, "b": 1, "c": 1}
    mask = kernels.is_in(kernels.int64_range(0, 4), pa.array([1, 3], pa.int64()))
    assert mask.equals(pc.is_in(pa.array(range(4)), value_set=pa.array([1, 3])))
    table = pa.table({"x": ids})
    assert kernels.filter_table(table, pa.chunked_array([mask])).column("x").to_pylist() == ["b", "a"]
    assert kernels.take(ids, pa.array([3, 2], pa.int64())).to_pylist() == ["a", "c"]
    empty = kernels.empty_table(SCHEMA)
    assert empty.num_rows == 0 and empty.schema.equals(SCHEMA, check_metadata=True)


def test_conform_reads_like_read_table_with_the_schema(tmp_path: Path) -> None:
    """An old part without some columns and with another integer width reads as pq.read_table(schema=)."""
    path = tmp_path / "old.parquet"
    pq.write_table(pa.table({
        "run_id": ["r"], "request_id": ["q"], "cell_id": ["c"], "prompt_id": ["p"],
        "sample": pa.array([0], pa.int32()), "status": ["ok"], "attempts": pa.array([1], pa.int64()),
        "not_ours": [1.5],
    }), path)
    got = kernels.conform(pq.ParquetFile(path), SCHEMA)
    want = pq.read_table(path, schema=SCHEMA)
    assert got.schema.equals(SCHEMA, check_metadata=True)
    assert got.to_pylist() == want.to_pylist()
    some = kernels.conform(pq.ParquetFile(path), SCHEMA, ["status", "content", "request_id"])
    assert some.column_names == ["status", "content", "request_id"]
    assert some.to_pylist() == [{"status": "ok", "content": None, "request_id": "q"}]


def _row(rid: str, status: str = "ok") -> dict[str, object]:
    return {"run_id": "r", "request_id": rid, "cell_id": "c", "prompt_id": "p", "sample": 0, "status": status,
            "attempts": 1, "started_at": datetime(2030, 1, 2, tzinfo=UTC), "temperature": 0.5}


def test_compaction_of_several_parts_keeps_every_distinct_row(tmp_path: Path) -> None:
    store = RunStore(tmp_path, seal_rows=3)
    for i in range(8):
        if store.append(_row(f"r{i}", "error" if i == 5 else "ok")):
            segment = store.rotate()
            assert segment is not None
            store.seal(segment)
    store.close()
    assert len(store.parts()) == 3
    counts = store.compact()
    [part] = store.parts()
    table = pq.read_table(part)
    assert table.column("request_id").to_pylist() == [f"r{i}" for i in range(8)]
    assert (counts.rows, counts.ok, counts.error) == (8, 7, 1)
    assert table.schema.remove_metadata().equals(SCHEMA.remove_metadata())


def test_a_fresh_run_is_sealed_compacted_and_counted_without_pandas(tmp_path: Path) -> None:
    """The end of `harness run` must not pay for importing pandas (~0.4 s) or pyarrow.compute."""
    code = textwrap.dedent(f"""
        import sys
        from datetime import UTC, datetime
        from harness.rundir.store import RunStore
        store = RunStore({str(tmp_path)!r}, seal_rows=50)
        for i in range(120):
            row = {{"run_id": "r", "request_id": f"q{{i}}", "cell_id": "c", "prompt_id": "p", "sample": 0,
                    "status": "ok" if i % 7 else "error", "attempts": 1,
                    "started_at": datetime(2030, 1, 2, tzinfo=UTC), "logprobs": [{{"token": "a", "logprob": -0.5,
                    "top_logprobs": [{{"token": "a", "logprob": -0.5}}]}}]}}
            if store.append(row):
                store.seal(store.rotate())
        store.close()
        store.recover()
        counts = store.compact()
        print(counts.rows, counts.ok, counts.error, len(store.parts()))
        print(*[m for m in ("pandas", "pyarrow.compute", "pyarrow.dataset") if m in sys.modules])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    first, imported = out.stdout.splitlines()
    assert first == "120 102 18 1"
    assert imported == ""
