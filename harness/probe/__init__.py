"""`harness probe`: does an endpoint refuse, ignore or honour each sampling parameter?

    tokens.py     per-token rules (greedy, top_k, top_p, min_p) and their chance under "ignored"
    sender.py     requests within a budget; one retry for transient failures
    checks.py     one test per parameter → ParamResult
    suite.py      runs them all against an endpoint → ProbeReport
    render.py     terminal table, JSON, Markdown
    verdicts.py   ParamResult, ProbeReport, the verdict words
    preflight.py  `harness run`'s check before spending: API root, model, every swept value
    dialects.py   how each server family spells the sampling fields

Imports are lazy: the spec loader reads `dialects` without paying for the HTTP stack.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_BUDGET", "PARAMETERS", "ParamResult", "ProbeReport", "Verdict", "probe_endpoint", "run_probe"]


def __getattr__(name: str) -> Any:
    if name in ("DEFAULT_BUDGET", "probe_endpoint", "run_probe"):
        from harness.probe import suite

        return getattr(suite, name)
    if name in ("PARAMETERS", "ParamResult", "ProbeReport", "Verdict"):
        from harness.probe import verdicts

        return getattr(verdicts, name)
    raise AttributeError(name)
