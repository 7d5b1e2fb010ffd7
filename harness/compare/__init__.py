"""Paired comparison of two runs → a verdict per metric and cell, JUnit XML and Markdown for CI.

    from harness.compare import CompareOptions, Gate, Threshold, compare_runs
    result = compare_runs(load_run(base_dir), load_run(cand_dir), CompareOptions(...))
    result.failed  # the CLI exits 1 when True

Modules: ``pairing`` (rows → pairs), ``paired`` (paired tests, bootstrap, corrections),
``decide`` (metrics × cells → verdicts), ``sides`` (a run or one of its targets), ``summary``
(Markdown, text), ``junit``.
"""

from __future__ import annotations

from .decide import ScoreFn, compare_runs, default_score
from .junit import render_junit
from .options import BUILTIN_METRICS, CompareOptions, Gate, Threshold
from .result import (
    ALL_POINTS,
    CeilingCheck,
    CellResult,
    Comparison,
    MetricSummary,
    RunInfo,
    Verdict,
)
from .summary import render_markdown, render_text

__all__ = [
    "ALL_POINTS",
    "BUILTIN_METRICS",
    "CeilingCheck",
    "CellResult",
    "CompareOptions",
    "Comparison",
    "Gate",
    "MetricSummary",
    "RunInfo",
    "ScoreFn",
    "Threshold",
    "Verdict",
    "compare_runs",
    "default_score",
    "render_junit",
    "render_markdown",
    "render_text",
]
