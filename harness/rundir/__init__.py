"""Stage 3 — everything about a run directory: layout, manifest, lock, journal, store, and the one reader.

    fs.py        where a run directory lives: a local Path, or an ObjectPath on s3:// (gs://, az://)
    layout.py    names of the files and folders; atomic writes
    manifest.py  the typed, versioned `Manifest` (and the stored spec, read back uninterpolated)
    sanitize.py  secrets removed from structures before they are written
    records.py   the row schema (Arrow columns, derived from the parameter registry)
    columndoc.py docs/columns.md generated from the row schema
    lock.py      one process per run directory
    journal.py   journal lines written so they can be read, read so no line bricks a run
    store.py     journal → sealed parts → one compacted Parquet file (crash safety lives here)
    results.py   the one reader of rows (parts + unsealed journal; foreign files refused)
    merge.py     join run directories of one spec (shards)

Names are imported lazily so `import harness.rundir` stays cheap (no pyarrow until rows are read).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.rundir.layout import JOURNAL, MANIFEST, RESULTS
    from harness.rundir.lock import RunLock
    from harness.rundir.manifest import (
        Counts,
        Manifest,
        Shard,
        Status,
        read_manifest,
        write_manifest,
    )
    from harness.rundir.results import (
        Run,
        check_required_columns,
        load_run,
        part_files,
        read_results,
        read_table,
        result_files,
    )
    from harness.rundir.store import RowCounts, RunStore

_EXPORTS = {
    "MANIFEST": "layout",
    "JOURNAL": "layout",
    "RESULTS": "layout",
    "Counts": "manifest",
    "Manifest": "manifest",
    "Shard": "manifest",
    "Status": "manifest",
    "read_manifest": "manifest",
    "write_manifest": "manifest",
    "RunLock": "lock",
    "RunStore": "store",
    "RowCounts": "store",
    "Run": "results",
    "load_run": "results",
    "part_files": "results",
    "read_results": "results",
    "read_table": "results",
    "result_files": "results",
    "check_required_columns": "results",
}

__all__ = [
    "JOURNAL",
    "MANIFEST",
    "RESULTS",
    "Counts",
    "Manifest",
    "RowCounts",
    "Run",
    "RunLock",
    "RunStore",
    "Shard",
    "Status",
    "check_required_columns",
    "load_run",
    "part_files",
    "read_manifest",
    "read_results",
    "read_table",
    "result_files",
    "write_manifest",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'harness.rundir' has no attribute {name!r}")
    return getattr(importlib.import_module(f"harness.rundir.{module}"), name)
