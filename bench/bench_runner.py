"""Benchmarks of the sweep runner. Each figure is a ratio taken within one run of this script.

    python bench/bench_runner.py            # all four
    python bench/bench_runner.py --only a   # one of a, b, c, d

(a) `harness run` end to end (a subprocess: start-up, planning, journaling, compaction included)
    vs a minimal raw aiohttp loop sending the same bodies to the same `harness serve`, same
    concurrency; runs are interleaved and the median ratio of throughputs reported. Goal >= 0.5.
(b) against a server answering after 100 ms, concurrency 64: the ceiling is 640 req/s; the
    sweep's throughput (rows / (last answer - first send), from the run's own rows) vs that.
    The server here is a canned-answer aiohttp server in its own process: `harness serve`
    itself tops out near 350 req/s on one core, below the ceiling being measured. Goal >= 95%.
(c) peak RSS of a 200,000-request sweep (canned server, no latency, logprobs in every
    answer), sampled from /proc every 0.25 s, and RSS at 10/50/90% of the time. Goal <= 300 MB, flat.
(d) the hot path alone, in one process: the engine (client, parse, row, journal append) vs a
    raw aiohttp loop, same bodies and server; req/s and CPU per request. Goal >= 0.9.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import free_port, start_serve

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-key-not-secret"
ENV = {**os.environ, "BENCH_KEY": KEY, "PYTHONPATH": str(ROOT)}

CANNED = {
    "id": "c",
    "object": "chat.completion",
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Paris is the capital"},
            "finish_reason": "length",
            "logprobs": {
                "content": [
                    {"token": t, "logprob": -0.1 * i, "top_logprobs": [{"token": t, "logprob": -0.1 * i}, {"token": "x", "logprob": -3.0}]}
                    for i, t in enumerate(["Paris", " is", " the", " capital"])
                ]
            },
        }
    ],
    "usage": {"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24},
}


def canned_server(port: int, latency_s: float) -> None:
    """A server that answers every chat completion with the same body after `latency_s`."""
    import orjson
    from aiohttp import web

    payload = orjson.dumps(CANNED)

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        if latency_s:
            await asyncio.sleep(latency_s)
        return web.Response(body=payload, content_type="application/json")

    try:  # the server must not be what is measured
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    print("ready", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, backlog=2048)


def start_canned(latency_s: float) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--canned-server", str(port), "--latency", str(latency_s)],
        stdout=subprocess.PIPE, text=True, env=ENV,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    time.sleep(0.3)
    return proc, f"http://127.0.0.1:{port}/v1"


def write_spec(folder: Path, base_url: str, model: str, *, prompts: int, temps: int, repeats: int, concurrency: int) -> Path:
    data = folder / "prompts.jsonl"
    with data.open("w") as fh:
        for i in range(prompts):
            fh.write(json.dumps({"id": f"q{i}", "prompt": f"Country: France\nCapital: Paris\n\nCountry: Land{i}\nCapital:"}) + "\n")
    spec = {
        "name": "bench",
        "target": {"base_url": base_url, "model": model, "api_key_env": "BENCH_KEY"},
        "dataset": {"path": str(data)},
        "params": {"max_tokens": 4, "logprobs": True, "top_logprobs": 2},
        "sweep": {"grid": {"temperature": [round(0.1 * t, 1) for t in range(temps)]}, "repeats": repeats},
        "runner": {"concurrency": concurrency, "timeout_s": 30},
    }
    path = folder / "spec.json.yaml"
    path.write_text(json.dumps(spec))
    return path


def bodies_of(spec_path: Path) -> list[bytes]:
    """The exact bodies `harness run` sends, encoded once (the raw loop pays nothing for building)."""
    import orjson

    from harness.runner.body import build_body
    from harness.spec.datasets import load_prompts
    from harness.spec.grid import expand_points, plan_requests
    from harness.spec.sweepspec import load_spec

    spec = load_spec(spec_path, env=ENV)
    return [orjson.dumps(build_body(spec, p)) for p in plan_requests(spec, expand_points(spec), load_prompts(spec))]


async def raw_loop(url: str, bodies: list[bytes], concurrency: int) -> float:
    """Minimal aiohttp client: `concurrency` workers, read the body, parse it. Returns seconds."""
    import aiohttp
    import orjson

    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        it = iter(bodies)

        async def worker() -> None:
            for body in it:
                async with session.post(url + "/chat/completions", data=body) as response:
                    orjson.loads(await response.read())

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - t0


def harness_run(spec: Path, out: Path, extra_env: dict[str, str] | None = None) -> tuple[float, Path, int]:
    """`harness run` as a user runs it; returns (wall seconds, run dir, peak RSS in kB)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(spec), "--out", str(out), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**ENV, **(extra_env or {})}, cwd=ROOT,
    )
    out_text, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"harness run failed ({proc.returncode}): {err}")
    return wall, Path(out_text.strip().splitlines()[-1]), 0


def bench_a(tmp: Path, pairs: int) -> None:
    server, url = start_serve("--api-key-env", "BENCH_KEY", env=ENV)
    try:
        spec = write_spec(tmp, url, "harness/ngram", prompts=200, temps=5, repeats=20, concurrency=64)
        bodies = bodies_of(spec)
        asyncio.run(raw_loop(url, bodies[:2000], 64))  # warm the server's caches for both
        ratios, steady = [], []
        for i in range(pairs):
            raw_s = asyncio.run(raw_loop(url, bodies, 64))
            run_s, run_dir, _ = harness_run(spec, tmp / "runs")
            rate, _ = sweep_rate(run_dir)
            ratios.append(raw_s / run_s)
            steady.append(rate * raw_s / len(bodies))
            print(f"  (a) pair {i + 1}: raw {len(bodies) / raw_s:6.1f} req/s   harness run {len(bodies) / run_s:6.1f} req/s "
                  f"end to end ({run_s:.1f} s), {rate:6.1f} req/s while sending   ratio {raw_s / run_s:.2f} "
                  f"(sending only {steady[-1]:.2f})")
        print(f"(a) harness run / raw aiohttp loop, {len(bodies)} requests, concurrency 64: "
              f"median ratio {statistics.median(ratios):.2f} end to end (goal >= 0.5), "
              f"{statistics.median(steady):.2f} while sending (start-up and compaction excluded)")
    finally:
        server.terminate()


def sweep_rate(run_dir: Path) -> tuple[float, int]:
    import pandas as pd

    df = pd.read_parquet(run_dir / "results", columns=["started_at", "latency_s", "attempts", "status"])
    start = df.started_at.min()
    end = (df.started_at + pd.to_timedelta(df.latency_s, unit="s")).max()
    return len(df) / (end - start).total_seconds(), int((df.status == "ok").sum())


def bench_b(tmp: Path) -> None:
    server, url = start_canned(0.100)
    try:
        spec = write_spec(tmp, url, "m", prompts=64, temps=5, repeats=20, concurrency=64)  # 6,400 requests
        bodies = bodies_of(spec)
        raw_rate = len(bodies) / asyncio.run(raw_loop(url, bodies, 64))
        wall, run_dir, _ = harness_run(spec, tmp / "runs")
        rate, ok = sweep_rate(run_dir)
        import pandas as pd

        latency = pd.read_parquet(run_dir / "results", columns=["latency_s"]).latency_s
        print(f"    (b) attempt latency seen by harness: median {latency.median() * 1000:.1f} ms, "
              f"p90 {latency.quantile(0.9) * 1000:.1f} ms (server sleeps 100 ms)")
        print(f"(b) 100 ms server latency, concurrency 64: {rate:.1f} req/s over the sweep = {rate / 640:.1%} of 640 req/s "
              f"(goal >= 95%); {ok} ok; end to end {wall:.1f} s incl. start-up; the raw aiohttp loop reached "
              f"{raw_rate:.1f} req/s = {raw_rate / 640:.1%} of 640 in the same conditions (harness/raw {rate / raw_rate:.2f})")
    finally:
        server.terminate()


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rows_so_far(runs: Path) -> int:
    total = 0
    for seg in runs.glob("*/journal/seg-*.jsonl"):
        try:
            total += seg.stat().st_size
        except OSError:
            pass
    return total


def bench_c(tmp: Path, requests: int) -> None:
    server, url = start_canned(0.0)
    try:
        prompts = requests // (10 * 20)
        spec = write_spec(tmp, url, "m", prompts=prompts, temps=10, repeats=20, concurrency=64)
        runs = tmp / "runs-c"
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness", "run", str(spec), "--out", str(runs), "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV, cwd=ROOT,
        )
        samples: list[tuple[float, int]] = []
        while proc.poll() is None:
            samples.append((time.perf_counter() - t0, rss_kb(proc.pid)))
            time.sleep(0.25)
        out, _ = proc.communicate()
        run_dir = Path(out.strip().splitlines()[-1])
        manifest = json.loads((run_dir / "manifest.json").read_text())
        wall = time.perf_counter() - t0
        peak = max(kb for _, kb in samples)
        marks = []
        for frac in (0.1, 0.5, 0.9):
            at = [kb for t, kb in samples if t >= frac * wall]
            marks.append(at[0] / 1024 if at else 0.0)
        print(f"(c) {manifest['counts']['requests']:,} requests ({manifest['counts']['ok']:,} ok) in {wall:.0f} s: "
              f"peak RSS {peak / 1024:.0f} MB (goal <= 300 MB); RSS at 10/50/90% of the time "
              f"{marks[0]:.0f} / {marks[1]:.0f} / {marks[2]:.0f} MB")
    finally:
        server.terminate()


def bench_d(tmp: Path, requests: int = 8000, rounds: int = 3, profile: bool = False) -> None:
    """The hot path alone, in one process: the engine (body, client, parse, row, journal append,
    pacing, retry wrapper) vs a raw aiohttp loop, same bodies, same canned server, concurrency 64,
    rounds interleaved; CPU per request from process_time."""
    import orjson

    from harness.client import ChatClient, ClientConfig
    from harness.rundir.store import RunStore
    from harness.runner.body import BodyBuilder, build_body
    from harness.runner.dispatch import Engine, EngineConfig, Stats
    from harness.spec.datasets import load_prompts
    from harness.spec.grid import expand_points, plan_requests
    from harness.spec.sweepspec import load_spec

    server, url = start_canned(0.0)
    try:
        spec_path = write_spec(tmp, url, "m", prompts=requests // 20, temps=1, repeats=20, concurrency=64)
        spec = load_spec(spec_path, env=ENV)
        plans = list(plan_requests(spec, expand_points(spec), load_prompts(spec)))

        async def raw() -> tuple[float, float]:
            bodies = [build_body(spec, p) for p in plans]
            import aiohttp

            headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64), headers=headers) as session:
                it = iter(bodies)

                async def worker() -> None:
                    for body in it:
                        async with session.post(url + "/chat/completions", data=orjson.dumps(body)) as response:
                            orjson.loads(await response.read())["choices"][0]["message"]["content"]

                t0, c0 = time.perf_counter(), time.process_time()
                await asyncio.gather(*(worker() for _ in range(64)))
                return time.perf_counter() - t0, time.process_time() - c0

        async def engine(round_: int) -> tuple[float, float]:
            store = RunStore(tmp / f"run-{round_}")
            async def sink(row: dict[str, object]) -> None:
                store.append(row)

            config = ClientConfig(base_url=url, api_key=KEY, pool_size=64)
            async with ChatClient(config) as client:
                eng = Engine(client, BodyBuilder(spec), sink, EngineConfig(run_id="b", concurrency=64), Stats(total=len(plans)))
                t0, c0 = time.perf_counter(), time.process_time()
                await eng.run(plans)
                took = time.perf_counter() - t0, time.process_time() - c0
            store.flush()
            return took

        try:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        except ImportError:
            pass
        asyncio.run(raw())  # warm-up
        ratios = []
        for round_ in range(rounds):
            raw_s, raw_cpu = asyncio.run(raw())
            if profile and round_ == rounds - 1:
                import cProfile
                import pstats

                prof = cProfile.Profile()
                prof.enable()
            eng_s, eng_cpu = asyncio.run(engine(round_))
            if profile and round_ == rounds - 1:
                prof.disable()
                pstats.Stats(prof).sort_stats("tottime").print_stats(25)
            ratios.append(raw_s / eng_s)
            n = len(plans)
            print(f"  (d) round {round_ + 1}: raw {n / raw_s:6.0f} req/s {raw_cpu / n * 1e6:4.0f} us CPU/request   "
                  f"engine {n / eng_s:6.0f} req/s {eng_cpu / n * 1e6:4.0f} us CPU/request   ratio {raw_s / eng_s:.2f}")
        print(f"(d) engine / raw aiohttp loop in one process, {len(plans)} requests, concurrency 64: "
              f"median ratio {statistics.median(ratios):.2f} (goal >= 0.9)")
    finally:
        server.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["a", "b", "c", "d"])
    parser.add_argument("--pairs", type=int, default=3, help="(a) interleaved raw/harness pairs")
    parser.add_argument("--requests", type=int, default=200_000, help="(c) sweep size")
    parser.add_argument("--profile", action="store_true", help="(d) cProfile the last engine round")
    parser.add_argument("--canned-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--latency", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.canned_server:
        canned_server(args.canned_server, args.latency)
        return
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        if args.only in (None, "a"):
            bench_a(tmp, args.pairs)
        if args.only in (None, "b"):
            bench_b(tmp)
        if args.only in (None, "c"):
            bench_c(tmp, args.requests)
        if args.only in (None, "d"):
            bench_d(tmp, profile=args.profile)


if __name__ == "__main__":
    main()
