"""The one registry of sampling parameters: everything harness knows about each body field.

Every other description of a parameter is derived from `REGISTRY`:
- the `params` section of the spec model (`harness.spec.sweepspec.Params`) and so the JSON Schema;
- the range checks of fixed values, grid and zip axes, `exclude` rules and `params.extra_body`
  (`check_value`, one message format: "… ; allowed: a number from 0 to 2");
- the Arrow columns of the result row (`harness.rundir.records`: float64 / int64, null when not sent);
- the canonical parameter column order (`PARAM_COLUMNS`) used by plan, summarize and report;
- the generated spec reference (`docs/spec.md`).

Ranges are those of the seed API (`create-chat-completion.txt`); integers are also bounded to
64 bits because they are stored in int64 columns. Adding a parameter is one `Param(...)` line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["float", "int", "bool", "stop", "tool_choice"]
Column = Literal["float64", "int64"]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_STOP = 4


@dataclass(frozen=True)
class Param:
    """One body parameter of a Chat Completions request."""

    name: str
    kind: Kind
    description: str
    low: float | None = None
    high: float | None = None
    sweepable: bool = False
    column: Column | None = None
    off: float | int | None = None  # the value that disables it (top_k -1); None: no such value
    default: str = ""  # the seed API's default when the field is not sent

    def describe(self) -> str:
        """What values are allowed, in words ("a number from 0 to 2")."""
        if self.kind == "bool":
            return "true or false"
        if self.kind == "stop":
            return f"a non-empty string or a list of up to {MAX_STOP} non-empty strings"
        if self.kind == "tool_choice":
            return "none, auto, required or a {type: function, function: {name: …}} mapping"
        noun = "a number" if self.kind == "float" else "an integer"
        low = self.low if self.low is not None else (INT64_MIN if self.kind == "int" else None)
        high = self.high if self.high is not None else (INT64_MAX if self.kind == "int" else None)
        if self.kind == "int" and high == INT64_MAX:
            return f"{noun} ≥ {_fmt(low)} (64-bit)" if low != INT64_MIN else f"{noun} (64-bit)"
        if low is not None and high is not None:
            return f"{noun} from {_fmt(low)} to {_fmt(high)}"
        if low is not None:
            return f"{noun} ≥ {_fmt(low)}"
        return f"a finite {noun[2:]}"

    def bounds(self) -> tuple[float | None, float | None]:
        """The inclusive (low, high) actually enforced (64-bit bounds for integers)."""
        if self.kind != "int":
            return self.low, self.high
        low = INT64_MIN if self.low is None else self.low
        high = INT64_MAX if self.high is None else self.high
        return low, high


def _fmt(x: float | None) -> str:
    if x is None:
        return "?"
    return str(int(x)) if float(x).is_integer() else str(x)


REGISTRY: tuple[Param, ...] = (
    Param("temperature", "float", "sampling temperature; 0 is greedy", 0, 2, True, "float64", None, "1"),
    Param("top_p", "float", "nucleus sampling: keep the top tokens holding this much probability", 0, 1,
          True, "float64", 1.0, "1"),
    Param("top_k", "int", "keep only the k most likely tokens; -1 means no limit", -1, None, True, "int64",
          -1, "-1"),
    Param("min_p", "float", "drop tokens below min_p × the top token's probability", 0, 1, True, "float64",
          0.0, "0"),
    Param("frequency_penalty", "float", "penalise tokens by how often they already appeared", -2, 2, True,
          "float64", 0.0, "0"),
    Param("presence_penalty", "float", "penalise tokens that already appeared at all", -2, 2, True,
          "float64", 0.0, "0"),
    Param("max_tokens", "int", "the most tokens to generate", 1, None, True, "int64", None, "server's"),
    Param("seed", "int", "sampling seed (or per_sample: a different, reproducible seed per repeat)",
          None, None, True, "int64", None, "random"),
    Param("stop", "stop", "stop sequences", default="none"),
    Param("logprobs", "bool", "return the log probability of each generated token", default="false"),
    Param("top_logprobs", "int", "alternatives returned per token (needs logprobs: true)", 0, 20),
    Param("tool_choice", "tool_choice", "which tool the model may call", default="none"),
)

BY_NAME: dict[str, Param] = {p.name: p for p in REGISTRY}
SWEEPABLE: tuple[str, ...] = tuple(p.name for p in REGISTRY if p.sweepable)
PARAM_COLUMNS: tuple[str, ...] = tuple(p.name for p in REGISTRY if p.column)
"""The canonical order of parameter columns wherever they are shown (plan, summarize, report)."""
FLOAT_COLUMNS: tuple[str, ...] = tuple(p.name for p in REGISTRY if p.column == "float64")
INT_COLUMNS: tuple[str, ...] = tuple(p.name for p in REGISTRY if p.column == "int64")
TOOL_CHOICES = ("none", "auto", "required")


def check_value(name: str, value: Any) -> Any:
    """`value` normalised for parameter `name` (int/float/…) or ValueError saying what is allowed."""
    param = BY_NAME[name]
    if param.kind in ("float", "int"):
        return _check_number(param, value)
    if param.kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{_show(value)} is not true or false; allowed: true or false")
        return value
    if param.kind == "stop":
        return _check_stop(param, value)
    return _check_tool_choice(param, value)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_number(param: Param, value: Any) -> float | int:
    allowed = param.describe()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        noun = "a number" if param.kind == "float" else "an integer"
        raise ValueError(f"{_show(value)} is not {noun}; allowed: {allowed}")
    number: float | int = value
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"{_show(number)} is not a finite number; allowed: {allowed}")
    if param.kind == "int":
        if isinstance(number, float):
            if not number.is_integer():
                raise ValueError(f"{_show(number)} is not an integer; allowed: {allowed}")
            number = int(number)
    else:
        number = float(number)
    low, high = param.bounds()
    if (low is not None and number < low) or (high is not None and number > high):
        raise ValueError(f"{_show(number)} is out of range; allowed: {allowed}")
    return number


def _check_stop(param: Param, value: Any) -> str | list[str]:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, list) and 0 < len(value) <= MAX_STOP and all(isinstance(s, str) and s for s in value):
        return list(value)
    if isinstance(value, list) and len(value) > MAX_STOP:
        raise ValueError(f"{len(value)} stop sequences; allowed: {param.describe()}")
    raise ValueError(f"{_show(value)}: allowed: {param.describe()}")


def _check_tool_choice(param: Param, value: Any) -> str | dict[str, Any]:
    if isinstance(value, str) and value in TOOL_CHOICES:
        return value
    if isinstance(value, dict) and value.get("type") == "function" and isinstance(value.get("function"), dict):
        return dict(value)
    raise ValueError(f"{_show(value)}: allowed: {param.describe()}")


def is_off(name: str, value: Any) -> bool:
    """True when `value` disables parameter `name` (e.g. top_k -1, min_p 0)."""
    off = BY_NAME[name].off if name in BY_NAME else None
    return off is not None and value is not None and value == off


__all__ = [
    "BY_NAME",
    "FLOAT_COLUMNS",
    "INT64_MAX",
    "INT64_MIN",
    "INT_COLUMNS",
    "PARAM_COLUMNS",
    "REGISTRY",
    "SWEEPABLE",
    "Param",
    "check_value",
    "is_off",
]
