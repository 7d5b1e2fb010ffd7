"""Adaptive repeats on sweeps whose answer is known: requests saved, and is the best cell picked?

Two parts, both printing their figures:

1. **Simulation** (`--reps 100`): the decision code of `harness run` (harness/analysis/sequential.py,
   the same `Schedule` the runner feeds) on a sweep of 8 cells of known accuracy × 40 prompts,
   with 0/1 draws seeded per repetition. Prompts differ in difficulty (a shared logit offset,
   sd 0.5), so the repeats of a prompt are correlated as in real sweeps. The known best cell has
   accuracy 0.90, the runner-up 0.84. Per repetition: requests sent vs fixed `max` repeats, and
   whether the cell with the best final mean among those not dropped is the truly best one (and,
   for reference, how often fixed `max` repeats picks it).
2. **A real run** on `harness serve` (started on loopback as a child process): the capitals
   dataset (47 prompts) at temperatures 0.3 / 0.8 / 1.0 / 1.3 / 1.6,
   `repeats: {min: 2, max: 20, until: {accuracy ±0.05}, drop_worse: {alpha: 0.05}}`, then the same
   spec with fixed `repeats: 20`, whose accuracies are the answer. No seed is sent (the server
   draws a fresh one per request), so repeats are independent draws; `--seeded` sends
   `seed: {per_sample: S}` instead — then the adaptive rows are exactly the fixed run's first
   rows, but repeat j shares seed S + j across prompts, which correlates the prompts within a
   repeat (see docs/run.md#adaptive-repeats). `--real-reps N` repeats it N times.

    python bench/bench_adaptive.py [--reps 100] [--real-reps 1] [--skip-real] [--seeded]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from _common import start_serve

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.analysis.sequential import Rule, Schedule  # noqa: E402

ACCURACY = [0.35, 0.50, 0.62, 0.72, 0.78, 0.84, 0.90, 0.80]  # cell 6 is the best
RULE = Rule(min=2, max=20, step=2, half_width=0.05, confidence=0.95, alpha=0.05, stop_unreachable=True)
PROMPTS = 40
SEEDED = False  # --seeded: `seed: {per_sample: S}` (repeats share a seed across prompts: correlated)


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def simulate(seed: int, rule: Rule = RULE) -> dict[str, Any]:
    """One seeded repetition: adaptive and fixed-max on the same draws."""
    rng = np.random.default_rng(seed)
    offset = rng.normal(0.0, 0.5, PROMPTS)  # prompt difficulty, shared by every cell
    p = 1 / (1 + np.exp(-(_logit(np.array(ACCURACY))[:, None] + offset[None, :])))
    truth = int(np.argmax(p.mean(axis=1)))
    draws = (rng.random((len(ACCURACY), PROMPTS, rule.max)) < p[:, :, None]).astype(np.float64)
    schedule = Schedule(rule, len(ACCURACY), PROMPTS)
    sent = 0
    while not schedule.done:
        for cell, start, stop in schedule.round():
            schedule.record_block(cell, start, draws[cell][:, start:stop])
            sent += PROMPTS * (stop - start)
        schedule.close()
    fixed_best = int(np.argmax(draws.mean(axis=(1, 2))))
    return {
        "sent": sent,
        "fixed": len(ACCURACY) * PROMPTS * rule.max,
        "picked": schedule.leader() == truth,
        "best_kept": schedule.states[truth].reason != "dropped",
        "fixed_picked": fixed_best == truth,
        "reasons": Counter(st.reason for st in schedule.states),
    }


def part_simulation(reps: int) -> dict[str, Any]:
    t0 = time.process_time()
    runs = [simulate(seed) for seed in range(reps)]
    cpu = time.process_time() - t0
    sent = np.array([r["sent"] for r in runs])
    fixed = runs[0]["fixed"]
    reasons: Counter[str] = Counter()
    for r in runs:
        reasons.update(r["reasons"])
    out = {
        "reps": reps,
        "fixed_requests": fixed,
        "mean_requests": float(sent.mean()),
        "saved": 1 - float(sent.mean()) / fixed,
        "saved_min": 1 - float(sent.max()) / fixed,
        "picked": sum(r["picked"] for r in runs) / reps,
        "best_never_dropped": sum(r["best_kept"] for r in runs) / reps,
        "fixed_picked": sum(r["fixed_picked"] for r in runs) / reps,
        "stopped": dict(reasons),
        "cpu_s_per_rep": cpu / reps,
    }
    print(f"simulation: {reps} seeded repetitions, {len(ACCURACY)} cells × {PROMPTS} prompts, accuracies {ACCURACY}")
    print(f"  requests: {out['mean_requests']:.0f} mean of {fixed} fixed-max → {out['saved']:.1%} fewer "
          f"(worst repetition {out['saved_min']:.1%} fewer)")
    print(f"  best cell picked {out['picked']:.0%} (fixed max repeats: {out['fixed_picked']:.0%}); "
          f"best cell never dropped {out['best_never_dropped']:.0%}")
    print(f"  cells stopped: {dict(reasons)}; decision CPU {out['cpu_s_per_rep'] * 1000:.1f} ms per repetition")
    return out


def _spec(folder: Path, base_url: str, repeats: Any, seed: int) -> Path:
    spec = {
        "name": "bench-adaptive",
        "target": {"base_url": base_url, "model": "harness/ngram"},
        "dataset": {"path": str(ROOT / "datasets" / "capitals.jsonl")},
        "params": {"max_tokens": 4, **({"seed": {"per_sample": seed}} if SEEDED else {})},
        "scoring": [{"type": "exact_match", "name": "accuracy"}],
        "sweep": {"grid": {"temperature": [0.3, 0.8, 1.0, 1.3, 1.6]}, "repeats": repeats},
        "runner": {"concurrency": 16},
    }
    path = folder / f"spec-{seed}-{'fixed' if isinstance(repeats, int) else 'adaptive'}.yaml"
    path.write_text(json.dumps(spec))
    return path


def part_real(reps: int) -> list[dict[str, Any]]:
    import pandas as pd

    from harness.rundir.manifest import read_manifest
    from harness.runner.session import run_sweep

    adaptive = {"min": 2, "max": 20, "step": 2, "until": {"metric": "accuracy", "half_width": 0.05},
                "drop_worse": {"alpha": 0.05}}
    proc, base_url = start_serve()
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            for rep in range(reps):
                seed = 100 + 1000 * rep
                t0 = time.monotonic()
                a = run_sweep(_spec(folder, base_url, adaptive, seed), out=folder / "runs", check_endpoint=False)
                wall_a = time.monotonic() - t0
                t0 = time.monotonic()
                f = run_sweep(_spec(folder, base_url, 20, seed), out=folder / "runs", check_endpoint=False)
                wall_f = time.monotonic() - t0
                rows = pd.read_parquet(f.run_dir / "results")
                truth = (rows.content.str.strip() == rows.reference).groupby(rows.temperature).mean()
                cells = read_manifest(a.run_dir).adaptive["cells"]  # type: ignore[index]
                kept = [c for c in cells.values() if c["reason"] != "dropped"]
                picked = max(kept, key=lambda c: c["mean"])["point"]["temperature"]
                results.append({"seed": seed, "adaptive_requests": a.counts.rows, "fixed_requests": f.counts.rows,
                                "picked": picked, "best": float(truth.idxmax()), "wall_s": (wall_a, wall_f),
                                "cells": {c["point"]["temperature"]: (c["reason"], c["samples"], round(c["mean"], 3))
                                          for c in cells.values()},
                                "truth": {float(k): round(float(v), 3) for k, v in truth.items()}})
                r = results[-1]
                print(f"real run {rep + 1} (harness serve{f', seed base {seed}' if SEEDED else ', no seed'}): {r['adaptive_requests']} requests vs "
                      f"{r['fixed_requests']} fixed-max → {1 - r['adaptive_requests'] / r['fixed_requests']:.1%} fewer; "
                      f"picked T={picked}, best by fixed max T={r['best']}; wall {wall_a:.1f} s vs {wall_f:.1f} s")
                print(f"  adaptive cells (reason, samples per prompt, mean): {r['cells']}")
                print(f"  fixed-max accuracy per temperature: {r['truth']}")
    finally:
        proc.terminate()
        proc.wait(10)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=100, help="seeded repetitions of the simulation")
    parser.add_argument("--real-reps", type=int, default=1, help="real runs on harness serve (seed bases)")
    parser.add_argument("--skip-real", action="store_true", help="only the simulation")
    parser.add_argument("--seeded", action="store_true", help="real runs with seed: {per_sample: S}")
    args = parser.parse_args()
    global SEEDED
    SEEDED = args.seeded
    print(f"load average {os.getloadavg()[0]:.1f}")
    part_simulation(args.reps)
    if not args.skip_real:
        part_real(args.real_reps)


if __name__ == "__main__":
    main()
