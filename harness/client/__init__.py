"""The HTTP layer (the only place aiohttp and httpx are imported): one attempt per call,
classified failures, every answer bounded in size and time.

    http.py    ChatClient, ClientConfig, RequestFailed (retryable or final), Retry-After
    wire.py    bytes to and from the server: aiohttp (production) or any httpx transport (tests)
    bounds.py  size limits and a decompressor that cannot be bombed
    secrets.py secrets out of messages and HTTP-library log records
    sse.py     byte-level server-sent-events framing
    parse.py   answer → row fields (content, reasoning, usage, logprobs), strict about shape
"""

from harness.client.bounds import Bounds
from harness.client.http import (
    ChatClient,
    ClientConfig,
    ErrorType,
    RequestFailed,
    parse_retry_after,
    probe_auth,
    scrub,
)
from harness.client.parse import (
    Completion,
    InvalidResponse,
    parse_completion,
    split_reasoning,
)
from harness.client.sse import SSEDecoder, SSEEvent

__all__ = [
    "Bounds",
    "ChatClient",
    "ClientConfig",
    "Completion",
    "ErrorType",
    "InvalidResponse",
    "RequestFailed",
    "SSEDecoder",
    "SSEEvent",
    "parse_completion",
    "parse_retry_after",
    "probe_auth",
    "scrub",
    "split_reasoning",
]
