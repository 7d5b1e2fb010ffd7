"""Secrets in a spec never reach what is written or printed: URL userinfo/query values, secret headers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.redact import REDACTED, redact_headers, redact_url
from harness.spec.sweepspec import load_spec, spec_hash

KEY = "sk-live-0123456789abcdef"


@pytest.mark.parametrize(
    "url,expected",
    [
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
        (f"https://api.example.com/v1?api_key={KEY}", "https://api.example.com/v1?api_key=***"),
        (f"https://h/v1?api-version=2024-01&key={KEY}", "https://h/v1?api-version=***&key=***"),
        (f"https://user:{KEY}@h:8443/v1", "https://***@h:8443/v1"),
        (f"https://{KEY}@h/v1", "https://***@h/v1"),
        (f"https://h/v1#{KEY}", "https://h/v1#***"),
        (f"https://h/v1?{KEY}", "https://h/v1?***"),
        ("http://h:99999/v1", REDACTED),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert KEY not in redact_url(url)


def test_secret_and_unknown_headers_are_redacted_known_harmless_kept() -> None:
    headers = {name: KEY for name in (
        "Authorization", "X-Auth", "X-Authorization", "X-Auth-Secret", "Cookie", "X-Signature",
        "Api-Key", "X-Api-Key", "X-Access-Token", "Proxy-Authorization", "X-Password", "X-Session",
        "X-Goog-Credentials", "x-amz-security-token",
    )}
    assert set(redact_headers(headers).values()) == {REDACTED}
    kept = {"User-Agent": "me/1", "X-Request-Id": "r1", "OpenAI-Organization": "org", "X-Title": "t",
            "X-Route": "eu", "Api-Version": "2024-01"}
    assert redact_headers(kept) == kept


def _spec(tmp_path: Path) -> Path:
    (tmp_path / "d.jsonl").write_text('{"prompt": "hi"}\n')
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: r\n"
        "target:\n"
        "  base_url: http://127.0.0.1:9/v1?api_key=${R_KEY}\n"
        "  model: m\n"
        "  headers: {X-Auth-Secret: '${R_KEY}', X-Authorization: 'Bearer ${R_KEY}', User-Agent: ua}\n"
        "dataset: {path: d.jsonl}\n"
        "sweep: {grid: {temperature: [0.1, 0.2]}}\n"
    )
    return path


def test_public_dict_and_hash_hold_no_key(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path), env={"R_KEY": KEY})
    assert spec.target.base_url is not None and KEY in spec.target.base_url  # requests still get it
    public = json.dumps(spec.public_dict())
    assert KEY not in public
    assert spec.public_dict()["target"]["headers"] == {"X-Auth-Secret": REDACTED, "X-Authorization": REDACTED,
                                                       "User-Agent": "ua"}
    other = load_spec(_spec(tmp_path), env={"R_KEY": "another-key"})
    assert spec_hash(spec) == spec_hash(other)  # rotating a key does not change what the sweep is


@pytest.mark.slow
@pytest.mark.parametrize("flags", [[], ["--json"], ["-v", "--json"]])
def test_plan_output_holds_no_key(tmp_path: Path, flags: list[str]) -> None:
    args = [a for a in flags if a == "-v"] + ["plan", str(_spec(tmp_path))] + [a for a in flags if a != "-v"]
    proc = subprocess.run([sys.executable, "-m", "harness", *args], check=False, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "R_KEY": KEY})
    assert proc.returncode == 0, proc.stderr
    assert KEY not in proc.stdout + proc.stderr
    assert "api_key=***" in proc.stdout


def test_log_lines_lose_url_secrets() -> None:
    import logging

    from harness.redact import RedactingFilter, redact_urls_in

    line = f'HTTP Request: POST http://127.0.0.1:8000/v1/chat/completions?key={KEY} "HTTP/1.1 200 OK"'
    assert KEY not in redact_urls_in(line) and "?key=***" in redact_urls_in(line)
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, "HTTP Request: %s %s", ("POST", f"https://h/v1?k={KEY}"), None)
    assert RedactingFilter().filter(record) and KEY not in record.getMessage()


@pytest.mark.slow
def test_verbose_run_writes_and_logs_no_key_from_the_url(tmp_path: Path) -> None:
    from harness.server.app import ServerThread, reference_app

    (tmp_path / "d.jsonl").write_text('{"prompt": "hi"}\n')
    with ServerThread(reference_app()) as server:
        spec = tmp_path / "s.yaml"
        spec.write_text(f"name: v\ntarget: {{base_url: '{server.base_url}?api_key=${{R_KEY}}', model: harness/ngram}}\n"
                        "dataset: {path: d.jsonl}\nparams: {max_tokens: 2}\n")
        proc = subprocess.run([sys.executable, "-m", "harness", "-vv", "run", str(spec), "--out", str(tmp_path / "runs")],
                              check=False, capture_output=True, text=True, timeout=120, env={**os.environ, "R_KEY": KEY})
    assert proc.returncode in (0, 1, 2), proc.stderr  # 2: the preflight refuses the URL (query before the path)
    assert KEY not in proc.stdout + proc.stderr
    for path in (tmp_path / "runs").rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
