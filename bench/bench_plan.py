"""Benchmark: `harness plan --json` on a 1,000,000-point grid (goal: ≤ 5 s on a 2-core machine).

Run: python bench/bench_plan.py
Prints the wall time of the whole command (process start included), twice: without and with an
exclude rule (which forces every point to be visited).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """\
name: million
target: {{base_url: "http://127.0.0.1:1/v1", model: m}}
dataset: {{path: {data}}}
params: {{max_tokens: 16}}
sweep:
  grid:
    temperature: {{from: 0.0, to: 1.98, step: 0.02}}   # 100
    top_p: {{from: 0.01, to: 1.0, step: 0.01}}          # 100
    top_k: {{from: 1, to: 10, step: 1}}                 # 10
    min_p: {{from: 0.0, to: 0.9, step: 0.1}}            # 10
{exclude}
"""


def run(exclude: str) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "d.jsonl"
        data.write_text('{"prompt": "hi"}\n')
        spec = Path(tmp) / "s.yaml"
        spec.write_text(SPEC.format(data=data, exclude=exclude))
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "harness", "plan", "--json", str(spec)],
                             capture_output=True, text=True, check=True)
        return time.perf_counter() - start, json.loads(out.stdout)


def main() -> None:
    for label, exclude in (("no exclude", ""), ("with exclude", "  exclude:\n    - {temperature: 0.0, top_k: [1, 2]}")):
        seconds, data = run(exclude)
        print(f"plan --json, {data['points']:,} points ({label}): {seconds:.2f} s (goal ≤ 5 s)")


if __name__ == "__main__":
    main()
