"""The Parquet store of a run: crash-safe journal → sealed part files → compacted dataset.

    RUN_DIR/journal/seg-000007.jsonl      rows as they finish, one JSON line each (append only)
    RUN_DIR/results/part-000007.parquet   a sealed segment (written to a dot-tmp file, fsynced, renamed)

A segment and its part share a number, so recovery knows whether a segment was already sealed.
A `kill -9` can only tear the last line of the newest segment; recovery drops it (that request
is simply sent again). Compaction at the end streams the parts into one file, keeping the *last*
row of each `request_id` (a re-sent error row is replaced by its retry), then removes the
parts it replaced. Every file uses the explicit schema of `harness.rundir.records` — never inferred.

Start-up and the end of a run stay proportionate: this module reads parts with
`pq.ParquetFile` (not `pq.read_table`, whose dataset layer imports pandas) and calls Arrow
kernels through `harness.rundir.kernels` (not `pyarrow.compute`, which builds ~300 Python
wrappers when imported). A run whose request ids are all distinct — every fresh run — is
compacted and counted without pandas; only a run with re-sent rows (resume, `--retry-errors`)
takes the group-by path, which imports it.

On an object store (`ObjectRunStore`, for `s3://`, `gs://`, `az://` run directories) there is no
append and no rename, so the journal is buffered in memory and written as numbered, immutable
segment objects every HARNESS_OBJECT_FLUSH_ROWS rows (default 1,000) or
HARNESS_OBJECT_FLUSH_S seconds (default 5), by one upload thread that never blocks the sweep.
Sealing writes the segments since the last seal as one part named after the *last* of them
(`part-000012.parquet` holds segments …–12): on recovery a segment whose number is at most the
highest part's was sealed already and is deleted, the others are sealed. A `kill -9` loses at
most the rows of the last flush interval; they have no row, so `--resume` sends them again.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from harness.errors import RunDirError
from harness.rundir.fs import ObjectPath, RunPath, parquet_file, parquet_writer
from harness.rundir.journal import encode_row
from harness.rundir.layout import (
    JOURNAL,
    PART,
    RESULTS,
    SEGMENT,
    commit_tmp,
    numbered,
    tmp_for,
)

if TYPE_CHECKING:  # pyarrow is imported when rows are sealed, not when a run starts writing them
    import pyarrow as pa

log = logging.getLogger(__name__)
_SEG = SEGMENT
_PART = PART
_numbered = numbered


def _seal_rows_default() -> int:
    """Rows per part file: 10,000, or HARNESS_SEAL_ROWS (a tuning knob, used by the crash tests)."""
    raw = os.environ.get("HARNESS_SEAL_ROWS", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else 10_000


SEAL_ROWS = _seal_rows_default()
SEAL_BYTES = 32 * 1024 * 1024
ROW_GROUP = 10_000


@dataclass(frozen=True)
class RowCounts:
    """Rows in the results: distinct request ids, of which ok and error."""

    rows: int
    ok: int
    error: int


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        value = float(raw)
    except ValueError:
        return default
    return value if value > 0 else default


def write_table_atomic(table: pa.Table, path: RunPath) -> None:
    """Write a Parquet file so it is either absent or complete: tmp + fsync + rename."""
    from harness.rundir.records import SCHEMA

    tmp = tmp_for(path)
    try:
        with parquet_writer(tmp, SCHEMA) as writer:
            writer.write_table(table, row_group_size=ROW_GROUP)
        commit_tmp(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class RunStore:
    """Writes and reads the rows of one run directory. Not thread-safe except `seal`."""

    def __init__(self, run_dir: Path, *, seal_rows: int = SEAL_ROWS, seal_bytes: int = SEAL_BYTES) -> None:
        self.run_dir: RunPath = Path(run_dir)
        self.journal: RunPath = self.run_dir / JOURNAL
        self.results: RunPath = self.run_dir / RESULTS
        self._seal_rows = seal_rows
        self._seal_bytes = seal_bytes
        self._file: BinaryIO | None = None
        self._segment: RunPath | None = None
        self._rows = 0
        self._bytes = 0
        self.journal.mkdir(parents=True, exist_ok=True)
        self.results.mkdir(parents=True, exist_ok=True)

    # -- writing -------------------------------------------------------------------------

    def _next_number(self) -> int:
        used = list(_numbered(self.journal, _SEG)) + list(_numbered(self.results, _PART))
        return max(used, default=0) + 1

    def _open_segment(self) -> None:
        assert isinstance(self.journal, Path)  # appending is for local folders (ObjectRunStore buffers)
        segment = self.journal / f"seg-{self._next_number():06d}.jsonl"
        self._segment = segment
        self._file = open(segment, "ab", buffering=256 * 1024)  # noqa: SIM115 - closed in rotate
        self._rows = 0
        self._bytes = 0

    def append(self, row: dict[str, Any]) -> bool:
        """Journal one finished row. True when the segment is full and should be rotated."""
        if self._file is None:
            self._open_segment()
        assert self._file is not None
        line = encode_row(row)
        self._file.write(line)
        self._rows += 1
        self._bytes += len(line)
        return self._rows >= self._seal_rows or self._bytes >= self._seal_bytes

    def flush(self) -> None:
        """Hand buffered rows to the OS (a killed process then loses none of them)."""
        if self._file is not None:
            self._file.flush()

    def rotate(self) -> RunPath | None:
        """Close the current segment and return it for sealing; the next append opens a new one.

        Not fsynced (10-20 ms on this class of disk, at the end of every run): the segment only
        has to outlive its part file, which `seal` fsyncs (file and folder) before deleting the
        segment. A killed process loses nothing either way (the rows are in the page cache); a
        crash of the machine before the seal can lose the journal's last rows with or without an
        fsync here, as it can during the run (rows are flushed, not fsynced, as they come): those
        requests have no row and `--resume` sends them."""
        if self._file is None:
            return None
        self._file.close()
        segment, self._file, self._segment = self._segment, None, None
        return segment

    def seal(self, segment: RunPath) -> RunPath | None:
        """Turn a closed journal segment into its part file and delete the segment."""
        from harness.rundir.journal import read_segment

        match = _SEG.match(segment.name)
        if match is None:
            raise RunDirError("not a journal segment", file=str(segment))
        part = self.results / f"part-{int(match.group(1)):06d}.parquet"
        if not part.exists():
            table = read_segment(segment)
            if table.num_rows:
                write_table_atomic(table, part)
        segment.unlink(missing_ok=True)
        return part if part.exists() else None

    def close(self) -> None:
        """Seal whatever the journal still holds."""
        segment = self.rotate()
        if segment is not None:
            self.seal(segment)

    # -- recovery and reading ------------------------------------------------------------

    def recover(self) -> None:
        """After a crash: drop temporary files, seal every leftover segment (torn tail ignored)."""
        for folder in (self.journal, self.results):
            for tmp in folder.glob(".*.tmp"):  # only ours: dot, name, .tmp
                tmp.unlink(missing_ok=True)
        for segment in _numbered(self.journal, _SEG).values():
            self.seal(segment)

    def parts(self) -> list[RunPath]:
        """Sealed part files in write order (RunDirError on a file harness did not write)."""
        from harness.rundir.results import part_files

        return part_files(self.run_dir)

    def statuses(self) -> dict[str, str]:
        """request_id → status of its latest row, over all sealed parts."""
        latest: dict[str, str] = {}
        for part in self.parts():
            table = _read_part(part, ["request_id", "status"])
            latest.update(zip(table.column(0).to_pylist(), table.column(1).to_pylist()))
        return latest

    def compact(self) -> RowCounts:
        """Stream all parts into one, keeping the last row per request_id; remove the old parts."""
        from harness.rundir import kernels
        from harness.rundir.records import SCHEMA

        parts = self.parts()
        if not parts:
            write_table_atomic(kernels.empty_table(SCHEMA), self.results / "part-000001.parquet")
            return RowCounts(0, 0, 0)
        sizes = [_num_rows(p) for p in parts]
        ids = _column(parts, "request_id")
        if kernels.all_distinct(ids):  # a fresh run: nothing to drop (and no pandas import)
            if len(parts) > 1:
                self._rewrite(parts, sizes, None)
            return self._counts_distinct()
        keep = _last_rows(ids)
        if len(parts) > 1 or len(keep) != sizes[0]:
            self._rewrite(parts, sizes, keep)
        return self.counts()

    def _rewrite(self, parts: list[RunPath], sizes: list[int], keep: pa.Array | None) -> None:
        """Copy the parts into one new part (only the rows numbered in `keep`, when given)."""
        import pyarrow as pa

        from harness.rundir import kernels
        from harness.rundir.records import SCHEMA

        target = self.results / f"part-{self._next_number():06d}.parquet"
        tmp = tmp_for(target)
        offset = 0
        try:
            with parquet_writer(tmp, SCHEMA) as writer:
                for part, size in zip(parts, sizes):
                    table = _read_part(part, None)
                    if keep is not None:
                        rows = kernels.int64_range(offset, offset + size)
                        table = kernels.filter_table(table, kernels.is_in(rows, keep))
                    offset += size
                    if table.num_rows:
                        writer.write_table(table, row_group_size=ROW_GROUP)
                    del table
                    pa.default_memory_pool().release_unused()
            commit_tmp(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk must not also keep the half-written copy
            raise
        for part in parts:
            part.unlink()
        log.info("compacted %d part files into %s", len(parts), target.name)

    def counts(self) -> RowCounts:
        """Distinct request ids and the status of their latest row (computed in Arrow)."""
        import pyarrow as pa

        from harness.rundir import kernels

        parts = self.parts()
        if not parts:
            return RowCounts(0, 0, 0)
        tables = [_read_part(p, ["request_id", "status"]) for p in parts]
        table = pa.concat_tables(tables)
        if kernels.all_distinct(table.column("request_id")):
            return _status_counts(table.column("status"))
        last = _last_rows(table.column("request_id"))
        return _status_counts(kernels.take(table.column("status"), last))

    def _counts_distinct(self) -> RowCounts:
        """`counts()` when every request_id occurs once."""
        return _status_counts(_column(self.parts(), "status"))


def _column(parts: list[RunPath], name: str) -> pa.ChunkedArray:
    """One string column of every part, in order."""
    import pyarrow as pa

    chunks = [chunk for part in parts for chunk in _read_part(part, [name]).column(0).chunks]
    return pa.chunked_array(chunks, pa.string())


def _num_rows(path: RunPath) -> int:
    import pyarrow as pa

    try:
        return int(parquet_file(path).metadata.num_rows)
    except (OSError, pa.ArrowException) as exc:
        raise RunDirError(f"unreadable part file ({exc})", file=str(path)) from None


def _status_counts(statuses: pa.ChunkedArray | pa.Array) -> RowCounts:
    """RowCounts of one status per request."""
    from harness.rundir import kernels

    by_status = kernels.value_counts(statuses)
    ok = by_status.get("ok", 0)
    return RowCounts(rows=len(statuses), ok=ok, error=len(statuses) - ok)


def _last_rows(ids: pa.ChunkedArray) -> pa.Array:
    """Global row numbers of the last row of each request_id (in write order). The group-by
    imports pandas (pyarrow converts its arguments through it): only runs with re-sent rows."""
    import pyarrow as pa

    from harness.rundir import kernels

    table = pa.table({"request_id": ids, "row": kernels.int64_range(0, len(ids))})
    last = table.group_by("request_id", use_threads=False).aggregate([("row", "max")]).column("row_max")
    return last.combine_chunks()


def _read_part(path: RunPath, columns: Iterable[str] | None) -> pa.Table:
    """A part's columns (all of the schema's when None) with the schema's types; a column the
    file lacks (a part written before the column existed) is all null."""
    import pyarrow as pa

    from harness.rundir import kernels
    from harness.rundir.records import SCHEMA

    try:
        return kernels.conform(parquet_file(path), SCHEMA, list(columns) if columns else None)
    except (OSError, pa.ArrowException) as exc:
        raise RunDirError(f"unreadable part file ({exc})", file=str(path)) from None


class ObjectRunStore(RunStore):
    """The store of a run directory on an object store (see the module docstring).

    `append` and `flush` run in the sweep's event loop and only hand bytes to the upload thread;
    an upload the store refused is raised (OSError) by the next `append` or `flush`."""

    def __init__(self, run_dir: ObjectPath, *, seal_rows: int = SEAL_ROWS, seal_bytes: int = SEAL_BYTES,
                 flush_rows: int | None = None, flush_s: float | None = None) -> None:
        self.run_dir = run_dir
        self.journal = run_dir / JOURNAL
        self.results = run_dir / RESULTS
        self._seal_rows = seal_rows
        self._seal_bytes = seal_bytes
        self._flush_rows = flush_rows or int(_env_number("HARNESS_OBJECT_FLUSH_ROWS", 1000))
        self._flush_s = flush_s or _env_number("HARNESS_OBJECT_FLUSH_S", 5.0)
        self._buffer = bytearray()
        self._buffered = 0
        self._rows = 0  # rows since the last rotate (flushed or not)
        self._bytes = 0
        self._written: list[int] = []  # segment numbers put since the last rotate
        self._number: int | None = None
        self._last_put = time.monotonic()
        self._uploads = ThreadPoolExecutor(1, thread_name_prefix="harness-upload")
        self._inflight: list[Future[None]] = []
        self._held: dict[int, bytes] = {}  # segment bytes kept until sealed (upload thread only)
        self._file = None
        self._segment = None
        self.guard: Callable[[], None] | None = None  # the lock's check: raises once another process took over

    # -- writing (event loop) ---------------------------------------------------------------

    def _next_number(self) -> int:
        if self._number is None:
            used = list(_numbered(self.journal, _SEG)) + list(_numbered(self.results, _PART))
            self._number = max(used, default=0)
        self._number += 1
        return self._number

    def _raise_failed(self) -> None:
        done = [f for f in self._inflight if f.done()]
        self._inflight = [f for f in self._inflight if not f.done()]
        for future in done:
            future.result()  # re-raises the upload's OSError here, where the sweep handles it

    def append(self, row: dict[str, Any]) -> bool:
        """Buffer one finished row. True when the rows since the last seal should be sealed."""
        line = encode_row(row)
        self._buffer += line
        self._buffered += 1
        self._rows += 1
        self._bytes += len(line)
        if self._buffered >= self._flush_rows:
            self._put()
        return self._rows >= self._seal_rows or self._bytes >= self._seal_bytes

    def flush(self) -> None:
        """Write the buffer as a segment object when the flush interval has passed."""
        self._raise_failed()
        if self._buffer and time.monotonic() - self._last_put >= self._flush_s:
            self._put()

    def _put(self) -> None:
        self._raise_failed()
        if self.guard is not None:
            self.guard()
        if not self._buffer:
            return
        number = self._next_number()
        data = bytes(self._buffer)
        self._buffer.clear()
        self._buffered = 0
        self._last_put = time.monotonic()
        self._written.append(number)
        self._inflight.append(self._uploads.submit(self._upload, number, data))

    def _upload(self, number: int, data: bytes) -> None:
        (self.journal / f"seg-{number:06d}.jsonl").write_bytes(data)
        self._held[number] = data

    def rotate(self) -> RunPath | None:
        """Write what is buffered; the last segment since the previous rotate, for `seal`."""
        self._put()
        if not self._written:
            return None
        last = self._written[-1]
        self._written = []
        self._rows = 0
        self._bytes = 0
        return self.journal / f"seg-{last:06d}.jsonl"

    def seal(self, segment: RunPath) -> RunPath | None:
        """Seal every segment up to `segment` into one part (in the upload thread, after its PUTs)."""
        match = _SEG.match(segment.name)
        if match is None:
            raise RunDirError("not a journal segment", file=str(segment))
        return self._uploads.submit(self._seal_upto, int(match.group(1))).result()

    def _seal_upto(self, last: int) -> RunPath | None:
        import pyarrow as pa

        from harness.rundir import kernels
        from harness.rundir.journal import read_segment_rows
        from harness.rundir.records import SCHEMA

        if self.guard is not None:
            self.guard()
        part = self.results / f"part-{last:06d}.parquet"
        segments = {n: p for n, p in _numbered(self.journal, _SEG).items() if n <= last}
        for number in self._held:  # written by this process: sealed even if a listing lagged behind
            if number <= last:
                segments.setdefault(number, self.journal / f"seg-{number:06d}.jsonl")
        segments = dict(sorted(segments.items()))
        if not part.exists():
            tables = []
            for number, path in segments.items():
                data = self._held.get(number)
                if data is None:
                    try:
                        data = path.read_bytes()
                    except FileNotFoundError:
                        continue
                tables.append(read_segment_rows(data, path.name).table)
            table = pa.concat_tables(tables) if tables else kernels.empty_table(SCHEMA)
            if table.num_rows:
                write_table_atomic(table, part)
        for number, path in segments.items():
            path.unlink(missing_ok=True)
            self._held.pop(number, None)
        return part if part.exists() else None

    def close(self) -> None:
        """Seal whatever the journal still holds (waits for the uploads)."""
        segment = self.rotate()
        if segment is not None:
            self.seal(segment)
        for future in self._inflight:
            future.result()
        self._inflight = []

    # -- recovery ------------------------------------------------------------------------

    def recover(self) -> None:
        """After a crash: drop tmp objects, delete segments already sealed, seal the others."""
        for folder in (self.journal, self.results):
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
        sealed = max(_numbered(self.results, _PART), default=0)
        segments = _numbered(self.journal, _SEG)
        for number, path in segments.items():
            if number <= sealed:
                path.unlink(missing_ok=True)
        left = [n for n in segments if n > sealed]
        if left:
            self._uploads.submit(self._seal_upto, max(left)).result()
        self._number = None  # numbers are read from the store again


def open_store(run_dir: RunPath) -> RunStore:
    """The store of a run directory: local (journal file appends) or on an object store."""
    if isinstance(run_dir, ObjectPath):
        return ObjectRunStore(run_dir)
    return RunStore(run_dir)


__all__ = ["ROW_GROUP", "ObjectRunStore", "RowCounts", "RunStore", "open_store", "write_table_atomic"]
