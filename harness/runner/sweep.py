"""A sweep session over a run directory: prepare (new or resume), execute, finish.

    job = new_job(spec, out=Path("runs"))          # or resume_job(run_dir, retry_errors=False)
    with open_target(job.spec) as endpoint:        # starts the embedded model for `local:`
        asyncio.run(execute(job, endpoint, stats))
    counts = finish_job(job, "completed")          # seal, compact, final manifest

Which requests a session sends: the spec's plan, restricted to the shard (a deterministic
1/N slice by a hash of `request_id`) and to the first `limit`, minus those that already have a
row (an ok row; with `retry_errors` error rows are sent again and replaced).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import itertools
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import urlsplit

import orjson

from harness.client import ChatClient, ClientConfig
from harness.datasets import Prompt, load_prompts
from harness.errors import RunDirError, TargetError, UsageError
from harness.grid import Point, RequestPlan, expand_points, plan_requests
from harness.manifest import MANIFEST, Status, finish, load_for_resume, new_manifest, new_run_id, write_manifest
from harness.requests import build_body
from harness.runner.engine import Engine, EngineConfig, Stats
from harness.redact import redact_url
from harness.spec import SweepSpec, check_api_key, parse_spec, spec_hash
from harness.store import Counts, RunStore

Shard = tuple[int, int]  # (K, N), 1 <= K <= N


@dataclass(frozen=True)
class Endpoint:
    """Where this session sends. `api_key` is never written anywhere."""

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)


@dataclass
class SweepJob:
    """A prepared session over one run directory (holds the run's lock until finished)."""

    run_dir: Path
    spec: SweepSpec
    manifest: dict[str, Any]
    store: RunStore
    total: int  # requests of the run (shard and limit applied)
    pending: int  # requests this session sends
    overrides: dict[str, Any]
    _select: Callable[[], Iterator[RequestPlan]]
    _lock: int | None = None

    def plans(self) -> Iterator[RequestPlan]:
        """The requests to send, lazily, in plan order."""
        return self._select()

    def release(self) -> None:
        """Drop the run directory's lock."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def parse_shard(text: str) -> Shard:
    """`K/N` with 1 <= K <= N → (K, N); UsageError otherwise."""
    k, sep, n = text.partition("/")
    try:
        shard = (int(k), int(n))
    except ValueError:
        shard = (0, 0)
    if not sep or not 1 <= shard[0] <= shard[1]:
        raise UsageError(f"{text!r} is not K/N with 1 <= K <= N (e.g. 2/4)", key="--shard")
    return shard


def in_shard(request_id: str, shard: Shard | None) -> bool:
    """Whether a request belongs to shard K of N (stable across machines and versions)."""
    if shard is None or shard[1] == 1:
        return True
    digest = hashlib.sha256(request_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shard[1] == shard[0] - 1


def _selection(spec: SweepSpec, shard: Shard | None, limit: int | None) -> Callable[[], Iterator[RequestPlan]]:
    prompts: list[Prompt] = load_prompts(spec)
    points: list[Point] = expand_points(spec)

    def select() -> Iterator[RequestPlan]:
        plans: Iterator[RequestPlan] = plan_requests(spec, points, prompts)
        if shard is not None:
            plans = (p for p in plans if in_shard(p.request_id, shard))
        return itertools.islice(plans, limit) if limit is not None else plans

    return select


def _lock(run_dir: Path) -> int:
    fd = os.open(run_dir / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunDirError("another harness process is running this run", file=str(run_dir)) from None
    return fd


def new_job(
    spec: SweepSpec,
    *,
    out: Path,
    shard: Shard | None = None,
    limit: int | None = None,
    overrides: dict[str, Any] | None = None,
) -> SweepJob:
    """Create a fresh run directory inside `out` for `spec`."""
    select = _selection(spec, shard, limit)
    total = sum(1 for _ in select())
    run_id = new_run_id(spec.name)
    run_dir = Path(out) / run_id
    try:
        run_dir.mkdir(parents=True)
    except OSError as exc:
        raise RunDirError(f"cannot create the run directory ({exc.strerror})", file=str(run_dir)) from None
    lock = _lock(run_dir)
    manifest = new_manifest(
        run_id=run_id,
        spec=spec.public_dict(),
        spec_hash=spec_hash(spec),
        target={"base_url": redact_url(spec.target.base_url) if spec.target.base_url else None, "model": spec.model_name},
        requests=total,
        shard=shard,
        limit=limit,
        overrides=dict(overrides or {}),
    )
    manifest = _without_key(manifest, api_key_for(spec))
    write_manifest(run_dir, manifest)
    store = RunStore(run_dir)
    return SweepJob(run_dir, spec, manifest, store, total, total, dict(overrides or {}), select, lock)


def _without_key(manifest: dict[str, Any], key: str | None) -> dict[str, Any]:
    """Defence in depth: a key interpolated into, say, base_url must not reach the manifest."""
    if not key:
        return manifest
    text = orjson.dumps(manifest).decode()
    return manifest if key not in text else dict(orjson.loads(text.replace(key, "***")))


def resume_job(run_dir: Path, *, retry_errors: bool = False, overrides: dict[str, Any] | None = None) -> SweepJob:
    """Re-open a run directory: recover its journal, plan what has no (ok) row yet."""
    run_dir = Path(run_dir)
    manifest = load_for_resume(run_dir)
    lock = _lock(run_dir)
    try:
        spec = parse_spec(manifest["spec"], source=str(run_dir / MANIFEST), base_dir=run_dir)
        shard = tuple(manifest["shard"].values()) if manifest.get("shard") else None
        select = _selection(spec, shard, manifest.get("limit"))  # type: ignore[arg-type]
        store = RunStore(run_dir)
        store.recover()
        statuses = store.statuses()
    except BaseException:
        os.close(lock)
        raise
    keep = {"ok"} if retry_errors else {"ok", "error"}

    def todo() -> Iterator[RequestPlan]:
        return (p for p in select() if statuses.get(p.request_id) not in keep)

    total = sum(1 for _ in select())
    pending = sum(1 for _ in todo())
    merged = {**dict(manifest.get("overrides") or {}), **dict(overrides or {})}
    manifest = {**manifest, "status": "running", "finished_at": None, "sessions": int(manifest.get("sessions", 1)) + 1}
    write_manifest(run_dir, manifest)
    return SweepJob(run_dir, spec, manifest, store, total, pending, merged, todo, lock)


def api_key_for(spec: SweepSpec, env: Mapping[str, str] | None = None) -> str | None:
    """The API key from the environment variable the spec names (None when it names none)."""
    name = spec.target.api_key_env
    if not name or spec.target.local:
        return None
    key = (os.environ if env is None else env).get(name)
    if not key:
        raise TargetError(
            f"environment variable {name} is not set (named by api_key_env)", file=spec.source, key="target.api_key_env"
        )
    return check_api_key(key, env_name=name, source=spec.source)


def check_reachable(base_url: str, *, source: str | None = None, timeout_s: float = 5.0) -> None:
    """Fail fast (TargetError) when nothing listens at the endpoint, instead of retrying every request."""
    url = urlsplit(base_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout_s):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise TargetError(f"cannot connect to {url.hostname}:{port} ({reason})", file=source, key="target.base_url") from None


@contextlib.contextmanager
def open_target(spec: SweepSpec, env: Mapping[str, str] | None = None) -> Iterator[Endpoint]:
    """The endpoint of a spec; for `target.local` the embedded model runs for the duration."""
    if spec.target.local:
        from harness.local import local_endpoint  # lazy: needs the [local] extra

        with local_endpoint(spec.target.local) as ep:
            yield Endpoint(base_url=ep.base_url, model=ep.model)
        return
    key = api_key_for(spec, env)
    assert spec.target.base_url is not None and spec.target.model is not None
    yield Endpoint(base_url=spec.target.base_url, model=spec.target.model, api_key=key)


def engine_config(job: SweepJob) -> EngineConfig:
    """Runner settings from the spec with the command-line overrides applied."""
    runner = job.spec.runner
    return EngineConfig(
        run_id=job.manifest["run_id"],
        concurrency=int(job.overrides.get("concurrency") or runner.concurrency),
        max_attempts=runner.max_attempts,
        deadline_s=runner.deadline_s,
        rps=job.overrides.get("rps") or runner.rps,
        tokens_per_min=runner.tokens_per_min,
        max_retry_after_s=runner.max_retry_after_s,
    )


class _Writer:
    """The engine's sink: journal each row; seal full segments in a worker thread."""

    def __init__(self, store: RunStore) -> None:
        self._store = store
        self._sealing: set[asyncio.Task[Any]] = set()

    async def write(self, row: dict[str, Any]) -> None:
        if self._store.append(row):
            segment = self._store.rotate()
            if segment is not None:
                task = asyncio.create_task(asyncio.to_thread(self._store.seal, segment))
                self._sealing.add(task)
                task.add_done_callback(self._sealing.discard)

    async def flush_every(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self._store.flush()

    async def drain(self) -> None:
        self._store.flush()
        if self._sealing:
            await asyncio.gather(*self._sealing, return_exceptions=True)


async def execute(
    job: SweepJob, endpoint: Endpoint, stats: Stats, *, config: EngineConfig | None = None, transport: Any = None
) -> None:
    """Send this session's requests. Raises CancelledError when interrupted (rows kept)."""
    config = config or engine_config(job)
    if job.manifest.get("target", {}).get("base_url") != redact_url(endpoint.base_url):
        job.manifest["target"] = {"base_url": redact_url(endpoint.base_url), "model": endpoint.model}
        write_manifest(job.run_dir, job.manifest)
    client_config = ClientConfig(
        base_url=endpoint.base_url,
        api_key=endpoint.api_key,
        headers=dict(job.spec.target.headers),
        timeout_s=job.spec.runner.timeout_s,
        pool_size=max(config.concurrency, 1),
    )
    writer = _Writer(job.store)
    stats.total = job.pending

    def build(plan: RequestPlan) -> dict[str, Any]:
        return build_body(job.spec, plan, model=endpoint.model)

    async with ChatClient(client_config, transport=transport) as client:
        engine = Engine(client, build, writer.write, config, stats)
        flusher = asyncio.create_task(writer.flush_every(0.2))
        try:
            await engine.run(job.plans())
        finally:
            flusher.cancel()
            await writer.drain()


def finish_job(job: SweepJob, status: Status) -> Counts:
    """Seal the journal, compact the results, write the final manifest, release the lock."""
    try:
        job.store.close()
        job.store.recover()
        counts = job.store.compact()
        with contextlib.suppress(OSError):
            job.store.journal.rmdir()  # only when empty; a resume makes it again
        job.manifest = finish(job.manifest, status, {"requests": job.total, "ok": counts.ok, "error": counts.error})
        write_manifest(job.run_dir, job.manifest)
        return counts
    finally:
        job.release()


def exit_code(job: SweepJob, counts: Counts) -> int:
    """0 every request ok, 1 some ended in error (or are missing)."""
    return 0 if counts.ok >= job.total and counts.error == 0 else 1


__all__ = [
    "Endpoint",
    "api_key_for",
    "Shard",
    "SweepJob",
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
