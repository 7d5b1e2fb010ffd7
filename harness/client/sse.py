"""Server-sent events framed at the byte level.

Events are split on blank lines (`\\n\\n`, `\\r\\n\\r\\n`, `\\r\\r`) and lines on `\\n`, `\\r\\n` or
`\\r` *bytes*, before any decoding, so a U+2028 or U+0085 inside a JSON string (which
`str.splitlines` would treat as a line break) never splits an event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_LINE_END = re.compile(rb"\r\n|\n|\r")


@dataclass(frozen=True)
class SSEEvent:
    """One event: its `event:` name (None when absent) and its joined `data:` lines."""

    event: str | None
    data: str


class EventTooLarge(ValueError):
    """One event grew past the decoder's `max_event_bytes`, or the stream sent more than
    `max_events` events."""


class SSEDecoder:
    """Incremental decoder: feed bytes as they arrive, get complete events back.

    An event that grows past `max_event_bytes` without ending, or more than `max_events`
    events (keep-alive comments included), raise `EventTooLarge`; a buffer is never rescanned
    from its start, so a long event costs linear time.
    """

    def __init__(self, max_event_bytes: int | None = None, max_events: int | None = None) -> None:
        self._buffer = b""
        self._scanned = 0  # bytes of the buffer known to hold no event end
        self._max = max_event_bytes
        self._max_events = max_events
        self.events = 0  # events (blocks) seen so far

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Add bytes; return the events completed by them."""
        self._buffer = self._buffer + chunk if self._buffer else chunk
        events: list[SSEEvent] = []
        start = 0
        # A trailing "\r" may be the first half of "\r\n": leave it for the next chunk.
        limit = len(self._buffer) - 1 if self._buffer.endswith(b"\r") else len(self._buffer)
        position = max(0, self._scanned - 3)  # an end marker may straddle two chunks
        buffer = self._buffer
        if b"\r" not in buffer:  # the common framing: find() in C instead of a regex per event
            while (end := buffer.find(b"\n\n", position, limit)) >= 0:
                self._count()
                event = _parse_event(buffer[start:end])
                if event is not None:
                    events.append(event)
                start = position = end + 2
        else:
            while (match := _EVENT_END.search(buffer, position, limit)) is not None:
                self._count()
                event = _parse_event(buffer[start : match.start()])
                if event is not None:
                    events.append(event)
                start = position = match.end()
        self._buffer = buffer[start:]
        self._scanned = max(0, limit - start)
        if self._max is not None and len(self._buffer) > self._max:
            raise EventTooLarge(f"one server-sent event is over the {self._max:,}-byte limit")
        return events

    def _count(self) -> None:
        self.events += 1
        if self._max_events is not None and self.events > self._max_events:
            raise EventTooLarge(f"the stream sent more than {self._max_events:,} events")

    def flush(self) -> list[SSEEvent]:
        """The last event when the stream ends without a blank line."""
        rest, self._buffer, self._scanned = self._buffer, b"", 0
        event = _parse_event(rest.rstrip(b"\r\n"))
        return [event] if event is not None else []


def _parse_event(raw: bytes) -> SSEEvent | None:
    """Fields of one event; None when it has no data (comments, keep-alives)."""
    if b"\n" not in raw and b"\r" not in raw:  # one line: the usual `data: {...}` or `: ping`
        if raw.startswith(b"data: "):
            return SSEEvent(event=None, data=raw[6:].decode("utf-8", "replace"))
        if raw.startswith(b":") or not raw:
            return None
    name: str | None = None
    data: list[str] = []
    for line in _LINE_END.split(raw):
        if not line or line.startswith(b":"):
            continue
        key, sep, value = line.partition(b":")
        if sep and value.startswith(b" "):
            value = value[1:]
        if key == b"data":
            data.append(value.decode("utf-8", "replace"))
        elif key == b"event":
            name = value.decode("utf-8", "replace")
    if not data:
        return None
    return SSEEvent(event=name, data="\n".join(data))


__all__ = ["EventTooLarge", "SSEDecoder", "SSEEvent"]
