"""Byte-level models through the endpoint: whole UTF-8 characters, real logprob bytes, 400s.

`ScriptedByteModel` is a fake byte-level model (its tokens are single bytes, plus optional
multi-byte pieces) that greedily "generates" a fixed text. It re-uses `LlamaModel.start` and
`_LlamaSession`, so the llama adapter's context check runs for real, without llama.cpp.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from harness.localmodel.llama import LlamaModel
from harness.server.app import ServerThread, create_app
from harness.server.generate import Generation
from harness.server.model import token_bytes_function
from harness.server.payloads import ApiError, logprobs_body
from harness.server.sampler import SamplingParams

TEXT = "héllo 🌍"
EOS, SEP = 256, 257
RUNNER_UP = 0xF0  # a lone lead byte: the second-best token at every step (for top_logprobs)


class ScriptedByteModel:
    """Byte tokens 0-255, EOS, SEP (ends the prompt), then `pieces`; generates `script` greedily."""

    name = "fake/bytes"
    start = LlamaModel.start  # the real context check (400 context_length_exceeded)
    end_of_context_logits = LlamaModel.end_of_context_logits

    def __init__(self, script: Sequence[bytes], *, blocking: bool = False, n_ctx: int = 256, eos: bool = True) -> None:
        self._pieces = [bytes([b]) for b in range(256)] + [b"", b""]
        for piece in script:
            if len(piece) > 1 and piece not in self._pieces:
                self._pieces.append(piece)
        self._script = [self._pieces.index(piece) for piece in script] + ([EOS] if eos else [])
        self.vocab_size = len(self._pieces)
        self.eos_token_ids = frozenset({EOS})
        self.blocking = blocking
        self.n_ctx = n_ctx

    def render_chat(self, messages: Sequence[dict]) -> list[int]:
        text = "\n".join(str(m.get("content", "")) for m in messages)
        return list(text.encode("utf-8")) + [SEP]

    def token_bytes(self, token_id: int) -> bytes:
        return self._pieces[token_id]

    def token_text(self, token_id: int) -> str:
        return self._pieces[token_id].decode("utf-8", errors="replace")

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return b"".join(self._pieces[t] for t in token_ids).decode("utf-8", errors="replace")

    def _logits_for(self, tokens: list[int]) -> np.ndarray:
        """Called by `_LlamaSession.logits`: the next scripted token after the prompt's SEP."""
        position = len(tokens) - tokens.index(SEP) - 1
        logits = np.full(self.vocab_size, -20.0, dtype=np.float32)
        logits[RUNNER_UP] = -1.0
        logits[self._script[min(position, len(self._script) - 1)]] = 0.0
        return logits


def byte_script(text: str) -> list[bytes]:
    return [bytes([b]) for b in text.encode("utf-8")]


def generation(model: ScriptedByteModel, *, stop: Sequence[str] = (), max_tokens: int = 100,
               logprobs: bool = True, top: int = 0) -> Generation:
    params = SamplingParams(temperature=0.0, logprobs=logprobs, top_logprobs=top)
    prompt = model.render_chat([{"role": "user", "content": "hi"}])
    return Generation(model, prompt, params, seed=0, max_tokens=max_tokens, stop=stop)  # type: ignore[arg-type]


# ---------------------------------------------------------------- Generation


def test_byte_tokens_make_the_exact_text_and_real_logprob_bytes() -> None:
    gen = generation(ScriptedByteModel(byte_script(TEXT)), top=2)
    out = gen.run_to_end()
    assert out.text == TEXT and out.finish_reason == "stop" and gen.content == TEXT
    assert len(out.logprobs) == len(TEXT.encode()) == gen.completion_tokens - 1
    assert b"".join(t.token_bytes or b"" for t in out.logprobs) == TEXT.encode()
    assert [t.token for t in out.logprobs][-4:] == ["\ufffd"] * 4  # lossy text of the emoji's bytes
    body = logprobs_body(out.logprobs)["content"]
    assert bytes(b for item in body for b in item["bytes"]) == TEXT.encode()
    assert body[1]["token"] == "\ufffd" and body[1]["bytes"] == [0xC3]
    assert body[0]["top_logprobs"][1]["bytes"] == [RUNNER_UP] and body[0]["top_logprobs"][1]["token"] == "\ufffd"


@pytest.mark.parametrize("logprobs", [True, False])
def test_steps_hand_out_only_whole_characters(logprobs: bool) -> None:
    gen = generation(ScriptedByteModel(byte_script(TEXT)), logprobs=logprobs)
    deltas = []
    while gen.finish_reason is None:
        deltas.append(gen.step().text)
    assert "".join(deltas) == TEXT and "\ufffd" not in "".join(deltas)
    assert deltas[:3] == ["h", "", "é"]  # the first byte of é is held back until the second
    assert deltas[-5:] == ["", "", "", "🌍", ""]  # emoji after its 4th byte; EOS adds nothing


def test_run_in_small_batches_without_stops_or_logprobs() -> None:
    gen = generation(ScriptedByteModel(byte_script(TEXT)), logprobs=False)
    parts = []
    while gen.finish_reason is None:
        parts.append(gen.run(max_steps=3).text)
    assert "".join(parts) == TEXT and all("\ufffd" not in p for p in parts)


def test_multi_byte_pieces_split_at_odd_places() -> None:
    emoji = "🌍".encode()
    script = [b"h\xc3", b"\xa9llo ", emoji[:1], emoji[1:3], emoji[3:] + b"!"]
    out = generation(ScriptedByteModel(script)).run_to_end()
    assert out.text == "héllo 🌍!" and [t.token_bytes for t in out.logprobs] == script


@pytest.mark.parametrize(
    ("stop", "content"),
    [("🌍", "héllo "), ("llo", "hé"), ("é", "h"), ("o 🌍", "héll"), ("🌎", TEXT), ("\ufffd", TEXT)],
)
def test_stop_sequences_match_the_decoded_text(stop: str, content: str) -> None:
    gen = generation(ScriptedByteModel(byte_script(TEXT)), stop=[stop])
    deltas, logprobs = [], []
    while gen.finish_reason is None:
        delta = gen.step()
        deltas.append(delta.text)
        logprobs.extend(delta.logprobs)
    assert "".join(deltas) == content and gen.finish_reason == "stop"
    # a token's logprob travels with its text: none is handed out for text the stop removed
    assert b"".join(t.token_bytes or b"" for t in logprobs) == content.encode()
    out = generation(ScriptedByteModel(byte_script(TEXT)), stop=[stop]).run_to_end()
    assert out.text == content and out.logprobs == logprobs


def test_max_tokens_inside_a_character_flushes_one_replacement_character() -> None:
    cut = len("héllo ".encode()) + 2
    out = generation(ScriptedByteModel(byte_script(TEXT)), max_tokens=cut).run_to_end()
    assert out.text == "héllo \ufffd" and out.finish_reason == "length"
    plain = generation(ScriptedByteModel(byte_script(TEXT)), max_tokens=cut, logprobs=False).run_to_end()
    assert plain.text == "héllo \ufffd"


def test_eos_inside_a_character_flushes_and_can_still_hit_a_stop() -> None:
    script = byte_script("ok ") + ["🌍".encode()[:2]]
    assert generation(ScriptedByteModel(script)).run_to_end().text == "ok \ufffd"
    assert generation(ScriptedByteModel(script), stop=[" \ufffd"]).run_to_end().text == "ok"


def test_text_level_models_fall_back_to_the_utf8_of_their_text() -> None:
    class TextModel:
        def token_text(self, token_id: int) -> str:
            return ["é", "🌍"][token_id]

    bytes_of = token_bytes_function(TextModel())  # type: ignore[arg-type]
    assert bytes_of(0) == "é".encode() and bytes_of(1) == "🌍".encode()
    fake = ScriptedByteModel([b"x"])
    assert token_bytes_function(fake)(0xC3) == b"\xc3"  # type: ignore[arg-type]


# ---------------------------------------------------------------- through HTTP


def _body(**extra: Any) -> dict[str, Any]:
    return {"model": "fake/bytes", "messages": [{"role": "user", "content": "hi"}], "temperature": 0, **extra}


def _stream_chunks(http: httpx.Client, body: dict[str, Any]) -> list[dict[str, Any]]:
    chunks = []
    with http.stream("POST", "/chat/completions", json={**body, "stream": True}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(orjson.loads(line[6:]))
    return chunks


@pytest.mark.parametrize("blocking", [False, True])
def test_endpoint_content_stream_and_logprobs_bytes(blocking: bool) -> None:
    model = ScriptedByteModel(byte_script(TEXT), blocking=blocking)
    with ServerThread(create_app({model.name: model})) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
        answer = http.post("/chat/completions", json=_body(logprobs=True, top_logprobs=1)).json()
        choice = answer["choices"][0]
        assert choice["message"]["content"] == TEXT and choice["finish_reason"] == "stop"
        entries = choice["logprobs"]["content"]
        assert bytes(b for e in entries for b in e["bytes"]) == TEXT.encode()
        for stop, content in ((None, TEXT), (["🌍"], "héllo ")):
            chunks = _stream_chunks(http, _body(stop=stop, logprobs=True))
            deltas = [c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]]
            assert "".join(deltas) == content and "\ufffd" not in "".join(deltas)
            streamed = [e for c in chunks if c["choices"] and c["choices"][0]["logprobs"] for e in c["choices"][0]["logprobs"]["content"]]
            assert bytes(b for e in streamed for b in e["bytes"]) == content.encode()
            assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


# ---------------------------------------------------------------- prompt longer than the context


def test_llama_start_refuses_a_prompt_that_fills_the_context() -> None:
    model = ScriptedByteModel(byte_script(TEXT), n_ctx=16)
    with pytest.raises(ApiError) as info:
        model.start([1] * 16)
    assert info.value.status == 400 and info.value.code == "context_length_exceeded"
    assert info.value.param == "messages" and "16 tokens" in info.value.message
    model.start([1] * 15).close()


@pytest.mark.parametrize("blocking", [True, False])
@pytest.mark.parametrize("stream", [False, True])
def test_endpoint_answers_400_not_500_for_a_prompt_over_the_context(blocking: bool, stream: bool) -> None:
    model = ScriptedByteModel(byte_script(TEXT), blocking=blocking, n_ctx=16)
    with ServerThread(create_app({model.name: model})) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
        long = _body(messages=[{"role": "user", "content": "x" * 40}], stream=stream)
        response = http.post("/chat/completions", json=long)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "context_length_exceeded" and error["type"] == "invalid_request_error"
        # the server is still fine, and a short prompt that then fills the context ends with "stop"
        short = http.post("/chat/completions", json=_body(messages=[{"role": "user", "content": "0123456789"}]))
        assert short.status_code == 200
        assert short.json()["choices"][0]["message"]["content"] == "héll"  # 11 prompt + 5 generated tokens fill n_ctx 16
        assert short.json()["choices"][0]["finish_reason"] == "stop"
