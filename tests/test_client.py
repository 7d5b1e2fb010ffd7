"""The HTTP client: parsing, failure classification, Retry-After, SSE framing, key scrubbing.

Uses httpx.MockTransport (scripted answers, no sockets)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import orjson
import pytest

from harness.client import ChatClient, ClientConfig, RequestFailed, SSEDecoder, parse_retry_after, split_reasoning
from harness.client.parse import InvalidResponse, parse_completion

KEY = "sk-test-SECRET-0123456789"


def completion(content: str = "Paris", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "c1",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
                "logprobs": {
                    "content": [
                        {"token": "Par", "logprob": -0.25, "bytes": [80], "top_logprobs": [{"token": "Par", "logprob": -0.25}]},
                        {"token": "is", "logprob": 0, "top_logprobs": []},
                    ]
                },
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
        "system_fingerprint": "fp1",
    }
    body.update(extra)
    return body


def client_for(handler: Callable[[httpx.Request], Any], **config: Any) -> ChatClient:
    cfg = ClientConfig(base_url="http://test/v1", api_key=KEY, **config)
    return ChatClient(cfg, transport=httpx.MockTransport(handler))


def send(handler: Callable[[httpx.Request], Any], body: dict[str, Any] | None = None, **config: Any) -> Any:
    async def go() -> Any:
        async with client_for(handler, **config) as client:
            return await client.complete(body or {"model": "m", "messages": []})

    return asyncio.run(go())


def failure(handler: Callable[[httpx.Request], Any], body: dict[str, Any] | None = None, **config: Any) -> RequestFailed:
    with pytest.raises(RequestFailed) as info:
        send(handler, body, **config)
    return info.value


# -- a whole answer -----------------------------------------------------------------------


def test_ok_answer_is_parsed_into_row_fields() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=completion())

    done = send(handler, {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5})
    assert done.content == "Paris" and done.finish_reason == "stop"
    assert (done.prompt_tokens, done.completion_tokens) == (7, 2)
    assert done.logprobs == [
        {"token": "Par", "logprob": -0.25, "top_logprobs": [{"token": "Par", "logprob": -0.25}]},
        {"token": "is", "logprob": 0.0, "top_logprobs": []},
    ]
    assert done.system_fingerprint == "fp1" and done.http_status == 200 and done.response_bytes > 0
    request = seen[0]
    assert request.url == "http://test/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(request.content) == {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5}


def test_reasoning_content_and_think_block() -> None:
    done = send(lambda r: httpx.Response(200, json=completion("<think>\nLet me see.\n</think>\n\nParis")))
    assert (done.content, done.reasoning) == ("Paris", "Let me see.")
    body = completion("Paris")
    body["choices"][0]["message"]["reasoning_content"] = "thinking"
    done = send(lambda r: httpx.Response(200, json=body))
    assert (done.content, done.reasoning) == ("Paris", "thinking")


@pytest.mark.parametrize(
    ("content", "reasoning", "expected"),
    [
        ("plain", None, ("plain", None)),
        ("<think>cut off by max_tok", None, ("", "cut off by max_tok")),
        ("  <think>a</think>b", None, ("b", "a")),
        ("x <think>a</think>", None, ("x <think>a</think>", None)),  # only a *leading* block
        ("<think>a</think>b", "server's", ("<think>a</think>b", "server's")),
    ],
)
def test_split_reasoning(content: str, reasoning: str | None, expected: tuple[str, str | None]) -> None:
    assert split_reasoning(content, reasoning) == expected


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda b: b.update(choices=[]), "choices: empty list"),
        (lambda b: b.pop("usage"), "usage: missing"),
        (lambda b: b.update(choices="oops"), "choices: expected a list, got a string"),
        (lambda b: b["choices"][0].update(logprobs={"content": "Par is"}), "choices[0].logprobs.content: expected a list, got a string"),
        (lambda b: b["choices"][0]["logprobs"]["content"][1].update(logprob="NaN"), "content[1].logprob: expected"),
        (lambda b: b["choices"][0]["logprobs"]["content"][0]["top_logprobs"][0].update(token=None), "top_logprobs[0].token"),
        (lambda b: b["usage"].update(completion_tokens=True), "usage.completion_tokens: expected an integer, got a boolean"),
        (lambda b: b["choices"][0].update(message=None), "choices[0].message: expected an object, got null"),
    ],
)
def test_odd_answers_become_clear_final_errors(mutate: Callable[[dict[str, Any]], Any], needle: str) -> None:
    body = completion()
    mutate(body)
    err = failure(lambda r: httpx.Response(200, json=body))
    assert err.error_type == "invalid_response" and not err.retryable
    assert needle in err.message and err.http_status == 200


def test_non_finite_logprob_is_refused() -> None:
    body = completion()
    body["choices"][0]["logprobs"]["content"][0]["logprob"] = float("inf")
    with pytest.raises(InvalidResponse, match="not a finite number"):
        parse_completion(body, http_status=200, response_bytes=1)


def test_garbage_and_nan_bodies_are_retryable_invalid_responses() -> None:
    err = failure(lambda r: httpx.Response(200, content=b"\x00\xffnot json"))
    assert err.error_type == "invalid_response" and err.retryable
    err = failure(lambda r: httpx.Response(200, content=b'{"choices": [], "x": NaN}'))
    assert "NaN or Infinity" in err.message


# -- failure classification ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (429, "rate_limited", True),
        (408, "server_error", True),
        (409, "server_error", True),
        (500, "server_error", True),
        (503, "server_error", True),
        (400, "client_error", False),
        (401, "client_error", False),
        (404, "client_error", False),
        (422, "client_error", False),
    ],
)
def test_status_classification(status: int, kind: str, retryable: bool) -> None:
    err = failure(lambda r: httpx.Response(status, json={"error": {"message": f"nope {status}"}}))
    assert (err.error_type, err.retryable, err.http_status) == (kind, retryable, status)
    assert err.message == f"HTTP {status}: nope {status}"


def test_retry_after_headers() -> None:
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    assert parse_retry_after(httpx.Headers({"retry-after": "3"})) == 3.0
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "100", "retry-after": "9"})) == 0.1
    assert parse_retry_after(httpx.Headers({"retry-after": "soon"})) is None
    assert parse_retry_after(httpx.Headers({"retry-after": "-5"})) is None
    assert parse_retry_after(httpx.Headers({})) is None
    now = datetime(2030, 1, 1, tzinfo=UTC)
    date = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(httpx.Headers({"retry-after": date}), now=now.timestamp()) == pytest.approx(30)
    err = failure(lambda r: httpx.Response(429, headers={"retry-after": "2"}, json={}))
    assert err.retry_after_s == 2.0


def test_transport_errors_and_timeouts_are_retryable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    err = failure(refuse)
    assert (err.error_type, err.retryable) == ("connection", True)

    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json=completion())

    err = failure(hang, timeout_s=0.05)
    assert (err.error_type, err.retryable) == ("timeout", True)


def test_the_key_never_appears_in_an_error() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"message": f"bad key {request.headers['authorization']}"}})

    err = failure(echo)
    assert KEY not in str(err) and KEY not in err.message and "***" in err.message
    assert KEY not in repr(ClientConfig(base_url="http://x", api_key=KEY))

    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError(f"peer said {KEY}", request=request)

    assert KEY not in failure(boom).message


def test_cancellation_is_not_turned_into_a_failure() -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    async def go() -> None:
        async with client_for(hang) as client:
            task = asyncio.create_task(client.complete({"model": "m", "messages": []}))
            await asyncio.sleep(0.02)
            task.cancel()
            await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(go())


# -- server-sent events -------------------------------------------------------------------


def test_sse_split_on_blank_lines_at_byte_level_in_any_chunking() -> None:
    payload = '{"t": "a\u2028b\u0085c"}'
    raw = (
        b": keep-alive\n\n"
        + b"data: " + payload.encode() + b"\r\n\r\n"
        + b"event: error\ndata: {\"x\":1}\n\n"
        + b"data:  two\ndata: lines\r\r"
        + b"data: [DONE]"
    )
    expected = [(None, payload), ("error", '{"x":1}'), (None, " two\nlines"), (None, "[DONE]")]
    for size in (1, 2, 3, 7, len(raw)):
        decoder = SSEDecoder()
        events = []
        for i in range(0, len(raw), size):
            events += decoder.feed(raw[i : i + size])
        events += decoder.flush()
        assert [(e.event, e.data) for e in events] == expected, size


def sse(*chunks: Any) -> bytes:
    out = b""
    for chunk in chunks:
        out += b"data: " + (chunk if isinstance(chunk, bytes) else orjson.dumps(chunk)) + b"\n\n"
    return out


def delta(text: str, tokens: list[str] | None = None, finish: str | None = None) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "delta": {"content": text}, "finish_reason": finish}
    if tokens is not None:
        choice["logprobs"] = {"content": [{"token": t, "logprob": -1.0, "top_logprobs": []} for t in tokens]}
    return {"choices": [choice]}


USAGE = {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 3}}
STREAM_BODY = {"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": True}}


def stream(raw: bytes) -> Callable[[httpx.Request], httpx.Response]:
    return lambda r: httpx.Response(200, headers={"content-type": "text/event-stream"}, content=raw)


def test_stream_is_assembled_with_per_token_timings() -> None:
    raw = sse(delta("<think>hm</think>"), delta("Pa", ["P", "a"]), delta("ris", ["ris"], "stop"), USAGE, b"[DONE]")
    done = send(stream(raw), STREAM_BODY)
    assert (done.content, done.reasoning, done.finish_reason) == ("Paris", "hm", "stop")
    assert (done.prompt_tokens, done.completion_tokens) == (4, 3)
    assert [t["token"] for t in done.logprobs] == ["P", "a", "ris"]
    assert done.ttft_s is not None and done.ttft_s >= 0
    # one gap per token after the first token: 1 (think chunk) + 2 + 1 tokens → 3 gaps
    assert len(done.inter_token_s) == 3 and all(g >= 0 for g in done.inter_token_s)


def test_error_object_inside_stream() -> None:
    raw = sse(delta("Pa"), {"error": {"message": "overloaded", "code": 503}})
    err = failure(stream(raw), STREAM_BODY)
    assert (err.error_type, err.retryable, err.http_status) == ("stream_error", True, 503)
    raw = sse(delta("Pa"), {"error": {"message": "bad request", "code": 400}})
    assert not failure(stream(raw), STREAM_BODY).retryable


def test_cut_stream_is_retryable_and_missing_usage_is_an_error() -> None:
    err = failure(stream(sse(delta("Pa"), delta("ri"))), STREAM_BODY)
    assert (err.error_type, err.retryable) == ("stream_cut", True)
    err = failure(stream(sse(delta("Pa"), b'{"choices": [{"delta": {"cont')), STREAM_BODY)
    assert (err.error_type, err.retryable) == ("stream_cut", True)
    err = failure(stream(sse(delta("Paris", finish="stop"), b"[DONE]")), STREAM_BODY)
    assert err.error_type == "invalid_response" and "usage" in err.message


def test_stream_error_status_before_streaming() -> None:
    err = failure(lambda r: httpx.Response(429, headers={"retry-after-ms": "10"}, json={}), STREAM_BODY)
    assert (err.error_type, err.retry_after_s) == ("rate_limited", 0.01)


def test_a_server_ignoring_stream_true_is_read_whole() -> None:
    done = send(lambda r: httpx.Response(200, json=completion()), STREAM_BODY)
    assert done.content == "Paris" and done.ttft_s is None


def test_a_body_that_cannot_be_encoded_is_a_final_failure_before_sending() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=completion())

    got = failure(handler, {"model": "m", "messages": [{"role": "user", "content": "bad \ud800"}]})
    assert got.error_type == "invalid_request" and not got.retryable and "JSON" in got.message
    assert sent == []
