"""Join run directories of one spec (e.g. the shards of a sweep run on N machines) into one.

Refuses runs of different specs (their `spec_hash` differ) and runs with unsealed rows (they
need `harness run --resume` first). Rows are copied part by part (memory stays flat), their
`run_id` set to the merged run's, then compacted: one row per `request_id`, the last wins.

A RUN_DIR argument may also be a *prefix* (a local folder or an `s3://…` prefix) holding run
directories — the shards of a job array writing to one `--out` — found one level down.
Inputs and the output may be local or on an object store, in any mix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from harness.errors import RunDirError, UsageError
from harness.rundir.fs import ObjectPath, RunPath, as_run_path, display, read_parquet
from harness.rundir.layout import MANIFEST
from harness.rundir.manifest import (
    Counts,
    Manifest,
    Shard,
    Status,
    check_resumable,
    read_manifest,
    write_manifest,
)
from harness.rundir.results import journal_segments
from harness.rundir.store import RowCounts, open_store, write_table_atomic


def _check_same_spec(runs: list[tuple[RunPath, Manifest]]) -> None:
    first_dir, first = runs[0]
    for path, manifest in runs[1:]:
        if manifest.spec_hash != first.spec_hash:
            raise RunDirError(
                f"spec_hash {manifest.spec_hash} differs from {first.spec_hash} of {first_dir}; "
                "only runs of the same spec can be merged",
                file=display(path / MANIFEST),
                key="spec_hash",
            )


def _requests(manifests: list[Manifest]) -> int:
    """Planned requests of the union: per distinct shard the largest plan, summed."""
    per_shard: dict[Shard | None, int] = {}
    for m in manifests:
        per_shard[m.shard] = max(per_shard.get(m.shard, 0), m.counts.requests)
    if None in per_shard:
        return per_shard[None]
    return sum(per_shard.values())


def _merged_adaptive(manifests: list[Manifest]) -> dict[str, Any]:
    """Adaptive repeats: the union of the shards' cells (each shard adapted its own cells)."""
    per_shard: dict[Shard | None, dict[str, Any]] = {}
    for m in manifests:
        if m.adaptive:
            per_shard[m.shard] = m.adaptive  # the same shard twice: the later run's account
    sections = list(per_shard.values())
    cells: dict[str, Any] = {}
    for section in sections:
        cells.update(section.get("cells") or {})
    merged = dict(sections[0])
    merged["cells"] = cells
    merged["looks"] = max(int(sec.get("looks") or 0) for sec in sections)
    merged["requests"] = {key: sum(int((sec.get("requests") or {}).get(key) or 0) for sec in sections)
                          for key in ("min", "max", "scheduled")}
    merged["stopped"] = {reason: sum(1 for c in cells.values() if c.get("reason") == reason)
                         for reason in ("converged", "dropped", "max", "unreachable", "halted")}
    return merged


def _complete(manifests: list[Manifest]) -> bool:
    """True when every input finished and the shards (if any) cover 1..N."""
    if any(m.status != "completed" for m in manifests):
        return False
    shards = [m.shard for m in manifests]
    if any(s is None for s in shards):
        return True
    counts = {s.count for s in shards if s}
    return len(counts) == 1 and {s.index for s in shards if s} == set(range(1, counts.pop() + 1))


def _prepare_out(out: RunPath) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError("already exists and is not an empty folder", file=display(out), key="--out")
    out.mkdir(parents=True, exist_ok=True)


def _is_run_dir(path: RunPath) -> bool:
    return (path / MANIFEST).is_file()


def find_runs(locations: Sequence[str | RunPath], *, exclude: RunPath | None = None) -> list[RunPath]:
    """Run directories named by `locations`: each one itself, or the run directories right under it
    (a prefix holding the shards of a job array); `exclude` (the merge's own output) is skipped."""
    found: list[RunPath] = []
    skip = exclude.resolve() if exclude is not None else None
    for location in locations:
        path = as_run_path(location)
        if _is_run_dir(path):
            found.append(path)
            continue
        if not path.is_dir():
            raise RunDirError("not a run directory (no such folder)", file=display(path))
        children = sorted((c for c in path.iterdir() if c.resolve() != skip and c.is_dir() and _is_run_dir(c)), key=str)
        if not children:
            raise RunDirError("no manifest.json here nor in the folders right under it: "
                              "not a run directory nor a prefix holding run directories", file=display(path))
        found.extend(children)
    return found


def merge_runs(run_dirs: Sequence[str | RunPath], out: str | RunPath) -> tuple[Manifest, RowCounts]:
    """Write the merged run directory `out`; returns its manifest and counts.

    Each of `run_dirs` is a run directory or a prefix holding run directories (`find_runs`)."""
    if not run_dirs:
        raise UsageError("give at least one run directory", key="RUN_DIR")
    out = as_run_path(out)
    given = [as_run_path(p) for p in run_dirs]
    seen: set[RunPath] = set()
    for path in given:
        real = path.resolve()
        if real in seen:
            raise UsageError("given twice; each run directory may be merged once", file=display(path), key="RUN_DIR")
        seen.add(real)
    found = find_runs(list(given), exclude=out)
    if len({p.resolve() for p in found}) != len(found):
        raise UsageError("a run directory is named twice (itself and through its prefix)", key="RUN_DIR")
    runs = [(p, read_manifest(p)) for p in found]
    for path, manifest in runs:
        check_resumable(manifest, path)
    _check_same_spec(runs)
    for path, _ in runs:
        if journal_segments(path):
            raise RunDirError("has unsealed rows; run `harness run --resume` on it first", file=display(path))
    _prepare_out(out)
    run_id = out.name
    store = open_store(out)
    number = 0
    for path, _ in runs:
        for part in open_store(path).parts():
            table = read_parquet(part)
            table = table.set_column(table.schema.get_field_index("run_id"), table.schema.field("run_id"),
                                     pa.array([run_id] * table.num_rows, pa.string()))
            number += 1
            write_table_atomic(table, store.results / f"part-{number:06d}.parquet")
    counts = store.compact()
    manifests = [m for _, m in runs]
    manifest = manifests[0].model_copy(update={
        "run_id": run_id,
        "shard": None,
        "limit": None,
        "sessions": 1,
        "merged_from": [m.run_id for m in manifests],
        "storage": display(out) if isinstance(out, ObjectPath) else None,
        "started_at": min(str(m.started_at or "") for m in manifests) or None,
    })
    if any(m.adaptive for m in manifests):
        manifest = manifest.model_copy(update={"adaptive": _merged_adaptive(manifests)})
    status: Status = "completed" if _complete(manifests) else "interrupted"
    manifest = manifest.finished(status, Counts(requests=_requests(manifests), ok=counts.ok, error=counts.error))
    write_manifest(out, manifest)
    return manifest, counts


__all__ = ["find_runs", "merge_runs"]
