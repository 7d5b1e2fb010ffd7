"""The engine: retries, classification into rows, pacing, cancellation — scripted with httpx.MockTransport."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from harness.client import ChatClient, ClientConfig
from harness.rundir.records import rows_to_table
from harness.runner import AdaptiveLimit, Engine, EngineConfig, Stats, TokenBucket
from harness.spec.datasets import Prompt
from harness.spec.grid import RequestPlan, make_point, request_id_of

OK = {
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
}


def plans(n: int) -> list[RequestPlan]:
    point = make_point({"temperature": 0.5})
    out = []
    for i in range(n):
        prompt = Prompt(id=f"p{i}", messages=({"role": "user", "content": f"p{i}"},), reference="Paris")
        out.append(RequestPlan(request_id_of("m", point.point_json, prompt.id, 0), point, prompt, 0))
    return out


def build(plan: RequestPlan) -> dict[str, Any]:
    return {"model": "m", "messages": list(plan.prompt.messages), **plan.point.params, "max_tokens": 4}


def prompt_of(request: httpx.Request) -> str:
    import json

    return str(json.loads(request.content)["messages"][0]["content"])


def run(
    handler: Callable[[httpx.Request], Any], n: int, **config: Any
) -> tuple[list[dict[str, Any]], Stats]:
    rows: list[dict[str, Any]] = []
    stats = Stats(total=n)

    async def sink(row: dict[str, Any]) -> None:
        rows.append(row)

    async def go() -> None:
        timeout = config.pop("timeout_s", 5.0)
        cfg = EngineConfig(run_id="run", backoff_s=0.001, backoff_max_s=0.01, **config)
        client = ChatClient(ClientConfig(base_url="http://t/v1", timeout_s=timeout), transport=httpx.MockTransport(handler))
        async with client:
            await Engine(client, build, sink, cfg, stats).run(plans(n))

    asyncio.run(go())
    return rows, stats


def scripted(script: dict[str, list[Any]]) -> Callable[[httpx.Request], httpx.Response]:
    """Per prompt, a list of answers to give in turn (an int is an error status, 'reset' a dropped connection)."""

    def handler(request: httpx.Request) -> httpx.Response:
        answers = script.get(prompt_of(request), [])
        answer = answers.pop(0) if answers else 200
        if answer == "reset":
            raise httpx.RemoteProtocolError("peer closed connection", request=request)
        if answer == 200:
            return httpx.Response(200, json=OK)
        return httpx.Response(answer, headers={"retry-after-ms": "5"}, json={"error": {"message": f"status {answer}"}})

    return handler


def test_retries_then_ok_and_final_errors_become_rows() -> None:
    script = {"p0": [429, 500, "reset", 200], "p1": [400], "p2": [503] * 10, "p3": [408, 409]}
    rows, stats = run(scripted(script), 5, max_attempts=4)
    by = {r["prompt_id"]: r for r in rows}
    assert len(rows) == 5 and len({r["request_id"] for r in rows}) == 5
    assert (by["p0"]["status"], by["p0"]["attempts"], by["p0"]["http_status"]) == ("ok", 4, 200)
    assert (by["p1"]["status"], by["p1"]["attempts"], by["p1"]["error_type"]) == ("error", 1, "client_error")
    assert by["p1"]["error_message"] == "HTTP 400: status 400" and by["p1"]["http_status"] == 400
    assert (by["p2"]["status"], by["p2"]["attempts"], by["p2"]["http_status"]) == ("error", 4, 503)
    assert (by["p3"]["status"], by["p3"]["attempts"]) == ("ok", 3)
    assert by["p4"]["attempts"] == 1 and by["p4"]["content"] == "Paris" and by["p4"]["temperature"] == 0.5
    assert by["p4"]["max_tokens"] == 4 and by["p4"]["top_p"] is None and by["p4"]["reference"] == "Paris"
    assert stats.retries == 3 + 3 + 2 and (stats.ok, stats.error, stats.done) == (3, 2, 5)
    rows_to_table(rows)  # every row fits the explicit schema


def test_each_retry_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="harness.runner.dispatch")
    _rows, stats = run(scripted({"p0": [500, 500], "p1": [429]}), 2)
    retries = [r for r in caplog.records if r.name == "harness.runner.dispatch" and r.getMessage().startswith("retry ")]
    assert len(retries) == stats.retries == 3


@pytest.mark.slow
def test_random_faults_every_request_exactly_once() -> None:
    rng = random.Random(7)

    def flaky(request: httpx.Request) -> httpx.Response:
        r = rng.random()
        if r < 0.15:
            return httpx.Response(429, headers={"retry-after-ms": "1"}, json={})
        if r < 0.25:
            return httpx.Response(500, text="oops")
        if r < 0.30:
            raise httpx.ReadError("reset", request=request)
        if r < 0.32:
            return httpx.Response(200, content=b"{garbage")
        return httpx.Response(200, json=OK)

    rows, stats = run(flaky, 1500, concurrency=32)
    ids = [r["request_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 1500
    # a 500 repeated word for word three times is final (breaker.settle): ~3 more error rows
    assert stats.ok >= 1490 and stats.ok + stats.error == 1500


def test_retry_after_is_honoured_and_capped() -> None:
    def slow_down(request: httpx.Request) -> httpx.Response:
        if not hasattr(slow_down, "done"):
            slow_down.done = True  # type: ignore[attr-defined]
            return httpx.Response(429, headers={"retry-after": "30", "retry-after-ms": "120"}, json={})
        return httpx.Response(200, json=OK)

    t0 = time.monotonic()
    rows, _ = run(slow_down, 1)
    assert 0.12 <= time.monotonic() - t0 < 5 and rows[0]["attempts"] == 2

    del slow_down.done  # type: ignore[attr-defined]
    t0 = time.monotonic()
    rows, _ = run(slow_down, 1, max_retry_after_s=0.01)
    assert time.monotonic() - t0 < 1 and rows[0]["status"] == "ok"


@pytest.mark.slow
def test_deadline_bounds_a_request_including_retries() -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(10)
        return httpx.Response(200, json=OK)

    t0 = time.monotonic()
    rows, _ = run(hang, 2, deadline_s=0.3, max_attempts=50, timeout_s=0.1)
    assert time.monotonic() - t0 < 3
    assert all(r["status"] == "error" and r["error_type"] == "timeout" for r in rows)
    assert all(1 <= r["attempts"] <= 4 for r in rows)


def test_cancel_is_never_retried_and_leaves_no_partial_row() -> None:
    calls: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        calls.append(prompt_of(request))
        if prompt_of(request) != "p0":
            await asyncio.sleep(10)
        return httpx.Response(200, json=OK)

    rows: list[dict[str, Any]] = []

    async def sink(row: dict[str, Any]) -> None:
        rows.append(row)

    async def go() -> None:
        client = ChatClient(ClientConfig(base_url="http://t/v1"), transport=httpx.MockTransport(handler))
        engine = Engine(client, build, sink, EngineConfig(run_id="r", concurrency=4), Stats())
        task = asyncio.create_task(engine.run(plans(4)))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await client.aclose()

    asyncio.run(go())
    assert [r["prompt_id"] for r in rows] == ["p0"]
    assert sorted(calls) == ["p0", "p1", "p2", "p3"]  # each sent once: no retry after the cancel


def test_a_bug_in_building_a_body_is_an_error_row_not_a_crash() -> None:
    rows: list[dict[str, Any]] = []

    async def sink(row: dict[str, Any]) -> None:
        rows.append(row)

    def broken(plan: RequestPlan) -> dict[str, Any]:
        body = build(plan)
        body["messages"] = object() if plan.prompt.id == "p1" else body["messages"]
        return body

    async def go() -> None:
        client = ChatClient(ClientConfig(base_url="http://t/v1"), transport=httpx.MockTransport(lambda r: httpx.Response(200, json=OK)))
        async with client:
            await Engine(client, broken, sink, EngineConfig(run_id="r"), Stats()).run(plans(3))

    asyncio.run(go())
    by = {r["prompt_id"]: r for r in rows}
    assert by["p1"]["status"] == "error" and by["p1"]["error_type"] == "internal"
    assert by["p0"]["status"] == by["p2"]["status"] == "ok"


# -- pacing -------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_adaptive_limit_backs_off_once_per_burst_then_recovers() -> None:
    clock = FakeClock()
    limit = AdaptiveLimit(64, clock=clock, cooldown_s=1.0)
    limit.on_rate_limited()
    limit.on_rate_limited()  # same burst: counted once
    assert limit.limit == 44
    clock.now = 2.0
    limit.on_rate_limited()
    assert limit.limit == 30
    for _ in range(30):
        limit.on_success()
    assert limit.limit == 31
    for _ in range(10_000):
        limit.on_success()
    assert limit.limit == 64
    for _ in range(40):
        clock.now += 2
        limit.on_rate_limited()
    assert limit.limit == 1


def test_adaptive_limit_bounds_inflight() -> None:
    async def go() -> int:
        limit = AdaptiveLimit(3)
        peak = 0

        async def one() -> None:
            nonlocal peak
            await limit.acquire()
            peak = max(peak, limit.inflight)
            await asyncio.sleep(0.001)
            limit.release()

        await asyncio.gather(*(one() for _ in range(50)))
        assert limit.inflight == 0
        return peak

    assert asyncio.run(go()) == 3


def test_token_bucket_paces_to_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, burst=1.0, clock=clock, sleep=clock.sleep)

    async def go() -> None:
        for _ in range(21):
            await bucket.take()

    asyncio.run(go())
    assert clock.now == pytest.approx(2.0)
    bucket.adjust(5)  # a charge after the fact (tokens/min: the answer was longer than reserved)
    before = clock.now

    async def one() -> None:
        await bucket.take()

    asyncio.run(one())
    assert clock.now == pytest.approx(before + 0.6)


def test_progress_line_and_quiet() -> None:
    import io

    from rich.console import Console

    from harness.runner.progress import RunProgress, summary

    stats = Stats(total=1000, done=250, ok=240, error=10, retries=17, started=100.0, limit=12)
    line = summary(stats, now=110.0)
    assert line == "250/1,000  ok 240  error 10  retries 17  25.0 req/s  ETA 00:30  concurrency 12"
    out = io.StringIO()
    with RunProgress(stats, quiet=True, console=Console(file=out)):
        pass
    assert out.getvalue() == ""
    with RunProgress(stats, console=Console(file=out), clock=lambda: 110.0):
        pass
    assert "250/1,000" in out.getvalue()
    narrow = io.StringIO()  # a log file or CI console narrower than the line: one line, not broken mid-word
    with RunProgress(stats, console=Console(file=narrow, width=40), clock=lambda: 110.0):
        pass
    assert narrow.getvalue() == line + "\n"


def test_429s_shrink_the_concurrency_limit() -> None:
    def always_429(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"retry-after-ms": "2"}, json={})

    rows, stats = run(always_429, 8, concurrency=8, max_attempts=3)
    assert all(r["error_type"] == "rate_limited" and r["attempts"] == 3 for r in rows)
    assert stats.limit == 5  # one cut per burst (cooldown), 8 * 0.7 → 5, no successes to recover
    rows, stats = run(always_429, 8, concurrency=8, max_attempts=3, adaptive=False)
    assert stats.limit == 8
