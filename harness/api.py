"""The analysis half of the public API: a run directory as a DataFrame, its summary, a comparison.

Custom scorers named by a run directory are imported only when listed in `allow_scorers`
(a run directory from someone else must not run code); `scoring` given here is the caller's own.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from harness.compare import CompareOptions, Comparison
    from harness.rundir.results import Run
    from harness.spec.plan import Plan
    from harness.spec.sweepspec import SweepSpec


def plan_sweep(spec: SweepSpec | str | Path, preview: int = 20) -> Plan:
    """What a sweep would send (points, prompts, repeats, requests), without sending anything."""
    from harness.spec.plan import make_plan
    from harness.spec.sweepspec import SweepSpec, load_spec

    return make_plan(spec if isinstance(spec, SweepSpec) else load_spec(spec), preview)


def summarize_run(
    run_dir: str | Path, *, scoring: list[Any] | None = None, allow_scorers: Collection[str] = ()
) -> pd.DataFrame:
    """One row per cell of a run: errors, latency, scores with 95% intervals, diversity, logprobs."""
    from harness.analysis.metrics import summarize
    from harness.report import scorers_for
    from harness.report.data import load_runs

    runs = load_runs([run_dir])
    return summarize(runs[0].rows, scorers_for(runs, scoring, allow_scorers))


def compare_runs(
    base: str | Path | Run, cand: str | Path | Run, options: CompareOptions | None = None, *,
    allow_scorers: Collection[str] = (), base_target: str | None = None, cand_target: str | None = None,
) -> Comparison:
    """Paired comparison of two runs (folders or loaded `Run`s); `result.failed` is the CI gate.

    `base_target` / `cand_target` pick one target of a run with several (`base` and `cand` may
    then be the same run)."""
    import dataclasses

    from harness.compare import CompareOptions
    from harness.compare import compare_runs as compare_loaded
    from harness.rundir.results import Run, load_run

    options = options or CompareOptions()
    if allow_scorers:
        options = dataclasses.replace(options, allow_scorers=(*options.allow_scorers, *allow_scorers))
    runs = [run if isinstance(run, Run) else load_run(run) for run in (base, cand)]
    return compare_loaded(runs[0], runs[1], options, base_target=base_target, cand_target=cand_target)


__all__ = ["compare_runs", "plan_sweep", "summarize_run"]
