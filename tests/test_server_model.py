"""The built-in n-gram model, its tokenizer, the generation rules, and blocking models."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest

from harness.server.app import ServerThread, create_app
from harness.server.generate import Generation
from harness.server.ngram import NGramModel, NGramSession, default_model
from harness.server.sampler import SamplingParams
from harness.server.tokenizer import ASSISTANT, BOS, EOS, UNK
from harness.server.topic import content_words


@pytest.fixture(scope="module")
def model() -> NGramModel:
    return default_model()


def test_vocabulary_is_a_few_thousand_tokens(model: NGramModel) -> None:
    assert model.vocab_size >= 2000
    assert model.eos_token_ids == frozenset({EOS})


@pytest.mark.parametrize("text", ["The capital of France is Paris.", "7 + 5 = 12\nxyzzy Qwerty!  tabs\there", "don't stop"])
def test_tokenizer_round_trips_ascii(model: NGramModel, text: str) -> None:
    assert model.detokenize(model.tokenizer.encode(text)) == text


def test_unknown_words_are_spelled_and_non_ascii_is_unk(model: NGramModel) -> None:
    ids = model.tokenizer.encode(" Zorblax")
    assert len(ids) > 1 and model.detokenize(ids) == " Zorblax"
    assert model.tokenizer.encode("é") == [UNK]


def test_logits_are_a_smooth_distribution(model: NGramModel) -> None:
    prompt = model.render_chat([{"role": "user", "content": "The capital of France is"}])
    logits = model.start(prompt).logits()
    assert logits.shape == (model.vocab_size,) and logits.dtype == np.float32
    assert not logits.flags.writeable
    finite = np.isfinite(logits)
    assert set(np.flatnonzero(~finite).tolist()) == {BOS, UNK, ASSISTANT, EOS}  # first answer token: never </s>
    assert np.exp(logits[finite].astype(np.float64)).sum() == pytest.approx(1.0, abs=1e-4)
    assert model.token_text(int(np.argmax(logits))) == " Paris"
    assert np.count_nonzero(logits[finite] > -30) == finite.sum()  # no token is impossible


def test_render_chat_joins_messages_and_drops_trailing_spaces(model: NGramModel) -> None:
    ids = model.render_chat([{"role": "system", "content": "A"}, {"role": "user", "content": "B  "}])
    assert ids[0] == BOS and ids[-1] == ASSISTANT and model.detokenize(ids[1:]) == "A\nB"


@pytest.mark.slow
def test_model_builds_from_shipped_text() -> None:
    fresh = NGramModel("custom/name")
    assert fresh.name == "custom/name" and fresh.vocab_size == default_model().vocab_size


def generate(model: NGramModel, prompt: str, **kwargs: object) -> Generation:
    ids = model.render_chat([{"role": "user", "content": prompt}])
    options = {"seed": 0, "max_tokens": 40, **kwargs}
    params = options.pop("params", SamplingParams(temperature=0.0, logprobs=True))
    return Generation(model, ids, params, **options)  # type: ignore[arg-type]


def test_eos_is_neither_content_nor_logprob_but_is_counted(model: NGramModel) -> None:
    gen = generate(model, "The capital of France is")
    result = gen.run_to_end()
    assert result.text == " Paris." and result.finish_reason == "stop"
    assert [t.token for t in result.logprobs] == [" Paris", "."]
    assert gen.completion_tokens == 3 and gen.prompt_tokens == 7  # <s> The capital of France is <assistant>


def test_stop_sequences_pick_the_earliest(model: NGramModel) -> None:
    result = generate(model, "Once upon a time", stop=("forest", " small")).run_to_end()
    assert result.text == " Once upon a time a" and result.finish_reason == "stop"


def test_step_after_finish_is_an_error(model: NGramModel) -> None:
    gen = generate(model, "7 + 5 =")
    gen.run_to_end()
    with pytest.raises(RuntimeError):
        gen.step()


class SlowModel(NGramModel):
    """A real n-gram model that blocks like a native one (30 ms per token)."""

    blocking = True

    def __init__(self) -> None:
        super().__init__("slow/ngram")
        self.active = 0
        self.max_active = 0
        self.closed = 0
        self._guard = threading.Lock()

    def start(self, prompt_ids: Sequence[int]) -> NGramSession:
        with self._guard:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        return SlowSession(self, prompt_ids)


class SlowSession(NGramSession):
    def __init__(self, model: SlowModel, prompt_ids: Sequence[int]) -> None:
        super().__init__(model, prompt_ids)
        self._slow = model

    def logits(self) -> np.ndarray:
        time.sleep(0.03)
        return super().logits()

    def close(self) -> None:
        with self._slow._guard:
            self._slow.active -= 1
            self._slow.closed += 1


@pytest.mark.slow
def test_blocking_models_run_one_at_a_time_off_the_event_loop() -> None:
    slow = SlowModel()
    body = {"model": "slow/ngram", "messages": [{"role": "user", "content": "The fox"}], "max_tokens": 30, "temperature": 1.0, "frequency_penalty": -2, "seed": 1}
    with ServerThread(create_app({"slow/ngram": slow})) as server, httpx.Client(timeout=10) as http:
        http.get(f"{server.base_url}/models")  # warm connection
        url = f"{server.base_url}/chat/completions"
        results: list[int] = []
        threads = [
            threading.Thread(target=lambda s=stream: results.append(httpx.post(url, json={**body, "stream": s}, timeout=30).status_code))
            for stream in (False, True, False)
        ]
        for t in threads:
            t.start()
        time.sleep(0.1)
        start = time.monotonic()
        assert http.get(f"{server.base_url}/models").status_code == 200
        answered_in = time.monotonic() - start
        for t in threads:
            t.join()
    assert results == [200, 200, 200]
    assert slow.max_active == 1 and slow.closed == 3
    assert answered_in < 0.6  # one generation takes >= 0.9 s: the loop was not blocked


class PickyModel(NGramModel):
    """Refuses long prompts like a real model with a context limit; breaks on a magic word."""

    def __init__(self) -> None:
        super().__init__("picky/ngram")

    def start(self, prompt_ids: Sequence[int]) -> NGramSession:
        from harness.server.payloads import ApiError

        if len(prompt_ids) > 20:
            raise ApiError(400, "This model's context holds 20 tokens.", param="messages", code="context_length_exceeded")
        return BrokenSession(self, prompt_ids) if self.tokenizer.encode(" explode")[0] in prompt_ids else NGramSession(self, prompt_ids)


class BrokenSession(NGramSession):
    def logits(self) -> np.ndarray:
        raise RuntimeError("model crashed")


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_model_errors_become_openai_errors(stream: bool) -> None:
    with ServerThread(create_app({"picky/ngram": PickyModel()})) as server, httpx.Client(base_url=server.base_url) as http:
        long = {"model": "picky/ngram", "messages": [{"role": "user", "content": "word " * 30}], "stream": stream}
        response = http.post("/chat/completions", json=long)
        assert response.status_code == 400 and response.json()["error"]["code"] == "context_length_exceeded"
        broken = {**long, "messages": [{"role": "user", "content": "please explode"}]}
        if stream:
            with pytest.raises(httpx.RemoteProtocolError):
                http.post("/chat/completions", json=broken)
        else:
            response = http.post("/chat/completions", json=broken)
            assert response.status_code == 500 and response.json()["error"]["type"] == "server_error"
        assert http.post("/chat/completions", json={**long, "messages": [{"role": "user", "content": "7 + 5 ="}]}).status_code == 200


CREATIVE = [json.loads(line)["prompt"] for line in (Path(__file__).resolve().parents[1] / "datasets" / "creative.jsonl").read_text().splitlines()]


def answer(model: NGramModel, prompt: str, temperature: float, seed: int, max_tokens: int = 48) -> str:
    ids = model.render_chat([{"role": "user", "content": prompt}])
    return Generation(model, ids, SamplingParams(temperature=temperature), seed=seed, max_tokens=max_tokens).run_to_end().text


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.0, 1.5])
def test_every_open_prompt_gets_a_non_empty_answer(model: NGramModel, temperature: float) -> None:
    for seed in range(3):
        for prompt in [*CREATIVE, "Tell me about the sea.", "hi", "Zorblax qwerty?", ""]:
            assert answer(model, prompt, temperature, seed).strip(), (prompt, temperature, seed)


def test_answers_are_on_topic_and_chat_style(model: NGramModel) -> None:
    sea = answer(model, "Tell me about the sea.", 0.0, 0)
    assert " sea" in sea and not sea.startswith(" about")  # an answer, not a continuation
    on_topic = [bool(content_words(p) & content_words(answer(model, p, 0.7, 1))) for p in CREATIVE]
    assert sum(on_topic) >= 0.8 * len(CREATIVE)


def test_seeded_answers_reproduce_and_temperature_widens_them(model: NGramModel) -> None:
    prompt = "Describe a city that floats on the sea in one sentence."
    assert answer(model, prompt, 1.0, 5) == answer(model, prompt, 1.0, 5)
    distinct = {t: len({answer(model, prompt, t, s) for s in range(12)}) for t in (0.0, 0.7, 1.5)}
    assert distinct[0.0] == 1 < distinct[0.7] < distinct[1.5], distinct
