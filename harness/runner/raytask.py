"""One shard of a Ray sweep, run inside a Ray worker (harness.runner.cluster submits it).

    outcome = run_shard(run_dir, index, preflight=False, progress=actor)

The task only ever *resumes* its shard's run directory (the driver created it with the shard's
share of the limits), so it is idempotent: when Ray runs it again after its worker or node
died, the rows already journaled stay and only the requests without a row are sent. A `local:`
target starts its model here, inside the worker, for the duration of the task (the preflight
then runs here too, next to the model). Progress goes to the driver through a small actor.

Nothing here imports ray: the driver wraps `run_shard` with `ray.remote`.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from typing import Any

from harness.runner.dispatch import Stats

REPORT_EVERY_S = 0.5


@dataclass(frozen=True)
class ShardProgress:
    """A shard's counters as the driver sums them: rows kept from earlier attempts included."""

    total: int
    done: int
    ok: int
    error: int
    retries: int
    limit: int
    halted: str | None = None


@dataclass(frozen=True)
class ShardOutcome:
    """How a shard's task ended."""

    index: int
    run_dir: str
    status: str
    requests: int
    ok: int
    error: int
    interrupted: bool
    halted: str | None


class _Reporter:
    """Sends the shard's counters to the driver's progress actor every REPORT_EVERY_S."""

    def __init__(self, progress: Any, index: int, stats: Stats, kept_ok: int, kept_error: int, total: int) -> None:
        self._progress = progress
        self._index = index
        self._stats = stats
        self._kept = (kept_ok, kept_error)
        self._total = total
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"harness-shard-{index}-progress", daemon=True)

    def snapshot(self) -> ShardProgress:
        s = self._stats
        ok, error = self._kept[0] + s.ok, self._kept[1] + s.error
        return ShardProgress(total=self._total, done=ok + error, ok=ok, error=error, retries=s.retries,
                             limit=s.limit, halted=s.halted)

    def send(self) -> None:
        if self._progress is not None:
            self._progress.report.remote(self._index, self.snapshot())

    def _loop(self) -> None:
        while not self._stop.wait(REPORT_EVERY_S):
            self.send()

    def __enter__(self) -> _Reporter:
        self.send()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.send()


def _interruptible() -> None:
    """`ray.cancel` interrupts a task with SIGINT: a worker whose SIGINT was inherited as ignored
    (a driver started with `&` from a script) would never stop, so Python's handler is put back."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def run_shard(run_dir: str, index: int, preflight: bool = False, progress: Any = None) -> ShardOutcome:
    """Finish shard `index`'s run directory (send what has no row yet) and seal it."""
    from harness.runner.session import prepare_resume, run_job

    _interruptible()
    job = prepare_resume(run_dir, wait_for_lock=True)  # on an object store: the killed attempt's lease
    kept = job.store.counts()
    stats = Stats(total=job.pending)
    hook = None
    if preflight:
        from harness.probe.preflight import preflight_job_async

        async def hook(job: Any, endpoint: Any) -> None:
            await preflight_job_async(job, endpoint)

    with _Reporter(progress, index, stats, kept.ok, kept.error, job.total):
        # Ray runs the task in the worker's main thread: its signals stay Ray's (ray.cancel works)
        result = run_job(job, stats=stats, before_first_request=hook, handle_signals=False)
    return ShardOutcome(index=index, run_dir=str(result.run_dir), status=result.status, requests=job.total,
                        ok=result.counts.ok, error=result.counts.error, interrupted=result.interrupted,
                        halted=stats.halted)


__all__ = ["REPORT_EVERY_S", "ShardOutcome", "ShardProgress", "run_shard"]
