"""The tests, one per parameter; each returns a `ParamResult` and spends requests via the Sender.

Two kinds (error rates in docs/probe.md):
- statistical (temperature 0, top_k, top_p, min_p, seed): tokens are drawn at temperature 1 from
  high-entropy prompts; a token the rule forbids means "ignored"; "honoured" once the chance that
  an ignoring server stayed inside the rule by luck is below alpha (sequential likelihood ratio,
  see tokens.py); the budget running out first gives "inconclusive".
- deterministic (penalties, stop, max_tokens, stream, logprobs): compared with greedy answers,
  which are checked to repeat exactly; no randomness is involved.
A refusal (an HTTP error answer) is "rejected", quoting the server.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from harness.probe.sender import PROMPTS, REPEAT_PROMPTS, BudgetSpent, Outcome, Sender
from harness.probe.tokens import (
    Judge,
    Position,
    greedy_judge,
    min_p_judge,
    positions,
    top_k_judge,
    top_p_judge,
)
from harness.probe.verdicts import ParamResult, Verdict

__all__ = ["Probe"]

ROUND = 4  # requests per round of a statistical test
SAMPLE_TOKENS = 4  # tokens per request of a statistical test
GREEDY_TOKENS = 24  # tokens of the greedy answers the deterministic tests compare
STOP_TRIES = 3  # greedy references the stop test tries when a batched greedy step flips
TOP = 20  # top_logprobs asked for (the seed API's maximum)
PENALTY = 2.0
NULL_TEMPERATURE = 0.7  # the lowest default temperature an ignoring server is assumed to use
# greedy, and seeded so that the answers still repeat on a server that ignores temperature
GREEDY: dict[str, Any] = {"temperature": 0.0, "seed": 7}


@dataclass
class Probe:
    """One probe session: the sender, the test level and what was learnt so far."""

    sender: Sender
    alpha: float = 1e-3
    top: int = TOP
    logprobs_ok: bool = False
    mode: str = "unknown"
    unknown_field: str = "unknown"
    top_k_off: dict[str, str] = field(default_factory=dict)  # "-1"/"0" -> accepted | refused
    notes: list[str] = field(default_factory=list)
    greedy: dict[str, Outcome] = field(default_factory=dict)  # repeatable greedy answers by prompt

    def body(self, prompt: str, max_tokens: int = SAMPLE_TOKENS, *, logprobs: bool = True, **fields: Any) -> dict[str, Any]:
        extra: dict[str, Any] = {"logprobs": True, "top_logprobs": self.top} if logprobs and self.logprobs_ok else {}
        return self.sender.body(prompt, max_tokens=max_tokens, **extra, **fields)

    # ------------------------------------------------------------ set-up: logprobs and the mode

    async def plain(self) -> Outcome:
        """A request with no sampling parameter but max_tokens: must work, else nothing can be probed."""
        return await self.sender.send(self.sender.body(PROMPTS[0], max_tokens=SAMPLE_TOKENS))

    async def logprobs(self) -> ParamResult:
        out = await self.sender.send(self.sender.body(PROMPTS[0], max_tokens=SAMPLE_TOKENS, logprobs=True, temperature=1.0))
        sent = {"logprobs": True}
        if out.refused:
            return ParamResult("logprobs", "rejected", out.words(), requests=out.attempts, sent=sent)
        if not out.ok:
            return ParamResult("logprobs", "inconclusive", out.words(), requests=out.attempts, sent=sent)
        assert out.completion is not None
        items = out.completion.logprobs
        if not items:
            return ParamResult("logprobs", "ignored", "the answer carries no logprobs", requests=1, sent=sent)
        tokens = out.completion.completion_tokens
        bad = [i for i, t in enumerate(items) if not float(t["logprob"]) <= 1e-6]
        if bad:
            return ParamResult("logprobs", "ignored", f"logprob above 0 at token {bad[0]}", requests=1, sent=sent)
        count_ok = abs(len(items) - tokens) <= 1
        self.logprobs_ok = True
        evidence = f"{len(items)} tokens, all logprobs <= 0; usage.completion_tokens={tokens}"
        if not count_ok:
            evidence += " (count does not match usage)"
            self.notes.append(f"logprobs: {len(items)} entries for {tokens} completion tokens")
        return ParamResult("logprobs", "honoured", evidence, "well formed" if count_ok else "count mismatch", 1, sent)

    async def top_logprobs(self) -> tuple[ParamResult, Outcome | None]:
        if not self.logprobs_ok:
            return ParamResult("top_logprobs", "inconclusive", "logprobs are not available"), None
        requests = 0
        for top in (TOP, 5):
            out = await self.sender.send(self.sender.body(PROMPTS[0], max_tokens=1, logprobs=True, top_logprobs=top, temperature=1.0))
            requests += out.attempts
            sent = {"top_logprobs": top}
            if out.refused:
                if top == TOP:
                    self.notes.append(f"top_logprobs={TOP} refused ({out.words()}); tried 5")
                    continue
                self.logprobs_ok = False
                return ParamResult("top_logprobs", "rejected", out.words(), requests=requests, sent=sent), None
            if not out.ok or out.completion is None:
                return ParamResult("top_logprobs", "inconclusive", out.words(), requests=requests, sent=sent), None
            self.top = top
            judged = _judge_top(out, top, requests)
            if judged.verdict != "honoured":
                self.logprobs_ok = False  # the statistical tests read the candidates: without them, no evidence
                return judged, None
            return judged, out
        raise AssertionError("unreachable")

    async def detect_mode(self, at_one: Outcome | None) -> None:
        """raw or processed logprobs: the same first position at temperature 0.5 and 1."""
        if at_one is None or not self.logprobs_ok:
            return
        half = await self.sender.send(self.body(PROMPTS[0], max_tokens=1, temperature=0.5))
        one_pos, half_pos = _first(at_one), _first(half)
        if one_pos is None or half_pos is None:
            return
        self.mode = _mode(one_pos, half_pos)

    # ------------------------------------------------------------ statistical tests

    async def sequential(self, name: str, judge: Judge, cap: int, **fields: Any) -> ParamResult:
        """Rounds of ROUND requests until a violation, LR < alpha, or `cap` requests."""
        if not self.logprobs_ok:
            return ParamResult(name, "inconclusive", "needs logprobs with top candidates", sent=dict(fields))
        log_lr, tokens, spent, turn = 0.0, 0, 0, 0
        target = math.log(self.alpha)
        size = 1  # one request first: a refusal costs one request, not a round
        while spent + size <= cap:
            bodies = [self.body(PROMPTS[(turn + i) % len(PROMPTS)], **fields) for i in range(size)]
            turn, size = turn + size, ROUND
            try:
                outcomes = await self.sender.send_all(bodies)
            except BudgetSpent:
                break
            spent += sum(o.attempts for o in outcomes)
            for out in outcomes:
                early = _refusal(name, out, spent, fields)
                if early is not None:
                    return early
                for pos in positions(out.completion.logprobs if out.completion else None):
                    verdict = judge(pos)
                    tokens += 1
                    if verdict.violates:
                        return ParamResult(name, "ignored", verdict.why, f"a forbidden token after {tokens} tokens", spent, dict(fields))
                    log_lr += math.log(max(verdict.p_allowed, 1e-300))
            if log_lr <= target:
                stat = f"P(stays inside by chance | ignored) <= {math.exp(log_lr):.1e} over {tokens} tokens"
                return ParamResult(name, "honoured", f"every one of {tokens} tokens obeyed the rule", stat, spent, dict(fields))
        stat = f"P(stays inside by chance | ignored) <= {math.exp(log_lr):.2g} over {tokens} tokens; need < {self.alpha:g}"
        return ParamResult(name, "inconclusive", "no violation, but too little evidence for the budget", stat, spent, dict(fields))

    async def temperature(self, cap: int) -> ParamResult:
        # a server ignoring temperature samples at its default: 1 (OpenAI, vLLM), 0.8 (llama.cpp,
        # ollama); the chance of greedy-by-luck is bounded at 0.7 to cover them all
        result = await self.sequential("temperature", lambda pos: greedy_judge(pos, NULL_TEMPERATURE), cap, temperature=0.0)
        if result.verdict == "honoured":
            result.evidence = f"temperature 0 is greedy: {result.evidence}"
        return result

    async def top_k(self, cap: int) -> ParamResult:
        return await self.sequential("top_k", top_k_judge(2), cap, temperature=1.0, top_k=2)

    async def top_p(self, cap: int) -> ParamResult:
        return await self.sequential("top_p", top_p_judge(0.05), cap, temperature=1.0, top_p=0.05)

    async def min_p(self, cap: int) -> ParamResult:
        return await self.sequential("min_p", min_p_judge(0.5), cap, temperature=1.0, min_p=0.5)

    async def seed(self, cap: int) -> ParamResult:
        """Pairs with the same seed must match; the chance a seed-ignoring server repeats a path
        is the product of its token probabilities (renormalized over the candidates shown)."""
        if not self.logprobs_ok:
            return ParamResult("seed", "inconclusive", "needs logprobs with top candidates", sent={"seed": "various"})
        log_lr, spent, differ, pairs, turn = 0.0, 0, False, 0, 0
        while spent + ROUND <= cap:
            prompt = PROMPTS[turn % len(PROMPTS)]
            seeds = (1000 + 2 * turn, 1001 + 2 * turn)
            turn += 1
            bodies = [self.body(prompt, temperature=1.0, seed=s) for s in seeds for _ in range(2)]
            try:
                # One at a time: a server that batches concurrent requests (llama.cpp's continuous
                # batching) computes slightly different logits per batch, so even a seed it honours
                # would not reproduce across concurrent twins.
                a1, a2, b1, b2 = [(await self.sender.send_all([body]))[0] for body in bodies]
            except BudgetSpent:
                break
            spent += sum(o.attempts for o in (a1, a2, b1, b2))
            for out in (a1, a2, b1, b2):
                early = _refusal("seed", out, spent, {"seed": seeds[0]})
                if early is not None:
                    return early
            for first, second in ((a1, a2), (b1, b2)):
                pairs += 1
                if _tokens(first) != _tokens(second):
                    why = f"seed {first.body['seed']} gave {_text(first)!r} then {_text(second)!r}"
                    return ParamResult("seed", "ignored", why, f"after {pairs} same-seed pairs", spent, {"seed": first.body["seed"]})
                log_lr += sum(math.log(max(math.exp(p.logprob) / max(p.mass, 1e-300), 1e-300)) for p in _positions(first))
            differ = differ or _tokens(a1) != _tokens(b1)
            if log_lr <= math.log(self.alpha) and differ:
                stat = f"P(all {pairs} pairs match | seed ignored) <= {math.exp(log_lr):.1e}"
                return ParamResult("seed", "honoured", f"{pairs} same-seed pairs matched; different seeds differed", stat, spent, {"seed": "1000+"})
        why = "different seeds gave the same answers" if not differ else "pairs matched, too little evidence for the budget"
        stat = f"P(match | ignored) <= {math.exp(log_lr):.2g}; need < {self.alpha:g}"
        return ParamResult("seed", "inconclusive", why, stat, spent, {"seed": "1000+"})

    # ------------------------------------------------------------ deterministic tests

    async def establish_greedy(self) -> None:
        """Two greedy answers to each REPEAT_PROMPTS entry; those that agree are kept."""
        bodies = [self.body(p, GREEDY_TOKENS, **GREEDY) for p in REPEAT_PROMPTS for _ in range(2)]
        outcomes = await self.sender.send_all(bodies)
        for i, prompt in enumerate(REPEAT_PROMPTS):
            first, second = outcomes[2 * i], outcomes[2 * i + 1]
            if not (first.ok and second.ok):
                self.notes.append(f"greedy request failed: {first.words() or second.words()}")
            elif _tokens(first) != _tokens(second):
                self.notes.append(f"temperature 0 is not deterministic: {_text(first)!r} vs {_text(second)!r}")
            else:
                self.greedy[prompt] = first

    @property
    def reference(self) -> tuple[str, Outcome] | None:
        """The first repeatable greedy answer (prompt, outcome)."""
        return next(iter(self.greedy.items()), None)

    async def penalty(self, name: str) -> ParamResult:
        """Greedy answers with the penalty at +-2 must change somewhere (deterministic)."""
        if not self.greedy:
            return ParamResult(name, "inconclusive", "no repeatable greedy answer to compare with")
        spent = 0
        for prompt, base in self.greedy.items():
            for value in (PENALTY, -PENALTY):
                fields: dict[str, Any] = {**GREEDY, name: value}
                out = await self.sender.send(self.body(prompt, GREEDY_TOKENS, **fields))
                spent += out.attempts
                early = _refusal(name, out, spent, {name: value})
                if early is not None:
                    return early
                if _tokens(out) != _tokens(base):
                    at = _first_difference(_tokens(base), _tokens(out))
                    why = f"greedy answer changed at token {at}: {_text(base)!r} -> {_text(out)!r}"
                    return ParamResult(name, "honoured", why, "deterministic (greedy answers repeat exactly)", spent, {name: value})
                if self.mode == "processed" and _logprob_values(out) != _logprob_values(base):
                    return ParamResult(name, "honoured", "same tokens, penalized logprobs", "deterministic", spent, {name: value})
        flips = [f for base in self.greedy.values() for v in (PENALTY, -PENALTY) if (f := _predicted_flip(base, name, v))]
        if flips and self.mode == "raw":
            return ParamResult(name, "ignored", f"greedy answers unchanged although {flips[0]}", "deterministic", spent, {name: PENALTY})
        why = f"greedy answers unchanged with {name}=+-{PENALTY:g}; no repeated token close enough to the runner-up to prove it"
        return ParamResult(name, "inconclusive", why, "", spent, {name: PENALTY})

    async def stop(self) -> ParamResult:
        """Cut a repeatable greedy answer at a piece of its text. A server batching requests may
        flip a near-tie greedy step between the reference and this request (llama.cpp's
        continuous batching): a different answer without the stop string proves nothing, so the
        next reference is tried, the most clear-cut (largest top-1 margin) first."""
        refs = sorted(self.greedy.items(), key=lambda item: -_margin(item[1]))
        spent, drift = 0, ""
        for prompt, base in refs[:STOP_TRIES]:
            text = _text(base)
            cut = _stop_string(text)
            if cut is None:
                continue
            out = await self.sender.send(self.body(prompt, GREEDY_TOKENS, logprobs=False, **GREEDY, stop=[cut]))
            spent += out.attempts
            early = _refusal("stop", out, spent, {"stop": [cut]})
            if early is not None:
                return early
            got, expect = _text(out), text[: text.index(cut)]
            reason = out.completion.finish_reason if out.completion else None
            sent = {"stop": [cut]}
            if got == expect or got == expect + cut:
                kept = " (the stop string is kept in content)" if got != expect else ""
                return ParamResult("stop", "honoured", f"cut before {cut!r}{kept}, finish_reason={reason}", "deterministic", spent, sent)
            if cut in got[: max(0, len(got) - len(cut))] or got == text:
                return ParamResult("stop", "ignored", f"answer not cut at {cut!r}: {got!r}", "deterministic", spent, sent)
            drift = f"expected {expect!r}, got {got!r}"
        if not drift:
            return ParamResult("stop", "inconclusive", "no greedy answer long enough to cut")
        return ParamResult("stop", "inconclusive", f"the greedy answers changed between requests; last: {drift}", "", spent)

    async def max_tokens(self) -> ParamResult:
        ref = self.reference
        if ref is None or ref[1].completion is None or ref[1].completion.completion_tokens <= 3:
            return ParamResult("max_tokens", "inconclusive", "no greedy answer longer than 3 tokens")
        out = await self.sender.send(self.body(ref[0], 2, logprobs=False, **GREEDY))
        early = _refusal("max_tokens", out, out.attempts, {"max_tokens": 2})
        if early is not None:
            return early
        assert out.completion is not None
        used, reason = out.completion.completion_tokens, out.completion.finish_reason
        sent = {"max_tokens": 2}
        if used <= 2:
            return ParamResult("max_tokens", "honoured", f"{used} tokens, finish_reason={reason}", "deterministic", out.attempts, sent)
        return ParamResult("max_tokens", "ignored", f"{used} completion tokens for max_tokens=2", "deterministic", out.attempts, sent)

    async def stream(self) -> list[ParamResult]:
        ref = self.reference
        prompt = ref[0] if ref is not None else REPEAT_PROMPTS[0]
        fields = {**GREEDY, "stream": True, "stream_options": {"include_usage": True}}
        out = await self.sender.send(self.body(prompt, GREEDY_TOKENS, logprobs=False, **fields))
        spent = out.attempts
        if out.refused:
            plain = await self.sender.send(self.body(prompt, GREEDY_TOKENS, logprobs=False, **GREEDY, stream=True))
            spent += plain.attempts
            if plain.refused:
                return [ParamResult("stream", "rejected", plain.words(), requests=spent, sent={"stream": True}),
                        ParamResult("stream_options", "inconclusive", "stream is refused")]
            streamed = (plain.completion is not None and plain.completion.ttft_s is not None) or "missing from the stream" in plain.words()
            verdict: Verdict = "honoured" if streamed else ("ignored" if plain.ok else "inconclusive")
            why = "answered as server-sent events" if streamed else (plain.words() or "answered with one JSON body, not a stream")
            return [ParamResult("stream", verdict, why, requests=spent, sent={"stream": True}),
                    ParamResult("stream_options", "rejected", out.words(), requests=0, sent={"stream_options": {"include_usage": True}})]
        usage = {"stream_options": {"include_usage": True}}
        if out.failure is not None and "missing from the stream" in out.words():
            return [ParamResult("stream", "honoured", "answered as server-sent events", "", spent, {"stream": True}),
                    ParamResult("stream_options", "ignored", "include_usage asked, but no usage chunk came", "", 0, usage)]
        if out.completion is None:
            return [ParamResult("stream", "inconclusive", out.words(), requests=spent, sent={"stream": True}),
                    ParamResult("stream_options", "inconclusive", "no stream to judge")]
        if out.completion.ttft_s is None:
            return [ParamResult("stream", "ignored", "answered with one JSON body, not a stream", "", spent, {"stream": True}),
                    ParamResult("stream_options", "inconclusive", "no stream to judge")]
        same = ref is None or _text(out) == _text(ref[1])
        note = "" if same else f" (content differs from the non-streamed answer: {_text(out)!r})"
        return [ParamResult("stream", "honoured", "answered as server-sent events" + note, "", spent, {"stream": True}),
                ParamResult("stream_options", "honoured", f"usage chunk: {out.completion.completion_tokens} completion tokens", "", 0, usage)]

    async def off_values(self) -> None:
        """Which spelling of "top_k off" the server takes: the seed API's -1, or 0."""
        outs = await self.sender.send_all([self.body(PROMPTS[0], 1, logprobs=False, top_k=v) for v in (-1, 0)])
        self.top_k_off = {str(v): ("accepted" if o.ok else ("refused" if o.refused else "unknown")) for v, o in zip((-1, 0), outs)}
        for v, out in zip((-1, 0), outs):
            if out.refused:
                self.notes.append(f"top_k={v} (\"off\") is refused: {out.words()}")

    async def unknown(self) -> None:
        out = await self.sender.send(self.body(PROMPTS[0], 2, logprobs=False, temperature=0.0, harness_probe_unknown_field=1))
        self.unknown_field = "refused" if out.refused else ("dropped" if out.ok else "unknown")
        if out.refused:
            self.notes.append(f"an unknown body field is refused: {out.words()}")


# ---------------------------------------------------------------- helpers


def _refusal(name: str, out: Outcome, spent: int, sent: dict[str, Any]) -> ParamResult | None:
    if out.refused:
        return ParamResult(name, "rejected", out.words(), "", spent, dict(sent))
    if not out.ok:
        return ParamResult(name, "inconclusive", f"request failed: {out.words()}", "", spent, dict(sent))
    return None


def _judge_top(out: Outcome, top: int, requests: int) -> ParamResult:
    assert out.completion is not None
    sent = {"top_logprobs": top}
    items = out.completion.logprobs or []
    lists = [t.get("top_logprobs") or [] for t in items]
    if not lists or all(not lst for lst in lists):
        return ParamResult("top_logprobs", "ignored", "no top candidates in the answer", "", requests, sent)
    for i, lst in enumerate(lists):
        values = [float(c["logprob"]) for c in lst]
        if len(lst) != top:
            return ParamResult("top_logprobs", "ignored", f"{len(lst)} candidates at token {i}, asked {top}", "", requests, sent)
        if values != sorted(values, reverse=True) or max(values) > 1e-6:
            return ParamResult("top_logprobs", "ignored", f"candidates at token {i} not sorted or above 0", "", requests, sent)
        mine = float(items[i]["logprob"])
        if mine >= values[-1] + 1e-3 and items[i]["token"] not in {c["token"] for c in lst}:
            return ParamResult("top_logprobs", "ignored", f"the sampled token is missing from the candidates at token {i}", "", requests, sent)
    return ParamResult("top_logprobs", "honoured", f"{top} sorted candidates per token, sampled token among them", "well formed", requests, sent)


def _first(out: Outcome | None) -> Position | None:
    found = positions(out.completion.logprobs) if out is not None and out.completion is not None else []
    return found[0] if found else None


def _mode(one: Position, half: Position) -> str:
    """raw when the candidates' gaps are the same at T=0.5 and T=1, processed when doubled."""
    best_one, best_half = one.top[0][1], half.top[0][1]
    gaps_half = {tok: best_half - lp for tok, lp in half.top}
    ratios = [gaps_half[tok] / (best_one - lp) for tok, lp in one.top[1:] if tok in gaps_half and best_one - lp > 0.05]
    if not ratios:
        return "unknown"
    ratios.sort()
    median = ratios[len(ratios) // 2]
    if abs(median - 1.0) < 0.1:
        return "raw"
    if abs(median - 2.0) < 0.2:
        return "processed"
    return "unknown"


def _positions(out: Outcome) -> list[Position]:
    return positions(out.completion.logprobs if out.completion else None)


def _tokens(out: Outcome | None) -> tuple[str, ...]:
    """The answer as tokens when logprobs came, else as its text."""
    if out is None or out.completion is None:
        return ()
    items = out.completion.logprobs
    if items:
        return tuple(str(t["token"]) for t in items)
    return (out.completion.content,)


def _text(out: Outcome | None) -> str:
    return out.completion.content if out is not None and out.completion is not None else ""


def _logprob_values(out: Outcome) -> tuple[float, ...]:
    return tuple(round(float(t["logprob"]), 4) for t in (out.completion.logprobs if out.completion else None) or ())


def _first_difference(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def _predicted_flip(base: Outcome, name: str, penalty: float) -> str | None:
    """With raw logprobs: a greedy step where the penalty must have changed the choice."""
    counts: dict[str, int] = {}
    for i, pos in enumerate(_positions(base)):
        def score(token: str, logprob: float) -> float:
            n = counts.get(token, 0)
            cut = penalty * n if name == "frequency_penalty" else (penalty if n else 0.0)
            return logprob - cut

        chosen = score(pos.token, pos.logprob)
        for token, logprob in pos.top:
            if token != pos.token and score(token, logprob) > chosen + 0.05:
                return f"at token {i} {pos.token!r} (seen {counts.get(pos.token, 0)}x) scores {chosen:.2f} < {token!r} {score(token, logprob):.2f}"
        counts[pos.token] = counts.get(pos.token, 0) + 1
    return None


def _margin(out: Outcome) -> float:
    """The smallest gap between the chosen and the runner-up logprob over a greedy answer (inf
    without candidates): how far the answer is from a tie that batching noise could flip."""
    gaps = [pos.top[0][1] - pos.top[1][1] for pos in _positions(out) if len(pos.top) > 1]
    return min(gaps, default=math.inf)


def _stop_string(text: str) -> str | None:
    """A short piece of `text` whose first occurrence is well inside it."""
    for start in range(max(2, len(text) // 3), len(text) - 1):
        piece = text[start : start + 2]
        if piece.strip() and text.index(piece) == start:
            return piece
    return None


async def gather_results(tasks: list[Awaitable[ParamResult | list[ParamResult]]]) -> list[ParamResult]:
    """Run tests concurrently; flatten their results."""
    out: list[ParamResult] = []
    for item in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(item, BudgetSpent):
            continue  # that test shows as "budget spent before this test"
        if isinstance(item, BaseException):
            raise item
        out.extend(item if isinstance(item, list) else [item])
    return out


Check = Callable[[], Awaitable[ParamResult]]
