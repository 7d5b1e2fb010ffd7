"""Gemma 3 270M through llama-cpp-python's low-level API, as a `LanguageModel` for `harness serve`.

Only the forward pass runs in llama.cpp: the endpoint's own sampler turns the raw logits into the
next token and its logprobs (a partial sort over the 262k-token vocabulary), so validation,
sampling and the wire format are the same as for the reference endpoint.

One `llama_cpp.Llama` holds one KV cache. Sessions are served one at a time; a new session
re-uses the longest prefix already in the cache (few-shot prompts share most of their tokens).
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from harness.errors import TargetError
from harness.localmodel.gguf import INSTALL_HINT
from harness.server.payloads import ApiError

log = logging.getLogger(__name__)

DEFAULT_N_CTX = 4096
# "raw": the messages' text as a completion prompt (what a base model such as Gemma 3 270M
# answers well); "gemma": Gemma's <start_of_turn> chat turns (for instruction-tuned Gemma GGUFs).
ChatFormat = Literal["raw", "gemma"]
CHAT_FORMATS: tuple[str, ...] = ("raw", "gemma")


def default_threads() -> int:
    """CPU threads for llama.cpp: one core is left for harness itself (HTTP, sampler, storage).

    llama.cpp's worker threads spin at barriers: on 2 cores shared with the runner, 2 threads were
    measured 4-7x slower per token than 1 (bench/bench_local.py).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 2
    return max(1, min(cores - 1, 8))


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError:
        raise TargetError(f"llama-cpp-python is not installed; {INSTALL_HINT}") from None
    return llama_cpp


def _message_text(message: dict[str, Any], index: int) -> str:
    """The text of one chat message (a string or a list of text parts)."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"]
        return "".join(texts)
    raise ValueError(f"messages[{index}].content must be a string or a list of text parts")


def gemma_turns(messages: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """(role, text) turns in Gemma's chat format: system text joins the first user turn."""
    system: list[str] = []
    turns: list[tuple[str, str]] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        text = _message_text(message, index)
        if role in ("system", "developer"):
            system.append(text)
            continue
        if role not in ("user", "assistant"):
            raise ValueError(f"messages[{index}].role must be system, user or assistant, not {role!r}")
        turns.append(("model" if role == "assistant" else "user", text))
    if system:
        prefix = "\n\n".join(system)
        if turns and turns[0][0] == "user":
            turns[0] = ("user", f"{prefix}\n\n{turns[0][1]}")
        else:
            turns.insert(0, ("user", prefix))
    return turns


def raw_prompt(messages: Sequence[dict[str, Any]]) -> str:
    """A base model's completion prompt: the messages' texts, a blank line apart.

    A trailing assistant message is continued directly (prefill), without the blank line.
    """
    texts = [_message_text(message, index) for index, message in enumerate(messages)]
    for index, message in enumerate(messages):
        if message.get("role") not in ("system", "developer", "user", "assistant"):
            raise ValueError(f"messages[{index}].role must be system, user or assistant, not {message.get('role')!r}")
    if len(texts) > 1 and messages[-1].get("role") == "assistant":
        return "\n\n".join(texts[:-1]) + texts[-1]
    return "\n\n".join(texts)


class _LlamaSession:
    """One generation: the tokens of its context; the shared cache is synced on demand."""

    def __init__(self, model: LlamaModel, prompt_ids: Sequence[int]) -> None:
        self._model = model
        self._tokens = list(prompt_ids)
        self._closed = False

    def logits(self) -> np.ndarray:
        """Next-token logits after the session's tokens (a copy, float32)."""
        if self._closed:
            raise RuntimeError("session is closed")
        if len(self._tokens) >= self._model.n_ctx:
            return self._model.end_of_context_logits()
        return self._model._logits_for(self._tokens)

    def advance(self, token_id: int) -> None:
        """Append a sampled token; evaluated lazily on the next `logits()`."""
        self._tokens.append(int(token_id))

    def close(self) -> None:
        """Nothing to free: the cache keeps the tokens for the next prompt's prefix."""
        self._closed = True


class LlamaModel:
    """A GGUF model as a `harness.server.model.LanguageModel` (`raw` or `gemma` prompt format)."""

    blocking = True

    def __init__(self, model_path: str | Path, *, name: str = "gemma-3-270m", chat_format: ChatFormat = "raw",
                 n_ctx: int = DEFAULT_N_CTX, n_threads: int | None = None) -> None:
        llama_cpp = _import_llama_cpp()
        self._lib = llama_cpp
        threads = n_threads or default_threads()
        self.name = name
        self.chat_format = chat_format
        self._lock = threading.Lock()
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(model_path), n_ctx=n_ctx, logits_all=False, n_threads=threads,
                n_threads_batch=threads, swa_full=True, verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise TargetError(f"llama.cpp cannot load the model ({exc})", file=str(model_path)) from None
        self.n_ctx = self._llm.n_ctx()
        self.vocab_size = self._llm.n_vocab()
        self._bos = self._llm.token_bos()
        self._start_turn = self._special("<start_of_turn>")
        self._end_turn = self._special("<end_of_turn>")
        self.eos_token_ids = frozenset({self._llm.token_eos(), *self._end_turn})
        self._piece = lru_cache(maxsize=None)(self._piece)  # type: ignore[method-assign]
        self.token_text = lru_cache(maxsize=None)(self._token_text)
        self._evaluated = -1  # context length whose logits llama.cpp holds now
        self.prefix_hits = 0  # tokens re-used from the cache (for benchmarks)

    # -- tokens ------------------------------------------------------------------------------

    def _special(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def _plain(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) if text else []

    def render_chat(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        """Prompt token ids in the model's chat format (`raw` or `gemma`), BOS first."""
        if self.chat_format == "gemma":
            return self._render_gemma(messages)
        return [self._bos] + self._plain(raw_prompt(messages))

    def _render_gemma(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        """`<bos><start_of_turn>user\n…<end_of_turn>\n<start_of_turn>model\n` as token ids.

        Message text is tokenized without special tokens, so a prompt cannot forge turn markers.
        A trailing assistant message is continued (prefill) rather than closed.
        """
        turns = gemma_turns(messages)
        ids = [self._bos]
        newline = self._plain("\n")
        for position, (role, text) in enumerate(turns):
            ids += self._start_turn + self._plain(f"{role}\n") + self._plain(text.strip())
            if role == "model" and position == len(turns) - 1:
                return ids
            ids += self._end_turn + newline
        return ids + self._start_turn + self._plain("model\n")

    def _piece(self, token_id: int) -> bytes:
        buffer = ctypes.create_string_buffer(128)
        vocab = self._llm._model.vocab
        n = self._lib.llama_token_to_piece(vocab, int(token_id), buffer, len(buffer), 0, False)
        return buffer.raw[: max(n, 0)]

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes of one token (a byte-fallback token is one byte of a UTF-8 character)."""
        return self._piece(token_id)

    def _token_text(self, token_id: int) -> str:
        """The text of one token (a lone byte of a multi-byte character shows as U+FFFD)."""
        return self._piece(token_id).decode("utf-8", errors="replace")

    def detokenize(self, token_ids: Sequence[int]) -> str:
        """Text of a token sequence; special tokens are left out."""
        data = b"".join(self._piece(t) for t in token_ids)
        return data.decode("utf-8", errors="replace")

    # -- generation --------------------------------------------------------------------------

    def start(self, prompt_ids: Sequence[int]) -> _LlamaSession:
        """Begin a generation; a prompt that does not fit the context is a 400 `ApiError`."""
        if len(prompt_ids) >= self.n_ctx:
            raise ApiError(400, f"This model's context holds {self.n_ctx} tokens; the prompt has "
                                f"{len(prompt_ids)}.", param="messages", code="context_length_exceeded")
        return _LlamaSession(self, prompt_ids)

    def _logits_for(self, tokens: list[int]) -> np.ndarray:
        """Bring the KV cache to exactly `tokens` (re-using the common prefix) and read the logits."""
        with self._lock:
            llm = self._llm
            keep = self._common_prefix(tokens)
            if keep == len(tokens) == self._evaluated:
                return self._read_logits()
            if keep == len(tokens):
                keep -= 1  # replay one token so the logits belong to this context
            if keep > 0 and not llm._ctx.kv_cache_seq_rm(-1, keep, -1):
                keep = 0
            if keep == 0:
                llm.reset()
            llm.n_tokens = keep
            self.prefix_hits += keep
            self._evaluated = -1
            llm.eval(tokens[keep:])
            self._evaluated = llm.n_tokens
            return self._read_logits()

    def end_of_context_logits(self) -> np.ndarray:
        """Logits that make any sampler pick EOS: a full context ends the answer, not the server."""
        log.warning("context of %d tokens is full: ending the answer", self.n_ctx)
        logits = np.full(self.vocab_size, -1e9, dtype=np.float32)
        logits[sorted(self.eos_token_ids)[0]] = 0.0
        return logits

    def _read_logits(self) -> np.ndarray:
        pointer = self._llm._ctx.get_logits_ith(-1)
        return np.ctypeslib.as_array(pointer, shape=(self.vocab_size,)).copy()

    def _common_prefix(self, tokens: list[int]) -> int:
        llm = self._llm
        cached = llm.input_ids[: llm.n_tokens]
        n = min(len(cached), len(tokens))
        if n == 0:
            return 0
        differs = np.nonzero(cached[:n] != np.asarray(tokens[:n]))[0]
        return int(differs[0]) if differs.size else n

    def close(self) -> None:
        """Free the llama.cpp context and weights."""
        with self._lock:
            self._llm.close()


def load(name: str = "gemma-3-270m", **kwargs: Any) -> LlamaModel:
    """The embedded model `name`, its GGUF assembled into the cache first if needed."""
    from harness.localmodel.gguf import gguf_path, model_info

    info = model_info(name)
    _import_llama_cpp()
    kwargs.setdefault("chat_format", info.chat_format)
    return LlamaModel(gguf_path(name), name=name, **kwargs)


__all__ = ["CHAT_FORMATS", "DEFAULT_N_CTX", "ChatFormat", "LlamaModel", "default_threads", "gemma_turns", "load", "raw_prompt"]
