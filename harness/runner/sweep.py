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
import dataclasses
import hashlib
import itertools
import os
import socket
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from harness.analysis.scoring import Scorer
from harness.errors import RunDirError, TargetError, UsageError
from harness.rundir.fs import ObjectPath, RunPath, as_run_path, display
from harness.rundir.layout import environment_reason, storage_error
from harness.rundir.lock import ObjectLock, RunLock, acquire_lock
from harness.rundir.manifest import (
    Counts,
    Manifest,
    Shard,
    Status,
    check_resumable,
    new_manifest,
    new_run_id,
    read_manifest,
    write_manifest,
)
from harness.rundir.store import SEAL_ROWS, ObjectRunStore, RowCounts, RunStore, open_store
from harness.runner.dispatch import Engine, EngineConfig, Stats
from harness.spec.datasets import Prompt, load_prompts
from harness.spec.grid import Point, RequestPlan, expand_points, plan_requests
from harness.spec.sweepspec import SweepSpec, check_api_key

if TYPE_CHECKING:  # adaptive repeats import pandas and numpy: only for adaptive specs
    from harness.rundir.finisher import Finisher
    from harness.runner.rounds import AdaptiveRun
    from harness.runner.session import RunResult


@dataclass(frozen=True)
class Endpoint:
    """Where this session sends. `api_key` is never written anywhere."""

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    replicas: tuple[str, ...] = ()  # a target with a list of base URLs: all of them (base_url is the first)


@dataclass
class SweepJob:
    """A prepared session over one run directory (holds the run's lock until finished)."""

    run_dir: RunPath  # a local folder, or an `s3://…` prefix (harness.rundir.fs)
    spec: SweepSpec
    manifest: Manifest
    store: RunStore
    total: int  # requests of the run (shard and limit applied)
    pending: int  # requests this session sends
    overrides: dict[str, Any]
    _select: Callable[[], Iterator[RequestPlan]]
    _lock: RunLock | ObjectLock | None = None
    result: RunResult | None = None  # how the session ended, once it has (harness.runner.session)
    adaptive: AdaptiveRun | None = None  # adaptive repeats: the rounds' feedback loop (harness.runner.rounds)
    finisher: Finisher | None = None  # seals and compacts in a helper process (start_finisher)
    # GET /models answers of this session (harness.probe.preflight.Seen): preflight and lanes ask once
    models_seen: dict[Any, Any] = field(default_factory=dict, repr=False)

    def plans(self) -> Iterator[RequestPlan]:
        """The requests to send, lazily, in plan order."""
        return self._select()

    def plans_for(self, target: str) -> Iterator[RequestPlan]:
        """The requests to send to one target, lazily, in plan order."""
        return (p for p in self._select() if p.target == target)

    def for_target(self, target: str) -> SweepJob:
        """This job seen from one target (its spec view and requests), for a per-target preflight or probe.
        It holds no lock: finishing the job stays with the original."""
        from harness.spec.targets import sent_values

        select = self._select
        view = sent_values(self.spec, target, expand_points(self.spec)) if self.spec.multi_target else self.spec

        def plans() -> Iterator[RequestPlan]:
            return (p for p in select() if p.target == target)

        return dataclasses.replace(self, spec=view, _select=plans, _lock=None, result=None)

    def release(self) -> None:
        """Drop the run directory's lock (and stop a finisher that was not used)."""
        if self.finisher is not None:
            self.finisher.abandon()
            self.finisher = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @property
    def resume_command(self) -> str:
        """The command that finishes this run."""
        return f"harness run --resume {display(self.run_dir)}"


def parse_shard(text: str) -> Shard:
    """`K/N` with 1 <= K <= N → Shard; UsageError otherwise."""
    k, sep, n = text.partition("/")
    try:
        index, count = int(k), int(n)
    except ValueError:
        index, count = 0, 0
    if not sep or not 1 <= index <= count:
        raise UsageError(f"{text!r} is not K/N with 1 <= K <= N (e.g. 2/4)", key="--shard")
    return Shard(index=index, count=count)


def as_shard(shard: Shard | tuple[int, int] | None) -> Shard | None:
    """A Shard from a Shard or a (K, N) tuple."""
    if shard is None or isinstance(shard, Shard):
        return shard
    return Shard(index=shard[0], count=shard[1])


def in_shard(request_id: str, shard: Shard | tuple[int, int] | None) -> bool:
    """Whether a request belongs to shard K of N (stable across machines and versions)."""
    shard = as_shard(shard)
    if shard is None or shard.count == 1:
        return True
    digest = hashlib.sha256(request_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shard.count == shard.index - 1


def _selection(spec: SweepSpec, shard: Shard | None, limit: int | None) -> Callable[[], Iterator[RequestPlan]]:
    prompts: list[Prompt] = load_prompts(spec)
    points: list[Point] = expand_points(spec)

    def select() -> Iterator[RequestPlan]:
        plans: Iterator[RequestPlan] = plan_requests(spec, points, prompts)
        if shard is not None:
            plans = (p for p in plans if in_shard(p.request_id, shard))
        return itertools.islice(plans, limit) if limit is not None else plans

    return select


# A session of at most this many requests keeps its plan in memory (a few hundred bytes a
# request) once counted, instead of planning it again to send it (each request id is a sha256).
KEEP_PLANS = 20_000


def counted(select: Callable[[], Iterator[RequestPlan]], keep: int = KEEP_PLANS
            ) -> tuple[int, Callable[[], Iterator[RequestPlan]]]:
    """(how many requests `select` gives, a selection of the same requests): planned once and kept
    when at most `keep`; else `select` itself, planned again when asked (memory stays flat)."""
    kept: list[RequestPlan] | None = []
    count = 0
    for plan in select():
        count += 1
        if kept is not None:
            kept.append(plan)
            if count > keep:
                kept = None
    if kept is None:
        return count, select
    plans = tuple(kept)
    return count, lambda: iter(plans)


ADAPTIVE_LIMIT = "cannot cut an adaptive sweep (sweep.repeats is a mapping) at N requests; lower sweep.repeats.max"


def _adaptive_points(spec: SweepSpec, shard: Shard | None) -> tuple[list[Point], list[Prompt]]:
    """Adaptive repeats shard by cell: shard K of N holds the cells whose cell_id hashes to K."""
    points = [p for p in expand_points(spec) if shard is None or in_shard(p.cell_id, shard)]
    return points, load_prompts(spec)


def _adaptive_job(spec: SweepSpec, shard: Shard | None, stored: dict[str, float], scorer: Scorer | None
                  ) -> tuple[AdaptiveRun, Callable[[], Iterator[RequestPlan]]]:
    from harness.runner.rounds import AdaptiveRun

    points, prompts = _adaptive_points(spec, shard)
    run = AdaptiveRun(spec, points, prompts, scorer, stored)
    return run, lambda: iter(run.next_plans())


def new_job(
    spec: SweepSpec,
    *,
    out: str | RunPath,
    shard: Shard | tuple[int, int] | None = None,
    limit: int | None = None,
    overrides: dict[str, Any] | None = None,
    secrets: tuple[str, ...] = (),
) -> SweepJob:
    """Create a fresh run directory inside `out` for `spec` (`secrets`: values never to store)."""
    shard = as_shard(shard)
    adaptive: AdaptiveRun | None = None
    if spec.sweep.adaptive is not None:
        if limit is not None:
            raise UsageError(ADAPTIVE_LIMIT, key="--limit")
        from harness.runner.rounds import metric_scorer

        adaptive, select = _adaptive_job(spec, shard, {}, metric_scorer(spec))
        pending = len(adaptive.next_plans())
        total = adaptive.scheduled
    else:
        total, select = counted(_selection(spec, shard, limit))
        pending = total
    run_id = new_run_id(spec.name)
    run_dir = as_run_path(out) / run_id
    try:
        run_dir.mkdir(parents=True)
    except OSError as exc:
        raise RunDirError(f"cannot create the run directory ({environment_reason(exc) or exc.strerror})",
                          file=display(run_dir)) from None
    lock = acquire_lock(run_dir)
    try:
        manifest = new_manifest(run_id=run_id, spec=spec, requests=total, shard=shard, limit=limit,
                                overrides=dict(overrides or {}), secrets=secrets)
        if isinstance(run_dir, ObjectPath):
            manifest = manifest.model_copy(update={"storage": display(run_dir)})
        if adaptive is not None:
            manifest = manifest.model_copy(update={"adaptive": adaptive.summary(str(shard) if shard else None)})
        write_manifest(run_dir, manifest)
        store = open_store(run_dir)
    except OSError as exc:
        lock.release()
        raise storage_error(exc, run_dir) from None
    _guard(store, lock)
    return SweepJob(run_dir, spec, manifest, store, total, pending, dict(overrides or {}), select, lock,
                    adaptive=adaptive)


def _guard(store: RunStore, lock: RunLock | ObjectLock) -> None:
    """On an object store, every segment and seal first checks that the lease is still ours."""
    if isinstance(store, ObjectRunStore):
        store.guard = lock.check


def resume_job(run_dir: str | RunPath, *, retry_errors: bool = False, overrides: dict[str, Any] | None = None,
               spec: SweepSpec | None = None, wait_for_lock: bool = False,
               allow_scorers: Sequence[str] = ()) -> SweepJob:
    """Re-open a run directory: recover its journal, plan what has no (ok) row yet.

    `spec`: the run's spec given again (needed when the stored one was redacted; checked by hash).
    `wait_for_lock`: on an object store, wait out a dead owner's lease instead of refusing at once.
    Adaptive repeats: the stored rows are replayed through the schedule (the same decisions as
    the first session), then the current round's missing requests are planned. A custom scorer
    as the adaptive metric is imported only when named in `allow_scorers` (`--allow-scorer`) or
    when the spec was given again (it is the user's own)."""
    run_dir = as_run_path(run_dir)
    manifest = read_manifest(run_dir)
    check_resumable(manifest, run_dir)
    supplied = spec
    spec = manifest.stored_spec(run_dir, supplied=supplied)
    allow: bool | Sequence[str] = True if supplied is not None else allow_scorers
    scorer = None
    if spec.sweep.adaptive is not None:
        from harness.runner.rounds import metric_scorer

        scorer = metric_scorer(spec, allow_custom=allow)
    lock = acquire_lock(run_dir, wait=wait_for_lock)
    try:
        store = open_store(run_dir)
        _guard(store, lock)
        store.recover()
        keep = {"ok"} if retry_errors else {"ok", "error"}
        if spec.sweep.adaptive is not None:
            return _resume_adaptive(run_dir, spec, manifest, store, keep, scorer, overrides, lock)
        select = _selection(spec, manifest.shard, manifest.limit)
        statuses = store.statuses()

        def todo() -> Iterator[RequestPlan]:
            return (p for p in select() if statuses.get(p.request_id) not in keep)

        total = sum(1 for _ in select())
        pending, todo_plans = counted(todo)
        manifest = manifest.resumed(dict(overrides or {}))
        write_manifest(run_dir, manifest)
    except OSError as exc:
        lock.release()
        raise storage_error(exc, run_dir) from None
    except BaseException:
        lock.release()
        raise
    return SweepJob(run_dir, spec, manifest, store, total, pending, dict(manifest.overrides), todo_plans, lock)


def _resume_adaptive(run_dir: RunPath, spec: SweepSpec, manifest: Manifest, store: RunStore, keep: set[str],
                     scorer: Scorer | None, overrides: dict[str, Any] | None, lock: RunLock | ObjectLock) -> SweepJob:
    from harness.rundir.results import read_table
    from harness.runner.rounds import round_columns, stored_scores

    metric = spec.sweep.adaptive.until.metric if spec.sweep.adaptive else ""
    columns = None if scorer is not None and not scorer.builtin else list(round_columns(spec))
    table = read_table(run_dir, columns)
    rows = [r for r in table.drop_columns([c for c in ("logprobs",) if c in table.column_names]).to_pylist()
            if r["status"] in keep]
    adaptive, select = _adaptive_job(spec, manifest.shard, stored_scores(rows, metric, scorer), scorer)
    pending = len(adaptive.next_plans())
    shard = str(manifest.shard) if manifest.shard else None
    manifest = manifest.resumed(dict(overrides or {})).model_copy(update={"adaptive": adaptive.summary(shard)})
    write_manifest(run_dir, manifest)
    return SweepJob(run_dir, spec, manifest, store, adaptive.scheduled, pending, dict(manifest.overrides), select,
                    lock, adaptive=adaptive)


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
    """The endpoint of a spec (its first target); for `target.local` the embedded model runs for the duration."""
    if spec.target.local:
        from harness.localmodel.process import local_endpoint  # lazy: needs the [local] extra

        with local_endpoint(spec.target.local) as ep:
            yield Endpoint(base_url=ep.base_url, model=ep.model)
        return
    key = api_key_for(spec, env)
    urls = spec.target.urls
    assert urls and spec.target.model is not None
    yield Endpoint(base_url=urls[0], model=spec.target.model, api_key=key, replicas=urls if len(urls) > 1 else ())


@contextlib.contextmanager
def open_targets(spec: SweepSpec, env: Mapping[str, str] | None = None) -> Iterator[dict[str, Endpoint]]:
    """The endpoint of every target swept (harness.spec.targets), by name, in spec order."""
    from harness.spec.targets import target_axis

    with contextlib.ExitStack() as stack:
        yield {axis.name: stack.enter_context(open_target(spec.for_target(axis.name), env)) for axis in target_axis(spec)}


def engine_config(job: SweepJob) -> EngineConfig:
    """Runner settings from the spec with the command-line overrides applied."""
    runner = job.spec.runner
    return EngineConfig(
        run_id=job.manifest.run_id,
        concurrency=int(job.overrides.get("concurrency") or runner.concurrency),
        max_attempts=runner.max_attempts,
        deadline_s=runner.deadline_s,
        rps=job.overrides.get("rps") or runner.rps,
        tokens_per_min=job.overrides.get("tokens_per_min") or runner.tokens_per_min,
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
            try:
                self._store.flush()
            except OSError:  # the disk refused: the next append (or drain) raises it where it is handled
                return

    async def drain(self) -> None:
        self._store.flush()
        if self._sealing:
            await asyncio.gather(*self._sealing, return_exceptions=True)


async def execute(
    job: SweepJob, endpoint: Endpoint | Mapping[str, Endpoint], stats: Stats, *, config: EngineConfig | None = None,
    transport: Any = None,
) -> None:
    """Send this session's requests (to one endpoint, or to each target's: `open_targets`). Raises
    CancelledError when interrupted (rows kept), and StorageError (one line) when the disk refuses a write."""
    endpoints = {job.spec.target.label: endpoint} if isinstance(endpoint, Endpoint) else dict(endpoint)
    try:
        await _execute(job, endpoints, stats, config or engine_config(job), transport)
    except BaseExceptionGroup as group:
        refused = _first_oserror(group)
        if refused is None:
            raise
        raise storage_error(refused, job.run_dir) from None
    except OSError as exc:
        raise storage_error(exc, job.run_dir) from None


async def _execute(job: SweepJob, endpoints: dict[str, Endpoint], stats: Stats, config: EngineConfig, transport: Any) -> None:
    from harness.runner.lanes import run_lanes

    first = next(iter(endpoints.values()), None)
    if first is not None:
        updated = job.manifest.with_target(first.base_url, first.model)
        if updated.target != job.manifest.target:
            job.manifest = updated
            write_manifest(job.run_dir, job.manifest)
    writer = _Writer(job.store)
    stats.total = job.pending
    flusher = asyncio.create_task(writer.flush_every(0.2))
    write: Callable[[dict[str, Any]], Awaitable[None]] = writer.write
    rounds: Callable[[Mapping[str, Engine]], Awaitable[None]] | None = None
    if job.adaptive is not None:
        write = _observed(writer.write, job.adaptive)

        async def rounds(engines: Mapping[str, Engine]) -> None:
            await _run_rounds(job, engines, stats)

    try:
        await run_lanes(job, endpoints, stats, config, write, transport=transport, rounds=rounds)
    finally:
        flusher.cancel()
        await writer.drain()


def _observed(sink: Callable[[dict[str, Any]], Awaitable[None]], run: AdaptiveRun
              ) -> Callable[[dict[str, Any]], Awaitable[None]]:
    async def write(row: dict[str, Any]) -> None:
        await sink(row)
        run.observe(row)

    return write


async def _run_rounds(job: SweepJob, engines: Mapping[str, Engine], stats: Stats) -> None:
    """Adaptive repeats: send a round, score it, schedule the next, until every cell stopped.

    With several targets a round's requests go to their targets' lanes at once, and the round
    closes when every lane has sent its share; a target whose breaker stopped its sending has its
    cells halted, and the rounds go on for the others."""
    run = job.adaptive
    assert run is not None
    plans = run.next_plans()
    while plans:
        await _send_round(engines, plans)
        tripped = [name for name, e in engines.items() if e.breaker.reason is not None]
        if len(tripped) == len(engines):  # every server refuses everything: no more rounds (--resume goes on)
            return
        run.close_round()
        for name in tripped:  # that target's cells stop as "halted"; the other targets race on
            run.halt_target(name)
        plans = run.next_plans()
        job.total = run.scheduled
        job.pending += len(plans)
        stats.total = job.pending
        _record_adaptive(job)
    _record_adaptive(job)


async def _send_round(engines: Mapping[str, Engine], plans: list[RequestPlan]) -> None:
    """One round: each target's requests (in plan order) on its own lane, all lanes at once."""
    if len(engines) == 1:
        await next(iter(engines.values())).run(plans)
        return
    share: dict[str, list[RequestPlan]] = {}
    for plan in plans:
        share.setdefault(plan.target, []).append(plan)
    async with asyncio.TaskGroup() as group:
        for name, mine in share.items():
            group.create_task(engines[name].run(mine))


def _record_adaptive(job: SweepJob) -> None:
    """The manifest's `adaptive` section, rewritten after every look (an interrupted run shows it)."""
    assert job.adaptive is not None
    shard = str(job.manifest.shard) if job.manifest.shard else None
    job.manifest = job.manifest.model_copy(update={"adaptive": job.adaptive.summary(shard)})
    write_manifest(job.run_dir, job.manifest)


def _first_oserror(group: BaseExceptionGroup) -> OSError | None:
    """The first OSError in a (nested) exception group: a journal write the disk refused."""
    for exc in group.exceptions:
        if isinstance(exc, OSError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _first_oserror(exc)
            if found is not None:
                return found
    return None


def finish_job(job: SweepJob, status: Status, reason: str | None = None) -> RowCounts:
    """Seal the journal, compact the results, write the final manifest, release the lock.

    When the disk refuses (full, read-only) the rows already sealed stay, the manifest says
    "interrupted" with the reason if it can still be written, and RunDirError is raised.
    """
    try:
        if job._lock is not None:
            job._lock.check()  # another process took an object-store run over: leave it alone
        try:
            counts = _seal_and_compact(job)
        except OSError as exc:
            _mark_interrupted(job, environment_reason(exc) or str(exc.strerror or exc))
            raise storage_error(exc, job.run_dir) from None
        with contextlib.suppress(OSError):
            job.store.journal.rmdir()  # only when empty; a resume makes it again
        job.manifest = job.manifest.finished(status, Counts(requests=job.total, ok=counts.ok, error=counts.error), reason)
        try:
            write_manifest(job.run_dir, job.manifest)
        except OSError as exc:
            raise storage_error(exc, job.run_dir) from None
        return counts
    finally:
        job.release()


def start_finisher(job: SweepJob, started: Finisher | None = None) -> None:
    """Seal and compact this session's rows in a helper process (harness.rundir.finisher), so the
    run's own process never imports pyarrow: worth it for a session that fits in one journal
    segment (start-up is most of its time); a larger one imports pyarrow to seal as it goes.
    `started`: a helper started before the job was prepared (it imports while the run starts);
    used when the job wants one, else stopped."""
    run_dir = job.run_dir
    if job.finisher is None and type(job.store) is RunStore and isinstance(run_dir, Path) and job.pending <= SEAL_ROWS:
        from harness.rundir.finisher import Finisher  # a local run directory (not an object store)

        job.finisher = started if started is not None else Finisher.start()
        if job.finisher is not None:
            job.finisher.watch(run_dir)  # it parses the journal as it grows: less left for the end
    elif started is not None:
        started.abandon()


def _seal_and_compact(job: SweepJob) -> RowCounts:
    """Seal the journal and compact the results (in the helper when there is one)."""
    if job.finisher is not None:
        finisher, job.finisher = job.finisher, None
        job.store.rotate()
        assert isinstance(job.run_dir, Path)  # start_finisher: only for a local run directory
        counts = finisher.finish(job.run_dir)
        if counts is not None:
            return counts
    job.store.close()
    job.store.recover()
    return job.store.compact()


def _mark_interrupted(job: SweepJob, reason: str) -> None:
    """Best effort: say in the manifest why the run stopped (the disk may refuse this too)."""
    with contextlib.suppress(OSError):
        counts = job.store.counts() if job.store.results.is_dir() else RowCounts(0, 0, 0)
        done = Counts(requests=job.total, ok=counts.ok, error=counts.error)
        write_manifest(job.run_dir, job.manifest.finished("interrupted", done, reason))


def exit_code(job: SweepJob, counts: RowCounts) -> int:
    """0 every request ok, 1 some ended in error (or are missing)."""
    return 0 if counts.ok >= job.total and counts.error == 0 else 1


__all__ = [
    "ADAPTIVE_LIMIT",
    "Endpoint",
    "Shard",
    "SweepJob",
    "api_key_for",
    "as_shard",
    "engine_config",
    "execute",
    "exit_code",
    "finish_job",
    "in_shard",
    "new_job",
    "open_target",
    "open_targets",
    "parse_shard",
    "resume_job",
    "start_finisher",
]
