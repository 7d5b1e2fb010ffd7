"""Getting bytes to and from a server: aiohttp in production, any httpx transport in tests.

A `Wire` sends one POST and returns a `Reply`: the status, the headers and the body as raw
(still compressed) chunks. Everything that judges those bytes — bounds, decompression, JSON,
SSE — lives in `http.py` and is shared by both wires, so tests through `httpx.MockTransport`
exercise the same checks as real sockets.

The aiohttp session is driven directly (no httpx layers: they cost more CPU per request than
the socket work), with its own decompression off (`http.py` decompresses with a bound) and its
header parser limited by `Bounds`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol

from harness.client.bounds import Bounds

if TYPE_CHECKING:
    import aiohttp
    import httpx

READ_CHUNK = 256 * 1024


class Reply(Protocol):
    """One answer whose headers have arrived."""

    status: int

    def header(self, name: str) -> str | None:
        """A header's value (name in lower case), None when absent."""

    def content_length(self) -> int | None:
        """The declared Content-Length, None when absent."""

    async def body(self) -> bytes:
        """The whole raw body; only called when Content-Length is declared and within bounds."""

    def chunks(self) -> AsyncIterator[bytes]:
        """The raw body in pieces as they arrive."""

    async def aclose(self) -> None:
        """Give the connection back (or drop it when the body was not read to the end)."""


class Wire(Protocol):
    """Sends one request."""

    async def post(self, payload: bytes) -> Reply:
        """POST `payload` to the endpoint; raises the library's own errors."""

    async def aclose(self) -> None:
        """Close the pool."""


class AiohttpReply:
    """`Reply` over an `aiohttp.ClientResponse`."""

    __slots__ = ("_response", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status

    def header(self, name: str) -> str | None:
        return self._response.headers.get(name)

    def content_length(self) -> int | None:
        return self._response.content_length

    async def body(self) -> bytes:
        return await self._response.read()

    async def chunks(self) -> AsyncIterator[bytes]:
        content = self._response.content
        while True:
            chunk = await content.readany()
            if not chunk:
                return
            yield chunk

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()  # unread bytes: the connection cannot be reused


class AiohttpWire:
    """A pooled aiohttp session for one URL, created on first use inside the running loop."""

    def __init__(self, url: str, headers: dict[str, str], *, pool_size: int, bounds: Bounds) -> None:
        self._url = url
        self._headers = headers
        self._pool_size = pool_size
        self._bounds = bounds
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=self._pool_size)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            skip_auto_headers=("User-Agent",),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None),  # the client's asyncio.timeout bounds the attempt
            max_line_size=self._bounds.max_header_bytes,
            max_field_size=self._bounds.max_header_bytes,
            max_headers=self._bounds.max_headers,
            read_bufsize=READ_CHUNK,
            raise_for_status=False,
        )
        return self._session

    async def post(self, payload: bytes) -> AiohttpReply:
        session = self._session or self._open()
        # never follow a redirect: it could carry the Authorization header to another host
        response = await session._request("POST", self._url, data=payload, allow_redirects=False)
        return AiohttpReply(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class HttpxReply:
    """`Reply` over an `httpx.Response` from a transport (used with `httpx.MockTransport`)."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code

    def header(self, name: str) -> str | None:
        if name == "content-encoding" and self._response.is_stream_consumed:
            return None  # httpx read (and so decoded) it already
        return self._response.headers.get(name)

    def content_length(self) -> int | None:
        if self._response.is_stream_consumed:
            return len(self._response.content)
        raw = self._response.headers.get("content-length")
        return int(raw) if raw is not None and raw.isdigit() else None

    async def body(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def chunks(self) -> AsyncIterator[bytes]:
        import httpx

        try:
            content = self._response.content  # already read: a transport answering from memory
        except httpx.ResponseNotRead:
            async for chunk in self._response.aiter_raw():
                yield chunk
            return
        if content:
            yield content

    async def aclose(self) -> None:
        await self._response.aclose()


class HttpxWire:
    """Drives an httpx transport directly (httpx's client layers are not needed)."""

    def __init__(self, url: str, headers: dict[str, str], transport: httpx.AsyncBaseTransport, timeout_s: float) -> None:
        import httpx

        self._url = httpx.URL(url)
        self._headers = httpx.Headers({"host": self._url.netloc.decode("ascii"), **headers})
        self._transport = transport
        self._timeout = httpx.Timeout(timeout_s).as_dict()

    async def post(self, payload: bytes) -> HttpxReply:
        import httpx

        request = httpx.Request(
            "POST", self._url, headers=self._headers, content=payload, extensions={"timeout": self._timeout}
        )
        return HttpxReply(await self._transport.handle_async_request(request))

    async def aclose(self) -> None:
        await self._transport.aclose()


__all__ = ["AiohttpReply", "AiohttpWire", "HttpxReply", "HttpxWire", "Reply", "Wire"]
