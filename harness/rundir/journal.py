"""Journal lines: written so they can always be read back, read so no line can brick a run.

Writing (`encode_row`): a value the row schema cannot hold — an integer outside int64 (a usage
count of 2^63, an SSE error code `1e300` parsed as an int), a non-finite number where an int is
meant, a lone surrogate — never crashes the run: the row becomes an error row
(`error_type` "unrepresentable") that keeps the request's identity and says which field it was.

Reading (`read_segment`): any line length (a 1,000-token answer with `top_logprobs: 20` is
several MiB) and any torn line anywhere (not only the last) — complete rows are kept, a torn
line is skipped and reported (`JournalRead.torn`); that request is simply sent again on resume.

Writing needs no pyarrow (the int and float columns are named here, checked against the schema
by tests/test_journal.py), so a run imports pyarrow only when it seals its rows.
"""

from __future__ import annotations

import functools
import io
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from harness.spec.parameters import FLOAT_COLUMNS, INT_COLUMNS

if TYPE_CHECKING:
    import pyarrow as pa

    from harness.rundir.fs import RunPath

log = logging.getLogger(__name__)

_INT64 = (-(2**63), 2**63 - 1)
# The schema's int64 and float64 columns (harness.rundir.records), without importing pyarrow.
INT_ROW_COLUMNS = ("sample", *INT_COLUMNS, "http_status", "attempts", "prompt_tokens", "completion_tokens",
                   "response_bytes")
FLOAT_ROW_COLUMNS = (*FLOAT_COLUMNS, "latency_s", "ttft_s")
_INT_COLUMNS = INT_ROW_COLUMNS
_FLOAT_COLUMNS = FLOAT_ROW_COLUMNS
_IDENTITY = ("run_id", "request_id", "cell_id", "prompt_id", "sample")
UNREPRESENTABLE = "unrepresentable"


@dataclass(frozen=True)
class _Columns:
    names: frozenset[str]
    strings: tuple[str, ...]
    times: tuple[str, ...]
    required: tuple[str, ...]


@functools.cache
def _columns() -> _Columns:
    """What the schema says of its columns (imports pyarrow: only error rows and reading need it)."""
    import pyarrow as pa

    from harness.rundir.records import SCHEMA

    return _Columns(
        names=frozenset(SCHEMA.names),
        strings=tuple(f.name for f in SCHEMA if pa.types.is_string(f.type)),
        times=tuple(f.name for f in SCHEMA if pa.types.is_timestamp(f.type)),
        required=tuple(f.name for f in SCHEMA if not f.nullable),
    )


@dataclass
class JournalRead:
    """The rows recovered from a segment and the line numbers skipped as torn or invalid."""

    table: pa.Table
    torn: list[int] = field(default_factory=list)


def _problem(row: dict[str, Any]) -> str | None:
    """The first field of `row` the schema cannot hold as is, with why; None when it fits."""
    get = row.get
    low, high = _INT64
    for name in _INT_COLUMNS:  # per row: the common values (None, a plain int in range) cost one test
        value = get(name)
        if value is None or (value.__class__ is int and low <= value <= high):
            continue
        reason = _int_problem(name, value)
        if reason is not None:
            return reason
    for name in _FLOAT_COLUMNS:
        value = get(name)
        if value is not None and value.__class__ is not float and not isinstance(value, (int, float)):
            return f"{name} {str(value)[:40]!r} is not a number"
    return None


def _int_problem(name: str, value: Any) -> str | None:
    """Why `value` cannot be stored in the int64 column `name`; None when it can (a bool, an integral float)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        return f"{name} {str(value)[:40]!r} is not an integer"
    if not _INT64[0] <= value <= _INT64[1]:
        return f"{name} {str(value)[:40]} does not fit in 64 bits"
    return None


def _storable(name: str, value: Any) -> bool:
    """Whether a scalar field can be kept as is in an error row."""
    if value is None:
        return True
    if name in _columns().strings:
        return isinstance(value, str)
    if name in _columns().times:
        return isinstance(value, datetime)
    if name in _INT_COLUMNS or name in _FLOAT_COLUMNS:
        return not isinstance(value, bool) and _problem({name: value}) is None
    return False


def _error_row(row: dict[str, Any], reason: str) -> dict[str, Any]:
    """The error row that replaces a row the schema cannot hold (identity, params, timing kept)."""
    names = _columns().names
    out = {k: v for k, v in row.items() if k in names and _storable(k, v)}
    out.update(status="error", error_type=UNREPRESENTABLE, error_message=f"the answer cannot be stored: {reason}")
    out.setdefault("attempts", 1)
    out.setdefault("sample", 0)
    return out


def fit_row(row: dict[str, Any]) -> dict[str, Any]:
    """`row` when the schema can hold it, else its error row."""
    reason = _problem(row)
    return row if reason is None else _error_row(row, reason)


def encode_row(row: dict[str, Any]) -> bytes:
    """One journal line (newline-terminated) for `row`; never raises on a bad value."""
    row = fit_row(row)
    try:
        return orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NAIVE_UTC)
    except (orjson.JSONEncodeError, TypeError) as exc:
        clean = _error_row(row, f"not JSON-encodable ({str(exc)[:80]})")
        clean = {k: (v.encode("utf-8", "replace").decode() if isinstance(v, str) else v) for k, v in clean.items()}
        return orjson.dumps(clean, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NAIVE_UTC)


def _parse_line(line: bytes) -> dict[str, Any] | None:
    try:
        row = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(row, dict) or any(row.get(k) is None for k in _columns().required):
        return None
    if not all(isinstance(row.get(k), str) for k in _IDENTITY[:4]):
        return None
    for name in _columns().times:
        if isinstance(row.get(name), str):
            row[name] = _timestamp(row[name])
    return fit_row(row)


def _timestamp(text: str) -> datetime | None:
    """A journal timestamp (ISO 8601, UTC) back as an aware datetime; None when unreadable."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _table(rows: list[dict[str, Any]]) -> tuple[pa.Table, list[int]]:
    """Rows as a table; a row Arrow still refuses (a nested type mismatch) is dropped and reported."""
    import pyarrow as pa

    from harness.rundir.kernels import empty_table
    from harness.rundir.records import SCHEMA, rows_to_table

    try:
        return rows_to_table(rows), []
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        pass
    good: list[pa.Table] = []
    bad: list[int] = []
    for i, row in enumerate(rows):
        try:
            good.append(rows_to_table([row]))
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            try:
                good.append(rows_to_table([_error_row(row, "a field has the wrong type")]))
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                bad.append(i)
    return (pa.concat_tables(good) if good else empty_table(SCHEMA)), bad


def _objects_only(data: bytes) -> bool:
    """Every line looks like one JSON object (Arrow's reader crashes the process on a bare `null`)."""
    return all(line.startswith(b"{") and line.endswith(b"}") for line in data.split(b"\n") if line)


def _fast(data: bytes) -> pa.Table | None:
    """Arrow's JSON reader over the whole segment as one block (so no line can straddle blocks)."""
    import pyarrow as pa
    import pyarrow.json as pajson

    from harness.rundir.kernels import empty_table, with_schema
    from harness.rundir.records import SCHEMA

    if not data:
        return empty_table(SCHEMA)
    if not _objects_only(data):
        return None
    try:
        options = pajson.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="ignore")
        read = pajson.ReadOptions(block_size=min(len(data) + 1, 2**31 - 1), use_threads=False)
        table = pajson.read_json(io.BytesIO(data), read_options=read, parse_options=options)
        table = with_schema(table.select(SCHEMA.names), SCHEMA)
        table.validate(full=True)  # Arrow's JSON reader lets invalid UTF-8 through; this catches it
    except (pa.ArrowException, ValueError, OverflowError):
        return None
    return None if any(table.column(k).null_count for k in _columns().required) else table


_CHUNK_LINES = 256


def _slow(lines: list[tuple[int, bytes]]) -> tuple[pa.Table, list[int]]:
    """Line by line: every row that parses and fits; the numbers of the lines that do not."""
    rows: list[dict[str, Any]] = []
    numbers: list[int] = []
    torn: list[int] = []
    for number, line in lines:
        row = _parse_line(line)
        if row is None:
            torn.append(number)
        else:
            rows.append(row)
            numbers.append(number)
    table, bad = _table(rows)
    return table, sorted(torn + [numbers[i] for i in bad])


def read_segment_rows(data: bytes, name: str = "journal") -> JournalRead:
    """Every complete row of journal bytes; torn or invalid lines skipped and reported.

    Arrow's reader takes the segment (or, when some line is bad, each chunk of 256 lines) as one
    block, so no line is too long for it; only a chunk it refuses is parsed line by line.
    """
    import pyarrow as pa

    from harness.rundir.kernels import empty_table
    from harness.rundir.records import SCHEMA

    end = data.rfind(b"\n") + 1
    tail_number = data.count(b"\n", 0, end) + 1
    tail: pa.Table | None = None
    torn: list[int] = []
    if data[end:].strip():  # a kill -9 tears the last line (kept if it happens to be whole)
        tail, torn = _slow([(tail_number, data[end:])])
    fast = _fast(data[:end])
    if fast is not None:
        tables = [fast]
    else:
        lines = [(n, line) for n, line in enumerate(data[:end].split(b"\n"), 1) if line.strip()]
        tables = []
        for start in range(0, len(lines), _CHUNK_LINES):
            chunk = lines[start : start + _CHUNK_LINES]
            table = _fast(b"\n".join(line for _, line in chunk) + b"\n")
            if table is None:
                table, bad = _slow(chunk)
                torn += bad
            tables.append(table)
    if tail is not None and tail.num_rows:
        tables.append(tail)
    torn.sort()
    if torn:
        tail_only = torn == [tail_number]
        (log.info if tail_only else log.warning)(
            "journal %s: %d torn or invalid line(s) skipped (first: line %d); "
            "those requests are sent again on resume", name, len(torn), torn[0])
    table = pa.concat_tables(tables) if len(tables) != 1 else tables[0]
    return JournalRead(table=table if tables else empty_table(SCHEMA), torn=torn)


def read_segment(path: RunPath) -> pa.Table:
    """The complete rows of a journal segment (a local file or an object) as a table with the explicit schema."""
    return read_segment_rows(path.read_bytes(), path.name).table


__all__ = ["UNREPRESENTABLE", "JournalRead", "encode_row", "fit_row", "read_segment", "read_segment_rows"]
