"""Runs every test against one endpoint and gathers the report.

    report = run_probe(Endpoint(base_url, model, api_key), budget=160)
    report.results["top_k"].verdict      # "honoured" | "ignored" | "rejected" | "inconclusive"
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from harness.client import ChatClient, ClientConfig
from harness.client.http import endpoint_url
from harness.errors import TargetError
from harness.probe.checks import Probe, gather_results
from harness.probe.sender import BudgetSpent, Sender
from harness.probe.verdicts import PARAMETERS, ParamResult, ProbeReport
from harness.rundir.fs import RunPath
from harness.runner.sweep import Endpoint

__all__ = ["DEFAULT_BUDGET", "MIN_BUDGET", "PROBE_FILE", "probe_endpoint", "run_probe", "store_probe", "store_probe_async"]

DEFAULT_BUDGET = 160
MIN_BUDGET = 40
_FIXED = 16  # requests of the set-up and the deterministic tests
_STATISTICAL = ("temperature", "top_k", "top_p", "min_p", "seed")


def run_probe(endpoint: Endpoint, *, budget: int = DEFAULT_BUDGET, alpha: float = 1e-3,
              headers: dict[str, str] | None = None, transport: Any = None) -> ProbeReport:
    """Probe `endpoint` (blocking)."""
    return asyncio.run(probe_endpoint(endpoint, budget=budget, alpha=alpha, headers=headers, transport=transport))


async def probe_endpoint(endpoint: Endpoint, *, budget: int = DEFAULT_BUDGET, alpha: float = 1e-3,
                         headers: dict[str, str] | None = None, transport: Any = None) -> ProbeReport:
    """Probe `endpoint`; TargetError when even a plain request fails."""
    started = time.monotonic()
    config = ClientConfig(base_url=endpoint.base_url, api_key=endpoint.api_key, headers=dict(headers or {}), timeout_s=60.0)
    async with ChatClient(config, transport=transport) as client:
        sender = Sender(client, endpoint.model, budget)
        probe = Probe(sender, alpha=alpha)
        results = await _run(probe)
    ordered = {name: results.get(name) or ParamResult(name, "inconclusive", "budget spent before this test") for name in PARAMETERS}
    return ProbeReport(
        base_url=endpoint.base_url, model=endpoint.model, results=ordered, logprobs_mode=probe.mode,
        unknown_field=probe.unknown_field, requests=sender.spent, budget=budget, alpha=alpha,
        seconds=time.monotonic() - started, notes=probe.notes, dialect=await asyncio.to_thread(_dialect, endpoint, headers),
        top_k_off=probe.top_k_off,
    )  # fmt: skip


def _dialect(endpoint: Endpoint, headers: dict[str, str] | None) -> str:
    """The dialect `GET /models` points to (as `target.dialect: auto` would decide)."""
    from harness.probe.dialects import detect
    from harness.probe.preflight import _get

    status, doc = _get(endpoint_url(endpoint.base_url, "/models"), endpoint.api_key, dict(headers or {}))
    return detect(doc if status == 200 else None, endpoint.base_url)


async def _run(probe: Probe) -> dict[str, ParamResult]:
    plain = await probe.plain()
    if not plain.ok:
        raise TargetError(f"a plain request (model and messages only) failed: {plain.words()}", key="model")
    results: dict[str, ParamResult] = {}
    try:
        results["logprobs"] = await probe.logprobs()
        top, at_one = await probe.top_logprobs()
        results["top_logprobs"] = top
        await probe.detect_mode(at_one)
        await probe.establish_greedy()
        cap = max(8, (probe.sender.left - _FIXED) // len(_STATISTICAL))
        cap -= cap % 4
        found = await gather_results([
            probe.temperature(cap), probe.top_k(cap), probe.top_p(cap), probe.min_p(cap), probe.seed(cap),
            probe.penalty("frequency_penalty"), probe.penalty("presence_penalty"),
            probe.stop(), probe.max_tokens(), probe.stream(),
        ])  # fmt: skip
        results.update({r.name: r for r in found})
        await probe.unknown()
        await probe.off_values()
    except BudgetSpent:
        probe.notes.append("the budget ran out before every test finished")
    return results


PROBE_FILE = "probe.json"


def store_probe(run_dir: RunPath, endpoint: Endpoint, *, headers: dict[str, str] | None = None, quiet: bool = False) -> ProbeReport:
    """`harness run --probe`: probe the endpoint, keep the profile as RUN_DIR/probe.json, and say
    on stderr (one line) which parameters are not honoured. The run goes ahead either way."""
    return asyncio.run(store_probe_async(run_dir, endpoint, headers=headers, quiet=quiet))


def probe_file(target: str | None = None) -> str:
    """`probe.json`; with several targets one file per target: `probe-<name>.json`."""
    return PROBE_FILE if target is None else f"probe-{target}.json"


async def store_probe_async(run_dir: RunPath, endpoint: Endpoint, *, headers: dict[str, str] | None = None,
                            quiet: bool = False, target: str | None = None) -> ProbeReport:  # fmt: skip
    """`store_probe` inside a running event loop (`target`: the target's name, with several)."""
    from harness.probe.render import to_json

    report = await probe_endpoint(endpoint, headers=headers)
    path = run_dir / probe_file(target)
    path.write_text(to_json(report) + "\n", encoding="utf-8")
    bad = [f"{n} {r.verdict}" for n, r in report.results.items() if r.verdict != "honoured"]
    if not quiet:
        summary = ", ".join(bad) if bad else "every parameter honoured"
        who = f"{target}: " if target else ""
        print(f"probe: {who}{summary} ({report.requests} requests; {path})", file=sys.stderr)
    return report
