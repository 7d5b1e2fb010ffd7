"""ReplicaSet: least outstanding, taken out on connection failures and 5xx streaks, half-open trial, failover."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from harness.client import Completion, RequestFailed
from harness.runner.replicas import ReplicaSet, answered_by


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Fake:
    """A client whose answers are scripted: 'ok', 'connection', 'server_error', 'rate_limited', or a wait."""

    def __init__(self, name: str, script: list[str] | None = None, *, default: str = "ok") -> None:
        self.name, self.script, self.default, self.calls = name, list(script or []), default, 0
        self.gate: asyncio.Event | None = None

    async def complete(self, body: dict[str, Any], *, timeout_s: float | None = None) -> Completion:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        what = self.script.pop(0) if self.script else self.default
        if what == "ok":
            return Completion(self.name, None, "stop", 1, 1, None, None, 200, 10)
        status = {"server_error": 503, "rate_limited": 429}.get(what)
        raise RequestFailed(what, f"{what} from {self.name}", http_status=status, retryable=True)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        pass


def _set(*clients: Fake, clock: Clock | None = None, **kw: Any) -> ReplicaSet:
    return ReplicaSet([(f"http://{c.name}:1/v1", c) for c in clients], clock=clock or Clock(), **kw)


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_least_outstanding_spreads_concurrent_requests() -> None:
    a, b, c = Fake("a"), Fake("b"), Fake("c")
    for f in (a, b, c):
        f.gate = asyncio.Event()
    replicas = _set(a, b, c)

    async def main() -> list[str]:
        tasks = [asyncio.create_task(replicas.complete({})) for _ in range(9)]
        await asyncio.sleep(0)
        assert [r.inflight for r in replicas.replicas] == [3, 3, 3]
        for f in (a, b, c):
            assert f.gate is not None
            f.gate.set()
        return [t.content for t in await asyncio.gather(*tasks)]

    assert sorted(_run(main())) == ["a"] * 3 + ["b"] * 3 + ["c"] * 3


def test_connection_failure_fails_over_and_takes_the_replica_out_until_a_trial_succeeds() -> None:
    clock = Clock()
    dead, live = Fake("dead", default="connection"), Fake("live")
    replicas = _set(dead, live, clock=clock, cooldown_s=5.0)

    async def one() -> tuple[str, str | None]:
        done = await replicas.complete({})
        return done.content, answered_by()

    assert _run(one()) == ("live", "http://live:1/v1")  # failed over at once
    assert dead.calls == 1 and replicas.up() == 1
    for _ in range(5):
        assert _run(one())[0] == "live"
    assert dead.calls == 1  # out: not tried again during the cool-down
    clock.now = 5.0  # half-open: one trial, which fails → out again, for twice as long
    assert _run(one())[0] == "live" and dead.calls == 2
    assert replicas.replicas[0].cooldown_s == 10.0
    clock.now = 16.0
    dead.default = "ok"  # it came back
    _run(one())
    assert _run(one()) and dead.calls >= 2 and replicas.up() == 2
    assert replicas.replicas[0].down_until is None


def test_a_streak_of_server_errors_takes_a_replica_out_but_429_does_not() -> None:
    clock = Clock()
    flaky = Fake("flaky", ["server_error", "server_error", "server_error"])
    busy = Fake("busy", ["rate_limited"] * 5)
    replicas = ReplicaSet([("http://flaky:1/v1", flaky)], clock=clock, streak=3)
    for _ in range(3):
        with pytest.raises(RequestFailed):
            _run(replicas.complete({}))
    assert replicas.up() == 0 and replicas.replicas[0].ejections == 1
    only = ReplicaSet([("http://busy:1/v1", busy)], clock=clock, streak=3)
    for _ in range(5):
        with pytest.raises(RequestFailed):
            _run(only.complete({}))
    assert only.up() == 1


def test_every_replica_out_still_tries_the_one_due_back_first() -> None:
    clock = Clock()
    a, b = Fake("a", default="connection"), Fake("b", default="connection")
    replicas = _set(a, b, clock=clock)
    with pytest.raises(RequestFailed) as info:
        _run(replicas.complete({}))
    assert info.value.error_type == "connection" and a.calls == 1 and b.calls == 1  # failed over once, then gave up
    with pytest.raises(RequestFailed):
        _run(replicas.complete({}))
    assert a.calls + b.calls == 3  # no other replica up: one try, the error goes to the engine's retry


def test_a_cancelled_trial_does_not_block_the_replica() -> None:
    clock = Clock()
    a = Fake("a", ["connection"])
    replicas = _set(a, clock=clock)
    with pytest.raises(RequestFailed):
        _run(replicas.complete({}))
    clock.now = 100.0
    a.gate = asyncio.Event()

    async def cancel_trial() -> None:
        task = asyncio.create_task(replicas.complete({}))
        await asyncio.sleep(0)
        assert replicas.replicas[0].trial
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    _run(cancel_trial())
    assert not replicas.replicas[0].trial
    a.gate = None
    assert _run(replicas.complete({})).content == "a"
