"""What to gate on and how strictly: thresholds, gates and comparison options."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from harness.errors import UsageError

from .paired import Correction

ErrorScore = Literal["zero", "exclude"]
Permute = Literal["prompt", "row"]

ERROR_RATE = "error_rate"
LATENCY_P95 = "latency_p95"
TTFT_P95 = "ttft_p95"
TPOT_P95 = "tpot_p95"
# per-row quantile metrics: the summary column → the row value it is the 95th percentile of
QUANTILE_METRICS: tuple[str, ...] = (LATENCY_P95, TTFT_P95, TPOT_P95)
BUILTIN_METRICS: tuple[str, ...] = (ERROR_RATE, *QUANTILE_METRICS)


@dataclass(frozen=True)
class Threshold:
    """An amount of change: absolute, or relative to the base value (written with ``%``)."""

    value: float
    relative: bool = False

    @classmethod
    def parse(cls, text: str, flag: str) -> Threshold:
        """``0.05`` → absolute 0.05; ``5%`` → 5 % of the base value. Negative is refused."""
        raw = text.strip()
        relative = raw.endswith("%")
        try:
            number = float(raw[:-1] if relative else raw)
        except ValueError:
            raise UsageError(
                f"{text!r} is not a number; use e.g. 0.05 (absolute) or 5% (relative to the base)",
                key=flag,
            ) from None
        if not math.isfinite(number) or number < 0:
            raise UsageError(f"{text!r} must be a finite number ≥ 0", key=flag)
        return cls(number / 100.0 if relative else number, relative)

    def absolute(self, base: float) -> float:
        """The threshold in the metric's own units, given the base value."""
        if self.relative:
            return self.value * abs(base) if math.isfinite(base) else 0.0
        return self.value

    def __str__(self) -> str:
        return f"{self.value * 100:g}%" if self.relative else f"{self.value:g}"


@dataclass(frozen=True)
class Gate:
    """Fail when ``metric`` gets significantly worse by more than ``max_drop``."""

    metric: str
    max_drop: Threshold = field(default_factory=lambda: Threshold(0.0))


@dataclass(frozen=True)
class CompareOptions:
    """How `compare` decides. Empty ``gates``: every scorer metric, with ``default_max_drop``."""

    gates: tuple[Gate, ...] = ()
    default_max_drop: Threshold = field(default_factory=lambda: Threshold(0.0))
    max_error_rate: Threshold | None = None
    max_latency_ratio: float | None = None
    max_tpot_ratio: float | None = None
    alpha: float = 0.05
    correction: Correction = "holm"
    margin: Threshold | None = None
    error_score: ErrorScore = "zero"
    permute: Permute = "prompt"
    seed: int = 0
    n_boot: int = 2_000
    fail_on_inconclusive: bool = False
    allow_scorers: tuple[str, ...] = ()  # custom scorers named by the runs that may be imported

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 0.5:
            raise UsageError(f"{self.alpha} is out of range; use 0 < alpha < 0.5", key="--alpha")
        for flag, ratio in (("--max-latency-ratio", self.max_latency_ratio), ("--max-tpot-ratio", self.max_tpot_ratio)):
            if ratio is not None and not ratio >= 1.0:
                raise UsageError(f"{ratio} is out of range; a ratio ≥ 1 (e.g. 1.2 = 20% slower at p95)", key=flag)
        if self.max_tpot_ratio is not None and any(g.metric == TPOT_P95 for g in self.gates):
            raise UsageError(
                "tpot_p95 is gated twice; use either --metric tpot_p95 --max-drop X or --max-tpot-ratio R",
                key="--max-tpot-ratio",
            )
        if self.max_error_rate is not None and not self.max_error_rate.relative and self.max_error_rate.value > 1:
            raise UsageError(
                f"{self.max_error_rate} is out of range; a fraction 0–1 or a percentage",
                key="--max-error-rate",
            )
        if self.max_latency_ratio is not None and any(g.metric == LATENCY_P95 for g in self.gates):
            raise UsageError(
                "latency_p95 is gated twice; use either --metric latency_p95 --max-drop X or --max-latency-ratio R",
                key="--max-latency-ratio",
            )

    def ceiling_error_rate(self) -> float | None:
        """The --max-error-rate ceiling as a fraction (``5%`` and ``0.05`` both mean 0.05)."""
        if self.max_error_rate is None:
            return None
        return self.max_error_rate.value


__all__ = [
    "BUILTIN_METRICS",
    "ERROR_RATE",
    "LATENCY_P95",
    "QUANTILE_METRICS",
    "TPOT_P95",
    "TTFT_P95",
    "CompareOptions",
    "ErrorScore",
    "Gate",
    "Permute",
    "Threshold",
]
