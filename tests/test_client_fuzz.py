"""Fuzz: whatever bytes a server sends (whole bodies, SSE streams, compressed or not, cut into
any chunks), `ChatClient.complete` returns a Completion or raises a classified RequestFailed —
never another exception, never a hang, and every count it returns fits a Parquet int64."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.client import ChatClient, ClientConfig, Completion, RequestFailed
from harness.client.bounds import Bounds
from harness.client.http import ErrorType
from harness.client.sse import SSEDecoder

ERROR_TYPES = set(ErrorType.__args__)  # type: ignore[attr-defined]

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=False),
    st.text(max_size=20),
)
json_value = st.recursive(
    json_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20
)


def _plausible(content: Any, usage: Any, logprobs: Any, finish: Any) -> dict[str, Any]:
    return {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "logprobs": logprobs, "finish_reason": finish}],
        "usage": usage,
    }


def _delta(content: Any, finish: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]}


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):  # ints over 64 bits: write them by hand
        import json

        return json.dumps(value).encode()


edge_ints = st.sampled_from([0, 1, -1, 2**31, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**30])
count = st.one_of(edge_ints, st.integers(min_value=0, max_value=10_000), json_leaf)
usage = st.one_of(st.fixed_dictionaries({"prompt_tokens": count, "completion_tokens": count}), json_value)
token = st.fixed_dictionaries({"token": st.text(max_size=4), "logprob": st.one_of(st.floats(max_value=0), json_leaf)})
logprobs = st.one_of(st.none(), st.fixed_dictionaries({"content": st.lists(token, max_size=3)}), json_value)
finish = st.one_of(st.just("stop"), json_leaf)
whole_bodies = st.one_of(
    st.binary(max_size=400),
    json_value.map(_dumps),
    st.builds(_plausible, st.one_of(st.text(max_size=30), json_leaf), usage, logprobs, finish).map(_dumps),
)
events = st.one_of(
    st.builds(_delta, st.one_of(st.text(max_size=10), json_leaf), finish).map(lambda d: b"data: " + _dumps(d)),
    json_value.map(lambda v: b"data: " + _dumps(v)),
    st.builds(lambda u: b"data: " + _dumps({"choices": [], "usage": u}), usage),
    st.sampled_from([b"data: [DONE]", b": ping", b"event: error\ndata: {}", b"data: {\"error\": {\"code\": 1e300}}"]),
    st.binary(max_size=60),
)
separators = st.sampled_from([b"\n\n", b"\r\n\r\n", b"\r\r", b"\n", b""])
sse_bodies = st.lists(st.tuples(events, separators), max_size=8).map(lambda parts: b"".join(e + s for e, s in parts))


class Chunks(httpx.AsyncByteStream):
    def __init__(self, parts: list[bytes]) -> None:
        self._parts = parts

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self._parts:
            yield part


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points:
        pieces.append(data[last:point])
        last = point
    return [*pieces, data[last:]]


def _encode(data: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(data)
    if encoding == "deflate":
        return zlib.compress(data)
    if encoding == "gzip-garbage":
        return b"\x1f\x8b" + data
    return data


def _check(result: Completion | RequestFailed) -> None:
    if isinstance(result, RequestFailed):
        assert result.error_type in ERROR_TYPES and isinstance(result.message, str) and len(result.message) <= 500
        assert result.http_status is None or 100 <= result.http_status <= 599
        return
    for count in (result.prompt_tokens, result.completion_tokens, result.response_bytes):
        assert isinstance(count, int) and 0 <= count < 2**63
    orjson.dumps(result.content), orjson.dumps(result.logprobs)  # journal-safe


def _answer(status: int, content_type: str, encoding: str, body: bytes, cuts: list[int], stream: bool) -> Completion | RequestFailed:
    headers = {"content-type": content_type}
    if encoding != "identity":
        headers["content-encoding"] = encoding.split("-")[0]
    payload = _encode(body, encoding)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers, stream=Chunks(_split(payload, cuts)))

    async def go() -> Completion | RequestFailed:
        config = ClientConfig(base_url="http://fuzz/v1", timeout_s=5, bounds=Bounds(max_body_bytes=4096, max_event_bytes=512))
        async with ChatClient(config, transport=httpx.MockTransport(handler)) as client:
            try:
                return await asyncio.wait_for(client.complete({"model": "m", "messages": [], "stream": stream}), 10)
            except RequestFailed as failure:
                return failure

    return asyncio.run(go())


fuzz = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
encodings = st.sampled_from(["identity", "gzip", "deflate", "gzip-garbage"])
statuses = st.sampled_from([200, 200, 200, 201, 400, 401, 429, 500, 503])
cut_lists = st.lists(st.integers(min_value=0, max_value=10_000), max_size=6)


@pytest.mark.slow
@fuzz
@given(statuses, encodings, whole_bodies, cut_lists)
def test_any_whole_body_is_a_completion_or_a_classified_failure(status: int, encoding: str, body: bytes, cuts: list[int]) -> None:
    _check(_answer(status, "application/json", encoding, body, cuts, stream=False))


@pytest.mark.slow
@fuzz
@given(statuses, encodings, sse_bodies, cut_lists)
def test_any_sse_stream_is_a_completion_or_a_classified_failure(status: int, encoding: str, body: bytes, cuts: list[int]) -> None:
    _check(_answer(status, "text/event-stream", encoding, body, cuts, stream=True))


@pytest.mark.slow
@fuzz
@given(st.binary(max_size=3000), cut_lists)
def test_sse_framing_is_independent_of_chunking(data: bytes, cuts: list[int]) -> None:
    whole = SSEDecoder()
    expected = whole.feed(data) + whole.flush()
    pieces = SSEDecoder()
    got = [event for part in _split(data, cuts) for event in pieces.feed(part)] + pieces.flush()
    assert got == expected


near_count = st.one_of(edge_ints, st.integers(min_value=0, max_value=10_000))
near_usage = st.fixed_dictionaries({"prompt_tokens": near_count, "completion_tokens": near_count})
plausible_bodies = st.builds(_plausible, st.text(max_size=30), near_usage, st.none(), st.just("stop")).map(_dumps)


@pytest.mark.slow
@fuzz
@given(encodings, plausible_bodies, cut_lists)
def test_near_valid_answers_are_rows_that_fit_the_columns(encoding: str, body: bytes, cuts: list[int]) -> None:
    _check(_answer(200, "application/json", encoding, body, cuts, stream=False))


def _strict(data: Any) -> Any:
    from harness.client import parse

    fast, parse._fast_completion = parse._fast_completion, lambda *a: None  # type: ignore[assignment]
    try:
        return parse.parse_completion(data, http_status=200, response_bytes=1)
    except parse.InvalidResponse as exc:
        return type(exc)
    finally:
        parse._fast_completion = fast  # type: ignore[assignment]


@pytest.mark.slow
@fuzz
@given(st.builds(_plausible, st.one_of(st.text(max_size=10), st.just("<think>a</think>b"), json_leaf), near_usage, logprobs, finish))
def test_fast_parse_agrees_with_the_strict_parse(data: dict[str, Any]) -> None:
    from harness.client.parse import InvalidResponse, parse_completion

    try:
        fast: Any = parse_completion(data, http_status=200, response_bytes=1)
    except InvalidResponse as exc:
        fast = type(exc)
    assert fast == _strict(data)


def _accumulate(chunks: list[Any], fast: bool) -> Any:
    from harness.client.parse import InvalidResponse, StreamAccumulator

    acc = StreamAccumulator(started=0.0, http_status=200)
    if not fast:
        acc._add_fast = lambda obj, now: False  # type: ignore[method-assign]
    try:
        for i, chunk in enumerate(chunks):
            acc.add(chunk, float(i))
        return acc.result()
    except InvalidResponse as exc:
        return type(exc)


stream_chunk = st.one_of(
    st.builds(
        lambda text, lp, finish, role: {"choices": [{"index": 0, "delta": {"content": text, **({"role": "assistant"} if role else {})}, "logprobs": lp, "finish_reason": finish}]},
        st.one_of(st.text(max_size=5), json_leaf), logprobs, finish, st.booleans(),
    ),
    st.builds(lambda u: {"choices": [], "usage": u}, near_usage),
    json_value,
)


@pytest.mark.slow
@fuzz
@given(st.lists(stream_chunk, max_size=6))
def test_fast_stream_path_agrees_with_the_strict_path(chunks: list[Any]) -> None:
    assert _accumulate(chunks, fast=True) == _accumulate(chunks, fast=False)
