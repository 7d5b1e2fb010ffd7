"""`harness run` flag checks that must fail before anything is sent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", "run", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_report_onto_a_file_is_refused_before_the_run(tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("keep me")
    proc = _run(str(REPO / "sweeps/quickstart.yaml"), "--out", str(tmp_path / "runs"), "--report", str(target))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"harness: error: --report: {target} is a file; give a folder for the report"]
    assert not (tmp_path / "runs").exists() and target.read_text() == "keep me"


@pytest.mark.slow
def test_bad_flag_value_is_one_line() -> None:
    proc = _run(str(REPO / "sweeps/quickstart.yaml"), "--concurrency", "0")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "--concurrency" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_refused_key_is_one_line_before_any_request(tmp_path: Path) -> None:
    from harness.server.app import ServerThread, reference_app

    (tmp_path / "d.jsonl").write_text('{"prompt": "7 + 5 ="}\n')
    with ServerThread(reference_app(api_key="right-key")) as server:
        spec = tmp_path / "s.yaml"
        spec.write_text(
            f"name: k\ntarget: {{base_url: '{server.base_url}', model: harness/ngram, api_key_env: HK_TEST}}\n"
            "dataset: {path: d.jsonl}\nparams: {max_tokens: 2}\n"
        )
        env_wrong = {"HK_TEST": "wrong-key-123"}
        proc = subprocess.run([sys.executable, "-m", "harness", "run", str(spec), "--out", str(tmp_path / "runs"), "--quiet"],
                              capture_output=True, text=True, timeout=60, env={**os.environ, **env_wrong})
        assert proc.returncode == 2, proc.stderr
        assert "refused the key in $HK_TEST (HTTP 401" in proc.stderr and "wrong-key-123" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()
        ok = subprocess.run([sys.executable, "-m", "harness", "run", str(spec), "--out", str(tmp_path / "runs"), "--quiet"],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "HK_TEST": "right-key"})
        assert ok.returncode == 0, ok.stderr
