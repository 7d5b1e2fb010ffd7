"""The HTTP layer (the only place httpx is imported): one attempt per call, classified failures.

    http.py    ChatClient, ClientConfig, RequestFailed (retryable or final), Retry-After
    sse.py     byte-level server-sent-events framing
    parse.py   answer → row fields (content, reasoning, usage, logprobs), strict about shape
"""

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
