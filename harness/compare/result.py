"""The outcome of a comparison: per metric × cell results, metric verdicts, ceiling checks.

`compare` returns a `Comparison`; the CLI decides the exit code from ``failed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from .options import CompareOptions
from .paired import PairedTest

Verdict = Literal["regressed", "improved", "no change", "inconclusive"]
VERDICTS: tuple[Verdict, ...] = ("regressed", "improved", "no change", "inconclusive")
ALL_POINTS = "*"


@dataclass(frozen=True)
class RunInfo:
    """Which run a side of the comparison is."""

    path: str
    run_id: str
    model: str
    target: str | None = None  # one target of the run (--base-target / --cand-target), else None

    @property
    def label(self) -> str:
        """`run_id`, or `run_id/target` for one target of a run."""
        return self.run_id if self.target is None else f"{self.run_id}/{self.target}"


@dataclass(frozen=True)
class CellResult:
    """One metric in one cell (or ``ALL_POINTS``: every shared point pooled by prompt)."""

    metric: str
    point: str
    label: str
    n_pairs: int
    test: PairedTest
    higher_is_better: bool
    tolerance: float  # allowed worsening, metric units (0 = any significant worsening)
    margin: float  # worsening the interval must exclude for "no change"
    p_worse: float  # one-sided, adjusted across the family
    p_better: float
    gated: bool
    verdict: Verdict

    @property
    def worsening(self) -> float:
        """How much worse the candidate is, in metric units (negative = better)."""
        return -self.test.diff if self.higher_is_better else self.test.diff

    @property
    def regressed(self) -> bool:
        return self.verdict == "regressed"


@dataclass(frozen=True)
class MetricSummary:
    """The verdict for one metric over all its cells, and the cell (`point`) that decides it."""

    metric: str
    gated: bool
    verdict: Verdict
    higher_is_better: bool
    point: str = ALL_POINTS


@dataclass(frozen=True)
class CeilingCheck:
    """An absolute limit on the candidate (``--max-error-rate``), over the compared points."""

    name: str
    value: float
    limit: float
    rows: int

    @property
    def passed(self) -> bool:
        return self.value <= self.limit


@dataclass(frozen=True)
class Comparison:
    """Everything `compare` found."""

    base: RunInfo
    cand: RunInfo
    options: CompareOptions
    shared_points: tuple[str, ...]
    only_base: tuple[str, ...]
    only_cand: tuple[str, ...]
    n_pairs: int
    unpaired_base: int
    unpaired_cand: int
    cells: tuple[CellResult, ...]
    metrics: tuple[MetricSummary, ...]
    ceilings: tuple[CeilingCheck, ...]
    notes: tuple[str, ...] = ()

    @property
    def regressions(self) -> tuple[CellResult, ...]:
        return tuple(c for c in self.cells if c.gated and c.regressed)

    @property
    def failed(self) -> bool:
        """True when the build should fail: a gated regression or a broken ceiling."""
        if self.regressions or any(not c.passed for c in self.ceilings):
            return True
        if self.options.fail_on_inconclusive:
            return any(m.gated and m.verdict == "inconclusive" for m in self.metrics)
        return False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (NaN becomes None)."""
        return {
            "base": vars(self.base),
            "candidate": vars(self.cand),
            "failed": self.failed,
            "alpha": self.options.alpha,
            "correction": self.options.correction,
            "shared_points": list(self.shared_points),
            "only_base": list(self.only_base),
            "only_candidate": list(self.only_cand),
            "pairs": self.n_pairs,
            "unpaired": {"base": self.unpaired_base, "candidate": self.unpaired_cand},
            "metrics": [vars(m) for m in self.metrics],
            "cells": [_cell_dict(c) for c in self.cells],
            "ceilings": [dict(vars(c), passed=c.passed) for c in self.ceilings],
            "notes": list(self.notes),
        }


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _cell_dict(cell: CellResult) -> dict[str, Any]:
    test = {k: _clean(v) for k, v in vars(cell.test).items()}
    head = {k: _clean(v) for k, v in vars(cell).items() if k != "test"}
    return {**head, **test}


__all__ = [
    "ALL_POINTS",
    "VERDICTS",
    "CeilingCheck",
    "CellResult",
    "Comparison",
    "MetricSummary",
    "RunInfo",
    "Verdict",
]
