"""One chat completion as a sequence of steps: sample, detokenize, stop sequences, logprobs.

`Generation.step()` samples one token and returns the `Delta` it makes visible (possibly
empty: text that could be the start of a stop sequence is held back until it is decided).
The HTTP layer drives it token by token (streaming) or to the end (`run_to_end`).

Rules (documented for users in docs/serve.md):
- content is the concatenation of the tokens' bytes decoded as UTF-8, cut before the first stop
  sequence: a character split across tokens (byte-level tokenizers) is handed out whole once its
  last byte arrives; bytes that never complete a character become U+FFFD at the end;
- an EOS token ends with finish_reason "stop" and is neither in content nor in logprobs;
- a stop sequence ends with "stop"; logprobs keep the tokens that start before the stop
  sequence (the token that completes it is kept when part of it is content);
- a token's logprob is handed out with the first text it starts: while that text is held back
  (a partial character, a possible stop prefix) its logprob waits too, so the logprobs handed
  out never belong to text that a stop sequence later removes;
- reaching max_tokens ends with "length";
- completion_tokens counts every sampled token, EOS and stop tokens included.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from harness.server.model import LanguageModel, Session, token_bytes_function
from harness.server.sampler import Sampler, SamplingParams, StepResult

__all__ = ["Delta", "FinishReason", "Generation", "TokenLogprob"]

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token with its logprob and the top alternatives (text, logprob).

    `token` and the alternatives' texts are lossy (a partial character shows as U+FFFD);
    `token_bytes` and `top_bytes` hold the real bytes (None/empty: the UTF-8 of the text).
    """

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()
    token_bytes: bytes | None = None
    top_bytes: tuple[bytes, ...] = ()


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
        self._bytes_of = token_bytes_function(model)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = ""  # complete characters only: a partial one waits in _decoder
        self._emitted = 0  # characters of _text already handed out
        self._pending: list[tuple[int, TokenLogprob]] = []  # (start in _text, logprob) not handed out
        self._session: Session | None = model.start(prompt_ids)

    def step(self) -> Delta:
        """Sample one token and return the newly visible text (the last one has finish_reason)."""
        if self.finish_reason is not None or self._session is None:
            raise RuntimeError("generation already finished")
        result = self._sampler.step(self._session.logits(), self._generated)
        self.completion_tokens += 1
        if result.token_id in self.model.eos_token_ids:
            return self._finish("stop", self._find_stop(self._decode(b"", final=True)))
        self._generated.append(result.token_id)
        last = self.completion_tokens >= self._max_tokens
        data = self._bytes_of(result.token_id)
        start = self._decode(data, final=last)
        if self._wants_logprobs:
            self._pending.append((start, self._token_logprob(data, result)))
        cut = self._find_stop(start)
        if cut is not None or last:
            return self._finish("stop" if cut is not None else "length", cut)
        self._session.advance(result.token_id)
        end = len(self._text) - self._held_back()
        return Delta(self._text_out(end), self._release(end))

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
        sample, bytes_of, eos = self._sampler.sample, self._bytes_of, self.model.eos_token_ids
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
        self._decode(b"".join(bytes_of(t) for t in generated[first:]), final=reason is not None)
        return self._finish(reason, None) if reason else Delta(self._text_out(len(self._text)))

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

    def _token_logprob(self, data: bytes, result: StepResult) -> TokenLogprob:
        text, bytes_of = self.model.token_text, self._bytes_of
        top = tuple((text(i), lp) for i, lp in result.top)
        top_bytes = tuple(bytes_of(i) for i, _ in result.top)
        return TokenLogprob(text(result.token_id), result.logprob, top, data, top_bytes)

    def _decode(self, data: bytes, *, final: bool = False) -> int:
        """Append the complete characters `data` makes (all, flushed, if final); their start."""
        start = len(self._text)
        self._text += self._decoder.decode(data, final)
        return start

    def _release(self, end: int | None) -> list[TokenLogprob]:
        """Hand out the pending logprobs of tokens that start before `end` (None: all)."""
        pending = self._pending
        n = len(pending)
        if end is not None:
            n = next((i for i, (start, _) in enumerate(pending) if start >= end), n)
        out = [logprob for _, logprob in pending[:n]]
        del pending[:n]
        return out

    def _text_out(self, end: int) -> str:
        """Hand out _text[_emitted:end]."""
        out = self._text[self._emitted : end] if end > self._emitted else ""
        self._emitted = max(self._emitted, end)
        return out

    def _finish(self, reason: FinishReason, cut: int | None) -> Delta:
        """The last Delta: content up to the stop sequence at `cut` (None: all of it)."""
        self.finish_reason = reason
        self.close()
        logprobs = self._release(cut)
        self._pending.clear()
        return Delta(self._text_out(len(self._text) if cut is None else cut), logprobs, reason)

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
