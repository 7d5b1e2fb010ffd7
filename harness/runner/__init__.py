"""The sweep runner: bounded, paced, retrying, resumable.

    limits.py  adaptive concurrency (AIMD on 429) and token buckets (req/s, tokens/min)
    engine.py  plans → rows: workers, retries, one row per request
    rows.py    the ok / error row of a request
    sweep.py   a session over a run directory: new / resume, target, execute, finish
    session.py running a sweep from Python: prepare, hook, send, finish; signals; RunResult
    merge.py   join run directories of one spec (shards)
"""

from harness.runner.engine import Engine, EngineConfig, Stats
from harness.runner.limits import AdaptiveLimit, TokenBucket
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
