"""ruff and mypy (strict, configured in pyproject.toml) pass on the code, so CI runs them with the tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean() -> None:
    done = _run("ruff", "check", "harness", "tests", "bench")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict_is_clean(early_mypy: tuple[subprocess.Popen[bytes], Path] | None) -> None:
    if early_mypy is None:  # (conftest starts it when collection ends; not when this test is called by name alone)
        done = _run("mypy")
        assert done.returncode == 0, done.stdout + done.stderr
        return
    proc, output = early_mypy
    code = proc.wait(timeout=600)
    assert code == 0, output.read_text(errors="replace")
