"""The one reader of a run directory's rows: sealed parts, plus journal rows not sealed yet.

`part_files` is the only lister of `results/`: it refuses a file harness did not write there
(a foreign file would be read by pandas/DuckDB as rows of the run, or silently ignored by
resume and merge) and a part without the schema's required columns. `read_table` gives one
row per `request_id` (the last written wins, as compaction would keep), so a run that
crashed before compaction reads the same as one that finished.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from harness.errors import RunDirError
from harness.rundir.fs import RunPath, as_run_path, read_parquet, read_parquet_schema
from harness.rundir.journal import read_segment
from harness.rundir.layout import JOURNAL, MANIFEST, PART, RESULTS, SEGMENT, numbered
from harness.rundir.records import SCHEMA

if TYPE_CHECKING:
    import pandas as pd

    from harness.rundir.manifest import Manifest  # imported when a run is loaded: listing parts needs no pydantic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """A run as analysis code sees it: where, what (the manifest) and its rows."""

    path: RunPath
    manifest: Manifest
    results: pd.DataFrame

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.manifest.spec)


def check_required_columns(names: set[str], file: RunPath) -> None:
    """RunDirError naming `file` when it lacks a required (non-nullable) column of the schema."""
    missing = [field.name for field in SCHEMA if not field.nullable and field.name not in names]
    if missing:
        raise RunDirError(f"not a harness results file: no column {', '.join(missing)}", file=str(file))


def _check_part(file: RunPath) -> None:
    try:
        names = set(read_parquet_schema(file).names)
    except (OSError, pa.ArrowException) as exc:  # all mean "unreadable"
        raise RunDirError(f"unreadable results ({exc})", file=str(file)) from None
    check_required_columns(names, file)


def part_files(run_dir: str | RunPath, *, check: bool = True) -> list[RunPath]:
    """The sealed part files of `RUN_DIR/results/` in write order; RunDirError on a foreign file."""
    folder = as_run_path(run_dir) / RESULTS
    if isinstance(folder, Path) and not folder.is_dir():
        return []
    parts: dict[int, RunPath] = {}
    for entry in folder.iterdir():
        if entry.name.startswith("."):  # dot-tmp files of an interrupted write; hidden files
            continue
        match = PART.match(entry.name)
        if match is None or not entry.is_file():
            if entry.suffix == ".parquet" and entry.is_file():
                _check_part(entry)  # the more precise message first: which columns it lacks
            raise RunDirError(
                "not a file harness wrote (results/ holds only part-NNNNNN.parquet); move it out of the run directory",
                file=str(entry),
            )
        parts[int(match.group(1))] = entry
    files = [parts[n] for n in sorted(parts)]
    if check:
        for file in files:
            _check_part(file)
    return files


result_files = part_files  # the name analysis code used


def journal_segments(run_dir: str | RunPath) -> list[RunPath]:
    """Journal segments not sealed yet (a running or crashed run), in write order."""
    return list(numbered(as_run_path(run_dir) / JOURNAL, SEGMENT).values())


def journal_table(run_dir: str | RunPath) -> pa.Table:
    """The rows of the unsealed journal (torn lines skipped), read only — nothing is written."""
    tables = []
    for segment in journal_segments(run_dir):
        try:
            tables.append(read_segment(segment))
        except FileNotFoundError:  # sealed by the running process since it was listed
            log.info("%s was sealed while being read; run again to see its rows", segment)
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()


def last_per_request(table: pa.Table) -> pa.Table:
    """One row per request_id: the last one (in table order)."""
    if table.num_rows == 0:
        return table
    ids = table.column("request_id")
    rows = pa.table({"request_id": ids, "row": pa.array(range(table.num_rows), pa.int64())})
    last = rows.group_by("request_id", use_threads=False).aggregate([("row", "max")]).column("row_max")
    if len(last) == table.num_rows:
        return table
    return table.take(last.combine_chunks().sort())


def read_table(run_dir: str | RunPath, columns: list[str] | None = None) -> pa.Table:
    """All rows of a run (parts, then journal), one per request_id, with the explicit schema."""
    names = list(columns) if columns else list(SCHEMA.names)
    if "request_id" not in names:
        names.append("request_id")
    tables: list[pa.Table] = []
    for file in part_files(run_dir):
        try:
            tables.append(read_parquet(file, names, SCHEMA))
        except (OSError, pa.ArrowException) as exc:
            raise RunDirError(f"unreadable results ({exc})", file=str(file)) from None
    journal = journal_table(run_dir)
    if journal.num_rows:
        log.info("%s: %d rows still in the journal (run not finished)", run_dir, journal.num_rows)
        tables.append(journal.select(names))
    if not tables:
        return SCHEMA.empty_table().select(names)
    table = pa.concat_tables(tables)
    if len(tables) > 1:
        table = last_per_request(table)
    return table.select(list(columns)) if columns else table


def read_results(run_dir: str | RunPath, columns: list[str] | None = None) -> pd.DataFrame:
    """`read_table` as a pandas DataFrame (an empty frame with the schema's columns if no rows)."""
    frame: pd.DataFrame = read_table(run_dir, columns).to_pandas()
    return frame


def load_run(run_dir: str | RunPath) -> Run:
    """Manifest and results of a run directory (a local folder or an `s3://…` prefix)."""
    path = as_run_path(run_dir)
    from harness.rundir.manifest import read_manifest

    return Run(path=path, manifest=read_manifest(path), results=read_results(path))


__all__ = [
    "MANIFEST",
    "RESULTS",
    "Run",
    "check_required_columns",
    "journal_segments",
    "journal_table",
    "last_per_request",
    "load_run",
    "part_files",
    "read_results",
    "read_table",
    "result_files",
]
