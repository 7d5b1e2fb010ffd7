"""`RUN_DIR/manifest.json`: what a run is, written atomically, cheap to read.

Fields (the contract in DESIGN.md, plus a few): run_id, harness_version, schema_version, spec
(resolved, no secrets), spec_hash, target {base_url, model}, started_at, finished_at, status
(running / completed / interrupted / failed), counts {requests, ok, error}, shard {index, count}
or null, limit, overrides {concurrency, rps}, sessions (how many times the run was started).
"""

from __future__ import annotations

import os
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import orjson

from harness import __version__
from harness.errors import RunDirError
from harness.records import SCHEMA_VERSION

MANIFEST = "manifest.json"

Status = Literal["running", "completed", "interrupted", "failed"]


def utc_now() -> str:
    """Now as an ISO-8601 UTC timestamp."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def new_run_id(name: str, now: datetime | None = None) -> str:
    """`<name>-<UTC timestamp>-<6 hex>`: sortable by time, unique across machines."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return f"{name}-{stamp}-{secrets.token_hex(3)}"


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Replace the manifest atomically (tmp + fsync + rename)."""
    path = Path(run_dir) / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.tmp")
    data = orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def new_manifest(
    *,
    run_id: str,
    spec: dict[str, Any],
    spec_hash: str,
    target: dict[str, Any],
    requests: int,
    shard: tuple[int, int] | None,
    limit: int | None,
    overrides: dict[str, Any],
) -> dict[str, Any]:
    """The manifest of a run that is about to start."""
    return {
        "run_id": run_id,
        "harness_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "spec": spec,
        "spec_hash": spec_hash,
        "target": target,
        "started_at": utc_now(),
        "finished_at": None,
        "status": "running",
        "counts": {"requests": requests, "ok": 0, "error": 0},
        "shard": None if shard is None else {"index": shard[0], "count": shard[1]},
        "limit": limit,
        "overrides": overrides,
        "sessions": 1,
    }


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The manifest of a run directory, or RunDirError naming the file (no pandas import)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError("not a run directory (no such folder)", file=str(run_dir))
    path = run_dir / MANIFEST
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise RunDirError("no manifest.json: not a harness run directory", file=str(run_dir)) from None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise RunDirError(f"unreadable manifest ({exc})", file=str(path)) from None
    if not isinstance(data, dict):
        raise RunDirError("manifest is not a JSON object", file=str(path))
    return data


def load_for_resume(run_dir: Path) -> dict[str, Any]:
    """The manifest of a run to resume; refuses one written with another row schema."""
    manifest = read_manifest(run_dir)
    where = str(Path(run_dir) / MANIFEST)
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RunDirError(
            f"schema_version {version!r} is not the {SCHEMA_VERSION} this harness writes; resume with the harness that started it",
            file=where,
            key="schema_version",
        )
    for key in ("run_id", "spec", "spec_hash"):
        if key not in manifest:
            raise RunDirError("missing; not a manifest written by `harness run`", file=where, key=key)
    return manifest


def finish(manifest: dict[str, Any], status: Status, counts: dict[str, int]) -> dict[str, Any]:
    """A copy with the final status, counts and finish time."""
    done = dict(manifest)
    done["status"] = status
    done["counts"] = counts
    done["finished_at"] = utc_now()
    return done


__all__ = ["MANIFEST", "Status", "read_manifest", "finish", "load_for_resume", "new_manifest", "new_run_id", "utc_now", "write_manifest"]
