"""harness — sweep sampling parameters of OpenAI-compatible endpoints and measure what they do.

The public Python API (see docs/python-api.md); everything else is internal:

    import harness
    spec = harness.load_spec("sweeps/quickstart.yaml")       # validate (HarnessError: one line)
    plan = harness.plan_sweep(spec)                          # plan.requests, plan.points …
    result = harness.run_sweep(spec, out="runs")             # or: await harness.run_sweep_async(…)
    df = harness.read_results(result.run_dir)                # one row per request (pandas)
    summary = harness.summarize_run(result.run_dir)          # one row per cell
    verdict = harness.compare_runs(base_dir, cand_dir)       # verdict.failed

Names are resolved lazily: `import harness` imports nothing heavy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from harness._version import __version__

_LAZY = {
    "CompareOptions": "harness.compare",
    "HarnessError": "harness.errors",
    "Manifest": "harness.rundir.manifest",
    "Run": "harness.rundir.results",
    "RunResult": "harness.runner.session",
    "Stats": "harness.runner.dispatch",
    "SweepSpec": "harness.spec.sweepspec",
    "compare_runs": "harness.api",
    "load_run": "harness.rundir.results",
    "load_spec": "harness.spec.sweepspec",
    "plan_sweep": "harness.api",
    "read_manifest": "harness.rundir.manifest",
    "read_results": "harness.rundir.results",
    "resume_sweep": "harness.runner.session",
    "resume_sweep_async": "harness.runner.session",
    "run_sweep": "harness.runner.session",
    "run_sweep_async": "harness.runner.session",
    "summarize_run": "harness.api",
}

__all__ = [
    "CompareOptions",
    "HarnessError",
    "Manifest",
    "Run",
    "RunResult",
    "Stats",
    "SweepSpec",
    "__version__",
    "compare_runs",
    "load_run",
    "load_spec",
    "plan_sweep",
    "read_manifest",
    "read_results",
    "resume_sweep",
    "resume_sweep_async",
    "run_sweep",
    "run_sweep_async",
    "summarize_run",
]

if TYPE_CHECKING:
    from harness.api import compare_runs, plan_sweep, summarize_run
    from harness.compare import CompareOptions
    from harness.errors import HarnessError
    from harness.rundir.manifest import Manifest, read_manifest
    from harness.rundir.results import Run, load_run, read_results
    from harness.runner.dispatch import Stats
    from harness.runner.session import (
        RunResult,
        resume_sweep,
        resume_sweep_async,
        run_sweep,
        run_sweep_async,
    )
    from harness.spec.sweepspec import SweepSpec, load_spec


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
