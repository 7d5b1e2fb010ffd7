"""Benchmark: start-up of the CLI (goals: `--version`/`--help` ≤ 0.15 s, `plan` ≤ 0.4 s on this machine).

Run: python bench/bench_startup.py [--runs 9] [--python /tmp/venv/bin/python]
Prints, for each command, the median wall time and CPU time (user+sys of the child) over
`--runs` rounds, the same for a bare `python -c pass` (the interpreter's own floor on this machine
right now), the CPU above that floor, the heavy modules each command imports, and the 1-minute
load average before and after (start-up figures on a loaded 2-core machine are several times the
idle ones: compare CPU, and against the floor). The commands run interleaved, one of each per
round, so a change of load hits them alike.

`--python`: the interpreter of a clean venv with harness installed (`pip install .`, not
editable): its modules are imported from the install with the bytecode pip compiled. Without
it, this interpreter runs the checkout via PYTHONPATH; with PYTHONDONTWRITEBYTECODE set (as in
the sandbox) every run then compiles harness' sources, which the figures include (a warning says so).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
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


def commands(python: str) -> dict[str, list[str]]:
    return {
        "python -c pass": [python, "-c", "pass"],
        "harness --version": [python, "-m", "harness", "--version"],
        "harness --help": [python, "-m", "harness", "--help"],
        "harness plan quickstart": [python, "-m", "harness", "plan", str(REPO / "sweeps/quickstart.yaml")],
        "harness plan --json ci": [python, "-m", "harness", "plan", "--json", str(REPO / "sweeps/ci.yaml")],
    }


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _env(installed: bool) -> dict[str, str]:
    env = {**os.environ, "HARNESS_BASE_URL": "http://127.0.0.1:9/v1"}
    if not installed:
        env["PYTHONPATH"] = str(REPO)
    return env


def _cwd(installed: bool) -> Path:
    """`python -m` puts the working folder first on sys.path: the checkout's, unless measuring an install."""
    return Path(tempfile.gettempdir()) if installed else REPO


def once(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    cpu0, t0 = _child_cpu(), time.perf_counter()
    subprocess.run(argv, capture_output=True, env=env, check=False, cwd=cwd)
    return time.perf_counter() - t0, _child_cpu() - cpu0


def imported(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    if argv[1] != "-m":
        return ""
    proc = subprocess.run([argv[0], "-c", PROBE, *argv[3:]], capture_output=True, text=True, env=env, check=False,
                          cwd=cwd)
    return proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9, help="rounds (one run of each command per round)")
    parser.add_argument("--python", default=None, help="interpreter of a venv with harness installed")
    args = parser.parse_args()
    installed = args.python is not None
    python = args.python or sys.executable
    env, cwd = _env(installed), _cwd(installed)
    if not installed and os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print("warning: PYTHONDONTWRITEBYTECODE is set: every run compiles harness' sources (use --python)")
    cmds = commands(python)
    load0 = os.getloadavg()
    for argv in cmds.values():  # warm-up: the page cache, not the figures
        once(argv, env, cwd)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in cmds}
    for _ in range(args.runs):
        for name, argv in cmds.items():
            results[name].append(once(argv, env, cwd))
    load1 = os.getloadavg()
    print(f"python: {python} ({'installed harness' if installed else f'PYTHONPATH={REPO}'})")
    print(f"load average (1, 5, 15 min): before {' '.join(f'{x:.2f}' for x in load0)}, "
          f"after {' '.join(f'{x:.2f}' for x in load1)}; cores: {os.cpu_count()}; {args.runs} rounds, medians")
    print(f"{'command':28} {'wall':>7} {'cpu':>7} {'cpu-floor':>9} {'wall range':>13}  heavy modules imported")
    floor_cpu = None
    for name, argv in cmds.items():
        walls = [w for w, _ in results[name]]
        wall, cpu = statistics.median(walls), statistics.median(c for _, c in results[name])
        floor_cpu = cpu if floor_cpu is None else floor_cpu
        print(f"{name:28} {wall:6.3f}s {cpu:6.3f}s {cpu - floor_cpu:8.3f}s {min(walls):5.2f}–{max(walls):5.2f}s  "
              f"{imported(argv, env, cwd)}")


if __name__ == "__main__":
    main()
