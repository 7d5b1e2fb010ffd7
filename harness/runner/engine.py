"""The async engine: send planned requests with bounded concurrency, pacing and retries.

Every request ends as exactly one row handed to the sink — ok, or error with its type, message,
last HTTP status and attempt count. A cancellation (Ctrl-C) is never retried and yields no row
for the requests in flight, so a resume sends them again.

Workers pull from one lazy iterator of plans (memory stays flat for any sweep size). Each
*attempt* passes the req/s bucket, the tokens/min bucket and the adaptive concurrency limit.
Retries use tenacity: jittered exponential backoff, or the server's Retry-After (capped), at
most `max_attempts` attempts and, when set, `deadline_s` in total.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Iterable, Iterator, Protocol

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_before_delay
from tenacity.stop import stop_base
from tenacity.wait import wait_random_exponential

from harness.client import Completion, RequestFailed, scrub
from harness.grid import RequestPlan
from harness.runner.breaker import Breaker, settle
from harness.runner.limits import AdaptiveLimit, TokenBucket
from harness.runner.rows import base_row, error_row, ok_row

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
class Stats:
    """Live counters, read by the progress display (never written by it)."""

    total: int = 0
    done: int = 0
    ok: int = 0
    error: int = 0
    retries: int = 0
    started: float = field(default_factory=time.monotonic)
    limit: int = 0
    errors_by_type: dict[str, int] = field(default_factory=dict)
    halted: str | None = None  # why the breaker stopped sending (see breaker.py)

    def count(self, row: dict[str, Any]) -> None:
        """Account for one finished row."""
        self.done += 1
        if row["status"] == "ok":
            self.ok += 1
        else:
            self.error += 1
            kind = str(row.get("error_type"))
            self.errors_by_type[kind] = self.errors_by_type.get(kind, 0) + 1


class _Wait:
    """Tenacity wait: the server's Retry-After (capped, plus a little jitter), else jittered backoff."""

    def __init__(self, config: EngineConfig) -> None:
        self._cap = config.max_retry_after_s
        self._backoff = wait_random_exponential(multiplier=config.backoff_s, max=config.backoff_max_s)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RequestFailed) and exc.retry_after_s is not None:
            wait = min(exc.retry_after_s, self._cap)
            return wait + random.uniform(0, 0.1 * wait)
        return float(self._backoff(state))


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, RequestFailed) and exc.retryable


class Engine:
    """Runs plans to rows. One instance per sweep session."""

    def __init__(self, client: Client, build: BodyBuilder, sink: Sink, config: EngineConfig, stats: Stats) -> None:
        self._client = client
        self._build = build
        self._sink = sink
        self._config = config
        self.stats = stats
        self._limit = AdaptiveLimit(config.concurrency)
        self._rps = TokenBucket(config.rps) if config.rps else None
        self._tpm = TokenBucket(config.tokens_per_min / 60.0, burst=config.tokens_per_min / 6.0) if config.tokens_per_min else None
        self._token_estimate = 256.0
        self._wait = _Wait(config)
        stop: stop_base = stop_after_attempt(config.max_attempts)
        if config.deadline_s is not None:
            stop = stop | stop_before_delay(config.deadline_s)
        self._stop = stop
        self.breaker = Breaker()
        stats.limit = self._limit.limit

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
                row = Breaker.skipped(base_row(self._config.run_id, plan, self._build(plan), datetime.now(timezone.utc)), self.breaker.reason)
            else:
                row = await self.run_one(plan)
            self.breaker.record(row)
            self.stats.halted = self.breaker.reason
            self.stats.count(row)
            await self._sink(row)

    async def run_one(self, plan: RequestPlan) -> dict[str, Any]:
        """One request, retries included → its row. Raises only CancelledError."""
        body = self._build(plan)
        base = base_row(self._config.run_id, plan, body, datetime.now(timezone.utc))
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

    async def _send(self, plan: RequestPlan, body: dict[str, Any], started: float, tries: "_Tries") -> Completion:
        """The first attempt directly (most succeed: tenacity's set-up costs CPU), the rest via tenacity."""
        try:
            return await self._attempt(body, started, tries)
        except RequestFailed as failure:
            if not failure.retryable:
                raise
            first: RequestFailed | None = failure
        earlier: list[RequestFailed] = [first] if first is not None else []

        async def attempt() -> Completion:
            nonlocal first
            if first is not None:  # tenacity's attempt 1 is the one already made
                failed, first = first, None
                raise failed
            try:
                return await self._attempt(body, started, tries)
            except RequestFailed as failure:
                settled = settle(failure, earlier)  # the same 500 three times is final
                earlier.append(failure)
                raise settled from None

        return await self._retrying(plan, tries)(attempt)  # type: ignore[no-any-return]

    def _retrying(self, plan: RequestPlan, tries: "_Tries") -> AsyncRetrying:
        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            self.stats.retries += 1
            wait = state.next_action.sleep if state.next_action else 0.0
            log.info("retry %s attempt %d after %s; waiting %.2fs", plan.request_id, state.attempt_number, exc, wait)

        return AsyncRetrying(
            stop=self._stop,
            wait=self._wait,
            retry=retry_if_exception(_retryable),
            before_sleep=before_sleep,
            reraise=True,
        )

    async def _attempt(self, body: dict[str, Any], started: float, tries: "_Tries") -> Completion:
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
                self._limit.on_rate_limited()
                self.stats.limit = self._limit.limit
            if self._tpm is not None:
                self._tpm.adjust(-estimate)
            raise
        finally:
            tries.last_latency = time.perf_counter() - t0
            self._limit.release()
        self._limit.on_success()
        self.stats.limit = self._limit.limit
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


__all__ = ["BodyBuilder", "Client", "Engine", "EngineConfig", "Sink", "Stats"]
