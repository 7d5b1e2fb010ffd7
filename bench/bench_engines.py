"""The embedded model's engines side by side on the quickstart's 180 requests; prints a table.

    python bench/bench_engines.py                       # every installed engine, concurrency 1 and 4
    python bench/bench_engines.py --engines native --concurrency 1 4

Engines (each a server process on 127.0.0.1, the same requests over HTTP):
  native        harness's front + llama.cpp's server loop via the prebuilt xllamacpp wheel ([local]),
                as many slots as the concurrency
  compiled      harness serve's app + harness's numpy sampler over llama-cpp-python ([local-compiled])
  llama-server  llama-cpp-python's own server (`python -m llama_cpp.server`, needs
                `pip install 'llama-cpp-python[server]'`), `/v1/completions` with the same prompt text

The requests are the quickstart's (sweeps/quickstart.yaml): 12 capitals prompts x (temperature,
min_p) cells x 3 repeats, max_tokens 8, stop "\\n", top_logprobs 3, seeds 0-2. Figures: wall time,
completion tokens/s over the whole batch, the server's CPU seconds (tokens per CPU-second is
steadier than wall time on a busy machine), peak RSS of the server, and parity against the first
configuration run: identical greedy answers, the largest logprob difference on the greedy tokens,
and how many seeded samples differ (same engine: batching changes the kernels' float rounding,
which flips near-ties). The load average is printed: on a shared machine the figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.localmodel import process as local  # noqa: E402 (after the sys.path line above)

CELLS = [(0.0, 0.0), (0.8, 0.0), (0.8, 0.2), (1.6, 0.0), (1.6, 0.2)]  # quickstart grid less its exclusion
REPEATS = 3


@dataclass(frozen=True)
class Request:
    prompt_id: str
    prompt: str
    temperature: float
    min_p: float
    seed: int


@dataclass
class Outcome:
    request: Request
    text: str
    completion_tokens: int
    tokens: list[str]
    logprobs: list[float]


def quickstart_requests(limit: int = 12) -> list[Request]:
    rows = [json.loads(line) for line in (ROOT / "datasets" / "capitals.jsonl").read_text().splitlines() if line]
    return [Request(row["id"], row["prompt"], t, m, seed)
            for t, m in CELLS for row in rows[:limit] for seed in range(REPEATS)]


def _sampling(r: Request) -> dict[str, Any]:
    return {"temperature": r.temperature, "min_p": r.min_p, "seed": r.seed, "max_tokens": 8, "stop": ["\n"]}


def ask_chat(client: httpx.Client, base_url: str, model: str, r: Request) -> Outcome:
    body = {"model": model, "messages": [{"role": "user", "content": r.prompt}], "logprobs": True,
            "top_logprobs": 3, **_sampling(r)}
    reply = client.post(f"{base_url}/chat/completions", json=body).raise_for_status().json()
    choice = reply["choices"][0]
    content = (choice.get("logprobs") or {}).get("content") or []
    return Outcome(r, choice["message"]["content"], reply["usage"]["completion_tokens"],
                   [t["token"] for t in content], [t["logprob"] for t in content])


def ask_completion(client: httpx.Client, base_url: str, model: str, r: Request) -> Outcome:
    body = {"model": model, "prompt": r.prompt, "logprobs": 3, "top_k": 0, "top_p": 1.0, "repeat_penalty": 1.0,
            **_sampling(r)}
    reply = client.post(f"{base_url}/completions", json=body).raise_for_status().json()
    choice = reply["choices"][0]
    lp = choice.get("logprobs") or {}
    return Outcome(r, choice["text"], reply["usage"]["completion_tokens"], list(lp.get("tokens") or []),
                   [float(x) for x in lp.get("token_logprobs") or []])


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by process `pid` and its threads."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def _peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


@contextmanager
def harness_endpoint(engine: str, slots: int) -> Iterator[tuple[str, int]]:
    os.environ["HARNESS_LOCAL_ENGINE"] = engine
    try:
        with local.local_endpoint(reuse=False, slots=slots if engine == "native" else None) as ep:
            yield ep.base_url, ep.pid
    finally:
        os.environ.pop("HARNESS_LOCAL_ENGINE", None)


@contextmanager
def llama_cpp_server() -> Iterator[tuple[str, int]]:
    import socket

    from harness.localmodel.gguf import gguf_path
    from harness.localmodel.llama import default_threads

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    threads = str(default_threads())
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path()),
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096",
                             "--n_threads", threads, "--n_threads_batch", threads,
                             "--model_alias", "gemma-3-270m"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while not local.answers(base_url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("llama_cpp.server did not start (pip install 'llama-cpp-python[server]')")
            time.sleep(0.3)
        yield base_url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run(engine: str, concurrency: int, requests: list[Request]) -> tuple[dict[str, Any], list[Outcome]]:
    endpoint = llama_cpp_server() if engine == "llama-server" else harness_endpoint(engine, concurrency)
    ask = ask_completion if engine == "llama-server" else ask_chat
    with endpoint as (base_url, pid), httpx.Client(timeout=300) as client:
        ask(client, base_url, "gemma-3-270m", requests[0])  # warm-up, not counted
        cpu_before, start = _cpu_s(pid), time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            outcomes = list(pool.map(lambda r: ask(client, base_url, "gemma-3-270m", r), requests))
        wall = time.perf_counter() - start
        cpu = _cpu_s(pid) - cpu_before
        rss = _peak_rss_mb(pid)
    tokens = sum(o.completion_tokens for o in outcomes)
    return {"engine": engine, "concurrency": concurrency, "wall_s": wall, "completion_tokens": tokens,
            "tokens_per_s": tokens / wall, "requests_per_s": len(outcomes) / wall, "server_cpu_s": cpu,
            "tokens_per_cpu_s": tokens / cpu if cpu else float("nan"), "peak_rss_mb": rss}, outcomes


def parity(base: list[Outcome], other: list[Outcome]) -> dict[str, Any]:
    greedy = [(a, b) for a, b in zip(base, other, strict=True) if a.request.temperature == 0.0]
    same_greedy = sum(a.text == b.text for a, b in greedy)
    diffs = [abs(x - y) for a, b in greedy if a.tokens == b.tokens for x, y in zip(a.logprobs, b.logprobs)]
    sampled = [(a, b) for a, b in zip(base, other, strict=True) if a.request.temperature > 0.0]
    return {"greedy_same": f"{same_greedy}/{len(greedy)}",
            "max_logprob_diff": max(diffs) if diffs else float("nan"),
            "samples_differ": f"{sum(a.text != b.text for a, b in sampled)}/{len(sampled)}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=["compiled", "native", "llama-server"])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--every", type=int, default=1, help="only every Nth request (a slow engine's sample)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args()
    requests = quickstart_requests()[:: args.every]
    print(f"machine: {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} at start; {len(requests)} requests")
    rows, first = [], None
    for engine in args.engines:
        for concurrency in args.concurrency:
            try:
                row, outcomes = run(engine, concurrency, requests)
            except Exception as exc:
                print(f"{engine} c={concurrency}: skipped ({exc})", flush=True)
                continue
            first = first or outcomes
            row.update(parity(first, outcomes))
            rows.append(row)
            print(f"{engine:13s} c={concurrency}  wall {row['wall_s']:6.1f} s  {row['completion_tokens']:4d} tok  "
                  f"{row['tokens_per_s']:5.1f} tok/s  {row['requests_per_s']:5.2f} req/s  server CPU "
                  f"{row['server_cpu_s']:5.1f} s ({row['tokens_per_cpu_s']:5.1f} tok/CPU-s)  peak RSS "
                  f"{row['peak_rss_mb']:5.0f} MB  greedy same {row['greedy_same']}  max |dlogprob| "
                  f"{row['max_logprob_diff']:.3f}  samples differ {row['samples_differ']}  "
                  f"(load {os.getloadavg()[0]:.2f})", flush=True)
    if len(rows) > 1:
        base = rows[0]
        for row in rows[1:]:
            print(f"ratio {row['engine']} c={row['concurrency']} / {base['engine']} c={base['concurrency']}: "
                  f"{row['tokens_per_s'] / base['tokens_per_s']:.2f}x tokens/s, "
                  f"{row['tokens_per_cpu_s'] / base['tokens_per_cpu_s']:.2f}x tokens per server CPU-second")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
