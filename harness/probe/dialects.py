"""Server dialects: how each spells "off", which seed-API fields it lacks, where extras go.

`target.dialect` in a spec: auto (default) | seed | openai | vllm | sglang | llama.cpp | ollama.

| dialect   | top_k "off" | lacks (refused at plan time) | non-standard fields      |
|-----------|-------------|------------------------------|--------------------------|
| seed      | -1          | -                            | top level (extra_body)   |
| openai    | (no top_k)  | top_k, min_p                 | refused by name          |
| vllm      | -1          | -                            | top level (extra_body)   |
| sglang    | -1          | -                            | top level (extra_body)   |
| llama.cpp | 0           | -                            | top level (extra_body)   |
| ollama    | (no top_k)  | top_k, min_p (dropped by /v1)| native API `options` only|

No hidden translation: `translate` returns what is sent *and* the differences, the plan prints
them, the manifest records the dialect and each row keeps the spec's value, with what was sent
in `sent_json` when it differs. `auto` is decided from `GET /models` (`owned_by`), and
confirmable with `harness probe`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DIALECTS", "NAMES", "Dialect", "Sending", "detect", "lacking", "translate"]

NAMES = ("auto", "seed", "openai", "vllm", "sglang", "llama.cpp", "ollama")


@dataclass(frozen=True)
class Dialect:
    """One server family's spelling of the seed API's sampling fields."""

    name: str
    top_k_off: int | None  # the value meaning "no top_k"; None: the field does not exist
    lacks: frozenset[str]
    note: str


DIALECTS: dict[str, Dialect] = {
    d.name: d
    for d in (
        Dialect("seed", -1, frozenset(), "the seed API: top_k -1 is off"),
        Dialect("openai", None, frozenset({"top_k", "min_p"}), "OpenAI refuses top_k and min_p by name"),
        Dialect("vllm", -1, frozenset(), "top_k -1 is off (recent versions also take 0)"),
        Dialect("sglang", -1, frozenset(), "top_k -1 is off; 0 is refused"),
        Dialect("llama.cpp", 0, frozenset(), "top_k <= 0 is off; 0 is what llama-cpp-python's server accepts too"),
        Dialect("ollama", None, frozenset({"top_k", "min_p"}), "the /v1 endpoint drops top_k and min_p silently"),
    )
}

_OWNERS = {"llamacpp": "llama.cpp", "vllm": "vllm", "sglang": "sglang", "openai": "openai", "system": "openai",
           "library": "ollama", "ollama": "ollama", "harness": "seed"}  # fmt: skip


def lacking(dialect: str, fields: Iterable[str]) -> list[str]:
    """The fields (sorted) a dialect does not have."""
    found = DIALECTS.get(dialect)
    return sorted(set(fields) & found.lacks) if found else []


def translate(dialect: str, body: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the body to send, {field: value sent} where it differs from the spec's)."""
    found = DIALECTS.get(dialect)
    out = dict(body)
    if found is None or found.top_k_off is None:
        return out, {}
    top_k = out.get("top_k")
    if isinstance(top_k, int) and not isinstance(top_k, bool) and top_k <= 0 and top_k != found.top_k_off:
        out["top_k"] = found.top_k_off  # "off" in the seed API is -1; other servers spell it 0
        return out, {"top_k": found.top_k_off}
    return out, {}


def detect(models_doc: Any, base_url: str = "") -> str:
    """The dialect a `GET /models` answer points to ("seed" when nothing does)."""
    if "api.openai.com" in base_url:
        return "openai"
    data = models_doc.get("data") if isinstance(models_doc, dict) else None
    for model in data if isinstance(data, list) else []:
        owner = str(model.get("owned_by", "")).lower() if isinstance(model, dict) else ""
        if owner in _OWNERS:
            return _OWNERS[owner]
    if isinstance(models_doc, dict) and isinstance(models_doc.get("models"), list) and not data:
        return "ollama"
    return "seed"


class Sending:
    """Applies a dialect to the bodies of a sweep and keeps the rows honest about it."""

    def __init__(self, dialect: str, fixed: Mapping[str, Any]) -> None:
        self.dialect = dialect
        self._fixed = dict(fixed)  # the spec's params (sent with every request)

    def body(self, body: dict[str, Any]) -> dict[str, Any]:
        """The body as sent to this dialect's server."""
        return translate(self.dialect, body)[0] if self.dialect in DIALECTS else body

    def row(self, row: dict[str, Any]) -> dict[str, Any]:
        """The row with the spec's values restored and `sent_json` set where the dialect differed."""
        if DIALECTS.get(self.dialect, DIALECTS["seed"]).top_k_off in (None, -1):
            return row
        try:
            point = json.loads(row.get("point_json") or "{}")
        except ValueError:
            return row
        wanted = {**self._fixed, **point}
        _, sent = translate(self.dialect, wanted)
        if not sent:
            return row
        return {**row, **{k: wanted[k] for k in sent}, "sent_json": json.dumps(sent, sort_keys=True)}

    def wrap(self, sink: Callable[[dict[str, Any]], Awaitable[None]]) -> Callable[[dict[str, Any]], Awaitable[None]]:
        async def write(row: dict[str, Any]) -> None:
            await sink(self.row(row))

        return write


def describe(dialect: str, fixed: Mapping[str, Any], axes: Mapping[str, Iterable[Any]]) -> str:
    """One line for `harness plan`: the dialect and every value it sends differently."""
    if dialect == "auto":
        return "auto (decided from GET /models when the run starts; recorded in the manifest)"
    values = [("top_k", v) for v in ([fixed["top_k"]] if "top_k" in fixed else list(axes.get("top_k", ())))]
    changes = sorted({f"{name} {value} is sent as {translate(dialect, {name: value})[1][name]}"
                      for name, value in values if translate(dialect, {name: value})[1]})  # fmt: skip
    return f"{dialect} ({DIALECTS[dialect].note})" + (f"; {', '.join(changes)}" if changes else "")
