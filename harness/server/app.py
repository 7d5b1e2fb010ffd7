"""The HTTP endpoint (aiohttp + orjson) around any `LanguageModel`.

In-process, e.g. in tests (a thread with its own event loop, a free port on 127.0.0.1)::

    from harness.server.app import ServerThread, create_app
    from harness.server.ngram import NGramModel

    app = create_app({"harness/ngram": NGramModel()}, api_key="test-key")
    # or: app = reference_app(api_key="test-key", faults=FaultSpec.parse("429=0.1"))
    with ServerThread(app) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test-key")  # http://127.0.0.1:PORT/v1

    # or inside a running event loop:
    async with running(app) as base_url: ...

Blocking, e.g. from a CLI with another model (harness/localmodel/process.py)::

    from harness.server.app import create_app, serve
    serve(create_app({model.name: model}), host="127.0.0.1", port=8000,
          on_ready=lambda base_url: print(base_url, flush=True))

Routes: `POST /v1/chat/completions`, `GET /v1/models`, `GET /v1/models/{id}`, `GET /health`.
Everything else is answered with an OpenAI-style JSON error. See `faults.py` for fault
injection, `validation.py` for the limits and `generate.py` for content/stop/logprob rules.
If `model.blocking` is true, generation runs in a worker thread, one generation at a time per
model (an asyncio lock), so the event loop keeps answering other requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import logging
import os
import random
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from harness.server.faults import FaultInjector, FaultSpec, Latency, is_fault_kind
from harness.server.generate import Delta, Generation
from harness.server.misbehave import OWNERS, Misbehaviour
from harness.server.model import LanguageModel
from harness.server.payloads import (
    ApiError,
    Completion,
    chunk,
    completion_body,
    error_body,
    logprobs_body,
    usage_body,
)
from harness.server.sampler import LogprobsMode
from harness.server.validation import ChatRequest, parse_chat_request

__all__ = ["FAULT_HEADER", "ServerThread", "create_app", "reference_app", "running", "serve"]

logger = logging.getLogger(__name__)

FAULT_HEADER = "X-Harness-Fault"  # forces a fault kind for one request (tests)
DEFAULT_MAX_TOKENS = 256
_YIELD_EVERY = 32  # tokens between event-loop yields when generating inline
_JSON = "application/json"
_GARBAGE = b'{"id": "chatcmpl-garbage", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assi'


@dataclass
class _ModelSlot:
    """A served model and, for blocking models, its worker thread and lock."""

    model: LanguageModel
    fingerprint: str
    executor: ThreadPoolExecutor | None = None
    lock: asyncio.Lock | None = None


@dataclass
class _State:
    """Everything the handlers share."""

    slots: dict[str, _ModelSlot]
    api_key: str | None
    faults: FaultInjector
    latency: Latency
    tokens_per_s: float | None
    retry_after_s: float
    timeout_cap_s: float
    reject_unknown: bool
    logprobs_mode: LogprobsMode
    misbehaviour: Misbehaviour
    seeds: random.Random
    jitter: random.Random
    created: int = field(default_factory=lambda: int(time.time()))


_STATE: web.AppKey[_State] = web.AppKey("harness_state", _State)


def create_app(
    models: Mapping[str, LanguageModel],
    *,
    api_key: str | None = None,
    faults: FaultSpec | None = None,
    fault_seed: int | None = 0,
    latency: Latency | None = None,
    tokens_per_s: float | None = None,
    seed: int | None = None,
    retry_after_s: float = 1.0,
    timeout_cap_s: float = 600.0,
    reject_unknown: bool = False,
    logprobs_mode: LogprobsMode = "raw",
    misbehaviour: Misbehaviour | None = None,
) -> web.Application:
    """Build the app serving `models` (advertised and accepted under their mapping keys).

    `seed` seeds the per-request seeds of requests that send none (None: fresh entropy);
    `fault_seed` seeds the fault draws; `timeout_cap_s` bounds how long a `timeout` fault holds
    a request; `reject_unknown` refuses unknown body fields instead of ignoring them;
    `logprobs_mode` "processed" reports logprobs after penalties and temperature (see sampler);
    `misbehaviour` drops or refuses fields on purpose (see misbehave.py).
    """
    if not models:
        raise ValueError("create_app needs at least one model")
    state = _State(
        slots={name: _slot(name, model) for name, model in models.items()},
        api_key=api_key or None,
        faults=FaultInjector(faults, fault_seed),
        latency=latency or Latency(),
        tokens_per_s=tokens_per_s if tokens_per_s and tokens_per_s > 0 else None,
        retry_after_s=retry_after_s,
        timeout_cap_s=timeout_cap_s,
        reject_unknown=reject_unknown,
        logprobs_mode=logprobs_mode,
        misbehaviour=misbehaviour or Misbehaviour(),
        seeds=random.Random(seed),
        jitter=random.Random(None if fault_seed is None else fault_seed + 1),
    )
    app = web.Application(client_max_size=32 * 1024 * 1024)
    app[_STATE] = state
    # Methods are checked in the handlers and unknown paths caught here (not in a middleware,
    # which would cost every request a few microseconds): all errors are OpenAI-style JSON.
    app.router.add_route("*", "/v1/chat/completions", _chat)
    app.router.add_route("*", "/v1/models", _list_models)
    app.router.add_route("*", "/v1/models/{name:.+}", _get_model)
    app.router.add_route("*", "/health", _health)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    app.on_shutdown.append(_shutdown_executors)
    return app


def reference_app(*, model_name: str | None = None, **options: Any) -> web.Application:
    """`create_app` around the shared built-in n-gram model (`options` as for `create_app`)."""
    from harness.server.ngram import DEFAULT_MODEL_NAME, NGramModel, default_model

    model = default_model() if model_name in (None, DEFAULT_MODEL_NAME) else NGramModel(model_name or "")
    return create_app({model.name: model}, **options)


def _slot(name: str, model: LanguageModel) -> _ModelSlot:
    fingerprint = "fp_" + hashlib.sha256(f"harness:{name}:{model.vocab_size}".encode()).hexdigest()[:10]
    if getattr(model, "blocking", False):
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{name}")
        return _ModelSlot(model, fingerprint, executor, asyncio.Lock())
    return _ModelSlot(model, fingerprint)


async def _shutdown_executors(app: web.Application) -> None:
    for slot in app[_STATE].slots.values():
        if slot.executor is not None:
            slot.executor.shutdown(wait=False, cancel_futures=True)


# ---------------------------------------------------------------- responses and errors


_JSON_HEADERS = {"Content-Type": _JSON}


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    all_headers = {**_JSON_HEADERS, **headers} if headers else _JSON_HEADERS
    return web.Response(body=orjson.dumps(body), status=status, headers=all_headers)


def _error(err: ApiError) -> web.Response:
    return _json(err.body(), err.status, err.headers)


def _http_error(request: web.Request, status: int, reason: str) -> web.Response:
    kind = "not_found_error" if status == 404 else "invalid_request_error"
    return _json(error_body(f"{reason}: {request.method} {request.path[:200]}", kind), status)


async def _not_found(request: web.Request) -> web.Response:
    return _http_error(request, 404, "Not Found")


def _wrong_method(request: web.Request, allowed: str) -> web.Response | None:
    if request.method == allowed:
        return None
    response = _http_error(request, 405, "Method Not Allowed")
    response.headers["Allow"] = allowed
    return response


def _check_auth(state: _State, request: web.Request) -> None:
    if state.api_key is None:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "You didn't provide an API key. Provide it in an Authorization header using Bearer auth "
            "(Authorization: Bearer YOUR_KEY).",
            code="invalid_api_key",
        )
    if not hmac.compare_digest(token.strip().encode(), state.api_key.encode()):
        raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")


# ---------------------------------------------------------------- simple routes


async def _health(request: web.Request) -> web.Response:
    return _wrong_method(request, "GET") or _json({"status": "ok"})


def _model_card(state: _State, name: str) -> dict[str, Any]:
    owner = OWNERS.get(state.misbehaviour.dialect, "harness")  # what `target.dialect: auto` reads
    return {"id": name, "object": "model", "created": state.created, "owned_by": owner}


async def _list_models(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    try:
        _check_auth(state, request)
    except ApiError as err:
        return _error(err)
    wrong = _wrong_method(request, "GET")
    if wrong is not None:
        return wrong
    return _json({"object": "list", "data": [_model_card(state, name) for name in state.slots]})


async def _get_model(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    name = request.match_info["name"]
    try:
        _check_auth(state, request)
        _lookup(state, name)
    except ApiError as err:
        return _error(err)
    wrong = _wrong_method(request, "GET")
    if wrong is not None:
        return wrong
    return _json(_model_card(state, name))


def _lookup(state: _State, name: str) -> _ModelSlot:
    slot = state.slots.get(name)
    if slot is None:
        raise ApiError(
            404,
            f"The model {name[:100]!r} does not exist; served: {', '.join(state.slots)}.",
            param="model",
            code="model_not_found",
        )
    return slot


# ---------------------------------------------------------------- chat completions


async def _chat(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions: auth -> latency -> early faults -> validation -> answer."""
    state = request.app[_STATE]
    wrong = _wrong_method(request, "POST")
    if wrong is not None:
        return wrong
    try:
        raw = await request.read()
    except web.HTTPException as exc:  # 413: body above client_max_size
        return _http_error(request, exc.status, exc.reason)
    try:
        _check_auth(state, request)
        fault = _fault_for(state, request)
        if state.latency:
            await asyncio.sleep(state.latency.sample(state.jitter))
        early = await _early_fault(state, request, fault)
        if early is not None:
            return early
        chat = parse_chat_request(state.misbehaviour.apply(_decode(raw)), reject_unknown=state.reject_unknown)
        slot = _lookup(state, chat.model)
    except ApiError as err:
        return _error(err)
    if fault == "garbage":
        return await _garbage(request, chat.stream)
    ident = Completion(
        id="chatcmpl-" + os.urandom(12).hex(), created=int(time.time()), model=chat.model,
        system_fingerprint=slot.fingerprint,
    )  # fmt: skip
    try:
        if chat.stream:
            return await _stream(request, state, slot, chat, ident, cut=fault == "stream_cut")
        return await _complete(request, state, slot, chat, ident, cut=fault == "stream_cut")
    except ApiError as err:  # from the model, before any byte was sent (e.g. prompt too long)
        return _error(err)
    except Exception:
        logger.exception("generation failed for model %s", chat.model)
        return _json(error_body("The server had an error while generating the response.", "server_error"), 500)


def _decode(raw: bytes) -> object:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(
            400,
            "We could not parse the JSON body of your request. The body must be valid JSON "
            "(no NaN or Infinity).",
            code="invalid_json",
        ) from None


def _fault_for(state: _State, request: web.Request) -> str | None:
    forced = request.headers.get(FAULT_HEADER)
    if forced is None:
        return state.faults.draw()
    if not is_fault_kind(forced):
        raise ApiError(400, f"Invalid {FAULT_HEADER} header value {forced[:40]!r}.", code="invalid_value")
    return forced


async def _early_fault(state: _State, request: web.Request, fault: str | None) -> web.StreamResponse | None:
    """Faults that do not depend on the request: HTTP errors, reset, timeout."""
    if fault is None or fault in ("garbage", "stream_cut"):
        return None
    if fault == "reset":
        _reset(request)
        return web.Response(status=500)  # never sent: the connection is gone
    if fault == "timeout":
        await asyncio.sleep(state.timeout_cap_s)  # cancelled when the client disconnects
        _reset(request)
        return web.Response(status=504)
    return _error(_status_fault(state, int(fault)))


def _status_fault(state: _State, status: int) -> ApiError:
    if status == 429:
        seconds = max(1, int(-(-state.retry_after_s // 1)))
        headers = {"Retry-After": str(seconds), "retry-after-ms": str(int(state.retry_after_s * 1000))}
        return ApiError(
            429, "Rate limit reached (injected fault).", type="requests", code="rate_limit_exceeded", headers=headers
        )
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return ApiError(status, f"Injected fault: HTTP {status}.", type=kind, code="injected_fault")


def _reset(request: web.Request) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0), no response."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _garbage(request: web.Request, stream: bool) -> web.StreamResponse:
    if not stream:
        return web.Response(body=_GARBAGE, headers=_JSON_HEADERS)
    response = web.StreamResponse(headers=_SSE_HEADERS)
    await response.prepare(request)
    await response.write(b"data: " + _GARBAGE + b"\n\ndata: [DONE]\n\n")
    return response


# ---------------------------------------------------------------- generation driving


def _new_generation(slot: _ModelSlot, state: _State, chat: ChatRequest) -> Generation:
    seed = chat.seed if chat.seed is not None else state.seeds.getrandbits(63)
    prompt = slot.model.render_chat(chat.messages)
    params = chat.params
    if state.logprobs_mode != params.logprobs_mode:
        params = dataclasses.replace(params, logprobs_mode=state.logprobs_mode)
    return Generation(
        slot.model, prompt, params, seed=seed % 2**64,
        max_tokens=chat.max_tokens or DEFAULT_MAX_TOKENS, stop=chat.stop,
    )  # fmt: skip


class _Driver:
    """Runs a Generation inline (fast models) or in the model's worker thread (blocking ones)."""

    def __init__(self, slot: _ModelSlot, state: _State, chat: ChatRequest) -> None:
        self._slot, self._state, self._chat = slot, state, chat
        self._cancelled = threading.Event() if slot.executor is not None else None
        self.generation: Generation | None = None

    async def _call(self, fn: Callable[[], Any]) -> Any:
        if self._slot.executor is None:
            return fn()
        return await asyncio.get_running_loop().run_in_executor(self._slot.executor, fn)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[_Driver]:
        """Hold the model (blocking models: one generation at a time) for the generation."""
        lock = self._slot.lock or contextlib.nullcontext()
        async with lock:
            try:
                self.generation = await self._call(lambda: _new_generation(self._slot, self._state, self._chat))
                yield self
            finally:
                if self._cancelled is not None:
                    self._cancelled.set()
                if self.generation is not None:
                    await self._call(self.generation.close)

    async def step(self) -> Delta:
        """One token."""
        assert self.generation is not None
        return await self._call(self.generation.step)

    async def to_end(self) -> Delta:
        """Every remaining token."""
        assert self.generation is not None
        if self._cancelled is None:
            return await _run_inline(self.generation)
        return await self._call(lambda: _run_until(self.generation, self._cancelled))


async def _run_inline(generation: Generation) -> Delta:
    """Generate to the end on the event loop, yielding to it every _YIELD_EVERY tokens."""
    parts, total = [], Delta()
    while True:
        delta = generation.run(_YIELD_EVERY)
        parts.append(delta.text)
        total.logprobs.extend(delta.logprobs)
        if delta.finish_reason is not None:
            total.finish_reason = delta.finish_reason
            break
        await asyncio.sleep(0)
    total.text = "".join(parts)
    return total


def _run_until(generation: Generation | None, cancelled: threading.Event | None) -> Delta:
    """The blocking loop of a worker thread; stops early when the request is gone."""
    assert generation is not None
    parts, total = [], Delta()
    while not (cancelled is not None and cancelled.is_set()):
        delta = generation.run(1)
        parts.append(delta.text)
        total.logprobs.extend(delta.logprobs)
        if delta.finish_reason is not None:
            total.finish_reason = delta.finish_reason
            break
    total.text = "".join(parts)
    return total


async def _complete(
    request: web.Request, state: _State, slot: _ModelSlot, chat: ChatRequest, ident: Completion, *, cut: bool
) -> web.StreamResponse:
    if slot.executor is None:  # fast path: an inline model needs no lock or thread
        generation = _new_generation(slot, state, chat)
        try:
            result = await _run_inline(generation)
        finally:
            generation.close()
    else:
        driver = _Driver(slot, state, chat)
        async with driver.session():
            result = await driver.to_end()
            assert driver.generation is not None
            generation = driver.generation
    usage = usage_body(generation.prompt_tokens, generation.completion_tokens)
    if state.tokens_per_s:
        await asyncio.sleep(generation.completion_tokens / state.tokens_per_s)
    logprobs = logprobs_body(result.logprobs) if chat.params.logprobs else None
    body = orjson.dumps(completion_body(ident, result.text, result.finish_reason, logprobs, usage))
    if cut:
        return await _cut_body(request, body)
    return web.Response(body=body, headers=_JSON_HEADERS)


async def _cut_body(request: web.Request, body: bytes) -> web.StreamResponse:
    """stream_cut on a non-streaming request: half the promised body, then the connection closes."""
    response = web.StreamResponse(headers={"Content-Type": _JSON})
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    if request.transport is not None:
        request.transport.close()
    return response


_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def _sse(body: Any) -> bytes:
    return b"data: " + orjson.dumps(body) + b"\n\n"


async def _stream(
    request: web.Request, state: _State, slot: _ModelSlot, chat: ChatRequest, ident: Completion, *, cut: bool
) -> web.StreamResponse:
    """SSE: role chunk, one chunk per token, finish chunk, usage chunk (if asked), [DONE].

    Events are written as soon as they exist when tokens take time (a blocking model, or
    --tokens-per-s); an inline model's events are batched, up to _YIELD_EVERY tokens a write.
    """
    response = web.StreamResponse(headers=_SSE_HEADERS)
    driver = _Driver(slot, state, chat)
    async with driver.session():
        await response.prepare(request)
        try:
            return await _stream_events(request, response, state, slot, chat, ident, driver, cut=cut)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception:
            logger.exception("generation failed mid-stream for model %s", chat.model)
            if request.transport is not None:
                request.transport.close()  # no [DONE]: the client sees a broken stream
            return response


async def _stream_events(
    request: web.Request, response: web.StreamResponse, state: _State, slot: _ModelSlot,
    chat: ChatRequest, ident: Completion, driver: _Driver, *, cut: bool,
) -> web.StreamResponse:  # fmt: skip
    """The body of `_stream` once the headers are out."""
    flush_each = bool(state.tokens_per_s) or slot.executor is not None
    events = [_sse(chunk(ident, {"role": "assistant", "content": ""}, include_usage=chat.include_usage))]
    if flush_each:
        events = await _flush(response, events)
    cut_after = max(1, (chat.max_tokens or DEFAULT_MAX_TOKENS) // 2) if cut else None
    delay = 1.0 / state.tokens_per_s if state.tokens_per_s else 0.0
    steps = 0
    while True:
        delta = await driver.step()
        steps += 1
        if cut_after is not None and (steps > cut_after or delta.finish_reason is not None):
            await _flush(response, events)
            await response.write_eof()  # ends cleanly, without finish_reason or [DONE]
            return response
        if delay:
            await asyncio.sleep(delay)
        events.extend(_delta_events(ident, chat, delta))
        if delta.finish_reason is not None:
            break
        if flush_each or steps % _YIELD_EVERY == 0:
            events = await _flush(response, events)
            await asyncio.sleep(0)  # writes do not always yield; keep the loop fair
    generation = driver.generation
    assert generation is not None
    usage = usage_body(generation.prompt_tokens, generation.completion_tokens)
    if chat.include_usage:
        events.append(_sse(chunk(ident, None, usage=usage, include_usage=True)))
    events.append(b"data: [DONE]\n\n")
    await _flush(response, events)
    await response.write_eof()
    return response


async def _flush(response: web.StreamResponse, events: list[bytes]) -> list[bytes]:
    """Write the pending events in one go; returns a fresh empty list."""
    if events:
        await response.write(b"".join(events))
    return []


def _delta_events(ident: Completion, chat: ChatRequest, delta: Delta) -> list[bytes]:
    """The SSE events of one step: a content chunk (if any) and the finish chunk (if last)."""
    events = []
    usage_flag = chat.include_usage
    if delta.text or delta.logprobs:
        logprobs = logprobs_body(delta.logprobs) if chat.params.logprobs else None
        events.append(_sse(chunk(ident, {"content": delta.text}, logprobs=logprobs, include_usage=usage_flag)))
    if delta.finish_reason is not None:
        events.append(_sse(chunk(ident, {}, finish_reason=delta.finish_reason, include_usage=usage_flag)))
    return events


# ---------------------------------------------------------------- running


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


def _base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


@contextlib.asynccontextmanager
async def running(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve `app` in the current event loop; yields the base URL (`http://HOST:PORT/v1`)."""
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    sock = _bind(host, port)
    try:
        site = web.SockSite(runner, sock, backlog=2048)
        await site.start()
        yield _base_url(host, sock.getsockname()[1])
    finally:
        await runner.cleanup()
        sock.close()


def serve(
    app: web.Application,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted (Ctrl-C returns normally); uses uvloop when installed."""

    async def main() -> None:
        async with running(app, host, port) as base_url:
            if on_ready is not None:
                on_ready(base_url)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        _event_loop_runner()(main())


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


class ServerThread:
    """Runs an app on its own event loop in a daemon thread; a context manager.

    `base_url` is `http://127.0.0.1:PORT/v1` (port 0 = a free port).
    """

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app, self.host, self._port = app, host, port
        self.base_url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="harness-serve", daemon=True)

    @property
    def port(self) -> int:
        """The port listened on."""
        return int(self.base_url.rsplit(":", 1)[1].split("/")[0])

    def start(self) -> ServerThread:
        """Start and wait until the server listens."""
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        """Stop the server and join the thread."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as err:  # noqa: BLE001 (handed to start(), which re-raises it)
            self._error = err
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with running(self.app, self.host, self._port) as base_url:
            self.base_url = base_url
            self._ready.set()
            await self._stop.wait()
