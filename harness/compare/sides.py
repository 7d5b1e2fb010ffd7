"""Which rows are a side of a comparison: a whole run, or one target of a run.

`harness compare RUN --base-target A --cand-target B` compares two targets of one run: each side
is the run with only that target's rows. Rows pair on (point_json, prompt_id, sample) exactly as
between two runs (a run's `point_json` never holds the target), so comparing two targets of one
run gives the same verdicts as comparing two single-target runs holding the same rows.

A run with several targets compared without naming one is refused: its rows would pair with
each target's twice. Runs made before targets existed are one target, called `default`.
"""

from __future__ import annotations

import dataclasses

from harness.analysis.cost import DEFAULT_TARGET, manifest_targets, target_series
from harness.errors import UsageError
from harness.rundir.results import Run

TARGET = "target"


def targets_of(run: Run) -> list[str]:
    """The target names of a run's rows, in order of first appearance (`default` for older runs)."""
    if not len(run.results):
        return list(manifest_targets(run.manifest)) or [DEFAULT_TARGET]
    return [str(t) for t in dict.fromkeys(target_series(run.results).tolist())]


def select_target(run: Run, name: str | None, flag: str) -> Run:
    """The run restricted to target `name`; the run itself when `name` is None and it has one target.

    UsageError (exit 2) naming `flag` when the target is unknown, or when `name` is None and the
    run has several targets."""
    names = targets_of(run)
    if name is None:
        if len(names) > 1:
            raise UsageError(
                f"{run.path} has {len(names)} targets ({', '.join(names)}); choose one with {flag}",
                key=flag,
            )
        return run
    if name not in names:
        raise UsageError(f"no target {name!r} in {run.path}; it has: {', '.join(names)}", key=flag)
    if len(names) == 1:
        return run
    mask = (target_series(run.results) == name).to_numpy()
    return dataclasses.replace(run, results=run.results[mask].reset_index(drop=True))


def target_model(run: Run, name: str | None) -> str | None:
    """The model a target of the run was sent to (from the manifest's `targets`, else its rows)."""
    if name is None:
        return None
    info = manifest_targets(run.manifest).get(name) or {}
    if info.get("model"):
        return str(info["model"])
    if "model" in run.results.columns and len(run.results):
        models = sorted({str(m) for m in run.results["model"].dropna().unique()})
        return ", ".join(models) or None
    return None


__all__ = ["select_target", "target_model", "targets_of"]
