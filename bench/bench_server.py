"""Throughput of `harness serve`: small requests per second on one server process (one core).

Starts `python -m harness serve --port 0` pinned to CPU 0 and drives it from this process
(pinned to CPU 1 when there is one) over many keep-alive connections with a minimal raw
HTTP/1.1 client (so the load generator is not the bottleneck). Prints one line per scenario:
requests per wall-clock second, and requests per CPU-second of the server process (the figure
that does not depend on what else the machine is doing).

    python bench/bench_server.py [--requests 20000] [--connections 256] [--max-tokens 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time

import orjson

# "Once upon a time" continues for 12 tokens, so max_tokens=8 really generates 8 tokens.
SCENARIOS = {
    "json max_tokens=8": {"max_tokens": 8},
    "json max_tokens=1": {"max_tokens": 1},
    "json max_tokens=8 logprobs top5": {"max_tokens": 8, "logprobs": True, "top_logprobs": 5},
    "stream max_tokens=8 usage": {"max_tokens": 8, "stream": True, "stream_options": {"include_usage": True}},
}


def _request(host: str, port: int, extra: dict) -> bytes:
    body = orjson.dumps(
        {"model": "harness/ngram", "messages": [{"role": "user", "content": "Once upon a time"}], **extra}
    )
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer bench\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one response (Content-Length or chunked); return the status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                return status
    start = lower.index(b"content-length:") + 15
    await reader.readexactly(int(lower[start : lower.index(b"\r\n", start)]))
    return status


async def _load(host: str, port: int, payload: bytes, total: int, connections: int) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    remaining = total

    async def worker() -> None:
        nonlocal remaining, errors
        reader, writer = await asyncio.open_connection(host, port)
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            writer.write(payload)
            if await _read_response(reader) != 200:
                errors += 1
            latencies.append(time.perf_counter() - t0)
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - start, latencies, errors


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), 0.0 elsewhere."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_FLOOR = """
import socket, sys, orjson, uvloop
from aiohttp import web
async def h(request):
    body = orjson.loads(await request.read())
    return web.Response(body=orjson.dumps({"ok": len(body)}), headers={"Content-Type": "application/json"})
app = web.Application()
app.router.add_post("/v1/chat/completions", h)
sock = socket.socket(); sock.bind(("127.0.0.1", 0)); sock.listen(2048)
print(f"http://127.0.0.1:{sock.getsockname()[1]}/v1", flush=True)
uvloop.install()
web.run_app(app, sock=sock, access_log=None, print=None)
"""


def _start_server(floor: bool = False) -> tuple[subprocess.Popen, str, int]:
    cmd = [sys.executable, "-m", "harness", "serve", "--port", "0", "--api-key-env", "BENCH_KEY", "--seed", "1"]
    if floor:  # a trivial aiohttp handler: what the HTTP stack alone costs
        cmd = [sys.executable, "-c", _FLOOR]
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        cmd = ["taskset", "-c", "0", *cmd]
    env = {**os.environ, "BENCH_KEY": "bench"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert proc.stdout is not None
    base_url = proc.stdout.readline().strip()
    hostport = base_url.split("//", 1)[1].split("/", 1)[0]
    host, port = hostport.rsplit(":", 1)
    return proc, host, int(port)


def sampler_figures(vocab: int = 262_144, steps: int = 40) -> None:
    """Milliseconds per `Sampler.step` on a Gemma-sized vocabulary (fresh, writable logits)."""
    import numpy as np

    from harness.server.sampler import Sampler, SamplingParams

    rng = np.random.default_rng(0)
    peaked = (rng.gumbel(size=vocab) * 2.5).astype(np.float32)  # LM-like: a few likely tokens
    flat = rng.standard_normal(vocab).astype(np.float32)  # worst case for top_p
    cases = {
        "greedy": SamplingParams(temperature=0.0),
        "temperature 1": SamplingParams(),
        "T0.7 top_p 0.95": SamplingParams(temperature=0.7, top_p=0.95),
        "T1 top_k 40 min_p 0.05": SamplingParams(top_k=40, min_p=0.05),
        "T1 + penalties + top5 logprobs": SamplingParams(frequency_penalty=0.5, presence_penalty=0.5, logprobs=True, top_logprobs=5),
    }
    for name, params in cases.items():
        figures = []
        for logits in (peaked, flat):
            sampler = Sampler(params, 1)
            start = time.perf_counter()
            for i in range(steps):
                sampler.step(logits, [i, i + 1, i])
            figures.append((time.perf_counter() - start) / steps * 1000)
        print(f"sampler {vocab} vocab  {name:32s} {figures[0]:7.2f} ms/step peaked  {figures[1]:7.2f} ms/step flat")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=256)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    t0 = time.perf_counter()
    proc, host, port = _start_server()
    print(f"server ready in {time.perf_counter() - t0:.2f} s (process start + model build), pinned to CPU 0")
    try:
        for name, extra in SCENARIOS.items():
            _scenario(name, extra, proc, host, port, args)
    finally:
        proc.terminate()
        proc.wait(10)
    proc, host, port = _start_server(floor=True)
    try:
        _scenario("floor: trivial aiohttp handler", {"max_tokens": 8}, proc, host, port, args)
    finally:
        proc.terminate()
        proc.wait(10)
    sampler_figures()


def _scenario(name: str, extra: dict, proc: subprocess.Popen, host: str, port: int, args: argparse.Namespace) -> None:
    """Warm up, then one measured run; prints one line."""
    payload = _request(host, port, extra)
    asyncio.run(_load(host, port, payload, min(2000, args.requests), 64))  # warm-up
    cpu = _cpu_seconds(proc.pid)
    elapsed, lat, errors = asyncio.run(_load(host, port, payload, args.requests, args.connections))
    cpu = _cpu_seconds(proc.pid) - cpu
    lat.sort()
    p50, p99 = statistics.median(lat) * 1000, lat[int(len(lat) * 0.99)] * 1000
    per_cpu = f"{args.requests / cpu:8.0f} req per server CPU-second" if cpu > 0 else ""
    print(
        f"{name:34s} {args.requests / elapsed:8.0f} req/s wall  {per_cpu}  {args.connections} conns  "
        f"p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  errors {errors}"
    )


if __name__ == "__main__":
    main()
