"""`harness run` flag checks that must fail before anything is sent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", "run", *args], capture_output=True, text=True, timeout=60)


def test_report_onto_a_file_is_refused_before_the_run(tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("keep me")
    proc = _run(str(REPO / "sweeps/quickstart.yaml"), "--out", str(tmp_path / "runs"), "--report", str(target))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"harness: error: --report: {target} is a file; give a folder for the report"]
    assert not (tmp_path / "runs").exists() and target.read_text() == "keep me"


def test_bad_flag_value_is_one_line() -> None:
    proc = _run(str(REPO / "sweeps/quickstart.yaml"), "--concurrency", "0")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "--concurrency" in proc.stderr and "Traceback" not in proc.stderr
