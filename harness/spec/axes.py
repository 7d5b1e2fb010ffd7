"""Sweep axis values: lists and exact decimal ranges, each value checked by the parameter registry."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from harness.spec.parameters import BY_NAME, SWEEPABLE, check_value

MAX_RANGE_VALUES = 100_000


class AxisError(ValueError):
    """A bad axis; `path` is relative to the axis map (e.g. `temperature[2]`)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


def _decimal(name: str, key: str, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise AxisError(f"{name}.{key}", f"{value!r} is not a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise AxisError(f"{name}.{key}", f"{value!r} is not a number") from None
    if not number.is_finite():
        raise AxisError(f"{name}.{key}", f"{value!r} is not a finite number")
    return number


def expand_range(name: str, spec: dict[str, Any]) -> list[Any]:
    """`{from, to, step}` → exact decimal values, end inclusive (0.1..0.7 step 0.2 → 0.1, 0.3, 0.5, 0.7)."""
    unknown = set(spec) - {"from", "to", "step"}
    if unknown or not {"from", "to", "step"} <= set(spec):
        raise AxisError(name, f"a range needs exactly the keys from, to, step; got {sorted(map(str, spec))}")
    start, stop, step = (_decimal(name, k, spec[k]) for k in ("from", "to", "step"))
    if step <= 0:
        raise AxisError(f"{name}.step", f"{spec['step']!r} must be > 0")
    if stop < start:
        raise AxisError(f"{name}.to", f"{spec['to']!r} is below from ({spec['from']!r})")
    try:
        count = int((stop - start) / step) + 1
    except ArithmeticError:
        raise AxisError(name, f"range has too many values; at most {MAX_RANGE_VALUES:,} allowed") from None
    if count > MAX_RANGE_VALUES:
        shown = f"{count:,}" if count < 10**15 else "more than 10^15"
        raise AxisError(name, f"range has {shown} values; at most {MAX_RANGE_VALUES:,} allowed")
    values = [start + step * i for i in range(count)]
    as_int = BY_NAME[name].kind == "int"
    return [int(v) if as_int and v == v.to_integral_value() else float(v) for v in values]


def unknown_axis(name: str, allowed: tuple[str, ...] | list[str]) -> str:
    """A "did you mean X? " hint for a misspelt parameter name (empty when nothing is close)."""
    import difflib  # only for a message

    close = difflib.get_close_matches(name, list(allowed), n=1, cutoff=0.6)
    return f"did you mean {close[0]}? " if close else ""


def _not_sweepable(name: str) -> AxisError:
    return AxisError(name, f"cannot be swept; {unknown_axis(name, SWEEPABLE)}sweepable parameters: {', '.join(SWEEPABLE)}")


def normalise_axis(name: str, raw: Any) -> tuple[float | int, ...]:
    """Check an axis (list or range) and return its distinct values in first-seen order."""
    if name not in SWEEPABLE:
        raise _not_sweepable(name)
    if isinstance(raw, dict):
        values = expand_range(name, raw)
    elif isinstance(raw, list):
        values = raw
    else:
        values = [raw]
    if not values:
        raise AxisError(name, "empty axis; give at least one value")
    out: dict[float | int, None] = {}
    for i, value in enumerate(values):
        try:
            out.setdefault(check_value(name, value), None)
        except ValueError as exc:
            raise AxisError(f"{name}[{i}]", str(exc)) from None
    return tuple(out)


def normalise_zip(raw: dict[str, Any]) -> dict[str, tuple[float | int, ...]]:
    """Zip axes keep duplicates (positions matter) but must all have the same length."""
    axes: dict[str, tuple[float | int, ...]] = {}
    for name, values in raw.items():
        if name not in SWEEPABLE:
            raise _not_sweepable(name)
        seq = expand_range(name, values) if isinstance(values, dict) else values
        if not isinstance(seq, list) or not seq:
            raise AxisError(name, "a zip axis must be a non-empty list or a range")
        checked = []
        for i, value in enumerate(seq):
            try:
                checked.append(check_value(name, value))
            except ValueError as exc:
                raise AxisError(f"{name}[{i}]", str(exc)) from None
        axes[name] = tuple(checked)
    lengths = {name: len(v) for name, v in axes.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise AxisError(next(iter(axes)), f"zip lists must have equal lengths ({detail})")
    return axes


__all__ = ["AxisError", "expand_range", "normalise_axis", "normalise_zip", "unknown_axis"]
