"""Stop sending when the server keeps refusing in the same words.

Two rules, hooked into the engine:

- `settle(failure, earlier)`: a 500/501 answering with the same message as the two attempts
  before it (of the same request) is final: three attempts, not six — a validation error wrapped
  in a 500 is not bad luck, and six attempts with backoff cost minutes. (502/503/504 and 429 keep their retries: those are transient by
  nature.)
- `Breaker`: the same non-transient failure (same HTTP status and message, not 429) as the
  final answer of `threshold` *different* requests in a row opens the breaker: no further request
  is sent; each remaining one becomes an error row of type `not_sent` (no attempt made), which
  `harness run --resume RUN_DIR --retry-errors` sends once the server is fixed. The reason is one
  line (`Breaker.reason`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.client import RequestFailed

__all__ = ["NOT_SENT", "Breaker", "settle"]

NOT_SENT = "not_sent"
_FINAL_WHEN_REPEATED = frozenset({500, 501})
REPEATS = 2  # earlier identical answers that make a third one final


def settle(failure: RequestFailed, earlier: list[RequestFailed]) -> RequestFailed:
    """`failure`, made final when the two attempts before it answered the same 500/501 word for word."""
    same = [f for f in earlier[-REPEATS:] if (f.http_status, f.message) == (failure.http_status, failure.message)]
    if failure.retryable and failure.http_status in _FINAL_WHEN_REPEATED and len(same) == REPEATS:
        return RequestFailed(failure.error_type, failure.message, http_status=failure.http_status, retryable=False)
    return failure


@dataclass
class Breaker:
    """Counts identical final failures of consecutive requests; opens at `threshold`."""

    threshold: int = 8
    _key: tuple[int, str] | None = None
    _run: int = 0
    reason: str | None = None

    @property
    def open(self) -> bool:
        return self.reason is not None

    def record(self, row: dict[str, Any]) -> None:
        """Account for one finished row (ok rows and transient failures reset the count)."""
        if self.open or row.get("error_type") == NOT_SENT:
            return
        status = row.get("http_status")
        if row.get("status") == "ok" or status is None or status == 429:
            self._key, self._run = None, 0
            return
        key = (int(status), str(row.get("error_message") or ""))
        self._run = self._run + 1 if key == self._key else 1
        self._key = key
        if self._run >= self.threshold:
            self.reason = (
                f"stopped sending after {self._run} requests in a row failed the same way ({key[1]}); "
                "the rest are error rows of type not_sent: fix the server, then harness run --resume RUN_DIR --retry-errors"
            )

    @staticmethod
    def skipped(base: dict[str, Any], reason: str) -> dict[str, Any]:
        """The row of a request the open breaker did not send."""
        return {
            **base,
            "status": "error",
            "http_status": None,
            "error_type": NOT_SENT,
            "error_message": f"not sent: {reason.split(';')[0]}",
            "attempts": 0,
            "latency_s": None,
        }
