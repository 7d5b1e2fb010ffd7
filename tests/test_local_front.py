"""harness's front before the native engine, with a recording fake engine (no model needed).

What is checked: the request a validated chat body becomes for llama.cpp (sampler order, seed,
logprobs count, prompt rendering), harness's validation before the engine is reached, and the
translation of llama.cpp's answers and errors into harness's wire format (plain and streamed).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from harness.localmodel.front import (
    SAMPLER_ORDER,
    create_front,
    engine_body,
    engine_seed,
    parse_answer,
)
from harness.server.app import ServerThread
from harness.server.payloads import ApiError
from harness.server.validation import parse_chat_request

TOKYO = {"id": 21038, "token": " Tokyo", "bytes": [32, 84, 111, 107, 121, 111], "logprob": -0.08}
OSAKA = {"id": 69623, "token": " Osaka", "bytes": [32, 79, 115, 97, 107, 97], "logprob": -4.2}
KYOTO = {"id": 66583, "token": " Kyoto", "bytes": [32, 75, 121, 111, 116, 111], "logprob": -4.4}


def _answer(text: str = " Tokyo", reason: str = "stop", content: list | None = None) -> dict[str, Any]:
    logprobs = {"content": content if content is not None else [{**TOKYO, "top_logprobs": [TOKYO, OSAKA, KYOTO]}]}
    return {"choices": [{"text": text, "index": 0, "logprobs": logprobs, "finish_reason": reason}],
            "usage": {"prompt_tokens": 27, "completion_tokens": 2, "total_tokens": 29}}


class FakeEngine:
    """Records the bodies it gets; answers with `reply` (a dict or a callable of the body)."""

    name = "gemma-3-270m"
    slot_ctx = 512

    def __init__(self, reply: Any = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.reply = reply if reply is not None else _answer()
        self._lock = threading.Lock()

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.bodies.append(body)
        return self.reply(body) if callable(self.reply) else self.reply

    def stream(self, body: dict[str, Any], on_chunk: Any) -> None:
        """llama.cpp's streamed form of the reply: one chunk per token, then finish + usage."""
        whole = self.complete(body)
        if "error" in whole:
            on_chunk(whole)
            return
        choice = whole["choices"][0]
        content = (choice.get("logprobs") or {}).get("content") or [{"token": choice["text"]}]
        for token in content:
            logprobs = {"content": [token]} if "logprob" in token else None
            on_chunk({"choices": [{"text": token["token"], "index": 0, "logprobs": logprobs, "finish_reason": None}]})
        on_chunk({"choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": choice["finish_reason"]}],
                  "usage": whole["usage"]})


@pytest.fixture
def fake() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def base_url(fake: FakeEngine) -> Iterator[str]:
    with ServerThread(create_front(fake, workers=2, seed=0)) as server:
        yield server.base_url


def _chat(**extra: Any) -> dict[str, Any]:
    return {"model": "gemma-3-270m", "messages": [{"role": "user", "content": "Country: Japan\nCapital:"}], **extra}


# ---------------------------------------------------------------- request translation


def test_engine_body_fixes_harness_sampler_order_and_turns_the_rest_off() -> None:
    chat = parse_chat_request(_chat(temperature=0.8, min_p=0.2, top_k=-1, top_p=0.9, max_tokens=8,
                                    stop=["\n"], logprobs=True, top_logprobs=3, seed=7))
    body = engine_body(chat, seed=7)
    assert body["samplers"] == list(SAMPLER_ORDER) == ["penalties", "temperature", "min_p", "top_k", "top_p"]
    assert (body["temperature"], body["min_p"], body["top_k"], body["top_p"]) == (0.8, 0.2, 0, 0.9)
    assert (body["repeat_penalty"], body["typical_p"], body["xtc_probability"], body["dry_multiplier"]) == (1.0, 1.0, 0.0, 0.0)
    assert body["n_predict"] == 8 and body["stop"] == ["\n"] and body["seed"] == 7
    assert body["n_probs"] == 3 and body["post_sampling_probs"] is False  # raw logprobs, as harness's default
    assert body["prompt"] == "Country: Japan\nCapital:" and body["cache_prompt"] is True


def test_engine_body_renders_a_plain_completion_prompt_for_the_base_model() -> None:
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Capital of Peru?"},
                {"role": "assistant", "content": "It is"}]
    body = engine_body(parse_chat_request({"model": "m", "messages": messages}), seed=1)
    assert body["prompt"] == "Answer briefly.\n\nCapital of Peru?It is"  # assistant prefill continued
    assert "<start_of_turn>" not in body["prompt"]


def test_logprobs_without_top_logprobs_asks_for_one_candidate() -> None:
    assert engine_body(parse_chat_request(_chat(logprobs=True)), seed=1)["n_probs"] == 1
    assert engine_body(parse_chat_request(_chat()), seed=1)["n_probs"] == 0


@pytest.mark.parametrize(("seed", "expected"), [(0, 0), (7, 7), (2**32 + 5, 5), (-1, 0), (2**32 - 1, 0), (2**63 - 1, 0)])
def test_engine_seed_is_32_bit_and_never_llama_cpp_random(seed: int, expected: int) -> None:
    assert engine_seed(seed) == expected
    assert 0 <= engine_seed(seed) < 2**32 - 1


# ---------------------------------------------------------------- answer translation


def test_parse_answer_keeps_bytes_and_cuts_top_logprobs_to_the_request() -> None:
    chat = parse_chat_request(_chat(logprobs=True, top_logprobs=2))
    answer = parse_answer(_answer(), chat)
    assert (answer.text, answer.finish_reason, answer.prompt_tokens, answer.completion_tokens) == (" Tokyo", "stop", 27, 2)
    (token,) = answer.logprobs
    assert token.token == " Tokyo" and token.token_bytes == b" Tokyo" and token.logprob == -0.08
    assert token.top == ((" Tokyo", -0.08), (" Osaka", -4.2))
    assert token.top_bytes == (b" Tokyo", b" Osaka")


def test_parse_answer_maps_length_and_drops_unasked_logprobs() -> None:
    answer = parse_answer(_answer(reason="length"), parse_chat_request(_chat()))
    assert answer.finish_reason == "length" and answer.logprobs == []


def test_a_too_long_prompt_is_a_400_context_length_exceeded() -> None:
    error = {"error": {"code": 400, "message": "request (402 tokens) exceeds the available context size (256 tokens)",
                       "type": "exceed_context_size_error"}}
    with pytest.raises(ApiError) as info:
        parse_answer(error, parse_chat_request(_chat()))
    assert info.value.status == 400 and info.value.code == "context_length_exceeded"
    assert "402 tokens" in info.value.message


@pytest.mark.parametrize("result", [{"choices": []}, {"choices": [{"text": "x"}], "usage": {"prompt_tokens": "many"}}])
def test_an_unreadable_engine_answer_is_a_500(result: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as info:
        parse_answer(result, parse_chat_request(_chat()))
    assert info.value.status == 500 and info.value.type == "server_error"


# ---------------------------------------------------------------- over HTTP


def test_the_official_sdk_reads_the_answer(base_url: str, fake: FakeEngine) -> None:
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
    reply = client.chat.completions.create(model="gemma-3-270m", messages=[{"role": "user", "content": "Capital:"}],
                                           temperature=0, logprobs=True, top_logprobs=3, seed=5)
    assert reply.choices[0].message.content == " Tokyo"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens == 2
    assert reply.choices[0].logprobs is not None
    (token,) = reply.choices[0].logprobs.content or []
    assert [t.token for t in token.top_logprobs] == [" Tokyo", " Osaka", " Kyoto"]
    assert fake.bodies[-1]["seed"] == 5 and fake.bodies[-1]["temperature"] == 0


def test_harness_validation_answers_before_the_engine(base_url: str, fake: FakeEngine) -> None:
    cases: list[tuple[dict[str, Any], str]] = [({"temperature": 3}, "temperature"), ({"top_logprobs": 3}, "top_logprobs"),
                                               ({"n": 2}, "n"), ({"model": "gpt-4"}, "model")]
    for bad, param in cases:
        response = httpx.post(f"{base_url}/chat/completions", json=_chat(**bad), timeout=10)
        assert response.status_code in (400, 404), response.text
        assert response.json()["error"]["param"] == param
    bad_json = httpx.post(f"{base_url}/chat/completions", content=b"{nope", timeout=10)
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"
    assert fake.bodies == []


def test_unknown_paths_and_methods_are_json_errors(base_url: str) -> None:
    assert httpx.get(f"{base_url}/completions", timeout=10).status_code == 404
    wrong = httpx.get(f"{base_url}/chat/completions", timeout=10)
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "POST" and "error" in wrong.json()
    assert httpx.get(f"{base_url}/models/gemma-3-270m", timeout=10).json()["id"] == "gemma-3-270m"
    assert httpx.get(f"{base_url}/models/other", timeout=10).status_code == 404


def test_a_request_without_seed_gets_a_fresh_one(base_url: str, fake: FakeEngine) -> None:
    for _ in range(3):
        httpx.post(f"{base_url}/chat/completions", json=_chat(temperature=1.0), timeout=10)
    seeds = {body["seed"] for body in fake.bodies}
    assert len(seeds) == 3


def test_an_engine_failure_is_a_500_and_the_front_keeps_serving() -> None:
    calls = {"n": 0}

    def flaky(body: dict[str, Any]) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return _answer()

    with ServerThread(create_front(FakeEngine(flaky))) as server:
        first = httpx.post(f"{server.base_url}/chat/completions", json=_chat(), timeout=10)
        second = httpx.post(f"{server.base_url}/chat/completions", json=_chat(), timeout=10)
    assert first.status_code == 500 and first.json()["error"]["type"] == "server_error"
    assert "boom" not in first.text
    assert second.status_code == 200


def test_stream_is_well_formed_sse_with_usage(base_url: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
    stream = client.chat.completions.create(model="gemma-3-270m", messages=[{"role": "user", "content": "C:"}],
                                            stream=True, stream_options={"include_usage": True},
                                            logprobs=True, top_logprobs=1)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == " Tokyo" and reasons == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 29
    logprob_chunks = [c for c in chunks if c.choices and c.choices[0].logprobs]
    assert logprob_chunks and logprob_chunks[0].choices[0].logprobs.content[0].token == " Tokyo"  # type: ignore[union-attr, index]


def test_stream_sends_one_chunk_per_token(fake: FakeEngine) -> None:
    two = [{**TOKYO, "top_logprobs": [TOKYO]}, {**OSAKA, "top_logprobs": [OSAKA]}]
    fake.reply = _answer(text=" Tokyo Osaka", reason="length", content=two)
    with ServerThread(create_front(fake)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        chunks = list(client.chat.completions.create(model="gemma-3-270m", messages=[{"role": "user", "content": "C:"}],
                                                     stream=True, logprobs=True, top_logprobs=1))
    contents = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert contents == [" Tokyo", " Osaka"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert fake.bodies[-1]["stream"] is True


def test_a_streamed_request_that_fails_before_any_token_is_a_json_error(fake: FakeEngine) -> None:
    fake.reply = {"error": {"code": 400, "message": "request (900 tokens) exceeds the available context size",
                            "type": "exceed_context_size_error"}}
    with ServerThread(create_front(fake)) as server:
        response = httpx.post(f"{server.base_url}/chat/completions", json=_chat(stream=True), timeout=10)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"


def test_model_output_is_json_escaped_not_interpreted(fake: FakeEngine) -> None:
    hostile = '"}], "injected": true, "x": ["\u2028<script>'
    fake.reply = _answer(text=hostile, content=[])
    with ServerThread(create_front(fake)) as server:
        response = httpx.post(f"{server.base_url}/chat/completions", json=_chat(), timeout=10)
    body = json.loads(response.text)
    assert body["choices"][0]["message"]["content"] == hostile and "injected" not in body
