"""`--shard auto`: shard K of N from the environment a job-array scheduler gives each task.

Read in this order (the first source present wins; docs/distributed.md has example manifests):

    HARNESS_SHARD_INDEX + HARNESS_SHARD_COUNT     explicit, 1-based: K of N (any scheduler, CI matrices)
    JOB_COMPLETION_INDEX + HARNESS_SHARD_COUNT    Kubernetes Indexed Job: 0-based index; N is the Job's
                                                  `completions`, passed in HARNESS_SHARD_COUNT
    SLURM_ARRAY_TASK_ID + SLURM_ARRAY_TASK_COUNT  Slurm job array: K = ID − MIN + 1 over a contiguous
                                                  range MIN…MAX (`--array=0-9` or `1-10`; `%` throttles
                                                  are fine; a stepped or listed array is refused)

Anything missing, not a whole number or out of range is one line naming the variable (exit 2).

A task the scheduler runs again (a retried pod, a requeued Slurm task) finds the run directory its
earlier attempt left unfinished under the same `--out` (`unfinished_run`: same spec_hash, shard
and limit, not completed) and resumes it instead of starting the shard over.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from harness.errors import RunDirError, UsageError
from harness.rundir.fs import RunPath, as_run_path
from harness.rundir.layout import MANIFEST
from harness.rundir.manifest import Shard, read_manifest

if TYPE_CHECKING:
    from harness.spec.sweepspec import SweepSpec

SOURCES = (
    "HARNESS_SHARD_INDEX with HARNESS_SHARD_COUNT",
    "JOB_COMPLETION_INDEX (Kubernetes Indexed Job) with HARNESS_SHARD_COUNT",
    "SLURM_ARRAY_TASK_ID with SLURM_ARRAY_TASK_COUNT (Slurm array)",
)
_MAX = 1_000_000


def _whole(env: Mapping[str, str], name: str, *, low: int) -> int:
    raw = env.get(name)
    if raw is None or not raw.strip():
        raise UsageError(f"{name} is not set; --shard auto reads it with the scheduler's index", key="--shard auto")
    try:
        value = int(raw.strip())
    except ValueError:
        raise UsageError(f"{name}={raw.strip()[:40]!r} is not a whole number", key="--shard auto") from None
    if not low <= value <= _MAX:
        raise UsageError(f"{name}={value} is out of range; allowed: {low} to {_MAX:,}", key="--shard auto")
    return value


def _shard(index: int, count: int, where: str) -> Shard:
    if index > count:
        raise UsageError(f"{where}: shard {index} of {count} is past the last one; "
                         "the index and the count disagree", key="--shard auto")
    return Shard(index=index, count=count)


def _slurm(env: Mapping[str, str]) -> Shard:
    task = _whole(env, "SLURM_ARRAY_TASK_ID", low=0)
    count = _whole(env, "SLURM_ARRAY_TASK_COUNT", low=1)
    low = _whole(env, "SLURM_ARRAY_TASK_MIN", low=0) if env.get("SLURM_ARRAY_TASK_MIN") else 0
    high = _whole(env, "SLURM_ARRAY_TASK_MAX", low=0) if env.get("SLURM_ARRAY_TASK_MAX") else low + count - 1
    if high - low + 1 != count:
        raise UsageError(
            f"the Slurm array {low}-{high} has {count} tasks, not {high - low + 1}: a stepped or listed "
            "--array has gaps; use a contiguous --array=A-B, or --shard K/N", key="--shard auto")
    if not low <= task <= high:
        raise UsageError(f"SLURM_ARRAY_TASK_ID={task} is outside the array {low}-{high}", key="--shard auto")
    return _shard(task - low + 1, count, "SLURM_ARRAY_TASK_ID")


def shard_from_env(env: Mapping[str, str] | None = None) -> Shard:
    """Shard K of N from the job-array environment (see the module docstring); UsageError otherwise."""
    env = os.environ if env is None else env
    if env.get("HARNESS_SHARD_INDEX"):
        index = _whole(env, "HARNESS_SHARD_INDEX", low=1)
        return _shard(index, _whole(env, "HARNESS_SHARD_COUNT", low=1), "HARNESS_SHARD_INDEX")
    if env.get("JOB_COMPLETION_INDEX"):
        index = _whole(env, "JOB_COMPLETION_INDEX", low=0) + 1
        return _shard(index, _whole(env, "HARNESS_SHARD_COUNT", low=1), "JOB_COMPLETION_INDEX")
    if env.get("SLURM_ARRAY_TASK_ID"):
        return _slurm(env)
    raise UsageError("no job-array index in the environment; set one of: " + "; ".join(SOURCES)
                     + " (or give --shard K/N)", key="--shard auto")


def unfinished_run(out: str | RunPath, spec: SweepSpec, shard: Shard, limit: int | None) -> RunPath | None:
    """The newest run directory right under `out` of this spec, shard and limit that did not complete
    (an earlier attempt of this task, killed or preempted); None when there is none."""
    from harness.spec.sweepspec import spec_hash

    folder = as_run_path(out)
    if not folder.is_dir():
        return None
    want = spec_hash(spec)
    found: list[tuple[str, RunPath]] = []
    for child in folder.iterdir():
        if not child.is_dir() or not (child / MANIFEST).is_file():
            continue
        try:
            manifest = read_manifest(child)
        except RunDirError:
            continue
        same = manifest.spec_hash == want and manifest.shard == shard and manifest.limit == limit
        if same and manifest.status != "completed" and not manifest.merged_from:
            found.append((f"{manifest.started_at or ''} {child}", child))
    return max(found, key=lambda item: item[0])[1] if found else None


__all__ = ["SOURCES", "shard_from_env", "unfinished_run"]
