"""Turn a chat-completion answer (whole or streamed) into the fields of a result row.

Strict about shape: an empty `choices`, a missing `usage`, a string where a list belongs or a
non-finite logprob raise `InvalidResponse` naming the JSON path, so an odd answer becomes a
clear error row instead of a crash or a silently wrong row. Pure: no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, TypeGuard

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


class InvalidResponse(ValueError):
    """A 2xx answer that is not a usable chat completion."""


@dataclass(frozen=True)
class Completion:
    """The row fields parsed from one successful answer."""

    content: str
    reasoning: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[dict[str, Any]] | None
    system_fingerprint: str | None
    http_status: int
    response_bytes: int
    ttft_s: float | None = None
    inter_token_s: list[float] | None = None


def split_reasoning(content: str, reasoning: str | None) -> tuple[str, str | None]:
    """Move a leading `<think>…</think>` block out of `content` when the server did not."""
    if reasoning is not None:
        return content, reasoning
    stripped = content.lstrip()
    if not stripped.startswith(THINK_OPEN):
        return content, None
    inner = stripped[len(THINK_OPEN) :]
    thought, closed, answer = inner.partition(THINK_CLOSE)
    if not closed:  # cut by max_tokens while thinking: all of it is reasoning
        return "", thought.strip()
    return answer.lstrip(), thought.strip()


def _expect(value: Any, kind: type | tuple[type, ...], path: str) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:  # bool is an int subclass in Python
        raise InvalidResponse(f"{path}: expected {_name(kind)}, got a boolean")
    if not isinstance(value, kind):
        raise InvalidResponse(f"{path}: expected {_name(kind)}, got {_describe(value)}")
    return value


def _name(kind: type | tuple[type, ...]) -> str:
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number"}.get(
        type(value), type(value).__name__
    )


def _finite(value: Any, path: str) -> float:
    number = float(_expect(value, (int, float), path))
    if not math.isfinite(number):
        raise InvalidResponse(f"{path}: {value!r} is not a finite number")
    return number


MAX_COUNT = 2**53  # any larger "token count" is a server bug, and would overflow a column or a sum


def _count(value: Any, path: str) -> int:
    number = _expect(value, int, path)
    if number < 0:
        raise InvalidResponse(f"{path}: {number} is negative")
    if number > MAX_COUNT:
        raise InvalidResponse(f"{path}: {number:.3g} is not a plausible count (the limit is 2^53)")
    return int(number)


def _optional_str(value: Any, path: str) -> str | None:
    return None if value is None else str(_expect(value, str, path))


def normalize_logprobs(raw: Any, path: str) -> list[dict[str, Any]] | None:
    """`choices[0].logprobs` → list of {token, logprob, top_logprobs: [{token, logprob}]}."""
    if raw is None:
        return None
    _expect(raw, dict, path)
    content = raw.get("content")
    if content is None:
        return None
    items = _expect(content, list, f"{path}.content")
    fast = _tokens_fast(items)
    if fast is not None:
        return fast
    return [_token(item, f"{path}.content[{i}]") for i, item in enumerate(items)]


def _plain_number(value: Any) -> TypeGuard[float]:
    kind = type(value)
    return (kind is float or kind is int) and value - value == 0  # inf - inf and nan are not 0


def _tokens_fast(items: list[Any]) -> list[dict[str, Any]] | None:
    """All tokens when every one is well formed, checked with plain type tests (the common case:
    no error paths are built); None sends the list through the strict path."""
    out = []
    for item in items:
        if type(item) is not dict:
            return None
        token, logprob, top = item.get("token"), item.get("logprob"), item.get("top_logprobs")
        if type(token) is not str or not _plain_number(logprob):
            return None
        tops = []
        if top is not None:
            if type(top) is not list:
                return None
            for entry in top:
                if type(entry) is not dict:
                    return None
                alt, alt_lp = entry.get("token"), entry.get("logprob")
                if type(alt) is not str or not _plain_number(alt_lp):
                    return None
                tops.append({"token": alt, "logprob": float(alt_lp)})
        out.append({"token": token, "logprob": float(logprob), "top_logprobs": tops})
    return out


def _token(item: Any, path: str) -> dict[str, Any]:
    _expect(item, dict, path)
    top_raw = item.get("top_logprobs")
    top = [] if top_raw is None else _expect(top_raw, list, f"{path}.top_logprobs")
    return {
        "token": _expect(item.get("token"), str, f"{path}.token"),
        "logprob": _finite(item.get("logprob"), f"{path}.logprob"),
        "top_logprobs": [_top(t, f"{path}.top_logprobs[{j}]") for j, t in enumerate(top)],
    }


def _top(item: Any, path: str) -> dict[str, Any]:
    _expect(item, dict, path)
    return {
        "token": _expect(item.get("token"), str, f"{path}.token"),
        "logprob": _finite(item.get("logprob"), f"{path}.logprob"),
    }


def _usage(raw: Any) -> tuple[int, int]:
    if raw is None:
        raise InvalidResponse("usage: missing (prompt_tokens and completion_tokens are required)")
    _expect(raw, dict, "usage")
    return _count(raw.get("prompt_tokens"), "usage.prompt_tokens"), _count(
        raw.get("completion_tokens"), "usage.completion_tokens"
    )


def _first_choice(data: Any) -> dict[str, Any]:
    _expect(data, dict, "response")
    choices = _expect(data.get("choices"), list, "choices")
    if not choices:
        raise InvalidResponse("choices: empty list (the server returned no completion)")
    return _expect(choices[0], dict, "choices[0]")


def _plain_count(value: Any) -> TypeGuard[int]:
    return type(value) is int and 0 <= value <= MAX_COUNT


def _fast_completion(data: Any, http_status: int, response_bytes: int) -> Completion | None:
    """The common, well-formed answer checked with plain type tests (None: use the strict path,
    which names what is wrong)."""
    if type(data) is not dict:
        return None
    choices, usage = data.get("choices"), data.get("usage")
    if type(choices) is not list or not choices or type(usage) is not dict:
        return None
    choice = choices[0]
    message = choice.get("message") if type(choice) is dict else None
    if type(message) is not dict:
        return None
    content, finish, fingerprint = message.get("content"), choice.get("finish_reason"), data.get("system_fingerprint")
    prompt_tokens, completion_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if (
        type(content) is not str
        or "reasoning_content" in message
        or "reasoning" in message
        or content.lstrip().startswith(THINK_OPEN)
        or not (finish is None or type(finish) is str)
        or not (fingerprint is None or type(fingerprint) is str)
        or not (_plain_count(prompt_tokens) and _plain_count(completion_tokens))
    ):
        return None
    return Completion(
        content=content,
        reasoning=None,
        finish_reason=finish,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        logprobs=normalize_logprobs(choice.get("logprobs"), "choices[0].logprobs"),
        system_fingerprint=fingerprint,
        http_status=http_status,
        response_bytes=response_bytes,
    )


def parse_completion(data: Any, *, http_status: int, response_bytes: int) -> Completion:
    """A whole (non-streamed) chat-completion object → `Completion`."""
    fast = _fast_completion(data, http_status, response_bytes)
    if fast is not None:
        return fast
    choice = _first_choice(data)
    message = _expect(choice.get("message"), dict, "choices[0].message")
    content = _optional_str(message.get("content"), "choices[0].message.content") or ""
    reasoning = _optional_str(
        message.get("reasoning_content", message.get("reasoning")), "choices[0].message.reasoning_content"
    )
    content, reasoning = split_reasoning(content, reasoning)
    prompt_tokens, completion_tokens = _usage(data.get("usage"))
    return Completion(
        content=content,
        reasoning=reasoning,
        finish_reason=_optional_str(choice.get("finish_reason"), "choices[0].finish_reason"),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        logprobs=normalize_logprobs(choice.get("logprobs"), "choices[0].logprobs"),
        system_fingerprint=_optional_str(data.get("system_fingerprint"), "system_fingerprint"),
        http_status=http_status,
        response_bytes=response_bytes,
    )


@dataclass
class StreamAccumulator:
    """Collects streamed chunks; times the first token and the gap before every later token.

    A chunk carrying k tokens (k = length of its `logprobs.content`, else 1 when it has text)
    contributes k gaps of (time since the previous token-bearing chunk) / k, so the
    inter-token latency is per token, not per network chunk.
    """

    started: float
    http_status: int
    response_bytes: int = 0
    chunks: int = 0
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    logprobs: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    usage: tuple[int, int] | None = None
    system_fingerprint: str | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None
    gaps: list[float] = field(default_factory=list)

    def add(self, obj: Any, now: float) -> None:
        """One parsed `data:` chunk."""
        self.chunks += 1
        if self._add_fast(obj, now):
            return
        path = f"chunk[{self.chunks - 1}]"
        _expect(obj, dict, path)
        if obj.get("usage") is not None:
            self.usage = _usage(obj["usage"])
        if obj.get("system_fingerprint") is not None:
            self.system_fingerprint = _optional_str(obj.get("system_fingerprint"), f"{path}.system_fingerprint")
        choices = obj.get("choices")
        if choices is None or choices == []:
            return  # the usage chunk has no choices
        choice = _expect(_expect(choices, list, f"{path}.choices")[0], dict, f"{path}.choices[0]")
        self._add_choice(choice, now, path)

    def _add_fast(self, obj: Any, now: float) -> bool:
        """The common token chunk (a text delta, optional logprobs, no usage) with plain type
        tests; False leaves the chunk untouched for the strict path, which names what is wrong."""
        if type(obj) is not dict or obj.get("usage") is not None or obj.get("system_fingerprint") is not None:
            return False
        choices = obj.get("choices")
        if type(choices) is not list or not choices or type(choices[0]) is not dict:
            return False
        choice = choices[0]
        delta, raw, finish = choice.get("delta"), choice.get("logprobs"), choice.get("finish_reason")
        if type(delta) is not dict or len(delta) > 2 or not (finish is None or type(finish) is str):
            return False
        text = delta.get("content")
        if type(text) is not str or (len(delta) == 2 and "role" not in delta):
            return False
        tokens = None
        if raw is not None:
            content = raw.get("content") if type(raw) is dict else False
            tokens = _tokens_fast(content) if type(content) is list else None
            if tokens is None and content is not None:
                return False
        if tokens is not None:
            if self.logprobs is None:
                self.logprobs = []
            self.logprobs.extend(tokens)
        if text:
            self.content.append(text)
        count = len(tokens) if tokens else (1 if text else 0)
        if count:
            self._time_tokens(count, now)
        if finish is not None:
            self.finish_reason = finish
        return True

    def _add_choice(self, choice: dict[str, Any], now: float, path: str) -> None:
        delta = choice.get("delta") or {}
        _expect(delta, dict, f"{path}.choices[0].delta")
        text = _optional_str(delta.get("content"), f"{path}.choices[0].delta.content") or ""
        thought = _optional_str(
            delta.get("reasoning_content", delta.get("reasoning")), f"{path}.choices[0].delta.reasoning_content"
        )
        tokens = normalize_logprobs(choice.get("logprobs"), f"{path}.choices[0].logprobs")
        if tokens is not None:
            if self.logprobs is None:
                self.logprobs = []
            self.logprobs.extend(tokens)
        if text:
            self.content.append(text)
        if thought:
            self.reasoning.append(thought)
        count = len(tokens) if tokens else (1 if (text or thought) else 0)
        if count:
            self._time_tokens(count, now)
        if choice.get("finish_reason") is not None:
            self.finish_reason = _optional_str(choice["finish_reason"], f"{path}.choices[0].finish_reason")

    def _time_tokens(self, count: int, now: float) -> None:
        if self.first_token_at is None:
            self.first_token_at = now
            self.gaps.extend([0.0] * (count - 1))
        else:
            assert self.last_token_at is not None
            self.gaps.extend([(now - self.last_token_at) / count] * count)
        self.last_token_at = now

    def result(self) -> Completion:
        """The finished completion; InvalidResponse when the stream never reported usage."""
        if self.usage is None:
            raise InvalidResponse(
                "usage: missing from the stream (stream_options.include_usage was requested)"
            )
        content, reasoning = split_reasoning("".join(self.content), "".join(self.reasoning) or None)
        ttft = None if self.first_token_at is None else self.first_token_at - self.started
        return Completion(
            content=content,
            reasoning=reasoning,
            finish_reason=self.finish_reason,
            prompt_tokens=self.usage[0],
            completion_tokens=self.usage[1],
            logprobs=self.logprobs,
            system_fingerprint=self.system_fingerprint,
            http_status=self.http_status,
            response_bytes=self.response_bytes,
            ttft_s=ttft,
            inter_token_s=self.gaps,
        )


__all__ = ["Completion", "InvalidResponse", "StreamAccumulator", "normalize_logprobs", "parse_completion", "split_reasoning"]
