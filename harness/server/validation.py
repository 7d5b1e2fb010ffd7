"""Strict validation of a Chat Completions request body against the seed API's limits.

The number ranges come from the one parameter registry (`harness.spec.parameters`).

Every problem raises `ApiError` (HTTP 400, OpenAI-style body) naming the parameter. Limits:

    model               string, required
    messages            non-empty list of {role, content}; role in system/developer/user/assistant/tool;
                        content a string, a list of text parts, or null (assistant/tool only)
    stream              boolean
    stream_options      object {include_usage: boolean}; only with stream: true
    max_tokens          integer >= 1 (max_completion_tokens accepted as an alias)
    temperature         number 0..2          top_p     number 0..1
    top_k               integer >= -1 (-1 and 0: off)
    min_p               number 0..1
    frequency_penalty   number -2..2         presence_penalty  number -2..2
    stop                string or list of at most 4 non-empty strings
    logprobs            boolean
    top_logprobs        integer 0..20, only with logprobs: true
    seed                integer (64-bit)
    tool_choice         "none" or "auto" (no tools are served: "required" and objects are refused)
    n                   integer; only 1 is supported

Booleans are not numbers; integers must be JSON integers (2.0 is refused for max_tokens); null
means "not set". Unknown fields are ignored (like vLLM) unless the app is created with
`reject_unknown=True`, which refuses them by name (like OpenAI).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.server.payloads import ApiError
from harness.server.sampler import SamplingParams
from harness.spec.parameters import BY_NAME, INT64_MAX, INT64_MIN

__all__ = ["KNOWN_FIELDS", "ChatRequest", "parse_chat_request"]

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
KNOWN_FIELDS = frozenset(
    {
        "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
        "temperature", "top_p", "top_k", "min_p", "frequency_penalty", "presence_penalty", "stop",
        "logprobs", "top_logprobs", "seed", "tool_choice", "tools", "n", "user", "metadata",
    }
)  # fmt: skip


@dataclass(frozen=True)
class ChatRequest:
    """A validated request: what the generator needs."""

    model: str
    messages: tuple[dict[str, Any], ...]
    stream: bool
    include_usage: bool
    max_tokens: int | None
    params: SamplingParams
    stop: tuple[str, ...]
    seed: int | None


def parse_chat_request(body: object, *, reject_unknown: bool = False) -> ChatRequest:
    """Validate a decoded JSON body; raises ApiError(400) naming the first bad parameter."""
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_type")
    if reject_unknown:
        _reject_unknown(body)
    model = body.get("model")
    if model is None:
        raise ApiError(400, "Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    if not isinstance(model, str) or not model:
        raise _type_error("model", "a non-empty string", model)
    stream = _bool(body, "stream", False)
    logprobs = _bool(body, "logprobs", False)
    top_logprobs = _int(body, "top_logprobs", *_int_range("top_logprobs"))
    if top_logprobs is not None and not logprobs:
        raise ApiError(400, "'top_logprobs' requires 'logprobs' to be true.", param="top_logprobs", code="invalid_value")
    _check_n(body)
    _check_tool_choice(body)
    params = SamplingParams(
        temperature=_default(_number(body, "temperature", *_float_range("temperature")), 1.0),
        top_p=_default(_number(body, "top_p", *_float_range("top_p")), 1.0),
        top_k=_default(_int(body, "top_k", *_int_range("top_k")), -1),
        min_p=_default(_number(body, "min_p", *_float_range("min_p")), 0.0),
        frequency_penalty=_default(_number(body, "frequency_penalty", *_float_range("frequency_penalty")), 0.0),
        presence_penalty=_default(_number(body, "presence_penalty", *_float_range("presence_penalty")), 0.0),
        top_logprobs=top_logprobs or 0,
        logprobs=logprobs,
    )
    return ChatRequest(
        model=model,
        messages=_messages(body.get("messages")),
        stream=stream,
        include_usage=_include_usage(body, stream),
        max_tokens=_max_tokens(body),
        params=params,
        stop=_stop(body.get("stop")),
        seed=_int(body, "seed", INT64_MIN, INT64_MAX),
    )


def _float_range(name: str) -> tuple[float, float]:
    """The seed API's range of a number parameter, from the one registry (harness.spec.parameters)."""
    low, high = BY_NAME[name].low, BY_NAME[name].high
    assert low is not None and high is not None, name
    return float(low), float(high)


def _int_range(name: str) -> tuple[int | None, int | None]:
    """The seed API's range of an integer parameter (None: unbounded on that side), from the registry."""
    low, high = BY_NAME[name].low, BY_NAME[name].high
    return (None if low is None else int(low)), (None if high is None else int(high))


def _default(value: Any, default: Any) -> Any:
    return default if value is None else value


def _kind(value: object) -> str:
    """JSON type name of a value, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _show(value: object) -> str:
    """A short repr of a client-supplied value for an error message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _type_error(param: str, expected: str, value: object) -> ApiError:
    return ApiError(
        400,
        f"Invalid type for '{param}': expected {expected}, but got {_kind(value)} instead.",
        param=param,
        code="invalid_type",
    )


def _range_error(param: str, value: object, low: float | None, high: float | None) -> ApiError:
    if low is not None and high is not None:
        allowed = f"between {low:g} and {high:g}"
    elif low is not None:
        allowed = f"at least {low:g}"
    else:
        allowed = f"at most {high:g}"
    return ApiError(
        400, f"Invalid value for '{param}': {_show(value)} is out of range; it must be {allowed}.", param=param, code="invalid_value"
    )


def _bool(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _type_error(key, "a boolean", value)
    return value


def _number(body: Mapping[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _type_error(key, "a number", value)
    if not low <= value <= high:
        raise _range_error(key, value, low, high)
    return float(value)


def _int(body: Mapping[str, Any], key: str, low: int | None, high: int | None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error(key, "an integer", value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise _range_error(key, value, low, high)
    return value


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    value = _int(body, "max_tokens", *_int_range("max_tokens"))
    alias = _int(body, "max_completion_tokens", *_int_range("max_tokens"))
    return value if value is not None else alias


def _include_usage(body: Mapping[str, Any], stream: bool) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise _type_error("stream_options", "an object", options)
    if not stream:
        raise ApiError(
            400, "'stream_options' is only allowed when 'stream' is true.", param="stream_options", code="invalid_value"
        )
    return _bool(options, "include_usage", False)


def _stop(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _type_error("stop", "a string or an array of strings", value)
    if len(stops) > 4:
        raise ApiError(400, f"Invalid value for 'stop': at most 4 sequences are allowed, got {len(stops)}.", param="stop", code="invalid_value")
    if any(s == "" for s in stops):
        raise ApiError(400, "Invalid value for 'stop': sequences must not be empty.", param="stop", code="invalid_value")
    return tuple(stops)


def _messages(value: object) -> tuple[dict[str, Any], ...]:
    if value is None:
        raise ApiError(400, "Missing required parameter: 'messages'.", param="messages", code="missing_required_parameter")
    if not isinstance(value, list):
        raise _type_error("messages", "an array", value)
    if not value:
        raise ApiError(400, "Invalid value for 'messages': it must not be empty.", param="messages", code="invalid_value")
    return tuple(_message(i, m) for i, m in enumerate(value))


def _message(index: int, message: object) -> dict[str, Any]:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise _type_error(where, "an object", message)
    role = message.get("role")
    if role not in _ROLES:
        raise ApiError(
            400,
            f"Invalid value for '{where}.role': {_show(role)}; allowed: {', '.join(sorted(_ROLES))}.",
            param=f"{where}.role",
            code="invalid_value",
        )
    return {"role": role, "content": _content(where, role, message)}


def _content(where: str, role: str, message: Mapping[str, Any]) -> str:
    if "content" not in message:
        raise ApiError(400, f"Missing required parameter: '{where}.content'.", param=f"{where}.content", code="missing_required_parameter")
    content = message["content"]
    if isinstance(content, str):
        return content
    if content is None and role in ("assistant", "tool"):
        return ""
    if isinstance(content, list) and all(_is_text_part(p) for p in content):
        return "".join(p["text"] for p in content)
    raise _type_error(f"{where}.content", "a string or an array of text parts", content)


def _is_text_part(part: object) -> bool:
    return isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)


def _check_n(body: Mapping[str, Any]) -> None:
    n = _int(body, "n", 1, None)
    if n is not None and n != 1:
        raise ApiError(400, f"Invalid value for 'n': {n}; this server supports only n=1.", param="n", code="invalid_value")


def _check_tool_choice(body: Mapping[str, Any]) -> None:
    choice = body.get("tool_choice")
    if choice is None or choice in ("none", "auto"):
        return
    if isinstance(choice, str):
        raise ApiError(
            400,
            f"Invalid value for 'tool_choice': {_show(choice)}; allowed: 'none', 'auto' (this server has no tools).",
            param="tool_choice",
            code="invalid_value",
        )
    raise _type_error("tool_choice", "'none' or 'auto'", choice)


def _reject_unknown(body: Mapping[str, Any]) -> None:
    for key in body:
        if key not in KNOWN_FIELDS:
            raise ApiError(400, f"Unrecognized request argument supplied: {_show(key)}", param=key[:64], code="unknown_parameter")
