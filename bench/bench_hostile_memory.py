"""Peak RSS of `harness run` while a hostile server sends 100 MB bodies and gzip bombs.

Goal (issue 10): at concurrency 8, peak RSS of the harness process ≤ 500 MB, and every request
ends as a row within timeout_s. The server (tests/hostile_server.py) runs in this process; the
harness runs as a child, so its peak RSS is measured alone (RUSAGE_CHILDREN).

    python bench/bench_hostile_memory.py [-n 48] [-c 8]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from hostile_server import HostileServer  # noqa: E402 (after the sys.path line above)

CASES = ("body_100mb", "body_100mb_chunked", "gzip_bomb_body", "gzip_bomb_sse", "huge_event", "dense_json", "many_pings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=48, help="requests per mode")
    parser.add_argument("-c", type=int, default=8, help="concurrency")
    args = parser.parse_args()
    for stream in (False, True):
        with tempfile.TemporaryDirectory() as tmp, HostileServer() as server:
            root = Path(tmp)
            (root / "d.jsonl").write_text("".join(json.dumps({"prompt": f"q{i}"}) + "\n" for i in range(args.n)))
            (root / "s.yaml").write_text(
                f"name: bombs\ntarget: {{base_url: '{server.url(*CASES, cycle=True)}', model: m}}\n"
                "dataset: {path: d.jsonl}\nparams: {max_tokens: 4}\n"
                f"runner: {{concurrency: {args.c}, max_attempts: 1, timeout_s: 30, stream: {str(stream).lower()}}}\n"
            )
            started = time.monotonic()
            proc = subprocess.run(
                [sys.executable, "-m", "harness", "run", str(root / "s.yaml"), "--out", str(root / "runs"), "--quiet"],
                capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(REPO)},
            )
            took = time.monotonic() - started
            peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            (run_dir,) = (root / "runs").iterdir()
            manifest = json.loads((run_dir / "manifest.json").read_text())
        print(
            f"stream={stream!s:5} n={args.n} c={args.c} cases={','.join(CASES)}: exit {proc.returncode}, "
            f"manifest {manifest['status']}, rows ok={manifest['counts']['ok']} error={manifest['counts']['error']}, "
            f"{took:.1f} s, peak RSS (max over children so far) {peak_mb:.0f} MB (goal <= 500 MB)"
        )
        if "Traceback" in proc.stderr:
            print(proc.stderr)
    print(f"load: {os.getloadavg()}")


if __name__ == "__main__":
    main()
