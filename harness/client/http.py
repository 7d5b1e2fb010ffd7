"""The HTTP layer: one pooled async client for `POST {base_url}/chat/completions`.

The only module that imports httpx. One call of `ChatClient.complete` is one *attempt*: it
returns a parsed `Completion` or raises `RequestFailed`, which says whether the failure is
worth retrying (408, 409, 429, 5xx, connection errors, timeouts, a cut or garbled stream) and
what the server asked us to wait (`retry-after-ms`, `Retry-After`). Retrying itself is the
runner's job. Error messages are scrubbed of the API key.

The transport is httpx-aiohttp (measured ~3x less CPU per request than httpx's own pool on
this class of machine); bodies are encoded and decoded with orjson.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import orjson

from harness.errors import TargetError
from harness.client.sse import SSEDecoder
from harness.client.parse import Completion, InvalidResponse, StreamAccumulator, parse_completion

log = logging.getLogger(__name__)

ErrorType = Literal[
    "rate_limited",  # 429
    "server_error",  # 5xx, 408, 409
    "client_error",  # other 4xx: final
    "timeout",
    "connection",
    "invalid_response",  # a 2xx whose body is not a chat completion
    "stream_error",  # an error object inside an SSE stream
    "stream_cut",  # the stream ended before it finished
    "cancelled",
    "internal",
]

RETRY_STATUSES = frozenset({408, 409, 429})
MAX_MESSAGE = 500


class RequestFailed(Exception):
    """One attempt failed. `retryable` says whether another attempt may succeed."""

    def __init__(
        self,
        error_type: ErrorType,
        message: str,
        *,
        http_status: int | None = None,
        retryable: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.error_type: ErrorType = error_type
        self.message = message
        self.http_status = http_status
        self.retryable = retryable
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class ClientConfig:
    """Where and how to send. `api_key` is only ever placed in the Authorization header."""

    base_url: str
    api_key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 120.0
    pool_size: int = 64

    def __repr__(self) -> str:  # never show the key
        return f"ClientConfig(base_url={self.base_url!r}, timeout_s={self.timeout_s}, pool_size={self.pool_size})"


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Replace every secret in `text` by `***` and keep it to one short line."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def parse_retry_after(headers: httpx.Headers, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            value = float(raw_ms) / 1000.0
            if value >= 0 and value == value:
                return value
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        value = float(raw)
        return value if value >= 0 and value == value else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def _status_failure(status: int, body: bytes, headers: httpx.Headers, secrets: tuple[str, ...]) -> RequestFailed:
    """Classify a non-2xx answer."""
    detail = _error_detail(body)
    message = scrub(f"HTTP {status}: {detail}" if detail else f"HTTP {status}", secrets)
    if status == 429:
        kind: ErrorType = "rate_limited"
    elif status >= 500 or status in RETRY_STATUSES:
        kind = "server_error"
    else:
        kind = "client_error"
    retryable = status >= 500 or status in RETRY_STATUSES
    return RequestFailed(
        kind, message, http_status=status, retryable=retryable, retry_after_s=parse_retry_after(headers)
    )


def _error_detail(body: bytes) -> str:
    """The `error.message` of an OpenAI-style error body, else the start of the body."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:200].decode("utf-8", "replace")
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return body[:200].decode("utf-8", "replace")


def _bad_json(body: bytes, exc: Exception) -> str:
    """Why a body is not JSON, naming NaN/Infinity (a common server bug) when present."""
    if any(word in body for word in (b"NaN", b"Infinity")):
        return f"response is not valid JSON: it contains NaN or Infinity, which JSON does not allow ({exc})"
    return f"response is not valid JSON ({exc}); body starts {body[:60]!r}"


def _is_timeout(exc: BaseException) -> bool:
    """A timeout, judged by the original exception: httpx-aiohttp maps a refused connection
    to httpx.ConnectTimeout, so the wrapper's type alone would mislead."""
    cause = exc.__cause__
    if cause is not None and isinstance(exc, httpx.TransportError):
        return isinstance(cause, TimeoutError)
    return isinstance(exc, (httpx.TimeoutException, TimeoutError))


def _transport_failure(exc: BaseException, secrets: tuple[str, ...]) -> RequestFailed:
    """Classify an exception raised while sending or receiving."""
    if _is_timeout(exc):
        return RequestFailed("timeout", f"timed out ({type(exc).__name__})", retryable=True)
    origin = exc.__cause__ if isinstance(exc, httpx.TransportError) and exc.__cause__ is not None else exc
    text = f"{type(origin).__name__}: {origin}" if str(origin) else type(origin).__name__
    return RequestFailed("connection", scrub(text, secrets), retryable=True)


class ChatClient:
    """A pooled async client for one OpenAI-compatible endpoint."""

    def __init__(self, config: ClientConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._config = config
        self._secrets = (config.api_key,) if config.api_key else ()
        self._url = httpx.URL(config.base_url.rstrip("/") + "/chat/completions")
        # The transport is driven directly: httpx's client layer (auth, redirects, cookies,
        # event hooks — none used here) costs more CPU per request than the transport itself.
        self._transport = transport or _default_transport(config.pool_size)
        self._request_headers = httpx.Headers({"host": self._url.netloc.decode("ascii"), **self._headers(config)})
        self._timeout = httpx.Timeout(config.timeout_s).as_dict()

    def _request(self, payload: bytes) -> httpx.Request:
        return httpx.Request(
            "POST", self._url, headers=self._request_headers, content=payload, extensions={"timeout": self._timeout}
        )

    @staticmethod
    def _headers(config: ClientConfig) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json", **config.headers}
        if config.api_key:
            headers["authorization"] = f"Bearer {config.api_key}"
        return headers

    @property
    def secrets(self) -> tuple[str, ...]:
        """Strings that must never appear in any output."""
        return self._secrets

    async def __aenter__(self) -> "ChatClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pool."""
        await self._transport.aclose()

    async def complete(self, body: dict[str, Any], *, timeout_s: float | None = None) -> Completion:
        """Send one attempt; a streamed body (`stream: true`) is read as SSE."""
        limit = self._config.timeout_s if timeout_s is None else min(timeout_s, self._config.timeout_s)
        payload = orjson.dumps(body)
        try:
            async with asyncio.timeout(limit):
                if body.get("stream"):
                    return await self._stream(payload)
                return await self._plain(payload)
        except RequestFailed:
            raise
        except (httpx.TransportError, TimeoutError, OSError) as exc:
            raise _transport_failure(exc, self._secrets) from None
        except httpx.HTTPError as exc:  # anything else httpx raises is a transport problem too
            raise _transport_failure(exc, self._secrets) from None

    async def _plain(self, payload: bytes) -> Completion:
        response = await self._transport.handle_async_request(self._request(payload))
        try:
            body = await _read(response)
        finally:
            await response.aclose()
        return self._whole(response, body)

    def _whole(self, response: httpx.Response, body: bytes) -> Completion:
        """A complete (non-streamed) answer."""
        if not 200 <= response.status_code < 300:
            raise _status_failure(response.status_code, body, response.headers, self._secrets)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            # A garbled 2xx body is usually transient (a proxy, a torn write): worth another try.
            raise RequestFailed(
                "invalid_response",
                scrub(_bad_json(body, exc), self._secrets),
                http_status=response.status_code,
                retryable=True,
            ) from None
        try:
            return parse_completion(data, http_status=response.status_code, response_bytes=len(body))
        except InvalidResponse as exc:
            raise RequestFailed(
                "invalid_response", scrub(str(exc), self._secrets), http_status=response.status_code
            ) from None

    async def _stream(self, payload: bytes) -> Completion:
        started = time.perf_counter()
        response = await self._transport.handle_async_request(self._request(payload))
        async with contextlib.aclosing(response):
            if not 200 <= response.status_code < 300 or "json" in response.headers.get("content-type", ""):
                # an error, or a server that ignored `stream: true` and answered in one piece
                return self._whole(response, await _read(response))
            acc = StreamAccumulator(started=started, http_status=response.status_code)
            decoder = SSEDecoder()
            try:
                async for chunk in response.aiter_bytes():
                    acc.response_bytes += len(chunk)
                    for event in decoder.feed(chunk):
                        if self._consume(acc, event.event, event.data):
                            return self._finish(acc)
                for event in decoder.flush():
                    if self._consume(acc, event.event, event.data):
                        return self._finish(acc)
            except (httpx.TransportError, OSError) as exc:
                raise RequestFailed(
                    "stream_cut",
                    scrub(f"stream broke after {acc.chunks} chunks ({type(exc).__name__})", self._secrets),
                    http_status=response.status_code,
                    retryable=True,
                ) from None
            if acc.finish_reason is None:
                raise RequestFailed(
                    "stream_cut",
                    f"stream ended after {acc.chunks} chunks without [DONE] or a finish_reason",
                    http_status=response.status_code,
                    retryable=True,
                )
            return self._finish(acc)

    def _consume(self, acc: StreamAccumulator, event: str | None, data: str) -> bool:
        """Feed one SSE event; True when the stream is complete."""
        if data == "[DONE]":
            return True
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise RequestFailed(
                "stream_cut",
                scrub(f"stream chunk is not valid JSON: {data[:60]!r}", self._secrets),
                http_status=acc.http_status,
                retryable=True,
            ) from None
        if event == "error" or (isinstance(obj, dict) and "error" in obj and "choices" not in obj):
            raise _stream_error(obj, acc.http_status, self._secrets)
        try:
            acc.add(obj, time.perf_counter())
        except InvalidResponse as exc:
            raise RequestFailed("invalid_response", scrub(str(exc), self._secrets), http_status=acc.http_status) from None
        return False

    def _finish(self, acc: StreamAccumulator) -> Completion:
        try:
            return acc.result()
        except InvalidResponse as exc:
            raise RequestFailed("invalid_response", scrub(str(exc), self._secrets), http_status=acc.http_status) from None


def probe_auth(base_url: str, api_key: str, *, headers: dict[str, str] | None = None, timeout_s: float = 10.0) -> int | None:
    """Status of `GET {base_url}/models` with the key, or None when it cannot be asked.

    Used before a sweep so a wrong key is one clear error instead of a run of 401 rows.
    """
    try:
        response = httpx.get(
            base_url.rstrip("/") + "/models",
            headers={**(headers or {}), "Authorization": f"Bearer {api_key}"},
            timeout=timeout_s,
        )
    except httpx.HTTPError:
        return None
    return response.status_code


async def _read(response: httpx.Response) -> bytes:
    """The body. Without a Content-Encoding the raw bytes are taken as they are: httpx's
    decoder and re-chunking layers cost more CPU than the read itself."""
    try:
        return response.content  # already read (e.g. a transport that answers from memory)
    except httpx.ResponseNotRead:
        pass
    if "content-encoding" in response.headers:
        return await response.aread()
    return b"".join([chunk async for chunk in response.aiter_raw()])


def _stream_error(obj: Any, http_status: int, secrets: tuple[str, ...]) -> RequestFailed:
    """An error object sent inside a 200 stream. Retried unless it names a final 4xx."""
    err = obj.get("error", obj) if isinstance(obj, dict) else obj
    message = err.get("message") if isinstance(err, dict) else err
    code = err.get("code") if isinstance(err, dict) else None
    status: int | None = None
    try:
        status = int(code) if code is not None else None
    except (TypeError, ValueError):
        status = None
    final = status is not None and 400 <= status < 500 and status not in RETRY_STATUSES
    return RequestFailed(
        "stream_error",
        scrub(f"error inside the stream: {message}", secrets),
        http_status=status or http_status,
        retryable=not final,
    )


def _default_transport(pool_size: int) -> httpx.AsyncBaseTransport:
    """httpx-aiohttp transport with a pool at least as large as the concurrency."""
    try:
        from httpx_aiohttp import AiohttpTransport
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise TargetError(f"the httpx-aiohttp transport is not installed ({exc})") from None
    limits = httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size)
    return AiohttpTransport(limits=limits)


__all__ = [
    "ChatClient",
    "ClientConfig",
    "Completion",
    "ErrorType",
    "RequestFailed",
    "parse_retry_after",
    "scrub",
]
