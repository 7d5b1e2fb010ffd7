"""Benchmark: start-up of the CLI (goals: `--version`/`--help` ≤ 0.15 s, `plan` ≤ 0.4 s on this machine).

Run: python bench/bench_startup.py [--runs 9]
Prints, for each command, the median wall time and CPU time (user+sys of the child) over
`--runs` runs, the same for a bare `python -c pass` (the interpreter's own floor on this machine
right now), the heavy modules each command imports, and the 1-minute load average (start-up
figures on a loaded 2-core machine are several times the idle ones: compare against the floor).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("pandas", "pyarrow", "matplotlib", "numpy", "pydantic", "httpx", "aiohttp", "rich", "yaml")
PROBE = (
    "import runpy, sys\n"
    "sys.argv = ['harness', *sys.argv[1:]]\n"
    "try:\n    runpy.run_module('harness', run_name='__main__')\n"
    "except SystemExit:\n    pass\n"
    f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules) or '-', file=sys.stderr)\n"
)

COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "harness --version": [sys.executable, "-m", "harness", "--version"],
    "harness --help": [sys.executable, "-m", "harness", "--help"],
    "harness plan quickstart": [sys.executable, "-m", "harness", "plan", str(REPO / "sweeps/quickstart.yaml")],
    "harness plan --json capitals": [sys.executable, "-m", "harness", "plan", "--json",
                                     str(REPO / "sweeps/ci.yaml")],
}


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(argv: list[str], runs: int) -> tuple[float, float]:
    """Median wall and CPU seconds of `runs` runs (one warm-up run first)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(argv, capture_output=True, env=env, check=False, cwd=REPO)
    walls, cpus = [], []
    for _ in range(runs):
        cpu0, t0 = _child_cpu(), time.perf_counter()
        subprocess.run(argv, capture_output=True, env=env, check=False, cwd=REPO)
        walls.append(time.perf_counter() - t0)
        cpus.append(_child_cpu() - cpu0)
    return statistics.median(walls), statistics.median(cpus)


def imported(argv: list[str]) -> str:
    if argv[1] != "-m":
        return ""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HARNESS_BASE_URL": "http://127.0.0.1:9/v1"}
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv[3:]], capture_output=True, text=True, env=env, check=False)
    return proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    os.environ.setdefault("HARNESS_BASE_URL", "http://127.0.0.1:9/v1")
    print(f"load average (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}; cores: {os.cpu_count()}")
    print(f"{'command':32} {'wall med':>9} {'cpu med':>8} {'wall-floor':>10}  heavy modules imported")
    floor = None
    for name, argv in COMMANDS.items():
        wall, cpu = measure(argv, args.runs)
        floor = wall if floor is None else floor
        print(f"{name:32} {wall:8.3f}s {cpu:7.3f}s {wall - floor:9.3f}s  {imported(argv)}")


if __name__ == "__main__":
    main()
