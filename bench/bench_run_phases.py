"""Benchmark: where the time of a whole `harness run` process goes, next to a raw aiohttp loop.

Run: python bench/bench_run_phases.py [-n 4000] [-c 64] [--rounds 5] [--python PY ...]

A canned OpenAI-compatible mock (aiohttp, uvloop when installed) answers every request at once.
Each round runs, interleaved: a raw aiohttp loop (the peers rig's ceiling: N POSTs, C in flight,
JSON parsed) and `harness run SPEC --quiet` with each `--python` given (default: this one; e.g.
two venvs, one with main installed and one with a branch, for a before/after), same spec as the
peers rig (N prompts, one point, max_tokens 64, temperature 0.7, concurrency C).

Printed, median over the rounds: wall and CPU (user+sys, helper process included) of each
process, and for harness the phases on one clock — start (interpreter up) → run path imported →
first request → last answer → run directory finished → process gone — with the main process's
CPU, the finisher helper's CPU and what the exit costs. The phases come from a small wrapper that
times harness's own functions by name (Engine.run, finish_job), so it works across versions.
The load average is printed: on the shared 2-core machine wall time under load is roughly
CPU × load ÷ 2; compare CPU, or runs taken in the same minute.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MOCK = textwrap.dedent("""
    import json, sys, time
    from aiohttp import web
    WORDS = " ".join(["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
                      "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa"])
    BODY = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": "mock-model",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": WORDS},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 8, "completion_tokens": 16, "total_tokens": 24}}).encode()
    stats = {"n": 0, "first": None, "last": None}
    async def chat(request):
        await request.read()
        now = time.perf_counter()
        stats["first"] = stats["first"] or now
        stats["n"] += 1
        stats["last"] = now
        return web.Response(body=BODY, content_type="application/json")
    async def models(request):
        return web.json_response({"object": "list", "data": [{"id": "mock-model", "owned_by": "mock"}]})
    async def get_stats(request):
        window = (stats["last"] - stats["first"]) if stats["first"] else 0.0
        out = {"chat": stats["n"], "window_s": window}
        stats.update(n=0, first=None, last=None)
        return web.json_response(out)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/stats", get_stats)
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
""")

RAW = textwrap.dedent("""
    import asyncio, json, sys
    import aiohttp
    url, n, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    async def main():
        nxt = 0
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c, limit_per_host=c)) as s:
            async def worker():
                nonlocal nxt
                while nxt < n:
                    i = nxt
                    nxt += 1
                    body = {"model": "mock-model", "messages": [{"role": "user", "content": f"Prompt {i}: say something."}],
                            "max_tokens": 64, "temperature": 0.7}
                    async with s.post(url, json=body) as r:
                        json.loads(await r.read())["choices"][0]["message"]["content"]
            await asyncio.gather(*(worker() for _ in range(c)))
    asyncio.run(main())
""")

# Runs `harness run ...` (argv) in this process, timing its phases; writes them as JSON to $PHASES_OUT.
PHASES = textwrap.dedent("""
    import json, os, resource, sys, time
    marks = [("start", time.time(), time.process_time())]
    def mark(name):
        marks.append((name, time.time(), time.process_time()))
    def dump():
        own = resource.getrusage(resource.RUSAGE_SELF)
        helper = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(os.environ["PHASES_OUT"], "w") as fh:
            json.dump({"marks": marks, "cpu_main": own.ru_utime + own.ru_stime,
                       "cpu_helper": helper.ru_utime + helper.ru_stime}, fh)
    import harness.cli as cli
    import harness.cli.run
    import harness.runner.dispatch as dispatch
    import harness.runner.session as session
    mark("imported")
    run_engine, run_one, finish_job = dispatch.Engine.run, dispatch.Engine.run_one, session.finish_job
    last = []
    async def engine_run(self, plans):
        if len(marks) == 2:
            mark("first request")
        return await run_engine(self, plans)
    async def one(self, plan):
        row = await run_one(self, plan)
        last[:] = [(time.time(), time.process_time())]
        return row
    def finish(*args, **kwargs):
        marks.append(("last answer", *last[0]) if last else ("last answer", time.time(), time.process_time()))
        try:
            return finish_job(*args, **kwargs)
        finally:
            mark("finished")
    dispatch.Engine.run, dispatch.Engine.run_one, session.finish_job = engine_run, one, finish
    code = cli.main(sys.argv[1:])
    mark("main returned")
    dump()
    if hasattr(cli, "exit_now"):
        cli.exit_now(code)
    sys.exit(code)
""")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """(wall s, CPU s of the process and its reaped children, exit code)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime, proc.returncode


def window(base: str) -> tuple[int, float]:
    with urllib.request.urlopen(f"{base}/stats", timeout=10) as response:
        stats = json.loads(response.read())
    return int(stats["chat"]), float(stats["window_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=4000)
    parser.add_argument("-c", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--python", action="append", default=[],
                        help="an interpreter with harness importable (repeatable; default: this one, with the repo)")
    args = parser.parse_args()
    pythons = args.python or [sys.executable]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    mock = subprocess.Popen([sys.executable, "-c", MOCK, str(port)])
    try:
        for _ in range(100):
            try:
                window(base)
                break
            except OSError:
                time.sleep(0.1)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            with open(folder / "prompts.jsonl", "w") as out:
                for i in range(args.n):
                    out.write(json.dumps({"id": f"p{i}", "prompt": f"Prompt {i}: say something."}) + "\n")
            spec = folder / "spec.yaml"
            spec.write_text(f"name: phases\ntarget: {{base_url: '{base}/v1', model: mock-model}}\n"
                            f"dataset: {{path: prompts.jsonl}}\nparams: {{max_tokens: 64, temperature: 0.7}}\n"
                            f"runner: {{concurrency: {args.c}}}\n")
            results: dict[str, list[dict[str, float]]] = {"raw": [], **{p: [] for p in pythons}}
            loads = []
            for _ in range(args.rounds):
                loads.append(os.getloadavg()[0])
                wall, cpu, code = timed([sys.executable, "-c", RAW, f"{base}/v1/chat/completions", str(args.n), str(args.c)])
                seen, win = window(base)
                results["raw"].append({"wall": wall, "cpu": cpu, "win": win, "ok": float(code == 0 and seen == args.n)})
                for py in pythons:
                    env = {**os.environ, "PHASES_OUT": str(folder / "phases.json")}
                    if py == sys.executable:
                        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
                    wall, cpu, code = timed([py, "-c", PHASES, "run", str(spec), "--out", str(folder / "runs"), "--quiet"], env)
                    seen, win = window(base)
                    got = json.loads((folder / "phases.json").read_text())
                    t0 = got["marks"][0][1] - 0.0
                    row = {"wall": wall, "cpu": cpu, "win": win, "ok": float(code == 0 and seen >= args.n),
                           "cpu_main": got["cpu_main"], "cpu_helper": got["cpu_helper"],
                           "cpu_exit": cpu - got["cpu_main"] - got["cpu_helper"]}
                    for name, at, _cpu in got["marks"][1:]:
                        row[f"t {name}"] = at - t0
                    results[py].append(row)
        med = {k: {f: statistics.median(r[f] for r in rows) for f in rows[0]} for k, rows in results.items()}
        print(f"# bench_run_phases: N={args.n} C={args.c} rounds={args.rounds} load(1 min) "
              f"{min(loads):.2f}-{max(loads):.2f} cores={os.cpu_count()}; medians")
        raw = med["raw"]
        print(f"raw aiohttp loop: wall {raw['wall']:.3f} s, CPU {raw['cpu']:.3f} s, window {raw['win']:.3f} s, "
              f"outside the window {raw['wall'] - raw['win']:.3f} s (all ok: {all(r['ok'] for r in results['raw'])})")
        for py in pythons:
            m = med[py]
            print(f"harness ({py}): wall {m['wall']:.3f} s, CPU {m['cpu']:.3f} s (main {m['cpu_main']:.3f}, "
                  f"helper {m['cpu_helper']:.3f}, exit {m['cpu_exit']:.3f}), window {m['win']:.3f} s, "
                  f"outside the window {m['wall'] - m['win']:.3f} s; x_raw {raw['wall'] / m['wall']:.3f} "
                  f"(window {raw['win'] / m['win']:.3f}) (all ok: {all(r['ok'] for r in results[py])})")
            steps = [k for k in m if k.startswith("t ")]
            previous = 0.0
            parts = []
            for step in steps:
                parts.append(f"{step[2:]} +{m[step] - previous:.3f}")
                previous = m[step]
            print("    phases (s after the interpreter is up): " + ", ".join(parts) + f", exit +{m['wall'] - previous:.3f} "
                  "(the last includes the interpreter's start)")
    finally:
        mock.terminate()
        mock.wait(timeout=10)


if __name__ == "__main__":
    main()
