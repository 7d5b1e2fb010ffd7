"""Result rows: one per request, ok or error, with exactly the columns of `harness.rundir.records`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from harness.client import Completion, RequestFailed
from harness.spec.grid import RequestPlan
from harness.spec.parameters import FLOAT_COLUMNS as FLOAT_PARAMS
from harness.spec.parameters import INT_COLUMNS as INT_PARAMS


def base_row(run_id: str, plan: RequestPlan, body: dict[str, Any], started_at: datetime) -> dict[str, Any]:
    """Identity and sampling parameters of a request: what was *sent* (null when not sent)."""
    row: dict[str, Any] = {
        "run_id": run_id,
        "request_id": plan.request_id,
        "cell_id": plan.point.cell_id,
        "prompt_id": plan.prompt.id,
        "sample": plan.sample,
        "model": body.get("model"),
        "reference": plan.prompt.reference,
        "point_json": plan.point.point_json,
        "started_at": started_at,
    }
    for name in FLOAT_PARAMS:
        value = body.get(name)
        row[name] = None if value is None else float(value)
    for name in INT_PARAMS:
        value = body.get(name)
        row[name] = None if value is None else int(value)
    return row


def ok_row(base: dict[str, Any], done: Completion, *, attempts: int, latency_s: float | None) -> dict[str, Any]:
    """The row of a request that got an answer."""
    return {
        **base,
        "status": "ok",
        "http_status": done.http_status,
        "attempts": attempts,
        "latency_s": latency_s,
        "ttft_s": done.ttft_s,
        "content": done.content,
        "finish_reason": done.finish_reason,
        "reasoning": done.reasoning,
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "logprobs": done.logprobs,
        "inter_token_s": done.inter_token_s,
        "response_bytes": done.response_bytes,
        "system_fingerprint": done.system_fingerprint,
    }


def error_row(base: dict[str, Any], failure: RequestFailed, *, attempts: int, latency_s: float | None) -> dict[str, Any]:
    """The row of a request that ended in an error (after any retries)."""
    return {
        **base,
        "status": "error",
        "http_status": failure.http_status,
        "error_type": failure.error_type,
        "error_message": failure.message,
        "attempts": attempts,
        "latency_s": latency_s,
    }


__all__ = ["base_row", "error_row", "ok_row"]
