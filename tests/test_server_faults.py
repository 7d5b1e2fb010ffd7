"""Fault injection: every kind, forced by header or drawn from a seeded spec; latency; speed."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import httpx
import orjson
import pytest

from harness.errors import UsageError
from harness.server.app import FAULT_HEADER, ServerThread, reference_app
from harness.server.faults import FaultInjector, FaultSpec, Latency

BODY = {"model": "harness/ngram", "messages": [{"role": "user", "content": "Once upon a time"}], "max_tokens": 8, "temperature": 0}
STREAM = {**BODY, "stream": True}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with ServerThread(reference_app(retry_after_s=0.25, timeout_cap_s=5.0)) as running:
        yield running


def post(server: ServerThread, fault: str | None, body: dict = BODY, timeout: float = 5.0) -> httpx.Response:
    headers = {FAULT_HEADER: fault} if fault else {}
    return httpx.post(f"{server.base_url}/chat/completions", json=body, headers=headers, timeout=timeout)


def sse_events(text: str) -> list[str]:
    return [block[6:] for block in text.split("\n\n") if block.startswith("data: ")]


def test_429_carries_retry_after(server: ServerThread) -> None:
    response = post(server, "429")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1" and response.headers["retry-after-ms"] == "250"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize("status", ["500", "502", "503", "400"])
def test_status_faults_have_openai_error_bodies(server: ServerThread, status: str) -> None:
    response = post(server, status)
    assert response.status_code == int(status)
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_reset_drops_the_connection(server: ServerThread) -> None:
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        post(server, "reset")


@pytest.mark.slow
def test_timeout_never_answers(server: ServerThread) -> None:
    start = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        post(server, "timeout", timeout=0.5)
    assert time.monotonic() - start < 4.0


def test_garbage_is_200_with_invalid_json(server: ServerThread) -> None:
    response = post(server, "garbage")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    with pytest.raises(ValueError):
        response.json()


def test_garbage_in_a_stream_is_an_invalid_event(server: ServerThread) -> None:
    events = sse_events(post(server, "garbage", STREAM).text)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(events[0])


def test_stream_cut_ends_without_finish_or_done(server: ServerThread) -> None:
    complete = sse_events(post(server, None, STREAM).text)
    assert complete[-1] == "[DONE]"
    cut = sse_events(post(server, "stream_cut", STREAM).text)
    assert "[DONE]" not in cut and 1 <= len(cut) < len(complete) - 1
    chunks = [orjson.loads(e) for e in cut]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)


def test_stream_cut_on_a_plain_request_truncates_the_body(server: ServerThread) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        post(server, "stream_cut")


def test_server_keeps_working_after_faults(server: ServerThread) -> None:
    for fault in ("reset", "garbage", "stream_cut", "500"):
        try:
            post(server, fault, timeout=2.0)
        except httpx.HTTPError:
            pass
    assert post(server, None).status_code == 200


def test_unknown_forced_fault_is_400(server: ServerThread) -> None:
    assert post(server, "explode").status_code == 400


def test_probabilities_are_seeded_and_roughly_right() -> None:
    spec = FaultSpec.parse("429=0.2,500=0.1,garbage=0.05")
    draws = [FaultInjector(spec, seed=3).draw() for _ in range(1)]
    first = FaultInjector(spec, seed=3)
    second = FaultInjector(spec, seed=3)
    a = [first.draw() for _ in range(4000)]
    assert a == [second.draw() for _ in range(4000)] and draws[0] == a[0]
    counts = Counter(a)
    assert abs(counts["429"] / 4000 - 0.2) < 0.03 and abs(counts["500"] / 4000 - 0.1) < 0.02
    assert abs(counts[None] / 4000 - 0.65) < 0.03
    assert a != [FaultInjector(spec, seed=4).draw() for _ in range(4000)]


def test_spec_faults_over_http_are_seeded() -> None:
    def statuses() -> list[int]:
        app = reference_app(faults=FaultSpec.parse("429=0.3,503=0.2"), fault_seed=9, retry_after_s=0.01)
        with ServerThread(app) as srv, httpx.Client() as http:
            return [http.post(f"{srv.base_url}/chat/completions", json=BODY).status_code for _ in range(40)]

    first = statuses()
    assert first == statuses()
    assert {200, 429, 503} == set(first)


def test_certain_fault_always_fires() -> None:
    with ServerThread(reference_app(faults=FaultSpec.parse("500=1"))) as srv:
        assert [httpx.post(f"{srv.base_url}/chat/completions", json=BODY).status_code for _ in range(5)] == [500] * 5
        assert httpx.get(f"{srv.base_url}/models").status_code == 200  # only chat completions fail


@pytest.mark.parametrize(
    "text",
    ["429", "429=", "429=x", "429=1.5", "429=-0.1", "boom=0.1", "200=0.1", "600=0.1", "429=0.6,500=0.6", "reset=0.5,reset"],
)
def test_bad_fault_specs_name_the_flag(text: str) -> None:
    with pytest.raises(UsageError) as info:
        FaultSpec.parse(text)
    assert str(info.value).startswith("--faults: ") and "\n" not in str(info.value)


def test_fault_spec_round_trips() -> None:
    spec = FaultSpec.parse("429=0.1, 500=0.05,reset=0.02,timeout=0.01,garbage=0.01,stream_cut=0.01")
    assert str(spec) == "429=0.1,500=0.05,reset=0.02,timeout=0.01,garbage=0.01,stream_cut=0.01"
    assert FaultSpec.from_mapping({"429": 0.1}).rates == (("429", 0.1),)


@pytest.mark.parametrize(("text", "mean", "jitter"), [("50", 0.05, 0.0), ("50:20", 0.05, 0.02), ("0", 0.0, 0.0)])
def test_latency_parses(text: str, mean: float, jitter: float) -> None:
    assert Latency.parse(text) == Latency(mean, jitter)


@pytest.mark.parametrize("text", ["", "fast", "-5", "5:-1", "5:x", "inf", "nan"])
def test_bad_latency_names_the_flag(text: str) -> None:
    with pytest.raises(UsageError, match="^--latency-ms: "):
        Latency.parse(text)


def test_latency_jitter_stays_in_range() -> None:
    import random

    rng = random.Random(0)
    samples = [Latency(0.05, 0.02).sample(rng) for _ in range(1000)]
    assert min(samples) >= 0.03 and max(samples) <= 0.07 and len(set(samples)) > 900


@pytest.mark.slow
def test_latency_and_tokens_per_s_delay_answers() -> None:
    with ServerThread(reference_app(latency=Latency(0.3, 0.0))) as slow:
        start = time.monotonic()
        assert httpx.post(f"{slow.base_url}/chat/completions", json=BODY).status_code == 200
        assert time.monotonic() - start >= 0.29
    with ServerThread(reference_app(tokens_per_s=40.0)) as paced:
        start = time.monotonic()
        response = httpx.post(f"{paced.base_url}/chat/completions", json={**STREAM, "max_tokens": 8})
        assert response.status_code == 200 and time.monotonic() - start >= 8 / 40 - 0.01
