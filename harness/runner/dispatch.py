"""The async engine: send planned requests with bounded concurrency, pacing and retries.

Every request ends as exactly one row handed to the sink — ok, or error with its type, message,
last HTTP status and attempt count. A cancellation (Ctrl-C) is never retried and yields no row
for the requests in flight, so a resume sends them again.

Workers pull from one lazy iterator of plans (memory stays flat for any sweep size). Each
*attempt* passes the req/s bucket, the tokens/min bucket and the adaptive concurrency limit.
Retries wait the server's Retry-After (capped, plus a little jitter), else a jittered
exponential backoff — `uniform(0, min(backoff_max_s, backoff_s * 2**(n-1)))` after the n-th
attempt — for at most `max_attempts` attempts and, when set, never past `deadline_s` in total
(a wait that would end after the deadline is not started). The first attempt is made directly;
only a request whose first attempt failed enters tenacity's retry loop, so the common path pays
nothing for the retry machinery.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from harness.client import Completion, RequestFailed, scrub
from harness.runner.breaker import Breaker, settle
from harness.runner.pacing import AdaptiveLimit, TokenBucket
from harness.runner.rows import base_row, error_row, ok_row
from harness.spec.grid import RequestPlan

if TYPE_CHECKING:  # tenacity is imported by the first retry, not at start-up
    from tenacity import AsyncRetrying, RetryCallState

log = logging.getLogger(__name__)

BodyBuilder = Callable[[RequestPlan], dict[str, Any]]
Sink = Callable[[dict[str, Any]], Awaitable[None]]


class Client(Protocol):
    """What the engine needs of `harness.client.ChatClient`."""

    async def complete(self, body: dict[str, Any], *, timeout_s: float | None = None) -> Completion: ...


@dataclass(frozen=True)
class EngineConfig:
    """How to send. Backoff waits are `uniform(0, min(backoff_max_s, backoff_s * 2**n))`."""

    run_id: str
    concurrency: int = 16
    max_attempts: int = 6
    deadline_s: float | None = None
    rps: float | None = None
    tokens_per_min: int | None = None
    max_retry_after_s: float = 60.0
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    adaptive: bool = True


@dataclass
class LaneStats:
    """One lane's (one target's) share of the counters. Its concurrency limit and requests in
    flight are read live from the lane's `AdaptiveLimit` (nothing is written per request for them)."""

    done: int = 0
    ok: int = 0
    error: int = 0
    gauge: AdaptiveLimit | None = field(default=None, repr=False)

    @property
    def limit(self) -> int:
        return self.gauge.limit if self.gauge is not None else 0

    @property
    def inflight(self) -> int:
        return self.gauge.inflight if self.gauge is not None else 0


@dataclass
class Stats:
    """Live counters, read by the progress display (never written by it).

    Several engines (one per target, harness.runner.lanes) may share one `Stats`: each registers
    its lane in `lanes`, and `limit` is the sum of the lanes' concurrency limits."""

    total: int = 0
    done: int = 0
    ok: int = 0
    error: int = 0
    retries: int = 0
    started: float = field(default_factory=time.monotonic)
    limit: int = 0
    errors_by_type: dict[str, int] = field(default_factory=dict)
    halted: str | None = None  # why the breaker stopped sending (see breaker.py)
    lanes: dict[str, LaneStats] = field(default_factory=dict)

    def count(self, row: dict[str, Any]) -> None:
        """Account for one finished row."""
        self.done += 1
        if row["status"] == "ok":
            self.ok += 1
        else:
            self.error += 1
            kind = str(row.get("error_type"))
            self.errors_by_type[kind] = self.errors_by_type.get(kind, 0) + 1

    @property
    def inflight(self) -> int | None:
        """Requests in flight over every lane (None when no engine registered one, e.g. a Ray run's totals)."""
        return sum(lane.inflight for lane in self.lanes.values()) if self.lanes else None

    def sum_limits(self) -> None:
        """`limit` = the lanes' concurrency limits summed (after one of them changed)."""
        self.limit = sum(lane.limit for lane in self.lanes.values())


def retry_wait(config: EngineConfig, failure: RequestFailed, attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failed attempt."""
    if failure.retry_after_s is not None:
        wait = min(failure.retry_after_s, config.max_retry_after_s)
        return wait + random.uniform(0, 0.1 * wait)
    ceiling = config.backoff_s * 2.0 ** min(attempts - 1, 60)
    return random.uniform(0, min(config.backoff_max_s, ceiling))


def _failure(state: RetryCallState) -> RequestFailed:
    """The failure of the attempt tenacity just judged."""
    exc = state.outcome.exception() if state.outcome is not None else None
    assert isinstance(exc, RequestFailed)
    return exc


class Engine:
    """Runs plans to rows. One instance per sweep session."""

    def __init__(self, client: Client, build: BodyBuilder, sink: Sink, config: EngineConfig, stats: Stats,
                 *, lane: str = "") -> None:  # fmt: skip
        self._client = client
        self._build = build
        self._sink = sink
        self._config = config
        self.stats = stats
        self._limit = AdaptiveLimit(config.concurrency)
        self._rps = TokenBucket(config.rps) if config.rps else None
        self._tpm = TokenBucket(config.tokens_per_min / 60.0, burst=config.tokens_per_min / 6.0) if config.tokens_per_min else None
        self._token_estimate = 256.0
        self.breaker = Breaker()
        self.lane = stats.lanes.setdefault(lane, LaneStats())  # `lane`: the target's name (one engine each)
        self.lane.gauge = self._limit
        stats.sum_limits()

    async def run(self, plans: Iterable[RequestPlan]) -> None:
        """Send every plan; returns when all have a row (or raises CancelledError)."""
        iterator = iter(plans)
        workers = max(1, self._config.concurrency)
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(self._worker(iterator))

    async def _worker(self, plans: Iterator[RequestPlan]) -> None:
        for plan in plans:  # next() never awaits, so sharing one iterator between tasks is safe
            if self.breaker.reason is not None:
                row = Breaker.skipped(base_row(self._config.run_id, plan, self._build(plan), datetime.now(UTC)), self.breaker.reason)
            else:
                row = await self.run_one(plan)
            self.breaker.record(row)
            if self.breaker.reason is not None:  # the breaker never closes; other engines may share stats
                self.stats.halted = self.breaker.reason
            self.stats.count(row)
            lane = self.lane
            lane.done += 1
            if row["status"] == "ok":
                lane.ok += 1
            else:
                lane.error += 1
            await self._sink(row)

    async def run_one(self, plan: RequestPlan) -> dict[str, Any]:
        """One request, retries included → its row. Raises only CancelledError."""
        body = self._build(plan)
        base = base_row(self._config.run_id, plan, body, datetime.now(UTC))
        started = time.monotonic()
        tries = _Tries()
        try:
            done = await self._send(plan, body, started, tries)
            return ok_row(base, done, attempts=tries.count, latency_s=tries.last_latency)
        except RequestFailed as failure:
            return error_row(base, failure, attempts=max(tries.count, 1), latency_s=tries.last_latency)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not cost the sweep: record it, keep going
            log.exception("request %s failed unexpectedly", plan.request_id)
            bug = RequestFailed("internal", scrub(f"{type(exc).__name__}: {exc}", getattr(self._client, "secrets", ())))
            return error_row(base, bug, attempts=max(tries.count, 1), latency_s=tries.last_latency)

    async def _send(self, plan: RequestPlan, body: dict[str, Any], started: float, tries: _Tries) -> Completion:
        """The first attempt directly (most succeed, and it costs no retry machinery), the rest via tenacity."""
        earlier: list[RequestFailed] = []
        try:
            return await self._settled_attempt(body, started, tries, earlier)
        except RequestFailed as failure:
            if not failure.retryable:
                raise
            first: RequestFailed | None = failure
        async for attempt in self._retrying(plan, started, tries):
            with attempt:
                if first is not None:  # tenacity's attempt 1 is the one already made
                    failed, first = first, None
                    raise failed
                return await self._settled_attempt(body, started, tries, earlier)
        raise AssertionError("unreachable: tenacity re-raises the last failure")  # pragma: no cover

    async def _settled_attempt(self, body: dict[str, Any], started: float, tries: _Tries, earlier: list[RequestFailed]) -> Completion:
        """One attempt; a failure is judged against the attempts before it (the same 500 three times is final)."""
        try:
            return await self._attempt(body, started, tries)
        except RequestFailed as raw:
            failure = settle(raw, earlier)
            earlier.append(raw)
            raise failure from None

    def _retrying(self, plan: RequestPlan, started: float, tries: _Tries) -> AsyncRetrying:
        """tenacity's loop with harness's rules: retryable failures only, at most `max_attempts`
        attempts, the server's Retry-After or a jittered backoff, and no wait that would end past
        `deadline_s`."""
        from tenacity import AsyncRetrying, retry_if_exception

        config = self._config

        def wait(state: RetryCallState) -> float:
            return retry_wait(config, _failure(state), tries.count)

        def stop(state: RetryCallState) -> bool:
            if tries.count >= config.max_attempts:
                return True
            deadline = config.deadline_s
            return deadline is not None and time.monotonic() - started + state.upcoming_sleep >= deadline

        def before_sleep(state: RetryCallState) -> None:
            self.stats.retries += 1
            log.info("retry %s attempt %d after %s; waiting %.2fs", plan.request_id, tries.count, _failure(state), state.upcoming_sleep)

        return AsyncRetrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, RequestFailed) and exc.retryable),
            wait=wait,
            stop=stop,
            before_sleep=before_sleep,
            reraise=True,
        )

    async def _attempt(self, body: dict[str, Any], started: float, tries: _Tries) -> Completion:
        timeout = None
        if self._config.deadline_s is not None:
            timeout = self._config.deadline_s - (time.monotonic() - started)
            if timeout <= 0:
                raise RequestFailed("timeout", f"deadline of {self._config.deadline_s}s reached", retryable=False)
        estimate = self._estimate(body)
        if self._rps is not None:
            await self._rps.take()
        if self._tpm is not None:
            await self._tpm.take(estimate)
        await self._limit.acquire()
        tries.count += 1
        t0 = time.perf_counter()
        try:
            done = await self._client.complete(body, timeout_s=timeout)
        except RequestFailed as failure:
            if failure.error_type == "rate_limited" and self._config.adaptive:
                before = self._limit.limit
                self._limit.on_rate_limited()
                if self._limit.limit != before:
                    self.stats.sum_limits()
            if self._tpm is not None:
                self._tpm.adjust(-estimate)
            raise
        finally:
            tries.last_latency = time.perf_counter() - t0
            self._limit.release()
        if self._limit.limit < self._limit.maximum:  # recovering from a 429: the limit may grow
            self._limit.on_success()
            self.stats.sum_limits()
        if self._tpm is not None:
            used = done.prompt_tokens + done.completion_tokens
            self._tpm.adjust(used - estimate)
            self._token_estimate = 0.9 * self._token_estimate + 0.1 * used
        return done

    def _estimate(self, body: dict[str, Any]) -> float:
        """Tokens a request will likely use, reserved before sending (corrected afterwards)."""
        if self._tpm is None:
            return 0.0
        return self._token_estimate


@dataclass
class _Tries:
    count: int = 0
    last_latency: float | None = None


__all__ = ["BodyBuilder", "Client", "Engine", "EngineConfig", "LaneStats", "Sink", "Stats", "retry_wait"]
