"""Read a finished (or partial) run directory: `manifest.json` + the `results/` Parquet dataset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from harness.errors import RunDirError
from harness.manifest import MANIFEST, read_manifest
from harness.records import SCHEMA

RESULTS = "results"


@dataclass(frozen=True)
class Run:
    """A run as analysis code sees it."""

    path: Path
    manifest: dict[str, Any]
    results: pd.DataFrame

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id", self.path.name))

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.manifest.get("spec") or {})


def result_files(run_dir: str | Path) -> list[Path]:
    """The Parquet files under `RUN_DIR/results/`, sorted by name (none if the folder is missing)."""
    results = Path(run_dir) / RESULTS
    return sorted(results.glob("*.parquet")) if results.is_dir() else []


def read_results(run_dir: str | Path) -> pd.DataFrame:
    """All result rows of a run directory (an empty frame with the schema's columns if none)."""
    files = result_files(run_dir)
    if not files:
        return SCHEMA.empty_table().to_pandas()
    for f in files:
        _check_columns(f)
    try:
        table = pads.dataset([str(f) for f in files], format="parquet", schema=SCHEMA).to_table()
    except Exception as exc:  # pyarrow raises many kinds; all mean "unreadable"
        raise RunDirError(f"unreadable results ({exc})", file=str(Path(run_dir) / RESULTS)) from None
    return table.to_pandas()


def _check_columns(file: Path) -> None:
    """A part file must carry the schema's required columns (else they would be read as nulls)."""
    try:
        names = set(pq.read_schema(file).names)
    except Exception as exc:  # pyarrow raises many kinds; all mean "unreadable"
        raise RunDirError(f"unreadable results ({exc})", file=str(file)) from None
    check_required_columns(names, file)


def check_required_columns(names: set[str], file: Path) -> None:
    """RunDirError naming `file` when it lacks a required (non-nullable) column of the schema."""
    missing = [field.name for field in SCHEMA if not field.nullable and field.name not in names]
    if missing:
        raise RunDirError(f"not a harness results file: no column {', '.join(missing)}", file=str(file))


def load_run(run_dir: str | Path) -> Run:
    """Manifest and results of a run directory."""
    path = Path(run_dir)
    return Run(path=path, manifest=read_manifest(path), results=read_results(path))


__all__ = ["MANIFEST", "RESULTS", "Run", "check_required_columns", "load_run", "read_manifest", "read_results", "result_files"]
