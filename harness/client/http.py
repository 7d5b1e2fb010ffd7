"""The HTTP layer: one pooled async client for `POST {base_url}/chat/completions`.

One call of `ChatClient.complete` is one *attempt*: it returns a parsed `Completion` or raises
`RequestFailed`, which says whether the failure is worth retrying (408, 409, 429, 5xx,
connection errors, timeouts, a cut or garbled stream) and what the server asked us to wait
(`retry-after-ms`, `Retry-After`). Retrying itself is the runner's job.

Every byte a server sends is untrusted: the whole attempt (connect, headers, body, every
streamed event) is bounded by `timeout_s`, and sizes by `Bounds` (body on the wire and
decompressed, headers, one SSE event). Whatever a server sends ends as a `Completion` or a
classified `RequestFailed` — never another exception. Messages are scrubbed of secrets before
they are cut (see `secrets.py`).

Production sends through aiohttp directly (`wire.py`); a test may pass any httpx transport.
Bodies are encoded and decoded with orjson.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import sys
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self

import orjson

from harness.client.bounds import (
    Bounds,
    Inflater,
    TooLarge,
    UnsupportedEncoding,
    check_json_density,
    describe,
)
from harness.client.parse import (
    Completion,
    InvalidResponse,
    StreamAccumulator,
    parse_completion,
)
from harness.client.secrets import (
    Scrubber,
    install_log_filters,
    scrub,
    secrets_of,
)
from harness.client.sse import EventTooLarge, SSEDecoder
from harness.client.wire import AiohttpWire, HttpxWire, Reply, Wire

log = logging.getLogger(__name__)
install_log_filters()

ErrorType = Literal[
    "rate_limited",  # 429
    "server_error",  # 5xx, 408, 409
    "client_error",  # other 4xx: final
    "invalid_request",  # the body harness built cannot be encoded (nothing was sent)
    "timeout",  # the attempt took longer than timeout_s
    "connection",
    "protocol_error",  # not valid HTTP (a bad header line, an unknown Content-Encoding)
    "too_large",  # over one of the size bounds
    "invalid_response",  # a 2xx whose body is not a chat completion
    "stream_error",  # an error object inside an SSE stream
    "stream_cut",  # the body or stream ended before it finished
    "cancelled",
    "internal",
]

RETRY_STATUSES = frozenset({408, 409, 429})
SLICE = 64 * 1024  # stream bytes decoded between two yields to the event loop


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
    bounds: Bounds = field(default_factory=Bounds)

    def __repr__(self) -> str:  # never show the key (nor URL credentials)
        safe = Scrubber(secrets_of(self.api_key, self.headers, self.base_url))(self.base_url)
        return f"ClientConfig(base_url={safe!r}, timeout_s={self.timeout_s}, pool_size={self.pool_size})"


def parse_retry_after(headers: Mapping[str, str] | Any, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        value = _seconds(raw_ms, 1000.0)
        if value is not None:
            return value
    raw = headers.get("retry-after")
    if not raw:
        return None
    value = _seconds(raw, 1.0)
    if value is not None:
        return value
    try:
        when = email.utils.parsedate_to_datetime(raw).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def _seconds(raw: str, per_second: float) -> float | None:
    try:
        value = float(raw) / per_second
    except (ValueError, OverflowError):
        return None
    return value if 0 <= value < float("inf") else None


class _Headers:
    """`Reply.header` seen as a mapping for `parse_retry_after`."""

    def __init__(self, reply: Reply) -> None:
        self._reply = reply

    def get(self, name: str) -> str | None:
        return self._reply.header(name)


def _status_failure(status: int, body: bytes, reply: Reply, scrubber: Scrubber) -> RequestFailed:
    """Classify a non-2xx answer."""
    detail, cut = _error_detail(body)
    message = scrubber(f"HTTP {status}: {detail}" if detail else f"HTTP {status}", cut=cut)
    if status == 429:
        kind: ErrorType = "rate_limited"
    elif status >= 500 or status in RETRY_STATUSES:
        kind = "server_error"
    else:
        kind = "client_error"
    retryable = status >= 500 or status in RETRY_STATUSES
    return RequestFailed(
        kind, message, http_status=status, retryable=retryable, retry_after_s=parse_retry_after(_Headers(reply))
    )


ERROR_BODY_READ = 64 * 1024


def _error_detail(body: bytes) -> tuple[str, bool]:
    """The `error.message` of an OpenAI-style error body, else the body's start; and whether
    that text was cut from something longer (the caller scrubs, then cuts)."""
    cut = len(body) > ERROR_BODY_READ
    head = body[:ERROR_BODY_READ]
    try:
        data = orjson.loads(head)
    except orjson.JSONDecodeError:
        return head.decode("utf-8", "replace"), cut
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"]), False
        if isinstance(err, str):
            return err, False
    return head.decode("utf-8", "replace"), cut


def _bad_json(body: bytes, exc: Exception) -> str:
    """Why a body is not JSON, naming NaN/Infinity (a common server bug) when present."""
    if any(word in body[:65536] for word in (b"NaN", b"Infinity")):
        return f"response is not valid JSON: it contains NaN or Infinity, which JSON does not allow ({exc})"
    return f"response is not valid JSON ({exc}); body starts {body[:60]!r}"


def _http_status(value: Any) -> int | None:
    """A status code a server put in a JSON error, when it is one (100–599)."""
    if type(value) is int or (type(value) is str and value.isdigit() and len(value) == 3):
        code = int(value)
        return code if 100 <= code <= 599 else None
    return None


def _classify(exc: BaseException, scrubber: Scrubber) -> RequestFailed:
    """Any exception raised while sending or receiving → a classified failure."""
    if isinstance(exc, RequestFailed):
        return exc
    if isinstance(exc, (TooLarge, EventTooLarge)):
        return RequestFailed("too_large", scrubber(str(exc)))
    if isinstance(exc, UnsupportedEncoding):
        return RequestFailed("protocol_error", scrubber(str(exc)))
    if _is_timeout(exc):
        return RequestFailed("timeout", f"timed out ({type(exc).__name__})", retryable=True)
    kind, retryable = _kind_of(exc)
    origin = _origin(exc)
    text = f"{type(origin).__name__}: {origin}" if str(origin) else type(origin).__name__
    return RequestFailed(kind, scrubber(text), retryable=retryable)


def _httpx() -> Any:
    """httpx when something imported it (a test transport): else no exception can be its."""
    return sys.modules.get("httpx")


def _origin(exc: BaseException) -> BaseException:
    httpx = _httpx()
    if httpx is None:
        return exc
    if isinstance(exc, httpx.TransportError) and exc.__cause__ is not None:
        return exc.__cause__
    return exc


def _kind_of(exc: BaseException) -> tuple[ErrorType, bool]:
    """Error type and retryability of a library exception."""
    import aiohttp

    if isinstance(exc, aiohttp.ClientPayloadError):  # short Content-Length, bad chunking
        return "stream_cut", True
    if isinstance(exc, aiohttp.ClientResponseError) or type(exc).__name__ in ("LineTooLong", "BadHttpMessage"):
        return "protocol_error", False  # a header line too long, a newline inside a header
    if isinstance(exc, (aiohttp.ClientError, OSError, ConnectionError)):
        return "connection", True
    if isinstance(exc, (ValueError, UnicodeError, LookupError, zlib.error)):
        return "protocol_error", False  # e.g. a corrupt gzip body, an undecodable header
    httpx = _httpx()
    if httpx is None:
        return "internal", False
    if isinstance(exc, httpx.RemoteProtocolError):
        return "stream_cut", True
    if isinstance(exc, httpx.HTTPError):
        return "connection", True
    return "internal", False


def _is_timeout(exc: BaseException) -> bool:
    """A timeout, judged by the original exception: an httpx transport may map a refused
    connection to httpx.ConnectTimeout, so the wrapper's type alone would mislead."""
    if isinstance(exc, TimeoutError):
        return True
    httpx = _httpx()
    if httpx is None:
        return False
    cause = exc.__cause__
    if cause is not None and isinstance(exc, httpx.TransportError):
        return isinstance(cause, TimeoutError)
    return isinstance(exc, httpx.TimeoutException)


class ChatClient:
    """A pooled async client for one OpenAI-compatible endpoint."""

    def __init__(self, config: ClientConfig, *, transport: Any = None) -> None:
        self._config = config
        self._bounds = config.bounds
        self._secrets = secrets_of(config.api_key, config.headers, config.base_url)
        self._scrub = Scrubber(self._secrets)
        url = endpoint_url(config.base_url)
        headers = self._headers(config)
        self._wire: Wire
        if transport is None:
            self._wire = AiohttpWire(url, headers, pool_size=config.pool_size, bounds=config.bounds)
        else:  # any httpx.AsyncBaseTransport (tests: httpx.MockTransport)
            self._wire = HttpxWire(url, headers, transport, config.timeout_s)

    @staticmethod
    def _headers(config: ClientConfig) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            "accept-encoding": "gzip, deflate",
            **config.headers,
        }
        if config.api_key:
            headers["authorization"] = f"Bearer {config.api_key.strip()}"
        return headers

    @property
    def secrets(self) -> tuple[str, ...]:
        """Strings that must never appear in any output."""
        return self._secrets

    def scrub(self, text: str) -> str:
        """`text` without secrets, one line, cut to length."""
        return self._scrub(text)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pool."""
        await self._wire.aclose()

    async def complete(self, body: dict[str, Any], *, timeout_s: float | None = None) -> Completion:
        """Send one attempt; a streamed body (`stream: true`) is read as SSE."""
        limit = self._config.timeout_s if timeout_s is None else min(timeout_s, self._config.timeout_s)
        try:
            payload = orjson.dumps(body)
        except orjson.JSONEncodeError as exc:  # a lone surrogate or a 65-bit int in the data; or a bug
            kind: ErrorType = "internal" if "not JSON serializable" in str(exc) else "invalid_request"
            raise RequestFailed(kind, self._scrub(f"the request body cannot be sent as JSON ({exc})")) from None
        started = time.perf_counter()
        try:
            async with asyncio.timeout(limit):
                reply = await self._wire.post(payload)
                try:
                    if body.get("stream") and 200 <= reply.status < 300 and "json" not in (reply.header("content-type") or ""):
                        return await self._stream(reply, started)
                    return self._whole(reply, await self._read(reply))
                finally:
                    await reply.aclose()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - everything a server can cause is classified here
            raise _classify(exc, self._scrub) from None

    async def _read(self, reply: Reply) -> bytes:
        """The decoded body within the bounds."""
        bounds = self._bounds
        length = reply.content_length()
        encoding = reply.header("content-encoding")
        if length is not None and length > bounds.max_wire_bytes:
            raise TooLarge(f"Content-Length {length:,} is over the {describe(bounds.max_wire_bytes)} limit")
        if length is not None and not encoding:
            return await reply.body()  # the length is enforced by the HTTP library
        inflater = Inflater(encoding, bounds.max_body_bytes)
        received = 0
        parts: list[bytes] = []
        async for chunk in reply.chunks():
            received += len(chunk)
            if received > bounds.max_wire_bytes:
                raise TooLarge(f"body is over the {describe(bounds.max_wire_bytes)} limit")
            parts.append(inflater.feed(chunk))
        return b"".join(parts)

    def _whole(self, reply: Reply, body: bytes) -> Completion:
        """A complete (non-streamed) answer."""
        status = reply.status
        if not 200 <= status < 300:
            raise _status_failure(status, body, reply, self._scrub)
        check_json_density(body, self._bounds)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            # A garbled 2xx body is usually transient (a proxy, a torn write): worth another try.
            raise RequestFailed(
                "invalid_response", self._scrub(_bad_json(body, exc)), http_status=status, retryable=True
            ) from None
        try:
            return parse_completion(data, http_status=status, response_bytes=len(body))
        except InvalidResponse as exc:
            raise RequestFailed("invalid_response", self._scrub(str(exc)), http_status=status) from None

    async def _stream(self, reply: Reply, started: float) -> Completion:
        bounds = self._bounds
        acc = StreamAccumulator(started=started, http_status=reply.status)
        decoder = SSEDecoder(max_event_bytes=bounds.max_event_bytes, max_events=bounds.max_events)
        inflater = Inflater(reply.header("content-encoding"), bounds.max_body_bytes)
        received = 0
        async for chunk in reply.chunks():
            received += len(chunk)
            if received > bounds.max_wire_bytes:
                raise TooLarge(f"stream is over the {describe(bounds.max_wire_bytes)} limit")
            data = inflater.feed(chunk)
            acc.response_bytes += len(data)
            for offset in range(0, len(data), SLICE):
                if offset:  # a big (decompressed) chunk: let timeouts and other requests run
                    await asyncio.sleep(0)
                for event in decoder.feed(data[offset : offset + SLICE]):
                    if self._consume(acc, event.event, event.data):
                        return self._finish(acc)
        for event in decoder.flush():
            if self._consume(acc, event.event, event.data):
                return self._finish(acc)
        if acc.finish_reason is None:
            raise RequestFailed(
                "stream_cut",
                f"stream ended after {acc.chunks} chunks without [DONE] or a finish_reason",
                http_status=acc.http_status,
                retryable=True,
            )
        return self._finish(acc)

    def _consume(self, acc: StreamAccumulator, event: str | None, data: str) -> bool:
        """Feed one SSE event; True when the stream is complete."""
        if data == "[DONE]":
            return True
        check_json_density(data, self._bounds)
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise RequestFailed(
                "stream_cut",
                self._scrub(f"stream chunk is not valid JSON: {data[:60]!r}"),
                http_status=acc.http_status,
                retryable=True,
            ) from None
        if event == "error" or (isinstance(obj, dict) and "error" in obj and "choices" not in obj):
            raise _stream_error(obj, acc.http_status, self._scrub)
        try:
            acc.add(obj, time.perf_counter())
        except InvalidResponse as exc:
            raise RequestFailed("invalid_response", self._scrub(str(exc)), http_status=acc.http_status) from None
        return False

    def _finish(self, acc: StreamAccumulator) -> Completion:
        try:
            return acc.result()
        except InvalidResponse as exc:
            raise RequestFailed("invalid_response", self._scrub(str(exc)), http_status=acc.http_status) from None


def endpoint_url(base_url: str, path: str = "/chat/completions") -> str:
    """`path` appended to the base URL's path, keeping its query (`…/v1?api-version=…`)."""
    base, sep, query = base_url.partition("?")
    return base.rstrip("/") + path + (sep + query if sep else "")


def probe_auth(base_url: str, api_key: str, *, headers: dict[str, str] | None = None, timeout_s: float = 10.0) -> int | None:
    """Status of `GET {base_url}/models` with the key, or None when it cannot be asked.

    Used before a sweep so a wrong key is one clear error instead of a run of 401 rows.
    """
    import httpx

    try:
        response = httpx.get(
            endpoint_url(base_url, "/models"),
            headers={**(headers or {}), "Authorization": f"Bearer {api_key.strip()}"},
            timeout=timeout_s,
        )
    except (httpx.HTTPError, ValueError, UnicodeError):
        return None
    return response.status_code


def _stream_error(obj: Any, http_status: int, scrubber: Scrubber) -> RequestFailed:
    """An error object sent inside a 200 stream. Retried unless it names a final 4xx."""
    err = obj.get("error", obj) if isinstance(obj, dict) else obj
    message = err.get("message") if isinstance(err, dict) else err
    status = _http_status(err.get("code") if isinstance(err, dict) else None)
    final = status is not None and 400 <= status < 500 and status not in RETRY_STATUSES
    return RequestFailed(
        "stream_error",
        scrubber(f"error inside the stream: {message}"),
        http_status=status or http_status,
        retryable=not final,
    )


__all__ = [
    "ChatClient",
    "ClientConfig",
    "Completion",
    "ErrorType",
    "RequestFailed",
    "endpoint_url",
    "parse_retry_after",
    "probe_auth",
    "scrub",
]
