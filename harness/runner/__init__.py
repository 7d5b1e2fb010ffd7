"""The sweep runner: bounded, paced, retrying, resumable.

Stage 2 — sending the planned requests.

    body.py      the JSON body of a planned request (what goes on the wire)
    pacing.py    adaptive concurrency (AIMD on 429) and token buckets (req/s, tokens/min)
    dispatch.py  plans → rows: workers, retries, one row per request
    breaker.py   settle, circuit breaker, `not_sent` rows
    lanes.py     one lane per target: its own pool(s), concurrency, back-off, limits, breaker
    replicas.py  a target's replicas: least outstanding, taken out on failure, half-open retry
    rows.py      the ok / error row of a request
    progress.py  the progress line
    sweep.py     a session over a run directory: new / resume, target, execute, finish
    session.py   running a sweep from Python: prepare, hook, send, finish; signals; RunResult
    jobarray.py  `--shard auto`: shard K of N from a job array's environment (Kubernetes, Slurm)
    cluster.py   a sweep as shards on a Ray cluster (`--ray`): limits split, lost shards resumed, merged
    raytask.py   one shard inside a Ray worker: resume its run directory, report progress
"""

from harness.runner.dispatch import Engine, EngineConfig, Stats
from harness.runner.pacing import AdaptiveLimit, TokenBucket
from harness.runner.sweep import (
    Endpoint,
    SweepJob,
    api_key_for,
    as_shard,
    check_reachable,
    engine_config,
    execute,
    exit_code,
    finish_job,
    in_shard,
    new_job,
    open_target,
    parse_shard,
    resume_job,
)

__all__ = [
    "AdaptiveLimit",
    "Endpoint",
    "Engine",
    "EngineConfig",
    "Stats",
    "SweepJob",
    "TokenBucket",
    "api_key_for",
    "as_shard",
    "check_reachable",
    "engine_config",
    "execute",
    "exit_code",
    "finish_job",
    "in_shard",
    "new_job",
    "open_target",
    "parse_shard",
    "resume_job",
]
