"""llama.cpp `/completion` bodies from validated chat requests, and its answers back (no HTTP here).

Used by `harness.localmodel.front` (whole answers) and `harness.localmodel.stream` (chunks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.localmodel.llama import raw_prompt
from harness.server.generate import FinishReason, TokenLogprob
from harness.server.payloads import ApiError
from harness.server.validation import ChatRequest

DEFAULT_MAX_TOKENS = 256  # as `harness serve`
# llama.cpp sampler names, in harness's order (harness.server.sampler): the rest of its chain is off.
SAMPLER_ORDER = ("penalties", "temperature", "min_p", "top_k", "top_p")
_SEED_MODULUS = 2**32  # llama.cpp seeds are 32-bit; 0xFFFFFFFF means "random" there


@dataclass
class Answer:
    """One finished completion, engine-neutral."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[TokenLogprob] = field(default_factory=list)


def engine_seed(seed: int) -> int:
    """A 64-bit API seed as llama.cpp's 32-bit seed (never its "random" value 0xFFFFFFFF)."""
    value = seed % _SEED_MODULUS
    return value if value != _SEED_MODULUS - 1 else 0


def engine_body(chat: ChatRequest, seed: int) -> dict[str, Any]:
    """The llama.cpp `/completion` body for a validated request."""
    p = chat.params
    n_probs = p.top_logprobs if p.top_logprobs else (1 if p.logprobs else 0)
    return {
        "prompt": raw_prompt(chat.messages),
        "n_predict": chat.max_tokens or DEFAULT_MAX_TOKENS,
        "temperature": p.temperature,
        "top_k": max(0, p.top_k),
        "top_p": p.top_p,
        "min_p": p.min_p,
        "frequency_penalty": p.frequency_penalty,
        "presence_penalty": p.presence_penalty,
        "repeat_penalty": 1.0,
        "typical_p": 1.0,
        "top_n_sigma": -1.0,
        "xtc_probability": 0.0,
        "dry_multiplier": 0.0,
        "mirostat": 0,
        "samplers": list(SAMPLER_ORDER),
        "seed": engine_seed(seed),
        "stop": list(chat.stop),
        "n_probs": n_probs,
        "post_sampling_probs": False,
        "cache_prompt": True,
        "stream": False,
    }


def engine_error(error: object) -> ApiError:
    """llama.cpp's `{"error": {...}}` as an ApiError (a prompt too long is the usual one)."""
    info = error if isinstance(error, dict) else {}
    message = str(info.get("message") or "the local model failed")[:500]
    status = info.get("code")
    status = status if isinstance(status, int) and 400 <= status < 600 else 500
    if info.get("type") == "exceed_context_size_error":
        return ApiError(400, f"This model's context is too small for the request: {message}",
                        param="messages", code="context_length_exceeded")
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return ApiError(status, f"The local model refused the request: {message}", type=kind)


def _pair(entry: dict[str, Any]) -> tuple[str, float, bytes]:
    raw = entry.get("bytes")
    token = str(entry.get("token", ""))
    data = bytes(raw) if isinstance(raw, list) else token.encode("utf-8")
    return token, float(entry.get("logprob", float("-inf"))), data


def token_logprobs(content: list[dict[str, Any]], top_n: int) -> list[TokenLogprob]:
    out = []
    for entry in content:
        token, logprob, data = _pair(entry)
        tops = [_pair(t) for t in (entry.get("top_logprobs") or [])[:top_n]] if top_n else []
        out.append(TokenLogprob(token, logprob, tuple((t, lp) for t, lp, _ in tops), data, tuple(d for _, _, d in tops)))
    return out


def parse_answer(result: dict[str, Any], chat: ChatRequest) -> Answer:
    """llama.cpp's completion answer as an `Answer`; its error as ApiError."""
    if "error" in result:
        raise engine_error(result["error"])
    try:
        choice = result["choices"][0]
        usage = result.get("usage") or {}
        reason: FinishReason = "length" if choice.get("finish_reason") == "length" else "stop"
        logprobs = (choice.get("logprobs") or {}).get("content") or []
        return Answer(
            text=str(choice.get("text") or ""),
            finish_reason=reason,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            logprobs=token_logprobs(logprobs, chat.params.top_logprobs) if chat.params.logprobs else [],
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ApiError(500, f"The local model gave an answer harness cannot read ({exc}).", type="server_error") from None


__all__ = ["DEFAULT_MAX_TOKENS", "SAMPLER_ORDER", "Answer", "engine_body", "engine_error", "engine_seed",
           "parse_answer", "token_logprobs"]
