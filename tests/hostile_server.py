"""A hostile OpenAI-compatible server for tests: raw asyncio sockets, scriptable per request.

It speaks just enough HTTP/1.1 to be reached, then misbehaves on purpose: every bad answer of
issue 10 is a named *case* (see `CASES`). The case is chosen by the URL, so a subprocess
(`harness run`) can be pointed at it without any other channel:

    with HostileServer() as server:
        server.url("gzip_bomb")              # http://127.0.0.1:PORT/case/gzip_bomb/v1
        server.url("reset", "ok")            # 1st request reset, every later one answered
        server.hits                          # chat requests received so far

`GET …/models` always answers 200 (so a pre-flight check passes). The server runs on its own
event loop in a daemon thread; no sockets beyond 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import struct
import threading
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Self

import orjson

MIB = 1024 * 1024
Writer = asyncio.StreamWriter


@dataclass
class Request:
    """One parsed request."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Behaviour = Callable[[Request, Writer], Awaitable[bool]]  # returns whether to keep the connection


def completion(content: str = "Paris", *, prompt_tokens: object = 3, completion_tokens: object = 1) -> bytes:
    return orjson.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
        }
    )


def _head(status: int = 200, headers: dict[str, str] | None = None, *, length: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} X"]
    merged = {"content-type": "application/json", **(headers or {})}
    if length is not None:
        merged["content-length"] = str(length)
    lines += [f"{k}: {v}" for k, v in merged.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _send(writer: Writer, body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> bool:
    writer.write(_head(status, headers, length=len(body)) + body)
    await writer.drain()
    return True


def _chunk(obj: object) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _delta(text: str, finish: str | None = None) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


SSE_OK = (
    _chunk(_delta("Par"))
    + _chunk(_delta("is", "stop"))
    + _chunk({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
    + b"data: [DONE]\n\n"
)
SSE_HEAD = {"content-type": "text/event-stream"}


def _gzip_repeated(block: bytes, decompressed: int) -> bytes:
    """A single gzip member of `block` (a MiB) repeated to `decompressed` bytes, built without
    compressing it all: after a full flush, deflate emits the same bytes for the same block."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    again = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    tail = packer.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(decompressed // MIB):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc & 0xFFFFFFFF, decompressed & 0xFFFFFFFF)
    return header + first + again * (decompressed // MIB - 1) + tail + trailer


def gzip_bomb(decompressed: int = 1024 * MIB) -> bytes:
    """gzip of `decompressed` zero bytes (1 GiB → about 1 MiB)."""
    return _gzip_repeated(bytes(MIB), decompressed)


def sse_bomb(decompressed: int = 1024 * MIB) -> bytes:
    """gzip of an endless run of SSE keep-alive comments (`: ping`), `decompressed` bytes in all."""
    return _gzip_repeated(b": ping\n\n" * (MIB // 8), decompressed)


_BOMBS: dict[str, bytes] = {}


def _bomb(kind: str) -> bytes:
    if kind not in _BOMBS:
        _BOMBS[kind] = gzip_bomb() if kind == "body" else sse_bomb()
    return _BOMBS[kind]


# -- the cases -------------------------------------------------------------------------------


async def ok(req: Request, w: Writer) -> bool:
    if orjson.loads(req.body or b"{}").get("stream"):
        w.write(_head(200, SSE_HEAD) .replace(b"\r\n\r\n", b"\r\ntransfer-encoding: chunked\r\n\r\n") + _chunked(SSE_OK))
        await w.drain()
        return True
    return await _send(w, completion())


def _chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n"


async def ok_gzip(req: Request, w: Writer) -> bool:
    return await _send(w, gzip.compress(completion()), headers={"content-encoding": "gzip"})


async def huge_usage(req: Request, w: Writer) -> bool:
    return await _send(w, completion(prompt_tokens=2**63, completion_tokens=2**63 + 5))


async def overflow_usage(req: Request, w: Writer) -> bool:  # > 64 bits: parsed as a float
    return await _send(w, completion().replace(b'"prompt_tokens":3', b'"prompt_tokens":' + b"9" * 40))


async def sse_error_1e300(req: Request, w: Writer) -> bool:
    body = _chunk(_delta("a")) + b'data: {"error": {"code": 1e300, "message": "boom"}}\n\n'
    return await _send(w, body, headers=SSE_HEAD)


async def status_in_error_huge(req: Request, w: Writer) -> bool:
    return await _send(w, b'{"error": {"code": 123456789012345678901234567890, "message": "no"}}', status=500)


async def lone_surrogate(req: Request, w: Writer) -> bool:
    return await _send(w, completion("x").replace(b'"x"', b'"\\ud800 lone"'))


async def invalid_utf8(req: Request, w: Writer) -> bool:
    return await _send(w, completion("x").replace(b'"x"', b'"\xff\xfe\xc0"'))


async def invalid_utf8_sse(req: Request, w: Writer) -> bool:
    body = b'data: {"choices":[{"index":0,"delta":{"content":"\xff\xfe"},"finish_reason":"stop"}]}\n\n' + SSE_OK
    return await _send(w, body, headers=SSE_HEAD)


async def short_content_length(req: Request, w: Writer) -> bool:
    w.write(_head(200, length=1000) + completion()[:10])
    await w.drain()
    return False


async def huge_header(req: Request, w: Writer) -> bool:
    return await _send(w, completion(), headers={"x-big": "a" * 100_000})


async def header_newline(req: Request, w: Writer) -> bool:
    w.write(_head(200, {"x-bad": "one\ntwo: three\nfour"}, length=len(completion())) + completion())
    await w.drain()
    return False


async def many_headers(req: Request, w: Writer) -> bool:
    return await _send(w, completion(), headers={f"x-h{i}": "v" * 100 for i in range(20_000)})


async def gzip_bomb_body(req: Request, w: Writer) -> bool:
    return await _send(w, _bomb("body"), headers={"content-encoding": "gzip"})


async def gzip_bomb_sse(req: Request, w: Writer) -> bool:
    return await _send(w, _bomb("sse"), headers={**SSE_HEAD, "content-encoding": "gzip"})


async def body_100mb(req: Request, w: Writer) -> bool:
    """100 MB announced and sent (a JSON string of spaces)."""
    size = 100 * MIB
    w.write(_head(200, length=size))
    piece = b" " * MIB
    for _ in range(100):
        w.write(piece)
        await w.drain()
    return False


async def body_100mb_chunked(req: Request, w: Writer) -> bool:
    """100 MB with no Content-Length (chunked): only counting can stop it."""
    w.write(_head(200, {"transfer-encoding": "chunked"}))
    piece = b" " * MIB
    for _ in range(100):
        w.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        await w.drain()
    w.write(b"0\r\n\r\n")
    return False


async def huge_event(req: Request, w: Writer) -> bool:
    """One SSE event that never ends (20 MiB of `data:` bytes, no blank line)."""
    w.write(_head(200, {**SSE_HEAD, "transfer-encoding": "chunked"}))
    piece = b"data: " + b"a" * MIB
    for _ in range(20):
        w.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        await w.drain()
    return False


async def many_events(req: Request, w: Writer) -> bool:
    """6 MiB of tiny events (`data: {}`, 600,000 of them), within every size limit: only
    counting stops them."""
    return await _send(w, b"data: {}\n\n" * (6 * MIB // 10), headers=SSE_HEAD)


async def many_pings(req: Request, w: Writer) -> bool:
    """15 MiB of keep-alive comments, gzipped (about 15 KiB on the wire)."""
    return await _send(w, gzip.compress(b": ping\n\n" * (15 * MIB // 8)), headers={**SSE_HEAD, "content-encoding": "gzip"})


async def dense_json(req: Request, w: Writer) -> bool:
    """4 MiB of `{},` (1.4 million values) — within the size limits, 100 MB once parsed."""
    return await _send(w, b"[" + b"{}," * (4 * MIB // 3) + b"{}]")


async def slow_sse(req: Request, w: Writer) -> bool:
    """Valid chunks every 20 ms, forever (never a finish_reason)."""
    w.write(_head(200, {**SSE_HEAD, "transfer-encoding": "chunked"}))
    while True:
        piece = _chunk(_delta("a"))
        w.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        await w.drain()
        await asyncio.sleep(0.02)


async def slow_body(req: Request, w: Writer) -> bool:
    """Headers, then one byte of body every 50 ms (a slow loris)."""
    body = completion()
    w.write(_head(200, length=len(body)))
    for byte in body:
        w.write(bytes([byte]))
        await w.drain()
        await asyncio.sleep(0.05)
    return True


async def hang(req: Request, w: Writer) -> bool:
    await asyncio.sleep(3600)
    return False


async def garbage_json(req: Request, w: Writer) -> bool:
    return await _send(w, b'{"choices": [{"message": ')


async def nan_json(req: Request, w: Writer) -> bool:
    return await _send(w, completion().replace(b'"prompt_tokens":3', b'"prompt_tokens":NaN'))


async def deep_nesting(req: Request, w: Writer) -> bool:
    return await _send(w, b"[" * 100_000 + b"]" * 100_000)


async def garbage_http(req: Request, w: Writer) -> bool:
    w.write(b"HELLO THERE\r\n\r\n\x00\x01\x02")
    await w.drain()
    return False


async def bad_status(req: Request, w: Writer) -> bool:
    w.write(b"HTTP/1.1 99999999999999999999 Huge\r\ncontent-length: 2\r\n\r\n{}")
    await w.drain()
    return False


async def unknown_encoding(req: Request, w: Writer) -> bool:
    return await _send(w, b"\x00garbage", headers={"content-encoding": "br"})


async def corrupt_gzip(req: Request, w: Writer) -> bool:
    return await _send(w, b"\x1f\x8b\x08\x00" + b"\xff" * 200, headers={"content-encoding": "gzip"})


async def reset(req: Request, w: Writer) -> bool:
    sock = w.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    w.transport.abort()
    return False


async def close(req: Request, w: Writer) -> bool:
    return False


async def echo_key(req: Request, w: Writer) -> bool:
    """A 401 that echoes the Authorization header, placed so a naive cut would split the key."""
    key = req.headers.get("authorization", "").removeprefix("Bearer ")
    message = "x" * 180 + f" Incorrect API key provided: {key}. More text after the key."
    return await _send(w, orjson.dumps({"error": {"message": message}}), status=401)


async def redirect(req: Request, w: Writer) -> bool:
    """A 307 to another place (a client that follows it would send the key along)."""
    return await _send(w, b"", status=307, headers={"location": "http://127.0.0.2:9/steal"})


async def rate_limited(req: Request, w: Writer) -> bool:
    return await _send(w, b'{"error": {"message": "slow down"}}', status=429, headers={"retry-after-ms": "10"})


CASES: dict[str, Behaviour] = {
    f.__name__: f
    for f in (
        ok, ok_gzip, huge_usage, overflow_usage, sse_error_1e300, status_in_error_huge, lone_surrogate,
        invalid_utf8, invalid_utf8_sse, short_content_length, huge_header, header_newline, many_headers,
        gzip_bomb_body, gzip_bomb_sse, body_100mb, body_100mb_chunked, huge_event, many_events, many_pings, dense_json,
        slow_sse, slow_body,
        hang, garbage_json, nan_json, deep_nesting, garbage_http, bad_status, unknown_encoding,
        corrupt_gzip, reset, close, echo_key, redirect, rate_limited,
    )
}
SLOW_CASES = frozenset({"slow_sse", "slow_body", "hang"})  # end by the client's timeout


# -- the server ------------------------------------------------------------------------------


@dataclass
class HostileServer:
    """Runs the cases on 127.0.0.1 in a background thread (a context manager)."""

    host: str = "127.0.0.1"
    port: int = 0
    bombs: bool = True  # build the gzip bombs before serving (about a second of CPU)
    hits: int = 0
    seen: list[Request] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _counters: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, *cases: str, cycle: bool = False) -> str:
        """Base URL whose n-th chat request gets the n-th case (the last one repeats, or with
        `cycle` the list starts again)."""
        for case in cases:
            if case not in CASES:
                raise KeyError(case)
        return f"http://{self.host}:{self.port}/case/{'~' if cycle else ''}{','.join(cases)}/v1"

    def __enter__(self) -> Self:
        if self.bombs:
            _bomb("body"), _bomb("sse")  # built before serving, so no case waits for them
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("hostile server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        server = loop.run_until_complete(asyncio.start_server(self._connection, self.host, self.port, limit=1 << 22))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    def _pick(self, path: str) -> Behaviour:
        parts = path.split("/")
        if len(parts) < 3 or parts[1] != "case":
            return ok
        cycle = parts[2].startswith("~")
        names = parts[2].lstrip("~").split(",")
        with self._lock:
            n = self._counters.get(parts[2], 0)
            self._counters[parts[2]] = n + 1
        index = n % len(names) if cycle else min(n, len(names) - 1)
        return CASES.get(names[index], ok)

    async def _connection(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        try:
            while True:
                req = await _read_request(reader)
                if req is None:
                    break
                if req.method == "GET":
                    await _send(writer, b'{"object": "list", "data": [{"id": "m", "object": "model"}]}')
                    continue
                with self._lock:
                    self.hits += 1
                    self.seen.append(req)
                if not await self._pick(req.path)(req, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass
        finally:
            if not writer.transport.is_closing():
                writer.close()


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
    return Request(method, path, headers, body)


__all__ = ["CASES", "SLOW_CASES", "HostileServer", "Request", "completion", "gzip_bomb", "sse_bomb"]
