"""False regressions and power of `harness compare`, by simulation of the pipeline's structure.

A run = P prompts × K repeats × C cells of binary correctness. Prompt i has its own success
probability p_i ~ Beta(mu·kappa, (1−mu)·kappa) (small kappa: most prompts nearly always right or
nearly always wrong, as real models are; kappa = inf: every prompt alike). Two runs of the same
configuration draw independently from the same p_i (a rerun with other seeds).

The 5-point drop is made in the candidate in one of two ways:

- ``forget``: a random fraction q = 0.05 / mean(p) of prompts becomes always wrong (the model
  lost those facts); expected drop 5 points.
- ``uniform``: every prompt's p_i is scaled by (1 − 0.05 / mean(p)) (each right answer turns
  wrong with the same probability); expected drop exactly 5 points.

The headline figures run the whole engine (`compare_runs`: pairing, scoring with exact_match,
tests, Holm, verdicts) on in-memory runs; the sensitivity table runs the same paired test
alone, many more times. Prints its figures; run: ``python bench/bench_compare_sim.py``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from harness.compare import CompareOptions, compare_runs
from harness.compare.paired import paired_mean_test
from harness.rundir.manifest import Manifest
from harness.rundir.results import Run

MANIFEST = Manifest(run_id="sim", spec={"scoring": ["exact_match"]})


def difficulty(rng: np.random.Generator, n: int, mu: float, kappa: float) -> np.ndarray:
    """Per-prompt success probabilities."""
    if np.isinf(kappa):
        return np.full(n, mu)
    return rng.beta(mu * kappa, (1 - mu) * kappa, n)


def degrade(rng: np.random.Generator, p: np.ndarray, mode: str, drop: float) -> np.ndarray:
    """The candidate's probabilities: the same (null) or `drop` lower on average."""
    if mode == "null" or drop == 0:
        return p
    if mode == "uniform":
        return p * (1 - drop / p.mean())
    if mode == "forget":
        out = p.copy()
        out[rng.random(p.size) < drop / p.mean()] = 0.0
        return out
    raise ValueError(mode)


def frame(correct: np.ndarray, name: str, cells: int) -> pd.DataFrame:
    """Result rows for a (cells, prompts, repeats) boolean array."""
    c, n, k = correct.shape
    cell = np.repeat(np.arange(c), n * k)
    prompt = np.tile(np.repeat(np.arange(n), k), c)
    sample = np.tile(np.arange(k), c * n)
    points = np.array([json.dumps({"temperature": round(0.3 * i, 1)}) for i in range(c)])
    rows = c * n * k
    return pd.DataFrame({
        "run_id": name,
        "request_id": [f"{name}-{i}" for i in range(rows)],
        "cell_id": cell.astype(str),
        "prompt_id": np.char.add("p", prompt.astype(str)),
        "sample": sample,
        "model": name,
        "status": "ok",
        "latency_s": 0.1,
        "content": np.where(correct.ravel(), "yes", "no"),
        "reference": "yes",
        "point_json": points[cell],
    })


def engine_trial(rng: np.random.Generator, *, prompts: int, repeats: int, cells: int, mu: float,
                 kappa: float, mode: str, drop: float, seed: int, permute: str = "prompt") -> bool:
    """One base/candidate pair through compare_runs; True when it would fail the build."""
    p = difficulty(rng, prompts, mu, kappa)
    pc = degrade(rng, p, mode, drop)
    base = rng.random((cells, prompts, repeats)) < p[None, :, None]
    cand = rng.random((cells, prompts, repeats)) < pc[None, :, None]
    b = Run(Path("base"), MANIFEST, frame(base, "base", cells))
    c = Run(Path("cand"), MANIFEST, frame(cand, "cand", cells))
    return compare_runs(b, c, CompareOptions(seed=seed, permute=permute)).failed  # type: ignore[arg-type]


def fast_trial(rng: np.random.Generator, *, prompts: int, repeats: int, mu: float, kappa: float,
               mode: str, drop: float, alpha: float) -> bool:
    """The same paired test on one cell, without the engine around it."""
    p = difficulty(rng, prompts, mu, kappa)
    pc = degrade(rng, p, mode, drop)
    base = rng.binomial(repeats, p) / repeats
    cand = rng.binomial(repeats, pc) / repeats
    return paired_mean_test(base, cand, rng=rng, n_perm=2_000, n_boot=10).p_less < alpha


def rate(hits: int, n: int) -> str:
    """Proportion with a 95% Wilson interval."""
    z = 1.96
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"{100 * p:5.1f}% [{100 * (centre - half):4.1f}, {100 * (centre + half):4.1f}] ({hits}/{n})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=400, help="pairs per headline scenario (full engine)")
    ap.add_argument("--multi-reps", type=int, default=150, help="pairs per 4-cell scenario (slower)")
    ap.add_argument("--fast-reps", type=int, default=2_000, help="pairs per sensitivity-table entry")
    ap.add_argument("--mu", type=float, default=0.7, help="mean accuracy")
    ap.add_argument("--kappa", type=float, default=1.0, help="difficulty concentration of the headline")
    ap.add_argument("--seed", type=int, default=20240601)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"headline: full compare_runs, 200 prompts x 3 repeats, mean accuracy {args.mu}, "
          f"difficulty Beta(kappa={args.kappa}), one-sided alpha 0.05, Holm", flush=True)
    scenarios = [
        ("false regressions, 1 cell", dict(cells=1, mode="null", drop=0.0)),
        ("power, 5-pt drop (forget), 1 cell", dict(cells=1, mode="forget", drop=0.05)),
        ("power, 5-pt drop (uniform), 1 cell", dict(cells=1, mode="uniform", drop=0.05)),
        ("false regressions, 1 cell, --permute row", dict(cells=1, mode="null", drop=0.0, permute="row")),
        ("power, forget, 1 cell, --permute row", dict(cells=1, mode="forget", drop=0.05, permute="row")),
        ("power, uniform, 1 cell, --permute row", dict(cells=1, mode="uniform", drop=0.05, permute="row")),
        ("false regressions, 4 cells + pooled", dict(cells=4, mode="null", drop=0.0)),
        ("power, 5-pt drop (forget), 4 cells + pooled", dict(cells=4, mode="forget", drop=0.05)),
    ]
    for label, kw in scenarios:
        start = time.perf_counter()
        reps = args.reps if kw["cells"] == 1 else args.multi_reps
        hits = sum(
            engine_trial(rng, prompts=200, repeats=3, mu=args.mu, kappa=args.kappa, seed=r, **kw)
            for r in range(reps)
        )
        print(f"  {label:45s} {rate(hits, reps)}  {time.perf_counter() - start:5.1f}s", flush=True)
    print(f"\nsensitivity (paired test alone, 1 cell, 200x3, alpha 0.05, {args.fast_reps} pairs each):")
    print(f"  {'kappa':>6s}  {'false regressions':28s} {'power forget':28s} {'power uniform':28s}")
    for kappa in (0.5, 1.0, 3.0, 10.0, float("inf")):
        cells = [
            rate(sum(fast_trial(rng, prompts=200, repeats=3, mu=args.mu, kappa=kappa, mode=m,
                                drop=d, alpha=0.05) for _ in range(args.fast_reps)), args.fast_reps)
            for m, d in (("null", 0.0), ("forget", 0.05), ("uniform", 0.05))
        ]
        print(f"  {kappa:6g}  " + " ".join(f"{c:28s}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
