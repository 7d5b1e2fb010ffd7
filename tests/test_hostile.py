"""Every hostile answer of issue 10 ends as a classified failure (or a row), within timeout_s.

Real sockets: `tests/hostile_server.py` speaks raw HTTP from asyncio and misbehaves per case.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from harness.client import ChatClient, ClientConfig, RequestFailed
from harness.client.bounds import Bounds

sys.path.insert(0, str(Path(__file__).parent))
from hostile_server import CASES, SLOW_CASES, HostileServer

KEY = "sk-hostile-SECRET-0123456789abcdef"
TIMEOUT = 1.0
FLOODS = frozenset({"many_events", "many_pings", "dense_json"})  # megabytes through a same-process server

# case → error_type (None: a usable answer)
EXPECTED: dict[str, str | None] = {
    "ok": None,
    "ok_gzip": None,
    "huge_usage": "invalid_response",
    "overflow_usage": "invalid_response",
    "sse_error_1e300": "stream_error",
    "status_in_error_huge": "server_error",
    "lone_surrogate": "invalid_response",
    "invalid_utf8": "invalid_response",
    "invalid_utf8_sse": None,  # SSE data is decoded with replacement characters
    "short_content_length": "stream_cut",
    "huge_header": "protocol_error",
    "header_newline": "protocol_error",
    "many_headers": "protocol_error",
    "gzip_bomb_body": "too_large",
    "gzip_bomb_sse": "too_large",
    "body_100mb": "too_large",
    "body_100mb_chunked": "too_large",
    "huge_event": "too_large",
    "many_events": "too_large",
    "many_pings": "too_large",
    "dense_json": "too_large",
    "slow_sse": "timeout",
    "slow_body": "timeout",
    "hang": "timeout",
    "garbage_json": "invalid_response",
    "nan_json": "invalid_response",
    "deep_nesting": "invalid_response",
    "garbage_http": "protocol_error",
    "bad_status": "protocol_error",
    "unknown_encoding": "protocol_error",
    "corrupt_gzip": "protocol_error",
    "reset": "connection",
    "close": "connection",
    "echo_key": "client_error",
    "redirect": "client_error",  # never followed
    "rate_limited": "rate_limited",
}


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    with HostileServer() as running:
        yield running


def test_every_case_has_an_expectation() -> None:
    assert set(EXPECTED) == set(CASES)


async def _attempt(server: HostileServer, case: str, stream: bool) -> tuple[str | None, str, float]:
    config = ClientConfig(base_url=server.url(case), api_key=KEY, timeout_s=TIMEOUT)
    started = time.monotonic()
    async with ChatClient(config) as client:
        try:
            done = await client.complete({"model": "m", "messages": [], "stream": stream})
        except RequestFailed as failure:
            return failure.error_type, failure.message, time.monotonic() - started
    return None, done.content, time.monotonic() - started


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("case", sorted(set(CASES) - SLOW_CASES))
def test_hostile_answer_is_classified(server: HostileServer, case: str, stream: bool) -> None:
    kind, message, took = asyncio.run(_attempt(server, case, stream))
    expected = EXPECTED[case]
    if case == "sse_error_1e300" and not stream:
        expected = "invalid_response"  # SSE bytes where a JSON body was asked for
    if case in ("invalid_utf8_sse", "many_events", "many_pings") and not stream:
        expected = "invalid_response"  # SSE bytes where a JSON body was asked for
    if case in FLOODS and expected == "too_large":
        assert kind in ("too_large", "timeout"), message  # whichever bound a loaded machine hits first
    else:
        assert kind == expected, message
    assert took < TIMEOUT + (2.0 if case in FLOODS else 0.5)
    assert KEY not in message and KEY[:20] not in message and "\n" not in message and len(message) <= 500


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(SLOW_CASES))
def test_slow_answers_end_at_timeout_s(server: HostileServer, case: str) -> None:
    kind, _, took = asyncio.run(_attempt(server, case, True))
    assert kind == "timeout" and TIMEOUT - 0.05 < took < TIMEOUT + 0.5


def test_echoed_key_is_scrubbed_before_the_cut(server: HostileServer) -> None:
    kind, message, _ = asyncio.run(_attempt(server, "echo_key", False))
    assert kind == "client_error"
    for size in range(4, len(KEY)):  # no fragment of the key survives, wherever the cut fell
        assert KEY[:size] not in message and KEY[-size:] not in message
    assert "Incorrect API key provided: ***" in message


def test_bounds_are_configurable(server: HostileServer) -> None:
    async def go() -> str:
        config = ClientConfig(base_url=server.url("ok"), timeout_s=TIMEOUT, bounds=Bounds(max_body_bytes=50, max_wire_bytes=50))
        async with ChatClient(config) as client:
            with pytest.raises(RequestFailed) as info:
                await client.complete({"model": "m", "messages": []})
        return info.value.error_type

    assert asyncio.run(go()) == "too_large"


def test_json_value_count_is_bounded(server: HostileServer) -> None:
    async def go() -> RequestFailed:
        config = ClientConfig(base_url=server.url("dense_json"), timeout_s=20, bounds=Bounds(max_json_values=1000))
        async with ChatClient(config) as client:
            with pytest.raises(RequestFailed) as info:
                await client.complete({"model": "m", "messages": []})
        return info.value

    failure = asyncio.run(go())
    assert failure.error_type == "too_large" and "1,000-value limit" in failure.message


def test_event_count_is_bounded(server: HostileServer) -> None:
    async def go() -> RequestFailed:
        config = ClientConfig(base_url=server.url("many_events"), timeout_s=20, bounds=Bounds(max_events=1000))
        async with ChatClient(config) as client:
            with pytest.raises(RequestFailed) as info:
                await client.complete({"model": "m", "messages": [], "stream": True})
        return info.value

    failure = asyncio.run(go())
    assert failure.error_type == "too_large" and "1,000 events" in failure.message


# -- whole sweeps --------------------------------------------------------------------------


def _spec(tmp_path: Path, base_url: str, prompts: int, *, stream: bool) -> Path:
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q{i}"}) + "\n" for i in range(prompts)))
    spec = tmp_path / "s.yaml"
    spec.write_text(
        f"name: hostile\ntarget: {{base_url: '{base_url}', model: m, api_key_env: HOSTILE_KEY}}\n"
        f"dataset: {{path: {data.name}}}\nparams: {{max_tokens: 4}}\n"
        f"runner: {{concurrency: 8, max_attempts: 1, timeout_s: {TIMEOUT}, stream: {str(stream).lower()}}}\n"
    )
    return spec


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_sweep_through_every_case_completes_with_error_rows(tmp_path: Path, stream: bool) -> None:
    cases = sorted(set(CASES) - {"ok"})
    with HostileServer() as server:
        spec = _spec(tmp_path, server.url(*cases, "ok"), len(cases) + 4, stream=stream)
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "harness", "run", str(spec), "--out", str(tmp_path / "runs"), "--quiet"],
            capture_output=True, text=True, check=False, timeout=120, env={**os.environ, "HOSTILE_KEY": KEY},
        )
        took = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr  # some error rows, not a crash
    assert "Traceback" not in proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    table = pq.read_table(run_dir / "results")
    assert table.num_rows == len(cases) + 4 and len(set(table.column("request_id").to_pylist())) == table.num_rows
    kinds = {k for k in table.column("error_type").to_pylist() if k}
    assert {"too_large", "protocol_error", "timeout", "connection"} <= kinds
    assert took < 60  # three timeouts of 1 s each, at concurrency 8
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_url_credentials_never_reach_a_message(server: HostileServer) -> None:
    async def go(case: str) -> tuple[str, str]:
        base = server.url(case).replace("http://", "http://someone:pw-in-url-123@") + "?key=query-secret-456"
        async with ChatClient(ClientConfig(base_url=base, timeout_s=TIMEOUT)) as client:
            with pytest.raises(RequestFailed) as info:
                await client.complete({"model": "m", "messages": []})
        return info.value.error_type, info.value.message

    for case in ("huge_header", "header_newline", "garbage_http", "reset", "echo_key"):
        _, message = asyncio.run(go(case))
        assert "pw-in-url-123" not in message and "query-secret-456" not in message, message
    assert server.seen[-1].path.endswith("/v1/chat/completions?key=query-secret-456")
