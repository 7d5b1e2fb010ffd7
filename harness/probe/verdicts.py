"""What a probe concludes: one `ParamResult` per parameter, gathered in a `ProbeReport`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from harness.redact import redact_url

__all__ = ["PARAMETERS", "ParamResult", "ProbeReport", "Verdict"]

Verdict = Literal["rejected", "ignored", "honoured", "inconclusive"]

# The sampling parameters of the seed API, in the order they are probed and shown.
PARAMETERS = (
    "logprobs",
    "top_logprobs",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "stop",
    "max_tokens",
    "stream",
    "stream_options",
)


@dataclass
class ParamResult:
    """The verdict on one parameter, why (evidence), how sure (statistic) and its cost."""

    name: str
    verdict: Verdict
    evidence: str
    statistic: str = ""
    requests: int = 0
    sent: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ProbeReport:
    """Every parameter's result plus what was learnt about the endpoint itself."""

    base_url: str
    model: str
    results: dict[str, ParamResult]
    logprobs_mode: str  # raw | processed | unknown
    unknown_field: str  # dropped | refused | unknown
    requests: int
    budget: int
    alpha: float
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    dialect: str = "seed"  # what GET /models points to (see dialects.py)
    top_k_off: dict[str, str] = field(default_factory=dict)  # "-1" / "0" -> accepted | refused

    @property
    def exit_code(self) -> int:
        """0 all honoured, 1 some rejected or ignored; inconclusive alone is 0 (said on the terminal)."""
        return 1 if any(r.verdict in ("rejected", "ignored") for r in self.results.values()) else 0

    @property
    def overall(self) -> Verdict:
        verdicts = {r.verdict for r in self.results.values()}
        for word in ("rejected", "ignored", "inconclusive"):
            if word in verdicts:
                return word
        return "honoured"

    def as_json(self) -> dict[str, Any]:
        """Each parameter's name maps to its record (with `verdict`); `probe` holds the summary."""
        doc: dict[str, Any] = {name: result.as_dict() for name, result in self.results.items()}
        doc["probe"] = {
            "verdict": self.overall,
            "base_url": redact_url(self.base_url),
            "model": self.model,
            "logprobs_mode": self.logprobs_mode,
            "unknown_field": self.unknown_field,
            "dialect": self.dialect,
            "top_k_off": dict(self.top_k_off),
            "requests": self.requests,
            "budget": self.budget,
            "alpha": self.alpha,
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
            "exit_code": self.exit_code,
        }
        return doc
