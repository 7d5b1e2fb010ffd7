"""The few Arrow operations the run directory needs, without importing pandas or `pyarrow.compute`.

Why: `harness run` pays for every import at its end (compaction) and `harness --resume` at its
start. `pyarrow.compute` builds Python wrappers for ~300 kernels when imported (~45 ms of CPU
here), and pyarrow imports pandas (~0.4 s) the first time it converts a Python object — a list,
a `range`, a scalar such as the `"ok"` of `pc.equal(status, "ok")`, or a `group_by` — and
`pq.read_table` imports it through `pyarrow.dataset`. The functions below call the same C++
kernels through `pyarrow._compute.call_function` and build arrays from buffers, so a fresh run
is sealed, compacted and counted without either import (`tests/test_rundir_kernels.py` checks).
"""

from __future__ import annotations

from array import array
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import _compute

Column: TypeAlias = pa.Array | pa.ChunkedArray


def call(name: str, args: list[Any], options: Any = None) -> Any:
    """An Arrow compute kernel by name (what `pyarrow.compute.<name>` calls)."""
    return _compute.call_function(name, args, options)


def int64_range(start: int, stop: int) -> pa.Array:
    """`pa.array(range(start, stop), pa.int64())` without the Python-object conversion."""
    values = array("q", range(start, stop))
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def all_distinct(values: Column) -> bool:
    """Whether no value occurs twice (nulls: none expected; counted as one value)."""
    return int(call("count_distinct", [values], _compute.CountOptions(mode="all")).as_py()) == len(values)


def value_counts(values: Column) -> dict[Any, int]:
    """value → how many times it occurs."""
    counted = call("value_counts", [values])
    return dict(zip(counted.field(0).to_pylist(), counted.field(1).to_pylist()))


def is_in(values: Column, value_set: pa.Array) -> Any:
    """A boolean mask: whether each value is in `value_set`."""
    return call("is_in", [values], _compute.SetLookupOptions(value_set))


def filter_table(table: pa.Table, mask: Any) -> pa.Table:
    """The rows of `table` where `mask` is true."""
    result: pa.Table = call("filter", [table, mask])
    return result


def take(values: Column, indices: pa.Array) -> Any:
    """`values` at `indices`."""
    return call("take", [values, indices])


def empty_table(schema: pa.Schema) -> pa.Table:
    """A table with no rows (`schema.empty_table()` imports pandas)."""
    return pa.Table.from_batches([], schema=schema)


def with_schema(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` (columns in `schema`'s order, same names) carrying `schema`: a column is cast only
    when its type differs (`Table.cast` imports `pyarrow.compute` even when nothing changes)."""
    columns = [
        column if column.type == field.type else column.cast(field.type)
        for column, field in zip(table.columns, schema, strict=True)
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def conform(file: pq.ParquetFile, schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
    """A Parquet file's `columns` (default: all of `schema`'s) with `schema`'s types, what
    `pq.read_table(path, columns=..., schema=schema)` gives: a column the file lacks is all null."""
    names = list(schema.names) if columns is None else columns
    present = set(file.schema_arrow.names)
    table = file.read(columns=[name for name in names if name in present], use_threads=False)
    rows = file.metadata.num_rows
    arrays = [
        table.column(name) if name in present else pa.chunked_array([pa.nulls(rows, schema.field(name).type)])
        for name in names
    ]
    target = schema if columns is None else pa.schema([schema.field(name) for name in names])
    return with_schema(pa.Table.from_arrays(arrays, names=names), target)


__all__ = [
    "all_distinct",
    "call",
    "conform",
    "empty_table",
    "filter_table",
    "int64_range",
    "is_in",
    "take",
    "value_counts",
    "with_schema",
]
