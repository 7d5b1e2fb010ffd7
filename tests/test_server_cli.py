"""`harness serve` as a user runs it: prints its base URL, serves, keeps the key secret."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest

KEY = "sk-cli-secret-value"


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.mark.slow
def test_serve_prints_base_url_and_answers() -> None:
    proc = start("--api-key-env", "SERVE_KEY", "--model", "my/model", "--faults", "429=0", env={"SERVE_KEY": KEY})
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        body = {"model": "my/model", "messages": [{"role": "user", "content": "7 + 5 ="}], "temperature": 0}
        reply = httpx.post(f"{base_url}/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
        assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"] == " 12"
        assert httpx.post(f"{base_url}/chat/completions", json=body).status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert KEY not in out + err


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--faults", "429=2"], "--faults"),
        (["--faults", "teapot=0.1"], "--faults"),
        (["--latency-ms", "soon"], "--latency-ms"),
        (["--tokens-per-s", "0"], "--tokens-per-s"),
        (["--port", "70000"], "--port"),
        (["--api-key-env", "SURELY_NOT_SET_ANYWHERE"], "--api-key-env"),
        (["--host", "192.0.2.1", "--port", "0"], "--host"),  # regression: a foreign address blamed --port
    ],
)
def test_bad_flags_are_one_line_exit_2(args: list[str], flag: str) -> None:
    result = subprocess.run([sys.executable, "-m", "harness", "serve", *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and "Traceback" not in result.stderr
    assert result.stdout == ""
