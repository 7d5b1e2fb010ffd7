"""Helpers shared by the metrics / report tests: synthetic rows and run directories.

(Named test_* so it sits in the report test area; it holds no tests itself.)
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from harness.rundir.records import rows_to_table


def tok(token: str, logprob: float, top: list[tuple[str, float]] | None = None) -> dict[str, Any]:
    """One logprobs entry."""
    return {"token": token, "logprob": logprob, "top_logprobs": [{"token": t, "logprob": lp} for t, lp in (top or [])]}


def row(cell: str = "c1", prompt: str = "p1", sample: int = 0, **kw: Any) -> dict[str, Any]:
    """A result row with sensible defaults; keyword arguments override any column."""
    point = kw.pop("point", {"temperature": kw.get("temperature", 0.0)})
    base: dict[str, Any] = {
        "run_id": "run-a",
        "request_id": f"{cell}-{prompt}-{sample}",
        "cell_id": cell,
        "prompt_id": prompt,
        "sample": sample,
        "model": "m",
        "status": "ok",
        "attempts": 1,
        "started_at": datetime(2025, 1, 1, tzinfo=UTC),
        "latency_s": 1.0,
        "content": "Paris",
        "finish_reason": "stop",
        "completion_tokens": 2,
        "prompt_tokens": 5,
        "reference": "Paris",
        "point_json": json.dumps(point, sort_keys=True, separators=(",", ":")),
    }
    base.update(point)
    base.update(kw)
    return base


def write_run(
    path: Path, rows: list[dict[str, Any]], scoring: list[Any] | None = None, run_id: str = "run-a",
    grid: dict[str, list[Any]] | None = None,
) -> Path:
    """A run directory with a manifest and one Parquet part."""
    (path / "results").mkdir(parents=True, exist_ok=True)
    for r in rows:
        r.setdefault("run_id", run_id)
    pq.write_table(rows_to_table(rows), path / "results" / "part-0.parquet")
    manifest = {
        "run_id": run_id,
        "spec": {"name": "t", "scoring": scoring or [], "sweep": {"grid": grid or {}}},
        "target": {"base_url": "http://127.0.0.1:1/v1", "model": "m"},
        "status": "completed",
        "counts": {"requests": len(rows)},
    }
    (path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return path
