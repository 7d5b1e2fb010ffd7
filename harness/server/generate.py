"""One chat completion as a sequence of steps: sample, detokenize, stop sequences, logprobs.

`Generation.step()` samples one token and returns the `Delta` it makes visible (possibly
empty: text that could be the start of a stop sequence is held back until it is decided).
The HTTP layer drives it token by token (streaming) or to the end (`run_to_end`).

Rules (documented for users in docs/readme/serve.md):
- content is the concatenation of the tokens' texts, cut before the first stop sequence;
- an EOS token ends with finish_reason "stop" and is neither in content nor in logprobs;
- a stop sequence ends with "stop"; logprobs keep the tokens that start before the stop
  sequence (the token that completes it is kept when part of it is content);
- reaching max_tokens ends with "length";
- completion_tokens counts every sampled token, EOS and stop tokens included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

from harness.server.model import LanguageModel, Session
from harness.server.sampler import Sampler, SamplingParams, StepResult

__all__ = ["Delta", "FinishReason", "Generation", "TokenLogprob"]

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token with its logprob and the top alternatives (text, logprob)."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass
class Delta:
    """What one step made visible: new content text and the logprobs of its tokens."""

    text: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: FinishReason | None = None


class Generation:
    """Generates one completion; `step()` until `finish_reason` is set."""

    def __init__(
        self,
        model: LanguageModel,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        *,
        seed: int | None,
        max_tokens: int,
        stop: Sequence[str] = (),
    ) -> None:
        self.model = model
        self.prompt_tokens = len(prompt_ids)
        self.completion_tokens = 0
        self.finish_reason: FinishReason | None = None
        self._params = params
        self._sampler = Sampler(params, seed)
        self._max_tokens = max_tokens
        self._stops = tuple(s for s in stop if s)
        self._generated: list[int] = []
        self._text = ""
        self._emitted = 0  # characters of _text already handed out
        self._session: Session | None = model.start(prompt_ids)

    def step(self) -> Delta:
        """Sample one token and return the newly visible text (the last one has finish_reason)."""
        if self.finish_reason is not None or self._session is None:
            raise RuntimeError("generation already finished")
        result = self._sampler.step(self._session.logits(), self._generated)
        self.completion_tokens += 1
        if result.token_id in self.model.eos_token_ids:
            return self._finish("stop", self._text_out(len(self._text)), [])
        self._generated.append(result.token_id)
        start = len(self._text)
        piece = self.model.token_text(result.token_id)
        self._text += piece
        logprobs = [self._token_logprob(piece, result)] if self._wants_logprobs else []
        cut = self._find_stop(start)
        if cut is not None:
            kept = logprobs if start < cut else []
            return self._finish("stop", self._text_out(cut), kept)
        if self.completion_tokens >= self._max_tokens:
            return self._finish("length", self._text_out(len(self._text)), logprobs)
        self._session.advance(result.token_id)
        return Delta(self._text_out(len(self._text) - self._held_back()), logprobs)

    def run_to_end(self) -> Delta:
        """Generate to the end; one Delta with all content and logprobs."""
        return self.run()

    def run(self, max_steps: int | None = None) -> Delta:
        """Up to `max_steps` tokens (None: to the end) as one Delta; finish_reason set at the end."""
        if self.finish_reason is not None or self._session is None:
            raise RuntimeError("generation already finished")
        if not self._stops and not self._params.logprobs:
            return self._run_plain(self._session, max_steps)
        total, parts, steps = Delta(), [], 0
        while total.finish_reason is None and (max_steps is None or steps < max_steps):
            delta = self.step()
            steps += 1
            parts.append(delta.text)
            total.logprobs.extend(delta.logprobs)
            total.finish_reason = delta.finish_reason
        total.text = "".join(parts)
        return total

    def _run_plain(self, session: Session, max_steps: int | None) -> Delta:
        """`run` without stop sequences or logprobs: the same tokens, less bookkeeping."""
        sample, text_of, eos = self._sampler.sample, self.model.token_text, self.model.eos_token_ids
        generated, limit = self._generated, self._max_tokens
        first, steps = len(generated), 0
        reason: FinishReason | None = None
        while True:
            token = sample(session.logits(), generated)
            self.completion_tokens += 1
            steps += 1
            if token in eos:
                reason = "stop"
                break
            generated.append(token)
            if self.completion_tokens >= limit:
                reason = "length"
                break
            session.advance(token)
            if max_steps is not None and steps >= max_steps:
                break
        self._text += "".join(text_of(t) for t in generated[first:])
        text = self._text_out(len(self._text))
        return self._finish(reason, text, []) if reason else Delta(text)

    @property
    def content(self) -> str:
        """The content handed out so far."""
        return self._text[: self._emitted]

    def close(self) -> None:
        """Release the model session (idempotent)."""
        if self._session is not None:
            self._session.close()
            self._session = None

    @property
    def _wants_logprobs(self) -> bool:
        return self._params.logprobs

    def _token_logprob(self, piece: str, result: StepResult) -> TokenLogprob:
        text = self.model.token_text
        top = tuple((text(i), lp) for i, lp in result.top)
        return TokenLogprob(piece, result.logprob, top)

    def _text_out(self, end: int) -> str:
        """Hand out _text[_emitted:end]."""
        out = self._text[self._emitted : end] if end > self._emitted else ""
        self._emitted = max(self._emitted, end)
        return out

    def _finish(self, reason: FinishReason, text: str, logprobs: list[TokenLogprob]) -> Delta:
        self.finish_reason = reason
        self.close()
        return Delta(text, logprobs, reason)

    def _find_stop(self, start: int) -> int | None:
        """Position of the earliest stop sequence that the newest token completed."""
        best: int | None = None
        for stop in self._stops:
            pos = self._text.find(stop, max(0, start - len(stop) + 1))
            if pos != -1 and (best is None or pos < best):
                best = pos
        return best

    def _held_back(self) -> int:
        """Length of the longest suffix of _text that begins some stop sequence."""
        held = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(self._text)), held, -1):
                if self._text.endswith(stop[:n]):
                    held = n
                    break
        return held
