"""Deliberate misbehaviour of the reference endpoint, so every probe verdict can be produced.

    --ignore top_k,seed          accept these body fields and drop them (the server's defaults apply)
    --refuse top_k=-1            answer a body with top_k == -1 with an error naming it
    --refuse min_p=*             ... with min_p at any value
    --refuse-status 500          that error is a 500 with a validation message (default 400)
    --dialect openai             validate like another server (see DIALECT_RULES)

Applied to the decoded JSON body before validation (`Misbehaviour.apply`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.errors import UsageError
from harness.server.payloads import ApiError

__all__ = ["ANY", "DIALECTS", "OWNERS", "Misbehaviour"]

ANY = "*"
DIALECTS = ("seed", "openai", "vllm", "sglang", "llama.cpp", "ollama")
# `owned_by` in GET /models, as each server family answers it
OWNERS = {"openai": "system", "vllm": "vllm", "sglang": "sglang", "llama.cpp": "llamacpp", "ollama": "library"}
_FIELDS = frozenset({
    "temperature", "top_p", "top_k", "min_p", "frequency_penalty", "presence_penalty", "seed", "stop",
    "max_tokens", "max_completion_tokens", "logprobs", "top_logprobs", "stream", "stream_options", "n", "user",
})  # fmt: skip


@dataclass(frozen=True)
class Misbehaviour:
    """What to drop, what to refuse and whose validation to imitate."""

    ignore: frozenset[str] = frozenset()
    refuse: tuple[tuple[str, Any], ...] = ()
    refuse_status: int = 400
    dialect: str = "seed"

    @classmethod
    def parse(cls, ignore: str | None = None, refuse: list[str] | None = None, refuse_status: int = 400,
              dialect: str = "seed") -> Misbehaviour:
        """From command-line text; UsageError naming the flag on a bad entry."""
        names = frozenset(n.strip() for n in (ignore or "").split(",") if n.strip())
        unknown = sorted(names - _FIELDS)
        if unknown:
            raise UsageError(f"unknown field {unknown[0]!r}; allowed: {', '.join(sorted(_FIELDS))}", key="--ignore")
        rules = tuple(_refusal(text) for text in refuse or ())
        if refuse_status not in (400, 422, 500):
            raise UsageError(f"must be 400, 422 or 500, not {refuse_status}", key="--refuse-status")
        if dialect not in DIALECTS:
            raise UsageError(f"unknown dialect {dialect!r}; allowed: {', '.join(DIALECTS)}", key="--dialect")
        return cls(names, rules, refuse_status, dialect)

    def __bool__(self) -> bool:
        return bool(self.ignore or self.refuse or self.dialect != "seed")

    def apply(self, body: object) -> object:
        """The body as this server sees it; ApiError for a refused field or value."""
        if not isinstance(body, dict) or not self:
            return body
        for name, value in self.refuse:
            if name in body and body[name] is not None and (value == ANY or _same(body[name], value)):
                raise self._refused(name, body[name])
        body = _dialect(self.dialect, body)
        dropped = self.ignore | ({"stream_options"} if "stream" in self.ignore else set())
        return {k: v for k, v in body.items() if k not in dropped}

    def _refused(self, name: str, value: Any) -> ApiError:
        if self.refuse_status >= 500:
            return ApiError(500, f"1 validation error for SamplingParams: {name}={value!r} is not supported",
                            type="server_error", code="internal_error")  # fmt: skip
        return ApiError(self.refuse_status, f"Invalid value for '{name}': {value!r} is not supported by this server.",
                        param=name, code="unsupported_value")  # fmt: skip

    def describe(self) -> str:
        parts = [f"ignore {','.join(sorted(self.ignore))}"] if self.ignore else []
        parts += [f"refuse {n}={v} ({self.refuse_status})" for n, v in self.refuse]
        if self.dialect != "seed":
            parts.append(f"dialect {self.dialect}")
        return "; ".join(parts)


def _refusal(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or name not in _FIELDS:
        raise UsageError(f"{text!r} is not PARAM=VALUE with PARAM one of {', '.join(sorted(_FIELDS))} (VALUE * = any)", key="--refuse")
    return name, _value(raw.strip())


def _value(raw: str) -> Any:
    if raw == ANY:
        return ANY
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


def _same(sent: Any, value: Any) -> bool:
    if isinstance(sent, bool) or isinstance(value, bool):
        return sent is value
    return bool(sent == value)


def _dialect(dialect: str, body: dict[str, Any]) -> dict[str, Any]:
    """Imitate how other servers treat the fields the seed API has and they may lack."""
    top_k = body.get("top_k")
    if dialect == "openai":
        for name in ("top_k", "min_p"):
            if name in body:
                raise ApiError(400, f"Unrecognized request argument supplied: {name}", param=name, code="unknown_parameter")
    elif dialect == "ollama":  # its /v1 endpoint drops what it does not know
        body = {k: v for k, v in body.items() if k not in ("top_k", "min_p")}
    elif dialect in ("llama.cpp", "vllm") and isinstance(top_k, int) and not isinstance(top_k, bool) and top_k <= 0:
        body = {**body, "top_k": -1}  # both read 0 (llama.cpp: any value <= 0) as "off"
    elif dialect == "sglang" and top_k == 0:
        raise ApiError(400, "top_k must be -1 (disable), or at least 1, got 0.", param="top_k", code="invalid_value")
    return body
