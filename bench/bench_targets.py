"""Benchmark: a fast target's throughput with a slow, rate-limited neighbour in the same run vs alone.

    python bench/bench_targets.py [--requests 1600] [--rounds 2]

Two `harness serve` processes: `fast` answers after 100 ms (concurrency 16: a ceiling of
160 req/s), `slow` after 2 s and answers 40% of requests with a 429 (Retry-After 1 s), at
concurrency 16 too. Runs (`harness run`, a subprocess) alternate: the fast target alone, then
both targets in one spec (the slow one gets a tenth of the points, enough to be busy for the
whole of the fast target's share). The fast target's throughput = its rows / (its last answer -
its first send), from the run's own rows. Printed: each round and the median ratio
(with / alone). Goal >= 0.80: a slow neighbour must not starve the fast target.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from _common import harness_env, serve_process

ENV = harness_env()


def write_spec(folder: Path, fast: str, slow: str | None, requests: int) -> Path:
    temperatures = [round(0.1 * i, 1) for i in range(10)]
    prompts = max(1, requests // len(temperatures))
    data = folder / "prompts.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Country: Land{i}\nCapital:"}) + "\n" for i in range(prompts)))
    targets = [{"name": "fast", "base_url": fast, "model": "harness/ngram"}]
    exclude = []
    if slow is not None:
        targets.append({"name": "slow", "base_url": slow, "model": "harness/ngram"})
        exclude = [{"target": "slow", "temperature": temperatures[1:]}]
    spec = {
        "name": "bench-targets",
        "targets": targets,
        "dataset": {"path": "prompts.jsonl"},
        "params": {"max_tokens": 4},
        "sweep": {"grid": {"temperature": temperatures}, "exclude": exclude},
        "runner": {"concurrency": 16, "timeout_s": 30, "max_attempts": 10},
    }
    path = folder / ("both.yaml" if slow else "alone.yaml")
    path.write_text(json.dumps(spec))
    return path


def run(spec: Path, out: Path) -> tuple[float, int, float]:
    """(fast target's req/s, its rows, the run's wall time)."""
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "harness", "run", str(spec), "--out", str(out), "--quiet", "--no-preflight"],
                          env=ENV, capture_output=True, text=True, check=False)
    wall = time.monotonic() - t0
    if done.returncode not in (0, 1):
        raise SystemExit(done.stderr)
    df = pd.read_parquet(Path(done.stdout.strip().splitlines()[-1]) / "results")
    fast = df[(df.target == "fast") & (df.status == "ok")]
    start = fast.started_at.min()
    end = (fast.started_at + pd.to_timedelta(fast.latency_s, unit="s")).max()
    return len(fast) / (end - start).total_seconds(), len(fast), wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1600, help="requests to the fast target per run")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}, cores {os.cpu_count()}")
    ratios = []
    with serve_process("--latency-ms", "100") as fast, \
            serve_process("--latency-ms", "2000", "--faults", "429=0.4", "--retry-after", "1") as slow, \
            tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        alone_spec, both_spec = write_spec(folder, fast, None, args.requests), write_spec(folder, fast, slow, args.requests)
        for r in range(args.rounds):
            alone, n, wall_a = run(alone_spec, folder / "runs")
            both, m, wall_b = run(both_spec, folder / "runs")
            assert n == m
            ratios.append(both / alone)
            print(f"round {r + 1}: fast alone {alone:6.1f} req/s ({n} rows, run {wall_a:.1f} s); "
                  f"with the slow neighbour {both:6.1f} req/s (run {wall_b:.1f} s); ratio {both / alone:.2f}")
    print(f"fast target's throughput with a slow, rate-limited neighbour / alone: median {statistics.median(ratios):.2f} "
          f"(goal >= 0.80; ceiling 160 req/s)")


if __name__ == "__main__":
    main()
