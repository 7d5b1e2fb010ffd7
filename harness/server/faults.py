"""Seeded fault injection and simulated latency for the reference endpoint.

`--faults 429=0.1,500=0.05,reset=0.02,timeout=0.01,garbage=0.01,stream_cut=0.01`: each chat
completion request draws once from a seeded RNG and gets at most one fault; the probabilities
must add up to at most 1. Kinds:

    <status>    an HTTP error 400-599 with an OpenAI-style body; 429 carries Retry-After
                (whole seconds, at least 1) and retry-after-ms
    reset       the connection is dropped with a TCP RST, no response
    timeout     no answer: the request is held open until the client gives up (capped)
    garbage     200 with a body that is not valid JSON (streaming: an SSE event that is not JSON)
    stream_cut  streaming: the stream ends cleanly after about half the tokens, with no
                finish_reason, no usage and no `data: [DONE]`; non-streaming: the response
                is cut mid-body (Content-Length promises more than is sent, then the
                connection closes)

`--latency-ms 50` (fixed) or `50:20` (uniform in 50 +- 20 ms, never below 0) delays every chat
completion response before its first byte.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

from harness.errors import UsageError

__all__ = ["FAULT_KINDS", "FaultInjector", "FaultSpec", "Latency", "is_fault_kind"]

FAULT_KINDS = ("reset", "timeout", "garbage", "stream_cut")
_ALLOWED = "<HTTP status 400-599>, " + ", ".join(FAULT_KINDS)


@dataclass(frozen=True)
class FaultSpec:
    """Probability per request of each fault kind (in the order given)."""

    rates: tuple[tuple[str, float], ...] = ()

    @classmethod
    def parse(cls, text: str, *, key: str = "--faults") -> FaultSpec:
        """Parse `kind=prob,kind=prob`; raises UsageError naming the bad entry."""
        rates: dict[str, float] = {}
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep:
                raise UsageError(f"{item!r} is not KIND=PROBABILITY (kinds: {_ALLOWED})", key=key)
            if not is_fault_kind(name):
                raise UsageError(f"unknown fault kind {name!r}; allowed: {_ALLOWED}", key=key)
            rates[name] = _probability(name, value.strip(), key)
        if sum(rates.values()) > 1.0 + 1e-9:
            raise UsageError(f"the probabilities add up to {sum(rates.values()):g}; at most 1 is allowed", key=key)
        return cls(tuple(rates.items()))

    @classmethod
    def from_mapping(cls, rates: Mapping[str, float]) -> FaultSpec:
        """From a dict like {"429": 0.1, "reset": 0.02} (checked like `parse`)."""
        return cls.parse(",".join(f"{k}={v}" for k, v in rates.items()), key="faults")

    def __str__(self) -> str:
        return ",".join(f"{k}={v:g}" for k, v in self.rates)


def is_fault_kind(name: str) -> bool:
    """True for a known kind or an HTTP status 400-599."""
    return name in FAULT_KINDS or (name.isdigit() and 400 <= int(name) <= 599)


def _probability(name: str, value: str, key: str) -> float:
    try:
        prob = float(value)
    except ValueError:
        raise UsageError(f"{name}={value!r}: the probability must be a number between 0 and 1", key=key) from None
    if not 0.0 <= prob <= 1.0:
        raise UsageError(f"{name}={value}: the probability must be between 0 and 1", key=key)
    return prob


class FaultInjector:
    """Draws the fault (or None) for each request from a seeded RNG."""

    def __init__(self, spec: FaultSpec | None, seed: int | None = 0) -> None:
        self.spec = spec or FaultSpec()
        self._rng = random.Random(seed)

    def draw(self) -> str | None:
        """The fault kind for the next request, or None. No RNG use without faults."""
        if not self.spec.rates:
            return None
        u = self._rng.random()
        for name, prob in self.spec.rates:
            if u < prob:
                return name
            u -= prob
        return None


@dataclass(frozen=True)
class Latency:
    """A delay in seconds: `mean_s` +- `jitter_s` (uniform), never negative."""

    mean_s: float = 0.0
    jitter_s: float = 0.0

    @classmethod
    def parse(cls, text: str, *, key: str = "--latency-ms") -> Latency:
        """`MS` or `MEAN:JITTER` in milliseconds."""
        mean, _, jitter = text.partition(":")
        try:
            mean_ms, jitter_ms = float(mean), float(jitter or 0)
        except ValueError:
            raise UsageError(f"{text!r} is not MS or MEAN:JITTER (milliseconds, e.g. 50 or 50:20)", key=key) from None
        if not (math.isfinite(mean_ms) and math.isfinite(jitter_ms)) or mean_ms < 0 or jitter_ms < 0:
            raise UsageError(f"{text!r}: milliseconds must be finite and 0 or more", key=key)
        return cls(mean_ms / 1000.0, jitter_ms / 1000.0)

    def sample(self, rng: random.Random) -> float:
        """One delay in seconds."""
        if self.jitter_s == 0.0:
            return self.mean_s
        return max(0.0, rng.uniform(self.mean_s - self.jitter_s, self.mean_s + self.jitter_s))

    def __bool__(self) -> bool:
        return self.mean_s > 0.0 or self.jitter_s > 0.0
