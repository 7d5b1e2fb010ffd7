"""A sweep the server refuses throughout: seconds to stop and requests sent, with the preflight
and with the breaker alone (--no-preflight); then the resume once the server is fixed.

    python bench/bench_refused.py [--requests 6000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from aiohttp import web

from harness.server.app import ServerThread, reference_app
from harness.server.misbehave import Misbehaviour


def counted_app(refuse: list[str]) -> tuple[web.Application, list[int]]:
    app = reference_app(seed=0, misbehaviour=Misbehaviour.parse(refuse=refuse, refuse_status=500) if refuse else None)
    seen = [0]

    async def count(request: web.Request, _response: web.StreamResponse) -> None:
        if request.path.endswith("/chat/completions"):
            seen[0] += 1

    app.on_response_prepare.append(count)
    return app, seen


def spec_file(folder: Path, base_url: str, requests: int) -> Path:
    prompts = requests // 60
    (folder / "p.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"The capital of {i} is"}) + "\n" for i in range(prompts)))
    spec = {"name": "refused", "target": {"base_url": base_url, "model": "harness/ngram"}, "dataset": {"path": "p.jsonl"},
            "params": {"max_tokens": 3}, "sweep": {"grid": {"temperature": [0.0, 1.0], "top_k": [-1, 1, 5]}, "repeats": 10},
            "runner": {"concurrency": 4}}  # fmt: skip
    (folder / "s.yaml").write_text(json.dumps(spec))
    return folder / "s.yaml"


def run(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "harness", "run", *args, "--quiet"], check=False, capture_output=True, text=True, timeout=600)
    return done, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=6000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for label, refuse, extra in (("preflight (top_k=-1 refused)", ["top_k=-1"], []),
                                     ("breaker (every request refused)", ["temperature=*"], ["--no-preflight"])):  # fmt: skip
            app, seen = counted_app(refuse)
            with ServerThread(app) as server:
                spec = spec_file(folder, server.base_url, args.requests)
                done, seconds = run(str(spec), "--out", str(folder / "runs"), *extra)
                port = server.port
            last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
            print(f"{label:<34} exit {done.returncode}  {seconds:5.1f} s  {seen[0]} HTTP requests "
                  f"({100 * seen[0] / args.requests:.2f}% of {args.requests})\n    {last[:220]}")
            fixed, _ = counted_app([])
            with ServerThread(fixed, port=port):
                if done.returncode == 1:  # the breaker: send the not_sent rows
                    run_dir = Path(done.stdout.strip().splitlines()[-1])
                    again, seconds = run("--resume", str(run_dir), "--retry-errors")
                else:  # the preflight: the error line names the run directory to resume
                    run_dir = Path(last.rsplit("--resume ", 1)[-1])
                    again, seconds = run("--resume", str(run_dir))
            rows = pd.read_parquet(run_dir / "results")
            what = "resume"
            print(f"    {what} on the fixed server: exit {again.returncode}, {seconds:.1f} s, {int((rows.status == 'ok').sum())}/{len(rows)} ok")


if __name__ == "__main__":
    main()
