"""False regressions and power of `harness compare` on real reruns against the reference endpoint.

1. Writes a 200-prompt dataset (128 capital few-shot prompts from the n-gram model's country
   table + 72 arithmetic prompts) and a spec: temperature [0.7, 1.0] × 200 prompts × 3 repeats,
   scoring [exact_match, contains], no `seed` sent (every request samples afresh: a rerun
   is a same-configuration run with other seeds).
2. Starts `harness serve` on a free port and runs the spec 2 × PAIRS times with `harness run`.
3. False regressions: `compare` on each disjoint pair (run 2k vs run 2k+1) with the default
   gate (every scorer metric × cell + the pooled row, Holm, one-sided α 0.05); a pair whose
   comparison fails (exit 1) is a false regression.
4. Power: the same pairs with a 5-point accuracy drop injected into the candidate's rows
   (``forget``: a random q = 0.05 / accuracy of the prompts answer "" in every repeat;
   ``uniform``: each right answer is blanked with probability 0.05 / accuracy), for one cell
   (temperature 0.7: 200 prompts × 3 repeats) and for the whole run.

Prints its figures. Run: ``python bench/bench_compare_reruns.py --pairs 40`` (about 10 min).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from _common import free_port

from harness.compare import CompareOptions, compare_runs
from harness.rundir.results import Run, load_run
from harness.server.corpus import load_countries

FEWSHOT = "Country: France\nCapital: Paris\n\nCountry: Japan\nCapital: Tokyo\n\nCountry: Kenya\nCapital: Nairobi\n\n"


def write_dataset(path: Path, size: int, rng: np.random.Generator) -> None:
    """Capital prompts for every shipped country, then arithmetic prompts, `size` in all."""
    rows = [
        {"id": f"cap-{i:03d}", "prompt": f"{FEWSHOT}Country: {c.name}\nCapital:", "reference": c.capital}
        for i, c in enumerate(load_countries())
    ]
    i = 0
    while len(rows) < size:
        a, b = (int(x) for x in rng.integers(1, 13, 2))
        op = "+-*"[i % 3]
        value = {"+": a + b, "-": a - b, "*": a * b}[op]
        rows.append({"id": f"ar-{i:03d}", "prompt": f"2 + 3 = 5\n10 - 4 = 6\n3 * 4 = 12\n{a} {op} {b} =",
                     "reference": str(value)})
        i += 1
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:size]), encoding="utf-8")


SPEC = """name: compare-reruns
target: {{base_url: "http://127.0.0.1:{port}/v1", model: harness/ngram}}
dataset: {{path: {dataset}}}
params: {{max_tokens: 8, stop: ["\\n"]}}
sweep:
  grid: {{temperature: [{temps}]}}
  repeats: {repeats}
runner: {{concurrency: 16, max_attempts: 4, timeout_s: 30}}
scoring: [exact_match, contains]
"""


def start_server(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1).read()
            return proc
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise SystemExit("harness serve did not come up in 60 s")


def run_once(spec: Path, out: Path) -> Path:
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(spec), "--out", str(out), "--quiet"],
        capture_output=True, text=True, check=False,
    )
    if done.returncode not in (0, 1):
        raise SystemExit(f"harness run failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def only_point(run: Run, temperature: float) -> Run:
    df = run.results
    return Run(run.path, run.manifest, df[np.isclose(df["temperature"].astype(float), temperature)])


def inject_drop(run: Run, mode: str, rng: np.random.Generator, drop: float = 0.05) -> Run:
    """The candidate with `drop` less accuracy on average (see the module docstring)."""
    df = run.results.copy()
    right = (df["content"].fillna("").str.strip() == df["reference"].fillna("").str.strip()) & (df["status"] == "ok")
    q = drop / max(float(right.mean()), 1e-9)
    if mode == "forget":
        prompts = df["prompt_id"].unique()
        lost = set(prompts[rng.random(prompts.size) < q])
        hit = df["prompt_id"].isin(lost)
    else:
        hit = right & (rng.random(len(df)) < q)
    df.loc[hit, "content"] = ""
    return Run(run.path, run.manifest, df)


def heterogeneity(run: Run) -> str:
    df = run.results
    right = (df["content"].fillna("").str.strip() == df["reference"].fillna("").str.strip()).astype(float)
    per = right.groupby([df["point_json"], df["prompt_id"]]).mean()
    k = int(df.groupby(["point_json", "prompt_id"]).size().median())
    extreme = float(((per == 0) | (per == 1)).mean())
    return (f"accuracy {right.mean():.3f}; prompts always right or always wrong within a cell: "
            f"{100 * extreme:.0f}%; mean within-prompt variance p(1-p) ≈ {float((per * (1 - per)).mean()) * k / max(k - 1, 1):.3f}")


def make_runs(args: argparse.Namespace, rng: np.random.Generator) -> tuple[list[Path], float]:
    """Write dataset and spec, start `harness serve`, run the spec 2 × pairs times."""
    work = Path(args.keep or tempfile.mkdtemp(prefix="harness-reruns-"))
    work.mkdir(parents=True, exist_ok=True)
    write_dataset(work / "prompts.jsonl", args.prompts, rng)
    port = free_port()
    spec = work / "spec.yaml"
    spec.write_text(
        SPEC.format(port=port, dataset=work / "prompts.jsonl", repeats=args.repeats, temps=args.temps),
        encoding="utf-8",
    )
    server = start_server(port)
    try:
        start = time.perf_counter()
        runs = [run_once(spec, work / "runs") for _ in range(2 * args.pairs)]
        elapsed = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(timeout=10)
    if not args.keep:
        print(f"(runs left in {work}; delete when done)", file=sys.stderr)
    return runs, elapsed


def rate(hits: int, n: int) -> str:
    return f"{100 * hits / n:5.1f}% ({hits}/{n})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=40)
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--temps", default="0.7, 1.0", help="temperatures swept (the one-cell figures use 0.7)")
    ap.add_argument("--drops-per-pair", type=int, default=5, help="independent drop injections per pair")
    ap.add_argument("--keep", metavar="DIR", help="keep the runs in DIR (default: a temporary folder)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--from", dest="from_dir", metavar="DIR", help="analyse the runs kept in DIR by --keep")
    ap.add_argument("--extra-pairs", type=int, default=0,
                    help="also compare this many random distinct pairs of the runs (not independent)")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    if args.from_dir:
        runs = sorted(p for p in (Path(args.from_dir) / "runs").iterdir() if (p / "manifest.json").exists())
        runs = runs[: 2 * args.pairs]
        elapsed = float("nan")
    else:
        runs, elapsed = make_runs(args, rng)
    loaded = [load_run(r) for r in runs]
    print(f"{len(runs)} runs of {len(loaded[0].results)} requests in {elapsed:.0f}s "
          f"({args.prompts} prompts x {args.repeats} repeats x temperature [{args.temps}], harness serve n-gram)")
    print("data:", heterogeneity(loaded[0]))
    pairs = [(loaded[2 * k], loaded[2 * k + 1]) for k in range(args.pairs)]
    multi = len(loaded[0].results) != len(only_point(loaded[0], 0.7).results)
    for permute in ("prompt", "row"):
        print(f"--permute {permute}:")
        analyse(pairs, loaded, CompareOptions(permute=permute), args, rng, multi)


def analyse(pairs: list[tuple[Run, Run]], loaded: list[Run], opts: CompareOptions,
            args: argparse.Namespace, rng: np.random.Generator, multi: bool) -> None:
    """False regressions over the disjoint pairs, then power with injected drops."""
    t0 = time.perf_counter()
    false_one = sum(compare_runs(only_point(a, 0.7), only_point(b, 0.7), opts).failed for a, b in pairs)
    per_compare = (time.perf_counter() - t0) / len(pairs)
    print(f"  false regressions, one cell (T=0.7, 200x3):      {rate(false_one, len(pairs))}"
          f"   [{per_compare:.2f}s per compare]")
    if multi:
        false_all = sum(compare_runs(a, b, opts).failed for a, b in pairs)
        print(f"  false regressions, whole run (cells + pooled):   {rate(false_all, len(pairs))}")
    if args.extra_pairs:
        chosen: set[tuple[int, int]] = set()
        while len(chosen) < min(args.extra_pairs, len(loaded) * (len(loaded) - 1) // 2):
            i, j = sorted(int(x) for x in rng.choice(len(loaded), 2, replace=False))
            chosen.add((i, j))
        extra = sum(compare_runs(loaded[i], loaded[j], opts).failed for i, j in sorted(chosen))
        print(f"  false regressions, {len(chosen)} distinct overlapping pairs: {rate(extra, len(chosen))}")
    draws = [(a, b) for a, b in pairs for _ in range(args.drops_per_pair)]
    for mode in ("forget", "uniform"):
        one = sum(
            compare_runs(only_point(a, 0.7), inject_drop(only_point(b, 0.7), mode, rng), opts).failed
            for a, b in draws
        )
        print(f"  power, 5-point drop ({mode:7s}), one cell:       {rate(one, len(draws))}")
        if multi:
            whole = sum(compare_runs(a, inject_drop(b, mode, rng), opts).failed for a, b in draws)
            print(f"  power, 5-point drop ({mode:7s}), whole run:      {rate(whole, len(draws))}")

if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    main()
