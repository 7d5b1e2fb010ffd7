"""Size bounds on what a server may send, and a decompressor that cannot be bombed.

Every byte of an answer is untrusted. `Bounds` caps the body on the wire (compressed), the body
once decompressed, the response headers and one server-sent event; the whole attempt is capped
in time by the client's `timeout_s`. A violation raises `TooLarge`, which the client turns into
an error row (`error_type: too_large`). `Inflater` decompresses gzip/deflate in steps whose
output never exceeds what is still allowed, so a 1 MiB → 1 GiB bomb costs at most the cap.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class Bounds:
    """Per-attempt caps. The defaults fit 16k tokens with 20 top logprobs each."""

    max_body_bytes: int = 16 * MIB  # decompressed body (or the sum of a stream's decompressed bytes)
    max_wire_bytes: int = 16 * MIB  # bytes received on the socket for the body
    max_header_bytes: int = 64 * 1024  # one header line (name and value)
    max_headers: int = 128  # header lines
    max_event_bytes: int = 4 * MIB  # one server-sent event
    max_events: int = 100_000  # server-sent events in one stream, keep-alive comments included
    max_json_values: int = 1_000_000  # commas in one JSON document: 16 MiB of `{},` would be 400 MB parsed


class TooLarge(Exception):
    """An answer exceeded one of the `Bounds`; the message names which and by how much."""


DENSE_CHECK_BYTES = 1024 * 1024  # smaller documents cannot hold enough values to matter


def check_json_density(data: bytes | str, bounds: Bounds) -> None:
    """TooLarge when a document holds more values than `max_json_values` (counted by commas,
    before parsing: parsed, tiny values cost ~70 bytes each)."""
    if len(data) > DENSE_CHECK_BYTES:
        commas = data.count(b",") if isinstance(data, bytes) else data.count(",")
        if commas > bounds.max_json_values:
            raise TooLarge(f"JSON document with {commas:,} values is over the {bounds.max_json_values:,}-value limit")


class Inflater:
    """Bounded gzip/deflate/identity decoding of a body that arrives in chunks."""

    def __init__(self, encoding: str | None, limit: int) -> None:
        self._encoding = (encoding or "identity").strip().lower()
        self._limit = limit
        self.produced = 0
        self._zlib: zlib._Decompress | None = None
        if self._encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self._encoding not in ("identity", "deflate", ""):
            raise UnsupportedEncoding(f"unsupported Content-Encoding {self._encoding[:40]!r} (harness accepts gzip, deflate)")

    def feed(self, data: bytes) -> bytes:
        """Decoded bytes for `data`; TooLarge as soon as the decoded total would pass the limit."""
        if self._encoding == "deflate" and self._zlib is None:
            # "deflate" is zlib-wrapped by the RFC, raw by some servers: the first byte tells
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS if data[:1] and data[0] & 0x0F == 8 else -zlib.MAX_WBITS)
        if self._zlib is None:
            return self._count(data)
        parts: list[bytes] = []
        pending = data
        while pending:
            room = self._limit - self.produced
            out = self._zlib.decompress(pending, room + 1)
            parts.append(self._count(out))
            pending = self._zlib.unconsumed_tail
            if self._zlib.eof:
                break
        return b"".join(parts)

    def _count(self, data: bytes) -> bytes:
        self.produced += len(data)
        if self.produced > self._limit:
            raise TooLarge(f"decompressed body is over the {_size(self._limit)} limit")
        return data


class UnsupportedEncoding(Exception):
    """A Content-Encoding harness does not decode (it only asks for gzip and deflate)."""


def _size(n: int) -> str:
    return f"{n // MIB} MiB" if n >= MIB and n % MIB == 0 else f"{n:,} bytes"


def describe(n: int) -> str:
    """A byte count for messages: `16 MiB` or `65,536 bytes`."""
    return _size(n)


__all__ = ["MIB", "Bounds", "Inflater", "TooLarge", "UnsupportedEncoding", "describe"]
