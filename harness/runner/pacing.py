"""Pacing for the runner: adaptive concurrency (AIMD on 429) and token buckets (req/s, tokens/min).

All three take an injectable clock so tests need no real waiting.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class AdaptiveLimit:
    """A semaphore whose size shrinks on 429 and grows back as requests succeed.

    On a 429 the limit is multiplied by `decrease` (at most once per `cooldown_s`, so one burst
    of 429s counts once); after every `limit` successes it grows by one, up to `maximum`.
    """

    def __init__(
        self, maximum: int, *, decrease: float = 0.7, cooldown_s: float = 1.0, clock: Clock = time.monotonic
    ) -> None:
        self.maximum = maximum
        self.limit = maximum
        self.inflight = 0
        self._decrease = decrease
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._last_cut = float("-inf")
        self._successes = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> None:
        """Wait for a free slot."""
        if self.inflight < self.limit and not self._waiters:
            self.inflight += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # the slot was handed to us just as we were cancelled
            else:
                self._waiters.remove(future)
            raise

    def release(self) -> None:
        """Give a slot back and wake waiters while there is room."""
        self.inflight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.inflight < self.limit:
            future = self._waiters.popleft()
            if not future.done():
                self.inflight += 1
                future.set_result(None)

    def on_rate_limited(self) -> None:
        """A 429: back off (once per cooldown)."""
        now = self._clock()
        if now - self._last_cut < self._cooldown_s:
            return
        self._last_cut = now
        self.limit = max(1, int(self.limit * self._decrease))
        self._successes = 0

    def on_success(self) -> None:
        """A success: recover one slot per `limit` successes."""
        if self.limit >= self.maximum:
            return
        self._successes += 1
        if self._successes >= self.limit:
            self._successes = 0
            self.limit += 1
            self._wake()


class TokenBucket:
    """A reservation-style token bucket: each caller takes its cost now and sleeps off any debt.

    Fair under concurrency (callers queue in time) and exact on average; `adjust` charges or
    refunds the difference once the real cost is known (tokens/min limits).
    """

    def __init__(
        self, rate_per_s: float, *, burst: float | None = None, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep
    ) -> None:
        self.rate = rate_per_s
        self.capacity = burst if burst is not None else max(1.0, rate_per_s * 0.1)
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    async def take(self, cost: float = 1.0) -> None:
        """Reserve `cost` tokens, sleeping until they are earned."""
        self._refill()
        self._tokens -= cost
        if self._tokens < 0:
            try:
                await self._sleep(-self._tokens / self.rate)
            except asyncio.CancelledError:
                self._tokens += cost
                raise

    def adjust(self, delta: float) -> None:
        """Charge (`delta` > 0) or refund (< 0) tokens after the fact."""
        self._refill()
        self._tokens -= delta


__all__ = ["AdaptiveLimit", "TokenBucket"]
