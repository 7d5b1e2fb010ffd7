"""Load run directories for analysis: the rows without their bulky nested columns.

`harness.rundir.load_run` turns the `logprobs` column into Python objects, which for a
million rows costs minutes and gigabytes. Here the Parquet files are scanned batch by batch,
the per-row logprob sums (`harness.analysis.metrics.LP_COLUMNS`) and inter-token gap sums
(`ITL_COLUMNS`) are computed on the Arrow arrays, and only flat columns reach pandas.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harness.analysis.cost import prices_from_manifest, with_costs
from harness.analysis.metrics import ITL_COLUMNS, LP_COLUMNS, itl_row_stats, logprob_row_stats
from harness.errors import RunDirError
from harness.rundir.fs import RunPath, as_run_path, parquet_file
from harness.rundir.manifest import Manifest, read_manifest
from harness.rundir.records import SCHEMA
from harness.rundir.results import check_required_columns, journal_table, result_files

log = logging.getLogger(__name__)

_DROP = ("logprobs", "inter_token_s")
# columns of newer runs read even where this SCHEMA lacks them (the multi-target columns)
_EXTRA = {name: pa.string() for name in ("target", "replica") if name not in SCHEMA.names}
_FLAT = [name for name in SCHEMA.names if name not in _DROP] + list(_EXTRA)
_BATCH_ROWS = 65_536


@dataclass(frozen=True)
class RunData:
    """One run as the report sees it: manifest, flat rows with logprob sums, and a label."""

    path: RunPath
    manifest: Manifest
    rows: pd.DataFrame
    label: str

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.manifest.spec)


def _logprob_paths(schema: pq.ParquetSchema) -> list[str]:
    """Leaf paths of the numbers inside `logprobs` (token strings are never decoded)."""
    paths = [schema.column(i).path for i in range(len(schema))]
    return [p for p in paths if p.startswith("logprobs.") and p.endswith(".logprob")]


def _flat_frame(batch: pa.RecordBatch, flat: list[str]) -> pd.DataFrame:
    """A batch's flat columns (missing ones null, types from SCHEMA) plus LP_COLUMNS."""
    n = batch.num_rows
    columns = []
    for name in flat:
        want = _EXTRA[name] if name in _EXTRA else SCHEMA.field(name).type
        if name in batch.schema.names:
            col = batch.column(name)
            columns.append(col if col.type == want else col.cast(want))
        else:
            columns.append(pa.nulls(n, want))
    frame = pa.Table.from_arrays(columns, names=flat).to_pandas()
    for name in _EXTRA:  # a run written before the column existed: leave it out, not all-null
        if name not in batch.schema.names:
            frame = frame.drop(columns=name)
    if "logprobs" in batch.schema.names:
        stats = logprob_row_stats(batch.column("logprobs"))
        for name in LP_COLUMNS:
            frame[name] = stats[name].to_numpy()
    else:
        for name in LP_COLUMNS:
            frame[name] = 0.0
    if "inter_token_s" in batch.schema.names:  # streamed: per-row gap count and sum, not the lists
        gaps = itl_row_stats(batch.column("inter_token_s"))
        for name in ITL_COLUMNS:
            frame[name] = gaps[name].to_numpy()
    else:
        for name in ITL_COLUMNS:
            frame[name] = 0.0
    return frame


def _read_file(path: RunPath) -> list[pd.DataFrame]:
    parquet = parquet_file(path)
    present = set(parquet.schema_arrow.names)
    check_required_columns(present, path)
    columns = [name for name in _FLAT if name in present] + _logprob_paths(parquet.schema)
    columns += ["inter_token_s"] if "inter_token_s" in present else []
    return [
        _flat_frame(batch, _FLAT)
        for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, columns=columns, use_threads=True)
        if batch.num_rows
    ]


def read_rows(run_dir: str | RunPath) -> pd.DataFrame:
    """All result rows of a run, flat, with LP_COLUMNS; an empty frame with those columns if none."""
    frames: list[pd.DataFrame] = []
    for path in result_files(run_dir):
        try:
            frames += _read_file(path)
        except (pa.ArrowException, OSError) as exc:
            raise RunDirError(f"unreadable results ({exc})", file=str(path)) from None
    frames += [_flat_frame(batch, _FLAT) for batch in journal_table(run_dir).to_batches() if batch.num_rows]
    if not frames:
        return _flat_frame(pa.RecordBatch.from_pylist([], schema=SCHEMA), _FLAT)
    rows = pd.concat(frames, ignore_index=True)
    return rows.drop_duplicates("request_id", keep="last", ignore_index=True)  # one row per request


def load_runs(run_dirs: Sequence[str | RunPath]) -> list[RunData]:
    """Load several runs; labels are their run ids, made unique with #2, #3 … when repeated.

    Rows of a run whose manifest prices its targets gain a `cost` column (harness.analysis.cost)."""
    runs: list[RunData] = []
    seen: dict[str, int] = {}
    for run_dir in run_dirs:
        path = as_run_path(run_dir)
        manifest = read_manifest(path)
        rows = with_costs(read_rows(path), prices_from_manifest(manifest))  # `cost` when priced
        label = manifest.run_id
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            label = f"{label}#{seen[label]}"
        if len(rows) and (rows["run_id"] != label).any():
            rows["run_id"] = label  # one label per input, even if ids collide or a dir was copied
        runs.append(RunData(path=path, manifest=manifest, rows=rows, label=label))
        log.info("loaded %s: %d rows", path, len(rows))
    return runs


def combined_rows(runs: list[RunData]) -> pd.DataFrame:
    """The rows of several runs in one frame (run_id tells them apart)."""
    frames = [r.rows for r in runs if len(r.rows)]
    if len(frames) == 1:
        return frames[0]
    if not frames:
        return runs[0].rows
    return pd.concat(frames, ignore_index=True)


__all__ = ["RunData", "combined_rows", "load_runs", "read_rows"]
