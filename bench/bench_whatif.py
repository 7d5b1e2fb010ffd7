"""How well `harness whatif` predicts truncation, checked against runs that used it.

Starts `harness serve` on loopback, runs one sweep (open prompts, temperature 1, top_logprobs
20, five seeds) whose cells are: no truncation, top_p 0.9, top_k 5, min_p 0.1. From the
untruncated cell alone it predicts each setting; the truncated cells are what really happened:

    affected   predicted: share of draws the setting refuses, at the untruncated run's positions
               re-weighted by how likely a truncated run is to reach them (`run_removed`);
               measured:  mass the setting really removed at the truncated run's own positions
                          (the chance that an untruncated draw there would have been refused)
    unweighted the plain per-position figures at the untruncated run's positions (`affected`:
               share of its sampled tokens the setting would cut), for comparison
    entropy    of the distribution sampled from, after truncation (nats per token)
    logprob    mean raw logprob of the sampled token (measured: the truncated run's tokens)

Both sides are averaged position by position over the untruncated run's answer lengths (the
end-of-answer draw is not in the logprobs, so a truncated run's lengths cannot be predicted).
Prints a table and the agreement figures (absolute error; measured inside the predicted
interval or not).

    python bench/bench_whatif.py [--seeds 5] [--max-tokens 48] [--local] [--prompts N]

`--local` runs the same check on the embedded Gemma 3 270M (llama.cpp; slow on a CPU: use
`--prompts 8 --seeds 3 --max-tokens 24`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import start_serve

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {  # cell label -> (top_p, top_k, min_p)
    "none": (1.0, -1, 0.0),
    "top_p 0.9": (0.9, -1, 0.0),
    "top_k 5": (1.0, 5, 0.0),
    "min_p 0.1": (1.0, -1, 0.1),
}


def _spec(folder: Path, base_url: str | None, seeds: int, max_tokens: int, limit: int | None = None) -> Path:
    values = list(SETTINGS.values())
    target: dict[str, Any] = {"local": "gemma-3-270m"} if base_url is None else {"base_url": base_url, "model": "harness/ngram"}
    spec = {
        "name": "whatif-validation",
        "target": target,
        "dataset": {"path": str(ROOT / "datasets" / "creative.jsonl"), **({"limit": limit} if limit else {})},
        "params": {"max_tokens": max_tokens, "logprobs": True, "top_logprobs": 20, "temperature": 1.0},
        "sweep": {
            "grid": {"seed": list(range(1, seeds + 1))},
            "zip": {"top_p": [v[0] for v in values], "top_k": [v[1] for v in values], "min_p": [v[2] for v in values]},
        },
        "runner": {"concurrency": 16 if base_url else 1, "timeout_s": 120},
    }
    path = folder / "spec.yaml"
    path.write_text(json.dumps(spec))
    return path


def _label(row: Any) -> str:
    for label, (p, k, m) in SETTINGS.items():
        if (row["top_p"], row["top_k"], row["min_p"]) == (p, k, m):
            return label
    raise ValueError(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--local", action="store_true", help="the embedded Gemma 3 270M (llama.cpp) instead of harness serve")
    parser.add_argument("--prompts", type=int, default=None, help="use the first N creative prompts (default all 20)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from harness.cli import main as harness
    from harness.rundir import read_results
    from harness.server.ngram import default_model
    from harness.whatif import Setting, as_run, whatif_frame
    from harness.whatif.estimate import length_profile_mean
    from harness.whatif.positions import extract_positions
    from harness.whatif.truncate import Resolved, evaluate

    vocab = 262_144 if args.local else default_model().vocab_size
    proc, base_url = (None, None) if args.local else start_serve()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            out = Path(tmp) / "runs"
            spec = _spec(Path(tmp), base_url, args.seeds, args.max_tokens, args.prompts)
            code = harness(["run", str(spec), "--out", str(out), "--quiet"])
            assert code == 0, code
            rows = read_results(next(out.iterdir()))
            run_s = time.perf_counter() - start
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
    rows["cell_id"] = rows.apply(_label, axis=1)  # pool the seeds of each setting
    start = time.perf_counter()
    hypothetical = [Setting(top_p=0.9), Setting(top_k=5), Setting(min_p=0.1)]
    predicted = whatif_frame(rows[rows["cell_id"] == "none"], as_run(hypothetical), vocab=vocab).set_index("setting")
    base_positions = extract_positions(rows[rows["cell_id"] == "none"]["logprobs"])
    measured = {}
    for label, (top_p, top_k, min_p) in SETTINGS.items():
        pos = extract_positions(rows[rows["cell_id"] == label]["logprobs"])
        few, many = evaluate(pos, Resolved(1.0, top_p, top_k, min_p), vocab)
        measured[label] = {  # the sampler's own truncation, so the tail hardly matters: mean of the two tails
            name: length_profile_mean((getattr(few, name) + getattr(many, name)) / 2, pos, base_positions)
            for name in ("removed", "entropy")
        }
        measured[label]["logprob"] = length_profile_mean(np.log(pos.sampled), pos, base_positions)
    whatif_s = time.perf_counter() - start
    tokens = {label: rows[rows["cell_id"] == label]["logprobs"].map(len).sum() for label in SETTINGS}
    print(f"{'embedded gemma-3-270m' if args.local else 'harness serve'}: requests {len(rows)} ({run_s:.1f} s), whatif on {sum(tokens.values())} tokens in {whatif_s:.2f} s, vocab {vocab}")
    print(f"{'setting':<10} {'quantity':<9} {'predicted [interval]':<30} {'measured':>9} {'abs err':>8}  inside  unweighted")
    errors: dict[str, list[float]] = {"affected": [], "entropy": [], "logprob": []}
    naive_errors: dict[str, list[float]] = {"affected": [], "entropy": [], "logprob": []}
    inside = 0
    for h in hypothetical:
        p, m = predicted.loc[h.label], measured[h.label]
        pairs = [
            ("affected", p["run_removed"], p["run_removed_lo"], p["run_removed_hi"], m["removed"]),
            ("entropy", p["run_entropy"], p["run_entropy_lo"], p["run_entropy_hi"], m["entropy"]),
            ("logprob", p["run_expected_logprob"], p["run_expected_logprob_lo"], p["run_expected_logprob_hi"], m["logprob"]),
        ]
        naive = [p["affected"], p["entropy"], p["expected_logprob"]]
        for (name, point, lo, hi, meas), flat in zip(pairs, naive):
            ok = lo <= meas <= hi
            inside += ok
            errors[name].append(abs(point - meas))
            naive_errors[name].append(abs(flat - meas))
            print(
                f"{h.label:<10} {name:<9} {point:8.3f} [{lo:7.3f}, {hi:7.3f}]      {meas:9.3f} {abs(point - meas):8.3f}  "
                f"{'yes' if ok else 'no ':<3}   {flat:8.3f}   (ess {p['run_ess']:.0f})"
            )
    total = sum(len(v) for v in errors.values())
    print(
        f"agreement: {inside}/{total} measured values inside the predicted interval; mean abs error "
        f"affected {100 * sum(errors['affected']) / 3:.1f} points, entropy {sum(errors['entropy']) / 3:.3f} nats, "
        f"logprob {sum(errors['logprob']) / 3:.3f} nats"
    )
    print(
        f"unweighted (at the untruncated run's own positions): mean abs error affected "
        f"{100 * sum(naive_errors['affected']) / 3:.1f} points, entropy {sum(naive_errors['entropy']) / 3:.3f} nats, "
        f"logprob {sum(naive_errors['logprob']) / 3:.3f} nats"
    )


if __name__ == "__main__":
    main()
