"""`--shard auto`: shard K of N from the environment a job-array scheduler gives each task.

Read in this order (the first source present wins; docs/distributed.md has example manifests):

    HARNESS_SHARD_INDEX + HARNESS_SHARD_COUNT     explicit, 1-based: K of N (any scheduler, CI matrices)
    JOB_COMPLETION_INDEX + HARNESS_SHARD_COUNT    Kubernetes Indexed Job: 0-based index; N is the Job's
                                                  `completions`, passed in HARNESS_SHARD_COUNT
    SLURM_ARRAY_TASK_ID + SLURM_ARRAY_TASK_COUNT  Slurm job array: K = ID − MIN + 1 over a contiguous
                                                  range MIN…MAX (`--array=0-9` or `1-10`; `%` throttles
                                                  are fine; a stepped or listed array is refused)

Anything missing, not a whole number or out of range is one line naming the variable (exit 2).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from harness.errors import UsageError
from harness.rundir.manifest import Shard

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


__all__ = ["SOURCES", "shard_from_env"]
