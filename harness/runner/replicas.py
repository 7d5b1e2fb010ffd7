"""Replicas of one target: requests go to the least busy healthy replica; a failing one is taken out for a while.

    replicas = ReplicaSet([(url, ChatClient(...)), ...])      # the engine's Client
    done = await replicas.complete(body)                       # one attempt, on one replica (or failed over)
    answered_by()                                              # the redacted URL of the replica just used

Rules:
- Pick: among the replicas that are up, the one with the fewest requests in flight (ties: list order).
- Out: a connection failure (refused, reset, DNS) takes a replica out at once; so does a streak of
  `streak` server errors or timeouts in a row (a 2xx or a 4xx ends a streak). 429 says nothing about
  health (the target's rate limit is the runner's business).
- Back: after `cooldown_s` (doubling on each failed trial, at most `max_cooldown_s`) a replica is
  *half-open*: one request is let through as a trial; success puts it back, failure takes it out again.
- Failover: an attempt that failed to connect is made again at once on another replica that is up
  (the engine does not see it, and it costs no attempt); other failures go back to the engine, whose
  retry picks a replica afresh. With every replica out, the one due back soonest is tried.

`answered_by()` reads a context variable set in the calling task, so the runner's sink (same worker
task, right after the request) knows which replica answered each row.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.client import ChatClient, Completion, RequestFailed
from harness.redact import redact_url

_answered: contextvars.ContextVar[str | None] = contextvars.ContextVar("harness_replica", default=None)

_UNHEALTHY = frozenset({"server_error", "timeout", "stream_cut", "invalid_response"})


def answered_by() -> str | None:
    """The redacted URL of the replica used by the last request of this task; reset to None."""
    shown = _answered.get()
    if shown is not None:
        _answered.set(None)
    return shown


@dataclass
class Replica:
    """One replica's client and health."""

    url: str
    client: Any  # ChatClient (or anything with `complete` and `aclose`)
    shown: str = ""
    inflight: int = 0
    streak: int = 0  # server errors / timeouts in a row
    down_until: float | None = None  # out until then (then half-open)
    cooldown_s: float = 0.0
    trial: bool = False  # a half-open trial request is in flight
    answered: int = 0
    failed: int = 0
    ejections: int = 0
    history: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.shown = self.shown or redact_url(self.url)


class ReplicaSet:
    """The engine's client for a target with several base URLs."""

    def __init__(self, replicas: Sequence[tuple[str, Any]], *, cooldown_s: float = 2.0, max_cooldown_s: float = 60.0,
                 streak: int = 3, clock: Callable[[], float] = time.monotonic) -> None:
        if not replicas:
            raise ValueError("a replica set needs at least one replica")
        self.replicas = [Replica(url, client) for url, client in replicas]
        self._cooldown_s = cooldown_s
        self._max_cooldown_s = max_cooldown_s
        self._streak = streak
        self._clock = clock

    @property
    def secrets(self) -> tuple[str, ...]:
        out: list[str] = []
        for r in self.replicas:
            out += list(getattr(r.client, "secrets", ()))
        return tuple(dict.fromkeys(out))

    async def aclose(self) -> None:
        for r in self.replicas:
            await r.client.aclose()

    async def __aenter__(self) -> ReplicaSet:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- choosing ---------------------------------------------------------------------------------

    def _usable(self, r: Replica, now: float) -> bool:
        if r.down_until is None:
            return True
        return now >= r.down_until and not r.trial  # half-open: one trial at a time

    def pick(self, avoid: set[int] | None = None) -> Replica:
        """The replica for the next attempt (see the module docstring)."""
        now = self._clock()
        avoid = avoid or set()
        best: Replica | None = None
        for i, r in enumerate(self.replicas):
            if i in avoid or not self._usable(r, now):
                continue
            if best is None or r.inflight < best.inflight:
                best = r
        if best is not None:
            if best.down_until is not None:
                best.trial = True
            return best
        candidates = [r for i, r in enumerate(self.replicas) if i not in avoid] or self.replicas
        return min(candidates, key=lambda r: (r.down_until or 0.0, r.inflight))

    def up(self) -> int:
        """Replicas currently in rotation (not out)."""
        return sum(1 for r in self.replicas if r.down_until is None)

    # -- health -----------------------------------------------------------------------------------

    def _take_out(self, r: Replica, why: str) -> None:
        r.cooldown_s = min(self._max_cooldown_s, r.cooldown_s * 2 if r.cooldown_s else self._cooldown_s)
        r.down_until = self._clock() + r.cooldown_s
        r.streak = 0
        r.ejections += 1
        r.history.append(why)

    def _on_success(self, r: Replica) -> None:
        r.answered += 1
        r.streak = 0
        if r.down_until is not None:
            r.down_until, r.cooldown_s = None, 0.0
        r.trial = False

    def _on_failure(self, r: Replica, failure: RequestFailed) -> None:
        r.failed += 1
        was_trial, r.trial = r.trial, False
        if failure.error_type == "connection":
            self._take_out(r, "connection")
        elif failure.error_type in _UNHEALTHY:
            r.streak += 1
            if was_trial or r.streak >= self._streak:
                self._take_out(r, failure.error_type)
        elif was_trial and failure.error_type != "rate_limited":
            r.down_until, r.cooldown_s = None, 0.0  # it answered: it is up
        elif was_trial:
            r.down_until = self._clock()  # a 429 on a trial: still half-open

    # -- sending ----------------------------------------------------------------------------------

    async def complete(self, body: dict[str, Any], *, timeout_s: float | None = None) -> Completion:
        """One attempt on the best replica; a connection failure is made again on another one that is up."""
        tried: set[int] = set()
        while True:
            r = self.pick(tried)
            index = self.replicas.index(r)
            tried.add(index)
            _answered.set(r.shown)
            r.inflight += 1
            try:
                done: Completion = await r.client.complete(body, timeout_s=timeout_s)
            except RequestFailed as failure:
                self._on_failure(r, failure)
                now = self._clock()
                others = any(i not in tried and self._usable(x, now) for i, x in enumerate(self.replicas))
                if failure.error_type == "connection" and others:
                    continue
                raise
            except BaseException:  # cancelled: the trial (if it was one) did not happen
                r.trial = False
                raise
            finally:
                r.inflight -= 1
            self._on_success(r)
            return done

    def describe(self) -> list[dict[str, Any]]:
        """Per replica: answered, failed, times taken out (for logs and tests)."""
        return [{"replica": r.shown, "answered": r.answered, "failed": r.failed, "ejections": r.ejections}
                for r in self.replicas]


def replica_clients(urls: Sequence[str], make: Callable[[str], ChatClient]) -> ReplicaSet:
    """A ReplicaSet with one client (one connection pool) per URL."""
    return ReplicaSet([(url, make(url)) for url in urls])


__all__ = ["Replica", "ReplicaSet", "answered_by", "replica_clients"]
