"""Streamed answers of the native engine: llama.cpp's per-token chunks as harness's SSE, as they come.

llama.cpp calls back on the worker thread once per token (its text, its logprobs) and once more
with the finish reason and usage. Each call is handed to the event loop through a queue; the
first one decides the answer's form: an error before any token is an OpenAI-style JSON error
(status and body as for a plain request), afterwards a failure cuts the stream without `[DONE]`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, Protocol

import orjson
from aiohttp import web

from harness.localmodel.translate import engine_error, token_logprobs
from harness.server.payloads import ApiError, Completion, chunk, logprobs_body, usage_body
from harness.server.validation import ChatRequest

log = logging.getLogger(__name__)

_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_DONE = object()


class StreamingEngine(Protocol):
    """An engine that can call back once per generated token."""

    def stream(self, body: dict[str, Any], on_chunk: Callable[[dict[str, Any]], None]) -> None:
        """Generate `body`, calling `on_chunk` with each llama.cpp chunk (blocking)."""
        ...


def _sse(body: Any) -> bytes:
    return b"data: " + orjson.dumps(body) + b"\n\n"


async def stream_answer(request: web.Request, engine: StreamingEngine, executor: Executor, body: dict[str, Any],
                        chat: ChatRequest, ident: Completion) -> web.StreamResponse:
    """Run `body` on `engine` in `executor` and stream it; ApiError when it fails before any token."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def put(item: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    def work() -> None:
        try:
            engine.stream({**body, "stream": True}, put)
        except Exception as exc:  # noqa: BLE001 - handed to the event loop, which decides
            put(exc)
        finally:
            put(_DONE)

    loop.run_in_executor(executor, work)
    first = await queue.get()
    _raise_if_failed(first, started=False)
    response = web.StreamResponse(headers=_SSE_HEADERS)
    await response.prepare(request)
    await response.write(_sse(chunk(ident, {"role": "assistant", "content": ""}, include_usage=chat.include_usage)))
    try:
        await _relay(response, queue, first, chat, ident)
    except ApiError:
        if request.transport is not None:
            request.transport.close()  # no [DONE]: the client sees a broken stream
    except ConnectionError:
        log.info("client went away mid-stream")  # llama.cpp finishes the (bounded) answer alone
    return response


def _raise_if_failed(item: Any, *, started: bool) -> None:
    if item is _DONE:
        raise ApiError(500, "The local model ended the stream without an answer.", type="server_error")
    if isinstance(item, Exception):
        log.error("streamed generation failed: %s", item)
        raise ApiError(500, "The server had an error while generating the response.", type="server_error")
    if not isinstance(item, dict) or "error" in item:
        raise engine_error(item.get("error") if isinstance(item, dict) else None)


async def _relay(response: web.StreamResponse, queue: asyncio.Queue[Any], item: Any, chat: ChatRequest,
                 ident: Completion) -> None:
    """Write one SSE chunk per llama.cpp chunk until the last; then finish, usage and [DONE]."""
    include = chat.include_usage
    finish, usage = "stop", None
    while item is not _DONE:
        _raise_if_failed(item, started=True)
        choice = (item.get("choices") or [{}])[0]
        text = str(choice.get("text") or "")
        content = (choice.get("logprobs") or {}).get("content") or []
        tokens = token_logprobs(content, chat.params.top_logprobs) if chat.params.logprobs else []
        if text or tokens:
            logprobs = logprobs_body(tokens) if tokens else None
            await response.write(_sse(chunk(ident, {"content": text}, logprobs=logprobs, include_usage=include)))
        if choice.get("finish_reason"):
            finish = "length" if choice["finish_reason"] == "length" else "stop"
            usage = item.get("usage") or {}
        item = await queue.get()
    events = [_sse(chunk(ident, {}, finish_reason=finish, include_usage=include))]
    if include:
        counts = usage or {}
        body = usage_body(int(counts.get("prompt_tokens", 0)), int(counts.get("completion_tokens", 0)))
        events.append(_sse(chunk(ident, None, usage=body, include_usage=True)))
    events.append(b"data: [DONE]\n\n")
    await response.write(b"".join(events))
    await response.write_eof()


__all__ = ["StreamingEngine", "stream_answer"]
