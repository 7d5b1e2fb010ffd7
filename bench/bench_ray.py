"""Overhead of the Ray path vs a plain run on one machine: the same sweep against one `harness serve`.

    python bench/bench_ray.py                      # 600 and 2,400 requests, 2 rounds
    python bench/bench_ray.py --requests 600 --rounds 1

Each round runs, interleaved:

    plain       `harness run SPEC --quiet` (a subprocess: start-up, planning, journaling included)
    ray local   `harness run SPEC --quiet --ray local` (a subprocess that starts and stops its own
                Ray cluster: what a user pays for `--ray local`)
    warm plain  `run_sweep(spec)` in this process
    warm ray    `run_on_ray(spec)` in this process, on a Ray cluster this script started once
                (`ray.init(num_cpus=--cpus)`) and warmed by one unmeasured run: the Ray path
                proper — shards' run directories, task start, progress actor, merge — without
                the cluster's start

and prints wall times. The server answers after `--latency-ms`, so the sweep has a length one
would shard; the concurrency is the spec's (16), divided among the shards by the Ray runs. Only
processes this script started are stopped (its server, its Ray cluster by `ray.shutdown()`).
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
from typing import Any

from _common import harness_env, start_serve

ROOT = Path(__file__).resolve().parents[1]
ENV = harness_env()
HARNESS = [sys.executable, "-m", "harness"]


def write_spec(folder: Path, base_url: str, requests: int) -> Path:
    prompts = requests // 12
    with (folder / "prompts.jsonl").open("w") as fh:
        for i in range(prompts):
            fh.write(json.dumps({"id": f"q{i}", "prompt": f"Country: Land{i}\nCapital:", "reference": "Paris"}) + "\n")
    spec = {
        "name": "bench-ray",
        "target": {"base_url": base_url, "model": "harness/ngram"},
        "dataset": {"path": "prompts.jsonl"},
        "params": {"max_tokens": 4},
        "sweep": {"grid": {"temperature": [0.0, 0.5, 1.0, 1.5]}, "repeats": 3},
        "runner": {"concurrency": 16},
    }
    path = folder / f"spec-{requests}.yaml"
    path.write_text(json.dumps(spec))
    return path


def timed(args: list[str], cwd: Path) -> tuple[float, Path]:
    """Wall seconds and the run directory of `harness ARGS` in a subprocess."""
    start = time.monotonic()
    proc = subprocess.run([*HARNESS, *args], cwd=cwd, env=ENV, capture_output=True, text=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return wall, Path(proc.stdout.strip().splitlines()[-1])


def timed_here(fn: Any) -> tuple[float, Path]:
    start = time.monotonic()
    result = fn()
    if result.exit_code != 0:
        raise SystemExit(f"in-process run exited {result.exit_code}: {result.run_dir}")
    return time.monotonic() - start, Path(result.run_dir)


MODES = ("plain", "ray local", "warm plain", "warm ray")


def measure(mode: str, spec: Path, work: Path) -> tuple[float, Path]:
    from harness.runner.cluster import run_on_ray
    from harness.runner.session import run_sweep

    out = work / "runs"
    if mode == "plain":
        return timed(["run", str(spec), "--quiet", "--out", str(out)], work)
    if mode == "ray local":
        return timed(["run", str(spec), "--quiet", "--out", str(out), "--ray", "local"], work)
    if mode == "warm plain":
        return timed_here(lambda: run_sweep(spec, out=out))
    return timed_here(lambda: run_on_ray(spec, out=out))


def rows(run_dir: Path) -> int:
    return int(json.loads((run_dir / "manifest.json").read_text())["counts"]["ok"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, nargs="+", default=[600, 2400])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the warm Ray cluster")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server, base_url = start_serve("--latency-ms", str(args.latency_ms))
        try:
            started = time.monotonic()
            ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
            print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs; ray.init took "
                  f"{time.monotonic() - started:.1f} s; server latency {args.latency_ms} ms, concurrency 16, "
                  f"{args.rounds} round(s)")
            print(f"{'requests':>8}  {'mode':<10} {'wall s (each)':<22} {'median':>7}  rows")
            for requests in args.requests:
                spec = write_spec(work, base_url, requests)
                results: dict[str, list[tuple[float, int]]] = {mode: [] for mode in MODES}
                if requests == args.requests[0]:  # not measured: the warm cluster's workers import harness
                    measure("warm ray", spec, work)
                for _ in range(args.rounds):
                    for mode in MODES:
                        wall, run_dir = measure(mode, spec, work)
                        results[mode].append((wall, rows(run_dir)))
                median = {mode: statistics.median(w for w, _ in got) for mode, got in results.items()}
                for mode, got in results.items():
                    print(f"{requests:>8}  {mode:<10} {', '.join(f'{w:.1f}' for w, _ in got):<22} "
                          f"{median[mode]:>7.1f}  {got[0][1]}")
                print(f"{requests:>8}  overhead: warm ray − warm plain {median['warm ray'] - median['warm plain']:+.1f} s "
                      f"({median['warm ray'] / median['warm plain']:.2f}×); ray local − plain "
                      f"{median['ray local'] - median['plain']:+.1f} s ({median['ray local'] / median['plain']:.2f}×)")
        finally:
            ray.shutdown()
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
