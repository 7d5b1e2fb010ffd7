"""Load run directories for analysis: the rows without their bulky nested columns.

`harness.rundir.load_run` turns the `logprobs` column into Python objects, which for a
million rows costs minutes and gigabytes. Here the Parquet files are scanned batch by batch,
the per-row logprob sums (`harness.metrics.LP_COLUMNS`) are computed on the Arrow arrays, and
only flat columns reach pandas.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from harness.errors import RunDirError
from harness.metrics import LP_COLUMNS, logprob_row_stats
from harness.records import SCHEMA
from harness.rundir import RESULTS, read_manifest

log = logging.getLogger(__name__)

_DROP = ("logprobs", "inter_token_s")
_BATCH_ROWS = 65_536


@dataclass(frozen=True)
class RunData:
    """One run as the report sees it: manifest, flat rows with logprob sums, and a label."""

    path: Path
    manifest: dict[str, Any]
    rows: pd.DataFrame
    label: str

    @property
    def spec(self) -> dict[str, Any]:
        spec = self.manifest.get("spec")
        return dict(spec) if isinstance(spec, dict) else {}


def _flat_batch(batch: pa.RecordBatch) -> pd.DataFrame:
    stats = logprob_row_stats(batch.column("logprobs"))
    keep = [name for name in batch.schema.names if name not in _DROP]
    frame = pa.Table.from_batches([batch.select(keep)]).to_pandas()
    for name in LP_COLUMNS:
        frame[name] = stats[name].to_numpy()
    return frame


def read_rows(run_dir: str | Path) -> pd.DataFrame:
    """All result rows of a run, flat, with LP_COLUMNS; an empty frame with those columns if none."""
    results = Path(run_dir) / RESULTS
    files = sorted(results.glob("*.parquet")) if results.is_dir() else []
    if not files:
        return _flat_batch(_empty_batch())
    try:
        dataset = pads.dataset([str(f) for f in files], format="parquet", schema=SCHEMA)
        frames = [_flat_batch(b) for b in dataset.to_batches(batch_size=_BATCH_ROWS) if b.num_rows]
    except (pa.ArrowException, OSError) as exc:
        raise RunDirError(f"unreadable results ({exc})", file=str(results)) from None
    if not frames:
        return _flat_batch(_empty_batch())
    return pd.concat(frames, ignore_index=True)


def _empty_batch() -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=SCHEMA)


def load_runs(run_dirs: list[str | Path]) -> list[RunData]:
    """Load several runs; labels are their run ids, made unique with #2, #3 … when repeated."""
    runs: list[RunData] = []
    seen: dict[str, int] = {}
    for run_dir in run_dirs:
        path = Path(run_dir)
        manifest = read_manifest(path)
        rows = read_rows(path)
        label = str(manifest.get("run_id") or path.name)
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
    if not frames:
        return runs[0].rows if runs else _flat_batch(_empty_batch())
    return pd.concat(frames, ignore_index=True)


__all__ = ["RunData", "combined_rows", "load_runs", "read_rows"]
