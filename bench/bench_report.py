"""Benchmark: `harness report` on a synthetic run of ROWS rows (default 1,000,000).

    python bench/bench_report.py [--rows 1000000] [--tokens 8] [--top 5] [--targets N] [--keep DIR]
    python bench/bench_report.py --run RUN_DIR      # time the report of an existing run (e.g. 48 rows)

Writes a synthetic run directory (6 temperatures × 4 min_p values, 10 repeats per prompt,
`--tokens` tokens with `--top` top_logprobs per row, scored by exact_match and contains),
`--targets N` splits the rows over N priced targets sharing the points (the multi-target report),
then runs `harness report` on it in a fresh process and prints wall time and peak memory
(ru_maxrss of that process). The figures go to bench/out/ unless --keep names a place.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from harness.rundir.records import SCHEMA, TOKEN_LOGPROB, TOP_LOGPROB

TEMPERATURES = (0.0, 0.3, 0.7, 1.0, 1.4, 2.0)
MIN_PS = (0.0, 0.05, 0.1, 0.2)
REPEATS = 10
CHUNK = 100_000
WORDS = np.array(["the", "a", "of", "to", "city", "capital", "river", "north", "old", "new", "great", "port", "saint", "san", "la", "el", "west", "east"])


def _word_pool(rng: np.random.Generator, size: int) -> np.ndarray:
    lengths = rng.integers(2, 14, size=size)
    return np.array([" ".join(rng.choice(WORDS, n)) for n in lengths], dtype=object)


def _logprobs(rng: np.random.Generator, rows: int, tokens: int, top: int, temps: np.ndarray) -> pa.Array:
    """rows × tokens entries, each with `top` sorted top_logprobs; sampled token usually the argmax."""
    ntok = rows * tokens
    spread = np.repeat(0.3 + temps, tokens)
    top_lp = -np.sort(rng.exponential(1.0, size=(ntok, top)), axis=1) * spread[:, None]
    top_lp[:, 0] = np.minimum(top_lp[:, 0], -0.01)
    pick = np.where(rng.random(ntok) < 0.15 * np.repeat(temps, tokens), 1, 0)
    lp = top_lp[np.arange(ntok), pick]
    vocab = pa.array([f"t{i}" for i in range(500)])
    top_tokens = vocab.take(pa.array(rng.integers(0, 500, size=ntok * top)))
    top_struct = pa.StructArray.from_arrays([top_tokens, pa.array(top_lp.reshape(-1))], fields=list(TOP_LOGPROB))
    top_list = pa.ListArray.from_arrays(pa.array(np.arange(0, ntok * top + 1, top, dtype=np.int32)), top_struct)
    tok_struct = pa.StructArray.from_arrays(
        [vocab.take(pa.array(rng.integers(0, 500, size=ntok))), pa.array(lp), top_list], fields=list(TOKEN_LOGPROB)
    )
    return pa.ListArray.from_arrays(pa.array(np.arange(0, ntok + 1, tokens, dtype=np.int32)), tok_struct)


def _chunk(rng: np.random.Generator, start: int, stop: int, prompts: int, tokens: int, top: int, pools: dict) -> pa.Table:
    i = np.arange(start, stop)
    cells = len(TEMPERATURES) * len(MIN_PS)
    target = i // (prompts * REPEATS * cells)
    cell = i // (prompts * REPEATS) % cells
    prompt = i // REPEATS % prompts
    sample = i % REPEATS
    temp = np.array(TEMPERATURES)[cell // len(MIN_PS)]
    min_p = np.array(MIN_PS)[cell % len(MIN_PS)]
    p_ok = np.clip(0.95 - 0.35 * temp**2 * (1 - 3 * min_p), 0.02, 0.97)
    correct = rng.random(len(i)) < p_ok
    refs = pools["refs"][prompt]
    wrong = pools["wrong"][rng.integers(0, len(pools["wrong"]), len(i))]
    content = np.where(correct, refs, wrong)
    error = rng.random(len(i)) < 0.01 + 0.02 * temp
    ctoks = np.where(correct, 3, rng.integers(4, 32, len(i)))
    latency = rng.lognormal(np.log(0.05 + 0.012 * ctoks), 0.25)
    cols = {
        "run_id": pa.array(["bench"] * len(i)),
        "request_id": pa.array([f"r{k}" for k in i]),
        "cell_id": pa.array([f"cell{c:02d}" for c in cell]),
        "prompt_id": pa.array([f"p{k}" for k in prompt]),
        "sample": pa.array(sample),
        "model": pa.array(["bench-model"] * len(i)),
        "temperature": pa.array(temp),
        "min_p": pa.array(min_p),
        "max_tokens": pa.array(np.full(len(i), 32)),
        "status": pa.array(np.where(error, "error", "ok")),
        "error_type": pa.array(np.where(error, "http_500", None).tolist(), pa.string()),
        "attempts": pa.array(np.where(error, 6, 1)),
        "latency_s": pa.array(latency),
        "content": pa.array(np.where(error, None, content).tolist(), pa.string()),
        "finish_reason": pa.array(np.where(error, None, np.where(ctoks >= 31, "length", "stop")).tolist(), pa.string()),
        "prompt_tokens": pa.array(np.full(len(i), 40)),
        "completion_tokens": pa.array(ctoks),
        "logprobs": _logprobs(rng, len(i), tokens, top, temp),
        "reference": pa.array(refs.tolist(), pa.string()),
        "target": pa.array([f"target-{k}" for k in target] if pools["targets"] > 1 else [None] * len(i), pa.string()),
        "point_json": pa.array([json.dumps({"temperature": float(t), "min_p": float(m)}) for t, m in zip(temp, min_p)]),
    }
    return pa.table({f.name: cols.get(f.name, pa.nulls(len(i), f.type)).cast(f.type) for f in SCHEMA}, schema=SCHEMA)


def generate(run_dir: Path, rows: int, tokens: int, top: int, targets: int = 1) -> None:
    """Write the synthetic run directory (chunked, bounded memory)."""
    rng = np.random.default_rng(7)
    cells = len(TEMPERATURES) * len(MIN_PS)
    prompts = max(1, rows // (cells * REPEATS * targets))
    total = prompts * cells * REPEATS * targets
    pools = {"refs": np.array([f"answer {k}" for k in range(prompts)], dtype=object), "wrong": _word_pool(rng, 5000),
             "targets": targets}
    (run_dir / "results").mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(run_dir / "results" / "part-0.parquet", SCHEMA) as writer:
        for start in range(0, total, CHUNK):
            writer.write_table(_chunk(rng, start, min(total, start + CHUNK), prompts, tokens, top, pools))
    spec = {"name": "bench", "sweep": {"grid": {"temperature": list(TEMPERATURES), "min_p": list(MIN_PS)}},
            "scoring": ["exact_match", "contains"]}
    manifest = {"run_id": "bench", "spec": spec, "status": "completed", "counts": {"requests": total},
                "target": {"base_url": "http://127.0.0.1:8000/v1", "model": "bench-model"}}
    if targets > 1:
        manifest["targets"] = {f"target-{k}": {"model": "bench-model", "price": {"input_per_mtok": 1.0 + k,
                                                                             "output_per_mtok": 4.0 + k}}
                               for k in range(targets)}
    (run_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


_MEASURE = """
import resource, sys, time
t = time.perf_counter()
from harness.report import build_report  # imports are part of what a user waits for
build_report([sys.argv[1]], sys.argv[2])
usage = resource.getrusage(resource.RUSAGE_SELF)
print(time.perf_counter() - t, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--tokens", type=int, default=8, help="tokens with logprobs per row")
    parser.add_argument("--top", type=int, default=5, help="top_logprobs per token")
    parser.add_argument("--targets", type=int, default=1, help="targets the rows are split over")
    parser.add_argument("--keep", type=Path, help="write the run directory here (and reuse it if present)")
    parser.add_argument("--run", type=Path, help="an existing run directory to report on (no generation)")
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run or args.keep or Path(tmp) / "run"
        if not (run_dir / "manifest.json").exists():
            t = time.perf_counter()
            generate(run_dir, args.rows, args.tokens, args.top, args.targets)
            size = sum(f.stat().st_size for f in (run_dir / "results").glob("*.parquet")) / 2**20
            print(f"generated {run_dir} in {time.perf_counter() - t:.1f} s ({size:.0f} MiB Parquet)")
        result = subprocess.run([sys.executable, "-c", _MEASURE, str(run_dir), str(args.out)],
                                capture_output=True, text=True, check=False)
        if result.returncode:
            print(result.stderr, file=sys.stderr)
            return 1
        seconds, cpu, peak_mib = (float(v) for v in result.stdout.split()[-3:])
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in sorted((run_dir / "results").glob("*.parquet")))
        shape = "" if args.run else f" ({args.tokens} tokens × {args.top} top_logprobs each)"
        print(f"report of {rows:,} rows{shape}: {seconds:.2f} s wall, {cpu:.2f} s CPU (imports included), "
              f"peak RSS {peak_mib:.0f} MiB -> {args.out}")
        print(f"machine load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
