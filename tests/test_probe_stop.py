"""The probe's stop test on a server whose greedy answers are not perfectly repeatable: a batching
server (llama.cpp) can flip a near-tie greedy step between the reference answer and the stop
request. That must not read as "inconclusive" when another reference can be cut, nor hide a
server that ignores `stop`."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from harness.client.parse import Completion
from harness.probe.checks import Probe
from harness.probe.sender import Outcome


def answer(text: str, margin: float) -> Completion:
    """A greedy answer of one token per character, each `margin` nats above its runner-up."""
    logprobs = [{"token": ch, "logprob": -0.1, "top_logprobs": [{"token": ch, "logprob": -0.1}, {"token": "?", "logprob": -0.1 - margin}]} for ch in text]
    return Completion(text, None, "length", 3, len(text), logprobs, None, 200, 100)


class FakeSender:
    """Answers the stop request by cutting `answers[prompt]` (or not, when `honour` is False);
    a prompt listed in `flips` answers something else entirely (a flipped first greedy step)."""

    def __init__(self, answers: dict[str, str], flips: dict[str, str], honour: bool = True) -> None:
        self.answers, self.flips, self.honour, self.sent = answers, flips, honour, []

    def body(self, prompt: str, **fields: Any) -> dict[str, Any]:
        return {"prompt": prompt, **fields}

    async def send(self, body: dict[str, Any]) -> Outcome:
        self.sent.append(body)
        text = self.flips.get(body["prompt"], self.answers[body["prompt"]])
        stops = body.get("stop") or []
        if self.honour:
            for stop in stops:
                text = text.split(stop)[0]
        return Outcome(body, completion=answer(text, 1.0))


def run_stop(answers: dict[str, str], margins: dict[str, float], flips: dict[str, str], honour: bool = True) -> tuple[str, str, FakeSender]:
    sender = FakeSender(answers, flips, honour)
    probe = Probe(sender=sender)  # type: ignore[arg-type]
    probe.greedy = {p: Outcome({"prompt": p}, completion=answer(t, margins[p])) for p, t in answers.items()}
    result = asyncio.run(probe.stop())
    return result.verdict, result.evidence, sender


ANSWERS = {"Answer:": "Answer: Paris is big", "1, 2, 3,": " 4, 5, 6, 7, 8"}


def test_a_flipped_greedy_step_moves_on_to_the_next_reference() -> None:
    # the clearest reference is tried first; it drifts; the other one is cut as asked
    verdict, evidence, sender = run_stop(ANSWERS, {"Answer:": 5.0, "1, 2, 3,": 0.01}, {"Answer:": "<end> Rome"})
    assert verdict == "honoured", evidence
    assert [b["prompt"] for b in sender.sent] == ["Answer:", "1, 2, 3,"]


def test_the_most_clear_cut_reference_is_tried_first() -> None:
    verdict, _, sender = run_stop(ANSWERS, {"Answer:": 0.01, "1, 2, 3,": 5.0}, {})
    assert verdict == "honoured" and [b["prompt"] for b in sender.sent] == ["1, 2, 3,"]


def test_every_reference_drifting_is_inconclusive_not_ignored() -> None:
    verdict, evidence, sender = run_stop(ANSWERS, {"Answer:": 1.0, "1, 2, 3,": 1.0}, {"Answer:": "xyz", "1, 2, 3,": "uvw"})
    assert verdict == "inconclusive" and "changed between requests" in evidence
    assert len(sender.sent) == 2


def test_a_drifted_answer_that_still_holds_the_stop_string_is_ignored() -> None:
    # the answer changed, but the stop string sits inside it uncut: the server ignored stop
    answers = {"Answer:": "Answer: Paris is big"}
    verdict, evidence, _ = run_stop(answers, {"Answer:": 1.0}, {"Answer:": "Well: Paris is big and old"}, honour=False)
    assert verdict == "ignored", evidence


def test_an_ignoring_server_is_caught_on_the_first_reference() -> None:
    verdict, _, sender = run_stop(ANSWERS, {"Answer:": 1.0, "1, 2, 3,": 2.0}, {}, honour=False)
    assert verdict == "ignored" and len(sender.sent) == 1


def test_margin_is_the_smallest_gap() -> None:
    from harness.probe.checks import _margin

    out = Outcome({}, completion=answer("ab", 0.5))
    assert math.isclose(_margin(out), 0.5)
    assert _margin(Outcome({}, completion=Completion("x", None, "stop", 1, 1, None, None, 200, 1))) == math.inf
