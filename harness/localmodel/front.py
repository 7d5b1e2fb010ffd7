"""harness's HTTP front for the prebuilt engine: seed-API validation and wire format, llama.cpp behind.

Every request goes through `harness.server.validation.parse_chat_request` (the same limits and
error bodies as `harness serve`), is rendered as a plain completion prompt (`raw_prompt`: a base
model), and becomes one llama.cpp `/completion` body (`engine_body`). llama.cpp's answer is
turned back into harness's `chat.completion` / SSE chunks by `harness.server.wire`.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from aiohttp import web

from harness.localmodel.llama import raw_prompt
from harness.server.generate import FinishReason, TokenLogprob
from harness.server.validation import ChatRequest, parse_chat_request
from harness.server.wire import (
    ApiError,
    Completion,
    chunk,
    completion_body,
    error_body,
    logprobs_body,
    usage_body,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 256  # as `harness serve`
# llama.cpp sampler names, in harness's order (harness.server.sampler): the rest of its chain is off.
SAMPLER_ORDER = ("penalties", "temperature", "min_p", "top_k", "top_p")
_SEED_MODULUS = 2**32  # llama.cpp seeds are 32-bit; 0xFFFFFFFF means "random" there
_JSON_HEADERS = {"Content-Type": "application/json"}
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


class Engine(Protocol):
    """What the front needs of an engine (`NativeEngine`, or a fake in tests)."""

    name: str
    slot_ctx: int

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """Answer one llama.cpp `/completion` body (blocking)."""
        ...


@dataclass
class Answer:
    """One finished completion, engine-neutral."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[TokenLogprob] = field(default_factory=list)


# ---------------------------------------------------------------- translation


def engine_seed(seed: int) -> int:
    """A 64-bit API seed as llama.cpp's 32-bit seed (never its "random" value 0xFFFFFFFF)."""
    value = seed % _SEED_MODULUS
    return value if value != _SEED_MODULUS - 1 else 0


def engine_body(chat: ChatRequest, seed: int) -> dict[str, Any]:
    """The llama.cpp `/completion` body for a validated request."""
    p = chat.params
    n_probs = p.top_logprobs if p.top_logprobs else (1 if p.logprobs else 0)
    return {
        "prompt": raw_prompt(chat.messages),
        "n_predict": chat.max_tokens or DEFAULT_MAX_TOKENS,
        "temperature": p.temperature,
        "top_k": max(0, p.top_k),
        "top_p": p.top_p,
        "min_p": p.min_p,
        "frequency_penalty": p.frequency_penalty,
        "presence_penalty": p.presence_penalty,
        "repeat_penalty": 1.0,
        "typical_p": 1.0,
        "top_n_sigma": -1.0,
        "xtc_probability": 0.0,
        "dry_multiplier": 0.0,
        "mirostat": 0,
        "samplers": list(SAMPLER_ORDER),
        "seed": engine_seed(seed),
        "stop": list(chat.stop),
        "n_probs": n_probs,
        "post_sampling_probs": False,
        "cache_prompt": True,
        "stream": False,
    }


def _engine_error(error: object) -> ApiError:
    """llama.cpp's `{"error": {...}}` as an ApiError (a prompt too long is the usual one)."""
    info = error if isinstance(error, dict) else {}
    message = str(info.get("message") or "the local model failed")[:500]
    status = info.get("code")
    status = status if isinstance(status, int) and 400 <= status < 600 else 500
    if info.get("type") == "exceed_context_size_error":
        return ApiError(400, f"This model's context is too small for the request: {message}",
                        param="messages", code="context_length_exceeded")
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return ApiError(status, f"The local model refused the request: {message}", type=kind)


def _pair(entry: dict[str, Any]) -> tuple[str, float, bytes]:
    raw = entry.get("bytes")
    token = str(entry.get("token", ""))
    data = bytes(raw) if isinstance(raw, list) else token.encode("utf-8")
    return token, float(entry.get("logprob", float("-inf"))), data


def _token_logprobs(content: list[dict[str, Any]], top_n: int) -> list[TokenLogprob]:
    out = []
    for entry in content:
        token, logprob, data = _pair(entry)
        tops = [_pair(t) for t in (entry.get("top_logprobs") or [])[:top_n]] if top_n else []
        out.append(TokenLogprob(token, logprob, tuple((t, lp) for t, lp, _ in tops), data, tuple(d for _, _, d in tops)))
    return out


def parse_answer(result: dict[str, Any], chat: ChatRequest) -> Answer:
    """llama.cpp's completion answer as an `Answer`; its error as ApiError."""
    if "error" in result:
        raise _engine_error(result["error"])
    try:
        choice = result["choices"][0]
        usage = result.get("usage") or {}
        reason: FinishReason = "length" if choice.get("finish_reason") == "length" else "stop"
        logprobs = (choice.get("logprobs") or {}).get("content") or []
        return Answer(
            text=str(choice.get("text") or ""),
            finish_reason=reason,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            logprobs=_token_logprobs(logprobs, chat.params.top_logprobs) if chat.params.logprobs else [],
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ApiError(500, f"The local model gave an answer harness cannot read ({exc}).", type="server_error") from None


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
        result = await asyncio.get_running_loop().run_in_executor(front.executor, front.engine.complete, body)
        answer = parse_answer(result, chat)
    except ApiError as err:
        return _error(err)
    except Exception:
        log.exception("generation failed for model %s", front.engine.name)
        return _json(error_body("The server had an error while generating the response.", "server_error"), 500)
    ident = Completion(id="chatcmpl-" + os.urandom(12).hex(), created=int(time.time()), model=chat.model,
                       system_fingerprint=front.fingerprint)
    if chat.stream:
        return await _stream(request, chat, ident, answer)
    logprobs = logprobs_body(answer.logprobs) if chat.params.logprobs else None
    usage = usage_body(answer.prompt_tokens, answer.completion_tokens)
    return _json(completion_body(ident, answer.text, answer.finish_reason, logprobs, usage))


def _sse(body: Any) -> bytes:
    return b"data: " + orjson.dumps(body) + b"\n\n"


async def _stream(request: web.Request, chat: ChatRequest, ident: Completion, answer: Answer) -> web.StreamResponse:
    """SSE of a finished answer: role chunk, one content chunk, finish chunk, usage chunk (if asked), [DONE]."""
    usage = usage_body(answer.prompt_tokens, answer.completion_tokens)
    include = chat.include_usage
    logprobs = logprobs_body(answer.logprobs) if chat.params.logprobs else None
    events = [
        _sse(chunk(ident, {"role": "assistant", "content": ""}, include_usage=include)),
        _sse(chunk(ident, {"content": answer.text}, logprobs=logprobs, include_usage=include)),
        _sse(chunk(ident, {}, finish_reason=answer.finish_reason, include_usage=include)),
    ]
    if include:
        events.append(_sse(chunk(ident, None, usage=usage, include_usage=True)))
    events.append(b"data: [DONE]\n\n")
    response = web.StreamResponse(headers=_SSE_HEADERS)
    await response.prepare(request)
    await response.write(b"".join(events))
    await response.write_eof()
    return response


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
