"""The seam between the HTTP endpoint and a language model.

The reference endpoint (`harness serve`) drives any `LanguageModel` with the same sampler
(`harness.server.sampler`), so the tiny built-in n-gram model and the embedded llama.cpp model
(`harness.local`) share validation, sampling, logprobs, stop sequences and the wire format.
"""

from __future__ import annotations

from typing import Protocol, Sequence

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
    """What the endpoint needs of a model."""

    name: str
    vocab_size: int
    eos_token_ids: frozenset[int]
    # True when `start`/`Session` methods block (a native model): the endpoint then runs the
    # generation in a worker thread and serializes access.
    blocking: bool

    def render_chat(self, messages: Sequence[dict]) -> list[int]:
        """Turn OpenAI chat messages into prompt token ids (the model's chat format)."""
        ...

    def token_text(self, token_id: int) -> str:
        """The text piece of one token (for logprobs and streaming deltas)."""
        ...

    def detokenize(self, token_ids: Sequence[int]) -> str:
        """The text of a sequence of tokens."""
        ...

    def start(self, prompt_ids: Sequence[int]) -> Session:
        """Begin a generation from the prompt."""
        ...
