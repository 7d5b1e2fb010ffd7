"""Run directory on local disk vs on S3 (moto's S3 server on loopback): what object storage costs a run.

    PYTHONPATH=. python bench/bench_storage.py [--requests 20000] [--repeat 2]

The same sweep (instant answers from an in-process mock transport, so the figure is harness's
own cost plus the store's) written to a local folder and to `s3://…` on a moto server running
in a child process (its CPU is not counted). Prints wall time, this process's CPU time and the
store requests seen by the server for each; then reading the run back (`read_results`).
Needs the dev extra (moto[server], boto3). Run once, briefly, and note the load (printed).
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
from typing import Any

import httpx

from harness.rundir.results import read_results
from harness.runner.session import run_sweep

_SERVER = """
import sys, time, logging
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.ERROR)
s = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False); s.start()
host, port = s.get_host_and_port(); print(f"http://{host}:{port}", flush=True)
sys.stdin.read()
"""


def _spec(folder: Path, requests: int) -> Path:
    prompts = max(1, requests // 20)
    with (folder / "prompts.jsonl").open("w") as fh:
        for i in range(prompts):
            fh.write(json.dumps({"id": f"q{i}", "prompt": f"Capital of land {i}?", "reference": "Paris"}) + "\n")
    spec = {"name": "bench", "target": {"base_url": "http://127.0.0.1:9/v1", "model": "m"},
            "dataset": {"path": "prompts.jsonl"}, "params": {"max_tokens": 4},
            "sweep": {"grid": {"temperature": [0.0, 0.5, 1.0, 1.5]}, "repeats": 5},
            "runner": {"concurrency": 32, "max_attempts": 1}}
    (folder / "spec.yaml").write_text(json.dumps(spec))
    return folder / "spec.yaml"


def _transport() -> httpx.MockTransport:
    answer: dict[str, Any] = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": " Paris"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
    return httpx.MockTransport(lambda request: httpx.Response(200, json=answer))


def _measure(label: str, spec: Path, out: str) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    result = run_sweep(spec, out=out, transport=_transport(), check_endpoint=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    read_wall = time.perf_counter()
    rows = len(read_results(str(result.run_dir)))
    read_wall = time.perf_counter() - read_wall
    assert result.status == "completed" and rows == result.manifest.counts.requests, (result.status, rows)
    print(f"{label:<8} {rows:>7,} rows  run {wall:6.2f} s wall {cpu:6.2f} s CPU  ({rows / wall:8,.0f} rows/s)  "
          f"read back {read_wall:5.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        endpoint = server.stdout.readline().strip()
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                          HARNESS_S3_ENDPOINT=endpoint)
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; {args.requests:,} requests, "
              f"seal every {os.environ.get('HARNESS_SEAL_ROWS', '10000')} rows")
        with tempfile.TemporaryDirectory() as tmp:
            spec = _spec(Path(tmp), args.requests)
            for _ in range(args.repeat):
                _measure("local", spec, str(Path(tmp) / "runs"))
                _measure("s3", spec, "s3://bench/runs")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
