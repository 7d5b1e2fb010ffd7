"""The OpenAI wire format: error bodies, completion objects, stream chunks (dicts for orjson)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.server.generate import TokenLogprob

__all__ = [
    "ApiError",
    "Completion",
    "chunk",
    "completion_body",
    "error_body",
    "logprobs_body",
    "usage_body",
]

_MIN_LOGPROB = -9999.0  # what OpenAI reports for "impossible"; JSON has no -Infinity


class ApiError(Exception):
    """An HTTP error answered with an OpenAI-style body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """`{"error": {"message", "type", "param", "code"}}`."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


@dataclass(frozen=True)
class Completion:
    """Identity fields shared by a response and all chunks of a stream."""

    id: str
    created: int
    model: str
    system_fingerprint: str


def _logprob(value: float) -> float:
    return value if math.isfinite(value) else _MIN_LOGPROB


def _entry(token: str, logprob: float, data: bytes | None) -> dict[str, Any]:
    raw = token.encode("utf-8", errors="surrogatepass") if data is None else data
    return {"token": token, "logprob": _logprob(logprob), "bytes": list(raw)}


def logprobs_body(tokens: Sequence[TokenLogprob]) -> dict[str, Any]:
    """`{"content": [{token, logprob, bytes, top_logprobs: [...]}, ...], "refusal": null}`.

    `token` is the token's text (lossy for part of a multi-byte character: U+FFFD), `bytes`
    its real bytes, so a client can join the bytes of consecutive tokens back into characters.
    """
    content = []
    for t in tokens:
        item = _entry(t.token, t.logprob, t.token_bytes)
        top_bytes: Sequence[bytes | None] = t.top_bytes or (None,) * len(t.top)
        item["top_logprobs"] = [_entry(text, lp, data) for (text, lp), data in zip(t.top, top_bytes, strict=True)]
        content.append(item)
    return {"content": content, "refusal": None}


def usage_body(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The usage object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_body(
    ident: Completion,
    content: str,
    finish_reason: str | None,
    logprobs: dict[str, Any] | None,
    usage: dict[str, int],
) -> dict[str, Any]:
    """A `chat.completion` object with one choice."""
    return {
        "id": ident.id,
        "object": "chat.completion",
        "created": ident.created,
        "model": ident.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": logprobs,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage,
        "system_fingerprint": ident.system_fingerprint,
    }


def chunk(
    ident: Completion,
    delta: dict[str, Any] | None,
    *,
    logprobs: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    usage: dict[str, int] | None = None,
    include_usage: bool = False,
) -> dict[str, Any]:
    """A `chat.completion.chunk`; `delta=None` makes the usage-only chunk (no choices)."""
    body: dict[str, Any] = {
        "id": ident.id,
        "object": "chat.completion.chunk",
        "created": ident.created,
        "model": ident.model,
        "system_fingerprint": ident.system_fingerprint,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}],
    }
    if include_usage:
        body["usage"] = usage
    return body
