"""Sends the probe's requests within a budget; one retry for transient failures.

A failure the server repeats with the same status and message is final at once: a 500 with a
validation message in its body is a refusal, not bad luck.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.client import ChatClient, Completion, RequestFailed

__all__ = ["BudgetSpent", "Outcome", "Sender"]

PROMPTS = (
    # first tokens of high entropy: every sampled token carries evidence
    "The capital of",
    "The currency of",
    "Name a country:",
    "Once upon a time there was a",
)
# greedy continuations that repeat tokens close to their runner-up: penalties must change them
# (the first two for harness's n-gram model, the last two for small real LLMs such as Gemma 3 270M)
REPEAT_PROMPTS = ("Answer:", "Name three countries:", "People in", "1, 2, 3,")


class BudgetSpent(Exception):
    """The probe's request budget is used up."""


@dataclass(frozen=True)
class Outcome:
    """One request's answer (or failure) and the body that was sent."""

    body: dict[str, Any]
    completion: Completion | None = None
    failure: RequestFailed | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.completion is not None

    @property
    def refused(self) -> bool:
        """A definite refusal: an HTTP error answer (not a timeout or a dropped connection)."""
        return self.failure is not None and self.failure.http_status is not None and self.failure.http_status >= 400

    def words(self) -> str:
        """The server's own words for a failure."""
        return self.failure.message if self.failure is not None else ""


class Sender:
    """Builds bodies for the model and sends them, counting every attempt against the budget."""

    def __init__(self, client: ChatClient, model: str, budget: int, *, concurrency: int = 8, timeout_s: float = 60.0) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self.model = model
        self.budget = budget
        self.spent = 0
        self._gate = asyncio.Semaphore(concurrency)

    @property
    def left(self) -> int:
        return self.budget - self.spent

    def body(self, prompt: str, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": [{"role": "user", "content": prompt}]}
        body.update({k: v for k, v in fields.items() if v is not None})
        return body

    async def send(self, body: dict[str, Any]) -> Outcome:
        """One request (at most two attempts); raises BudgetSpent when none is left."""
        last: RequestFailed | None = None
        for attempt in (1, 2):
            if self.spent >= self.budget:
                if last is not None:
                    return Outcome(body, failure=last, attempts=attempt - 1)
                raise BudgetSpent()
            self.spent += 1
            try:
                async with self._gate:
                    done = await self.client.complete(body, timeout_s=self.timeout_s)
                return Outcome(body, completion=done, attempts=attempt)
            except RequestFailed as failure:
                if not failure.retryable or _same(failure, last) or attempt == 2:
                    return Outcome(body, failure=failure, attempts=attempt)
                last = failure
                await asyncio.sleep(0.2 if failure.retry_after_s is None else min(failure.retry_after_s, 2.0))
        raise AssertionError("unreachable")

    async def send_all(self, bodies: Sequence[dict[str, Any]]) -> list[Outcome]:
        """Several requests at once; BudgetSpent if the budget cannot cover all of them."""
        if len(bodies) > self.left:
            raise BudgetSpent()
        return list(await asyncio.gather(*(self.send(b) for b in bodies)))


def _same(failure: RequestFailed, last: RequestFailed | None) -> bool:
    return last is not None and (failure.http_status, failure.message) == (last.http_status, last.message)
