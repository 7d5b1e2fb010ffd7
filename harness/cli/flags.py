"""Argparse value types for numeric flags, with the same bounds as the spec fields they override.

A bad flag is one line and exit 2 (argparse's error path in `harness.cli`): `--rps 1e-300`,
`--rps nan`, `--concurrency 0` and `--max-points -1` are refused by name with what is allowed.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any


def count_flag(flag: str, low: int, high: int) -> Callable[[str], int]:
    """A whole number from `low` to `high`."""

    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number; allowed: {low:,} to {high:,}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range; allowed: {low:,} to {high:,}")
        return value

    parse.__name__ = flag  # argparse names the flag in its message
    return parse


def number_flag(flag: str, low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    """A finite number from `low` (exclusive when `low_open`) to `high`."""
    allowed = f"a number {'>' if low_open else '≥'} {low:g} and ≤ {high:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number; allowed: {allowed}") from None
        too_low = value <= low if low_open else value < low
        if not math.isfinite(value) or too_low or value > high:
            raise argparse.ArgumentTypeError(f"{text[:40]} is out of range; allowed: {allowed}")
        return value

    parse.__name__ = flag
    return parse


MAX_SHARDS = 1_000_000


def shard_flag(text: str) -> str:
    """`K/N` with 1 ≤ K ≤ N ≤ MAX_SHARDS, or `auto` (from the job array's environment: harness.runner.jobarray);
    returned unchanged (the runner parses it)."""
    if text == "auto":
        return text
    k, sep, n = text.partition("/")
    allowed = f"K/N with 1 ≤ K ≤ N ≤ {MAX_SHARDS:,}, e.g. 2/4, or auto"
    try:
        shard, count = int(k), int(n)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not K/N; allowed: {allowed}") from None
    if not sep or not 1 <= shard <= count <= MAX_SHARDS:
        raise argparse.ArgumentTypeError(f"{text[:40]} is out of range; allowed: {allowed}")
    return text


def runner_flag(field: str) -> Callable[[str], Any]:
    """The type of a flag overriding `runner.<field>`, bounded exactly like the spec field."""
    from harness.spec.sweepspec import RunnerConfig

    info = RunnerConfig.model_fields[field]
    bounds: dict[str, Any] = {}
    for item in info.metadata:
        for name in ("ge", "gt", "le"):
            if getattr(item, name, None) is not None:
                bounds[name] = getattr(item, name)
    flag = "--" + field.replace("_", "-")
    high = bounds.get("le", 10**12)
    if info.annotation in (int, int | None):
        return count_flag(flag, int(bounds.get("ge", bounds.get("gt", 0) + 1)), int(high))
    if "gt" in bounds:
        return number_flag(flag, float(bounds["gt"]), float(high), low_open=True)
    return number_flag(flag, float(bounds.get("ge", 0)), float(high))


__all__ = ["MAX_SHARDS", "count_flag", "number_flag", "runner_flag", "shard_flag"]
