"""Benchmark of the embedded model (llama.cpp + Gemma 3 270M): prints its figures.

    python bench/bench_local.py                # adapter speed + quickstart wall time
    python bench/bench_local.py --no-quickstart

Measures, in this process (no HTTP): model load time; tokens/s of sampled generation without
logprobs and with top_logprobs=5 (harness's sampler, a partial sort over the 262k-token
vocabulary); per-token time with 1 and 2 llama.cpp threads; prompt evaluation with and without
the KV-cache prefix re-use. Then `harness run sweeps/quickstart.yaml` + `harness report`
end to end (model start and stop included) as a user would run them.
Note the load of the machine (printed): llama.cpp is very sensitive to other busy processes.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.localmodel.llama import LlamaModel, load  # noqa: E402
from harness.server.generate import Generation  # noqa: E402
from harness.server.sampler import SamplingParams  # noqa: E402

STORY = [{"role": "user", "content": "Once upon a time, in a small village by the sea,"}]


def _capitals() -> list[list[dict]]:
    rows = [json.loads(line) for line in (ROOT / "datasets" / "capitals.jsonl").read_text().splitlines() if line]
    return [[{"role": "user", "content": row["prompt"]}] for row in rows]


def tokens_per_s(model: LlamaModel, top_logprobs: int, tokens: int = 48, rounds: int = 3) -> float:
    """Sampled generation speed (temperature 0.8), best of `rounds`, prompt excluded."""
    params = SamplingParams(temperature=0.8, logprobs=top_logprobs > 0, top_logprobs=top_logprobs)
    prompt = model.render_chat(STORY)
    best = 0.0
    for seed in range(rounds):
        gen = Generation(model, prompt, params, seed=seed, max_tokens=tokens)
        gen.step()  # the prompt is evaluated at the first step: not counted
        start, count = time.perf_counter(), 0
        while gen.finish_reason is None:
            gen.step()
            count += 1
        best = max(best, count / (time.perf_counter() - start))
    return best


def prompt_ms(model: LlamaModel, prompts: list[list[int]], reuse: bool) -> float:
    """Mean time to the first logits of each prompt (ms), with or without the prefix cache."""
    start = time.perf_counter()
    for ids in prompts:
        if not reuse:
            model._llm.reset()
            model._evaluated = -1
        model.start(ids).logits()
    return (time.perf_counter() - start) / len(prompts) * 1000


def bench_adapter(threads: list[int]) -> None:
    for n in threads:
        start = time.perf_counter()
        model = load("gemma-3-270m", n_threads=n)
        loaded = time.perf_counter() - start
        prompts = [model.render_chat(m) for m in _capitals()[:12]]
        print(f"threads={n}: load {loaded:.2f} s")
        print(f"  tokens/s without logprobs        {tokens_per_s(model, 0):7.1f}")
        print(f"  tokens/s with top_logprobs=5     {tokens_per_s(model, 5):7.1f}")
        print(f"  capitals prompt, prefix re-used  {prompt_ms(model, prompts, True):7.1f} ms")
        print(f"  capitals prompt, from scratch    {prompt_ms(model, prompts, False):7.1f} ms")
        model.close()


def bench_quickstart() -> None:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "harness", "run", "sweeps/quickstart.yaml", "--out", out,
                              "--quiet"], cwd=ROOT, capture_output=True, text=True)
        ran = time.perf_counter() - start
        if run.returncode != 0:
            print(f"quickstart run failed ({run.returncode}): {run.stderr.strip()[-500:]}")
            return
        run_dir = run.stdout.strip().splitlines()[-1]
        report = subprocess.run([sys.executable, "-m", "harness", "report", run_dir, "--out", f"{out}/report"],
                                cwd=ROOT, capture_output=True, text=True)
        total = time.perf_counter() - start
        import pandas as pd

        rows = pd.read_parquet(Path(run_dir) / "results")
        print(f"quickstart: {len(rows)} requests, {int(rows.completion_tokens.sum())} completion tokens, "
              f"run {ran:.1f} s, run+report {total:.1f} s (report exit {report.returncode})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-quickstart", action="store_true")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    bench_adapter(args.threads)
    if not args.no_quickstart:
        bench_quickstart()
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
