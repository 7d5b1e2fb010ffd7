"""The seed API's limits on sampling values, checked once here for params, grid and zip alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["float", "int"]


@dataclass(frozen=True)
class Limit:
    """What a sampling parameter may be."""

    kind: Kind
    low: float | None
    high: float | None

    def describe(self) -> str:
        noun = "a number" if self.kind == "float" else "an integer"
        if self.low is not None and self.high is not None:
            return f"{noun} from {_fmt(self.low)} to {_fmt(self.high)}"
        if self.low is not None:
            return f"{noun} ≥ {_fmt(self.low)}"
        return noun


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


LIMITS: dict[str, Limit] = {
    "temperature": Limit("float", 0, 2),
    "top_p": Limit("float", 0, 1),
    "top_k": Limit("int", -1, None),
    "min_p": Limit("float", 0, 1),
    "frequency_penalty": Limit("float", -2, 2),
    "presence_penalty": Limit("float", -2, 2),
    "max_tokens": Limit("int", 1, None),
    "seed": Limit("int", None, None),
    "top_logprobs": Limit("int", 0, 20),
}

SWEEPABLE: tuple[str, ...] = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "frequency_penalty",
    "presence_penalty",
    "max_tokens",
    "seed",
)


def check_value(name: str, value: Any) -> float | int:
    """Return `value` normalised (float or int) or raise ValueError saying what is allowed."""
    limit = LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{value!r} is not {limit.describe().split(' from ')[0].split(' ≥ ')[0]}; allowed: {limit.describe()}")
    if limit.kind == "int":
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"{value!r} is not an integer; allowed: {limit.describe()}")
            value = int(value)
    else:
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} is not a finite number; allowed: {limit.describe()}")
    if (limit.low is not None and value < limit.low) or (limit.high is not None and value > limit.high):
        raise ValueError(f"{value!r} is out of range; allowed: {limit.describe()}")
    return value


__all__ = ["LIMITS", "SWEEPABLE", "Limit", "check_value"]
