"""Start-up: each command imports only what it uses (an import-set test, not a timing test).

Timings are printed by bench/bench_startup.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("pandas", "pyarrow", "matplotlib", "numpy", "pydantic", "httpx", "aiohttp", "rich", "yaml", "uvloop")
PROBE = (
    "import runpy, sys\n"
    "sys.argv = ['harness', *sys.argv[1:]]\n"
    "try:\n    runpy.run_module('harness', run_name='__main__')\n"
    "except SystemExit:\n    pass\n"
    f"print('HEAVY:', *(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
)


def heavy_imports(*args: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], check=False, capture_output=True, text=True, timeout=60)
    line = next(x for x in proc.stderr.splitlines() if x.startswith("HEAVY:"))
    return set(line.split()[1:])


@pytest.mark.parametrize("args", [["--version"], ["--help"], [], ["plan", "--help"]])
def test_version_and_help_import_nothing_heavy(args: list[str]) -> None:
    allowed = {"pydantic", "yaml"} if args[:1] == ["plan"] else set()
    assert heavy_imports(*args) <= allowed


@pytest.mark.slow
def test_plan_imports_no_data_or_http_stack() -> None:
    got = heavy_imports("plan", str(REPO / "sweeps/quickstart.yaml"))
    assert "pydantic" in got  # the probe really ran the command
    assert got <= {"pydantic", "yaml"}


def test_help_lists_every_command_with_its_own_summary() -> None:
    """The summaries shown without importing a command are the ones the commands register."""
    import argparse

    from harness.cli import COMMANDS, SUMMARIES, build_parser

    parser = build_parser(COMMANDS)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    registered = {choice.dest: choice.help for choice in sub._choices_actions}
    assert set(SUMMARIES) == set(COMMANDS) == set(registered)
    assert registered == SUMMARIES


def test_version_is_the_installed_one_without_package_metadata() -> None:
    """`--version` reads harness/_version.py (pyproject.toml's dynamic version), not importlib.metadata."""
    from importlib.metadata import version

    import harness

    assert harness.__version__ == version("harness")
    code = (
        "import runpy, sys\nsys.argv = ['harness', '--version']\n"
        "try:\n    runpy.run_module('harness', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('importlib.metadata' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60).stdout
    assert out.split() == ["harness", harness.__version__, "False"]
