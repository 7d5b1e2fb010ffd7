"""Run directories with several targets for the analysis tests, written with the real row writer.

Rows go through `harness.rundir.records.rows_to_table` (the explicit schema); when that schema
has no `target`/`replica` column yet, they are appended the way the writer appends columns.
`cell_id` and `point_json` are the sweep point *without* the target, as in a real run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from harness.rundir.records import rows_to_table

# outcome(target, point_index, prompt_index, sample) -> (status, correct, latency_s)
Outcome = Callable[[str, int, int, int], tuple[str, bool, float]]
POINTS = ({"temperature": 0.0}, {"temperature": 0.7})


def point_json(point: Mapping[str, Any]) -> str:
    return json.dumps(dict(point), sort_keys=True, separators=(",", ":"))


def target_rows(
    run_id: str,
    targets: Iterable[str],
    outcome: Outcome,
    *,
    points: Iterable[Mapping[str, Any]] = POINTS,
    prompts: int = 30,
    samples: int = 2,
    with_target: bool = True,
) -> list[dict[str, Any]]:
    """One row per (target, point, prompt, sample); answers 'A<i>' when correct."""
    rows = []
    for target in targets:
        for pi, point in enumerate(points):
            pj = point_json(point)
            cell = hashlib.sha1(pj.encode()).hexdigest()[:12]
            for i in range(prompts):
                for s in range(samples):
                    status, correct, latency = outcome(target, pi, i, s)
                    row: dict[str, Any] = {
                        "run_id": run_id,
                        "request_id": hashlib.sha1(f"{target}|{pj}|{i}|{s}".encode()).hexdigest(),
                        "cell_id": cell, "prompt_id": f"p{i:04d}", "sample": s, "model": f"model-{target}",
                        "temperature": point.get("temperature"), "status": status, "attempts": 1,
                        "latency_s": latency if status == "ok" else None,
                        "content": (f"A{i}" if correct else "wrong answer") if status == "ok" else None,
                        "finish_reason": "stop" if status == "ok" else None,
                        "error_type": None if status == "ok" else "http",
                        "error_message": None if status == "ok" else "HTTP 500",
                        "prompt_tokens": 100 if status == "ok" else None,
                        "completion_tokens": 10 if status == "ok" else None,
                        "reference": f"A{i}", "point_json": pj,
                    }
                    if with_target:
                        row["target"] = target
                        row["replica"] = f"http://127.0.0.1:1/{target}/v1"
                    rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> pa.Table:
    """The writer's table; `target`/`replica` appended when the schema lacks them."""
    out = rows_to_table(rows)
    for name in ("target", "replica"):
        if name not in out.schema.names and any(name in r for r in rows):
            out = out.append_column(pa.field(name, pa.string()), pa.array([r.get(name) for r in rows], pa.string()))
    return out


def write_run(
    root: Path,
    name: str,
    rows: list[dict[str, Any]],
    *,
    prices: Mapping[str, Mapping[str, float] | None] | None = None,
    scoring: list[Any] | None = None,
    manifest_targets: bool = True,
) -> Path:
    """A run directory holding `rows` (one Parquet part) and a manifest with a `targets` map."""
    run_dir = root / name
    (run_dir / "results").mkdir(parents=True)
    pq.write_table(table(rows), run_dir / "results" / "part-000001.parquet")
    names = list(dict.fromkeys(str(r.get("target") or "default") for r in rows)) or ["default"]
    prices = prices or {}
    manifest: dict[str, Any] = {
        "run_id": name,
        "spec": {"name": name, "scoring": ["exact_match"] if scoring is None else scoring},
        "target": {"base_url": f"http://127.0.0.1:1/{names[0]}/v1", "model": f"model-{names[0]}"},
        "status": "completed",
        "counts": {"requests": len(rows), "ok": sum(r["status"] == "ok" for r in rows),
                   "error": sum(r["status"] != "ok" for r in rows)},
    }
    if manifest_targets:
        manifest["targets"] = {
            t: {"base_url": f"http://127.0.0.1:1/{t}/v1", "model": f"model-{t}", "price": prices.get(t)}
            for t in names
        }
    (run_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return run_dir
