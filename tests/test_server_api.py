"""The endpoint through clients we did not write: the official openai SDK, plus raw httpx."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import orjson
import pytest

from harness.server.app import ServerThread, reference_app
from harness.server.ngram import DEFAULT_MODEL_NAME

KEY = "sk-test-not-a-real-key"
MODEL = DEFAULT_MODEL_NAME


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with ServerThread(reference_app(api_key=KEY, seed=11)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ServerThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0) as sdk:
        yield sdk


def ask(client: openai.OpenAI, prompt: str, **kwargs: object) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompt}], **kwargs)  # type: ignore[call-overload, no-any-return]


def test_sdk_plain_completion_answers_sensibly(client: openai.OpenAI) -> None:
    reply = ask(client, "The capital of France is", temperature=0)
    choice = reply.choices[0]
    assert choice.message.content == " Paris."
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    assert reply.object == "chat.completion" and reply.model == MODEL and reply.id.startswith("chatcmpl-")
    assert reply.system_fingerprint and reply.created > 0
    assert reply.usage is not None and reply.usage.prompt_tokens == 7  # <s> The capital of France is <assistant>
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


@pytest.mark.parametrize(
    ("prompt", "answer"),
    [
        ("France: Paris\nGermany: Berlin\nKenya:", " Nairobi"),
        ("7 + 5 =", " 12"),
        ("Q: What is 3 + 4?\nA:", " 7"),
        ("What is the capital of Japan?", " The capital of Japan is Tokyo."),
    ],
)
def test_few_shot_and_arithmetic_prompts(client: openai.OpenAI, prompt: str, answer: str) -> None:
    content = ask(client, prompt, temperature=0, stop=["\n"]).choices[0].message.content
    assert content is not None and content.startswith(answer)


def test_sdk_logprobs_and_extra_body(client: openai.OpenAI) -> None:
    reply = ask(
        client, "Once upon a time", temperature=0.8, seed=5, logprobs=True, top_logprobs=4, max_tokens=6,
        extra_body={"top_k": 20, "min_p": 0.05},
    )  # fmt: skip
    choice = reply.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    tokens = choice.logprobs.content
    assert "".join(t.token for t in tokens) == choice.message.content
    for t in tokens:
        assert t.logprob <= 0.0 and len(t.top_logprobs) == 4
        assert t.bytes == list(t.token.encode())
        tops = [c.logprob for c in t.top_logprobs]
        assert (tops == sorted(tops, reverse=True) and t.logprob >= tops[-1] - 1e-9) or t.token not in [c.token for c in t.top_logprobs]
    assert reply.usage is not None and reply.usage.completion_tokens == len(tokens) == 6
    assert choice.finish_reason == "length"


def test_sdk_stream_with_usage_matches_non_stream(client: openai.OpenAI) -> None:
    kwargs = dict(temperature=1.0, seed=42, max_tokens=12, logprobs=True, top_logprobs=2)
    plain = ask(client, "Once upon a time", **kwargs)
    chunks = list(ask(client, "Once upon a time", stream=True, stream_options={"include_usage": True}, **kwargs))
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    streamed_lp = [t.token for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content or []]
    assert streamed_lp == [t.token for t in plain.choices[0].logprobs.content]  # type: ignore[union-attr]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [plain.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage == plain.usage
    assert all(c.usage is None for c in chunks[:-1])


def test_raw_stream_ends_with_done_and_no_usage_unless_asked(server: ServerThread) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "7 + 5 ="}], "stream": True, "temperature": 0}
    response = httpx.post(f"{server.base_url}/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in response.text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["choices"][0]["delta"] == {}


def test_same_seed_same_output_other_seed_differs(client: openai.OpenAI) -> None:
    run = lambda seed: ask(client, "Once upon a time", temperature=1.5, seed=seed, max_tokens=30).choices[0].message.content
    assert run(1) == run(1)
    assert len({run(s) for s in range(1, 6)}) > 1


def test_greedy_is_deterministic_without_seed(client: openai.OpenAI) -> None:
    outs = {ask(client, "Once upon a time", temperature=0, max_tokens=20).choices[0].message.content for _ in range(3)}
    assert len(outs) == 1


def test_stop_sequence_cuts_content_and_reports_stop(client: openai.OpenAI) -> None:
    full = ask(client, "Once upon a time", temperature=0, max_tokens=30).choices[0].message.content
    assert full is not None and " fox" in full
    reply = ask(client, "Once upon a time", temperature=0, max_tokens=30, stop=[" fox", "zzz"], logprobs=True)
    assert reply.choices[0].message.content == full[: full.index(" fox")]
    assert reply.choices[0].finish_reason == "stop"
    assert "".join(t.token for t in reply.choices[0].logprobs.content) == reply.choices[0].message.content  # type: ignore[union-attr]


def test_stop_sequence_inside_a_token_is_held_back_in_streams(client: openai.OpenAI) -> None:
    full = ask(client, "Once upon a time", temperature=0, max_tokens=30).choices[0].message.content or ""
    stop = "ll fo"  # spans " small" and " fox"
    expected = full[: full.index(stop)]
    plain = ask(client, "Once upon a time", temperature=0, max_tokens=30, stop=stop).choices[0].message.content
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in ask(client, "Once upon a time", temperature=0, max_tokens=30, stop=stop, stream=True)
        if c.choices
    )
    assert plain == streamed == expected


def test_max_tokens_gives_length(client: openai.OpenAI) -> None:
    reply = ask(client, "Once upon a time", temperature=0, max_tokens=3)
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 3  # type: ignore[union-attr]
    assert reply.choices[0].message.content == " Once upon a"


def test_max_completion_tokens_alias(client: openai.OpenAI) -> None:
    reply = ask(client, "Once upon a time", temperature=0, max_completion_tokens=2)
    assert reply.usage is not None and reply.usage.completion_tokens == 2


def _repetition(client: openai.OpenAI, **kwargs: object) -> float:
    """Share of generated tokens that repeat an earlier generated token."""
    repeated = total = 0
    for prompt in ("The fox", "France: Paris\nGermany: Berlin\nKenya:"):
        for seed in range(10):
            reply = ask(client, prompt, temperature=1.0, seed=seed, max_tokens=60, logprobs=True, **kwargs)
            tokens = [t.token for t in reply.choices[0].logprobs.content]  # type: ignore[union-attr]
            repeated += len(tokens) - len(set(tokens))
            total += len(tokens)
    return repeated / max(total, 1)


@pytest.mark.slow
def test_penalties_lower_repetition_end_to_end(client: openai.OpenAI) -> None:
    base = _repetition(client)
    assert _repetition(client, frequency_penalty=2.0) < base
    assert _repetition(client, presence_penalty=2.0) < base
    assert _repetition(client, frequency_penalty=-2.0) > 2 * base


def test_entropy_of_outputs_rises_with_temperature(client: openai.OpenAI) -> None:
    def distinct(temperature: float) -> int:
        return len({ask(client, "Once upon a time", temperature=temperature, seed=s, max_tokens=8).choices[0].message.content for s in range(12)})

    assert distinct(0.0) == 1
    assert distinct(0.0) <= distinct(0.7) <= distinct(1.5)
    assert distinct(1.5) > 3


def test_models_list_and_get(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope/model")


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["code"] == "model_not_found"  # type: ignore[index]


def test_validation_error_through_the_sdk(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, "hi", temperature=3)
    assert info.value.body["param"] == "temperature"  # type: ignore[index]


def test_wrong_and_missing_key_are_401_and_never_echoed(server: ServerThread) -> None:
    with openai.OpenAI(base_url=server.base_url, api_key="sk-wrong-key-123", max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError) as info:
            ask(wrong, "hi")
    assert "sk-wrong-key-123" not in str(info.value) and KEY not in str(info.value)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(f"{server.base_url}/chat/completions", json=body)
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{server.base_url}/models").status_code == 401


def test_content_parts_and_system_messages(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        temperature=0,
        messages=[
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": [{"type": "text", "text": "The capital of "}, {"type": "text", "text": "Japan is"}]},
        ],
    )
    assert reply.choices[0].message.content == " Tokyo."


def test_unknown_fields_are_ignored_by_default(server: ServerThread) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "frobnicate": 1}
    response = httpx.post(f"{server.base_url}/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200


def test_reject_unknown_names_the_field() -> None:
    with ServerThread(reference_app(reject_unknown=True)) as strict:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "frobnicate": 1}
        response = httpx.post(f"{strict.base_url}/chat/completions", json=body)
    assert response.status_code == 400 and response.json()["error"]["param"] == "frobnicate"


@pytest.mark.slow
def test_many_concurrent_connections(server: ServerThread) -> None:
    import asyncio

    async def hammer() -> list[int]:
        limits = httpx.Limits(max_connections=300)
        async with httpx.AsyncClient(limits=limits, headers={"Authorization": f"Bearer {KEY}"}) as http:
            body = {"model": MODEL, "messages": [{"role": "user", "content": "7 + 5 ="}], "max_tokens": 4}
            replies = await asyncio.gather(*(http.post(f"{server.base_url}/chat/completions", json=body) for _ in range(300)))
        return [r.status_code for r in replies]

    assert asyncio.run(hammer()) == [200] * 300


def test_processed_logprobs_mode_reflects_temperature() -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Once upon a time"}], "max_tokens": 3,
            "temperature": 0.5, "seed": 1, "logprobs": True, "top_logprobs": 2}  # fmt: skip
    results = {}
    for mode in ("raw", "processed"):
        with ServerThread(reference_app(logprobs_mode=mode)) as srv:
            reply = httpx.post(f"{srv.base_url}/chat/completions", json=body).json()
        results[mode] = reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    assert [t["token"] for t in results["raw"]] == [t["token"] for t in results["processed"]]
    raw_gap = results["raw"][0]["logprob"] - results["raw"][1]["logprob"]
    processed_gap = results["processed"][0]["logprob"] - results["processed"][1]["logprob"]
    assert processed_gap == pytest.approx(2 * raw_gap, rel=1e-3)  # temperature 0.5 doubles logit gaps


@pytest.mark.parametrize("extra", [{"top_k": 1}, {"min_p": 1.0}, {"top_p": 0.0}, {"top_p": 1e-6, "top_k": 50}])
def test_truncation_to_one_token_is_greedy_at_high_temperature(client: openai.OpenAI, extra: dict) -> None:
    greedy = ask(client, "Once upon a time", temperature=0, max_tokens=10).choices[0].message.content
    for seed in range(3):
        hot = ask(client, "Once upon a time", temperature=2.0, seed=seed, max_tokens=10, extra_body=extra)
        assert hot.choices[0].message.content == greedy


def test_truncation_narrows_the_outputs(client: openai.OpenAI) -> None:
    def distinct(**extra: object) -> int:  # distinct first answer tokens over 20 seeds
        return len({ask(client, "The fox", temperature=1.5, seed=s, max_tokens=1, extra_body=extra).choices[0].message.content for s in range(20)})

    wide = distinct()
    assert distinct(top_k=2) < wide and distinct(min_p=0.2) < wide and distinct(top_p=0.5) < wide
