"""The seam between the HTTP endpoint and a language model.

The reference endpoint (`harness serve`) drives any `LanguageModel` with the same sampler
(`harness.server.sampler`), so the tiny built-in n-gram model and the embedded llama.cpp model
(`harness.localmodel.process`) share validation, sampling, logprobs, stop sequences and the wire format.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np


class Session(Protocol):
    """One generation in progress. Not shared between requests."""

    def logits(self) -> np.ndarray:
        """Raw next-token logits (float32/float64, shape (vocab_size,)) for the current context."""
        ...

    def advance(self, token_id: int) -> None:
        """Append the sampled token to the context."""
        ...

    def close(self) -> None:
        """Release resources (KV cache, locks)."""
        ...


class LanguageModel(Protocol):
    """What the endpoint needs of a model.

    A model whose tokens are byte sequences (a byte-level BPE with byte fallback, as llama.cpp's
    Gemma) should also offer `token_bytes` (see `ByteLevelModel`): the endpoint then decodes the
    content from the tokens' bytes, so a character split across tokens comes out whole.
    """

    name: str
    vocab_size: int
    eos_token_ids: frozenset[int]
    # True when `start`/`Session` methods block (a native model): the endpoint then runs the
    # generation in a worker thread and serializes access.
    blocking: bool

    def render_chat(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        """Turn OpenAI chat messages into prompt token ids (the model's chat format)."""
        ...

    def token_text(self, token_id: int) -> str:
        """The text piece of one token (for logprobs; a partial character may show as U+FFFD)."""
        ...

    def detokenize(self, token_ids: Sequence[int]) -> str:
        """The text of a sequence of tokens."""
        ...

    def start(self, prompt_ids: Sequence[int]) -> Session:
        """Begin a generation from the prompt."""
        ...


class ByteLevelModel(LanguageModel, Protocol):
    """A `LanguageModel` that also tells the raw bytes of each token (optional extension)."""

    def token_bytes(self, token_id: int) -> bytes:
        """The raw UTF-8 bytes of one token (may be part of a multi-byte character)."""
        ...


def token_bytes_function(model: LanguageModel) -> Callable[[int], bytes]:
    """`model.token_bytes` when the model has it, else the UTF-8 encoding of `token_text`."""
    method = getattr(model, "token_bytes", None)
    if callable(method):
        return method
    text = model.token_text
    return lambda token_id: text(token_id).encode("utf-8", errors="surrogatepass")
