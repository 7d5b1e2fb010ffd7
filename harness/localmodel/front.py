"""harness's HTTP front for the prebuilt engine: seed-API validation and wire format, llama.cpp behind.

Every request goes through `harness.server.validation.parse_chat_request` (the same limits and
error bodies as `harness serve`), is rendered as a plain completion prompt (`raw_prompt`: a base
model), and becomes one llama.cpp `/completion` body (`engine_body`). llama.cpp's answer is
turned back into harness's `chat.completion` / SSE chunks by `harness.server.payloads`.

Whose sampler runs: **llama.cpp's**, with its chain fixed to harness's order (penalties,
temperature, min_p, top_k, top_p, then one seeded draw) and every other llama.cpp sampler off.
Logprobs are llama.cpp's raw ones (softmax of the logits before sampling), as harness's `raw`
mode. Differences from harness's numpy sampler are listed in docs/local-model.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from aiohttp import web

from harness.localmodel.stream import stream_answer
from harness.localmodel.translate import (
    DEFAULT_MAX_TOKENS,
    SAMPLER_ORDER,
    Answer,
    engine_body,
    engine_seed,
    parse_answer,
)
from harness.server.payloads import (
    ApiError,
    Completion,
    completion_body,
    error_body,
    logprobs_body,
    usage_body,
)
from harness.server.validation import ChatRequest, parse_chat_request

log = logging.getLogger(__name__)

_JSON_HEADERS = {"Content-Type": "application/json"}


class Engine(Protocol):
    """What the front needs of an engine (`NativeEngine`, or a fake in tests)."""

    name: str
    slot_ctx: int

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """Answer one llama.cpp `/completion` body (blocking)."""
        ...

    def stream(self, body: dict[str, Any], on_chunk: Callable[[dict[str, Any]], None]) -> None:
        """Generate `body`, calling `on_chunk` with each llama.cpp chunk (blocking)."""
        ...


# ---------------------------------------------------------------- HTTP


@dataclass
class _Front:
    engine: Engine
    executor: ThreadPoolExecutor
    fingerprint: str
    seeds: random.Random
    created: int = field(default_factory=lambda: int(time.time()))


_FRONT: web.AppKey[_Front] = web.AppKey("harness_local_front", _Front)


def create_front(engine: Engine, *, workers: int = 4, seed: int | None = None) -> web.Application:
    """The aiohttp app serving `engine` under its name; `workers` requests reach it at once."""
    fingerprint = "fp_" + hashlib.sha256(f"harness-local:{engine.name}".encode()).hexdigest()[:10]
    front = _Front(engine, ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llama"),
                   fingerprint, random.Random(seed))
    app = web.Application(client_max_size=32 * 1024 * 1024)
    app[_FRONT] = front
    app.router.add_route("*", "/v1/chat/completions", _chat)
    app.router.add_route("*", "/v1/models", _list_models)
    app.router.add_route("*", "/v1/models/{name:.+}", _get_model)
    app.router.add_route("*", "/health", _health)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    app.on_shutdown.append(_shutdown)
    return app


async def _shutdown(app: web.Application) -> None:
    app[_FRONT].executor.shutdown(wait=False, cancel_futures=True)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, headers={**_JSON_HEADERS, **(headers or {})})


def _error(err: ApiError) -> web.Response:
    return _json(err.body(), err.status, err.headers)


def _http_error(request: web.Request, status: int, reason: str, allow: str | None = None) -> web.Response:
    kind = "not_found_error" if status == 404 else "invalid_request_error"
    return _json(error_body(f"{reason}: {request.method} {request.path[:200]}", kind), status,
                 {"Allow": allow} if allow else None)


async def _not_found(request: web.Request) -> web.Response:
    return _http_error(request, 404, "Not Found")


def _model_card(front: _Front) -> dict[str, Any]:
    return {"id": front.engine.name, "object": "model", "created": front.created, "owned_by": "harness"}


async def _health(request: web.Request) -> web.Response:
    if request.method != "GET":
        return _http_error(request, 405, "Method Not Allowed", "GET")
    return _json({"status": "ok"})


async def _list_models(request: web.Request) -> web.Response:
    if request.method != "GET":
        return _http_error(request, 405, "Method Not Allowed", "GET")
    return _json({"object": "list", "data": [_model_card(request.app[_FRONT])]})


async def _get_model(request: web.Request) -> web.Response:
    front = request.app[_FRONT]
    try:
        _check_model(front, request.match_info["name"])
    except ApiError as err:
        return _error(err)
    if request.method != "GET":
        return _http_error(request, 405, "Method Not Allowed", "GET")
    return _json(_model_card(front))


def _check_model(front: _Front, name: str) -> None:
    if name != front.engine.name:
        raise ApiError(404, f"The model {name[:100]!r} does not exist; served: {front.engine.name}.",
                       param="model", code="model_not_found")


def _parse(raw: bytes) -> ChatRequest:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "We could not parse the JSON body of your request. The body must be valid JSON "
                            "(no NaN or Infinity).", code="invalid_json") from None
    return parse_chat_request(body)


async def _chat(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions: validate -> llama.cpp (in a worker thread) -> harness's wire format."""
    if request.method != "POST":
        return _http_error(request, 405, "Method Not Allowed", "POST")
    front = request.app[_FRONT]
    try:
        raw = await request.read()
    except web.HTTPException as exc:
        return _http_error(request, exc.status, exc.reason)
    try:
        chat = _parse(raw)
        _check_model(front, chat.model)
        seed = chat.seed if chat.seed is not None else front.seeds.getrandbits(63)
        body = engine_body(chat, seed)
        ident = Completion(id="chatcmpl-" + os.urandom(12).hex(), created=int(time.time()), model=chat.model,
                           system_fingerprint=front.fingerprint)
        if chat.stream:
            return await stream_answer(request, front.engine, front.executor, body, chat, ident)
        result = await asyncio.get_running_loop().run_in_executor(front.executor, front.engine.complete, body)
        answer = parse_answer(result, chat)
    except ApiError as err:
        return _error(err)
    except Exception:
        log.exception("generation failed for model %s", front.engine.name)
        return _json(error_body("The server had an error while generating the response.", "server_error"), 500)
    return _json(_completion(chat, ident, answer))


def _completion(chat: ChatRequest, ident: Completion, answer: Answer) -> dict[str, Any]:
    logprobs = logprobs_body(answer.logprobs) if chat.params.logprobs else None
    usage = usage_body(answer.prompt_tokens, answer.completion_tokens)
    return completion_body(ident, answer.text, answer.finish_reason, logprobs, usage)


__all__ = [
    "DEFAULT_MAX_TOKENS",
    "SAMPLER_ORDER",
    "Answer",
    "Engine",
    "create_front",
    "engine_body",
    "engine_seed",
    "parse_answer",
]
