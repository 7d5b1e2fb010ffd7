"""One lane per target: its own connection pool(s), concurrency, adaptive back-off, rate limits and breaker.

    await run_lanes(job, endpoints, stats, config, write, transport=None)

Each target of the spec gets an `Engine` (harness.runner.dispatch) of its own, over its own
requests (`SweepJob.plans_for`), with its own client — a `ChatClient`, or a `ReplicaSet` when its
`base_url` is a list — so a slow, rate-limited or dead target never takes the slots, the tokens
or the breaker of another: a target that is down ends its own requests as error rows while the
others go on at their own pace. The lanes share the run's writer and `Stats`: the progress line
shows the totals over the lanes (concurrency and requests in flight summed) and, with several
targets, a line per target (`Stats.lanes`).

Limits: a target's `runner:` values (concurrency, rps, tokens_per_min) win; each unset one is the
run's (`runner.*`, or `--concurrency` / `--rps`), applied to each target separately.

Every row gets `target` (the name) and `replica` (the redacted URL that answered; the last one
tried for an error row; null when nothing was sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.client import ChatClient, ClientConfig
from harness.redact import redact_url
from harness.runner.body import BodyBuilder
from harness.runner.breaker import NOT_SENT
from harness.runner.dispatch import Engine, EngineConfig, Stats
from harness.runner.replicas import ReplicaSet, answered_by
from harness.spec.grid import RequestPlan
from harness.spec.sweepspec import SweepSpec, Target

Write = Callable[[dict[str, Any]], Awaitable[None]]


def lane_config(base: EngineConfig, target: Target) -> EngineConfig:
    """The run's engine settings with the target's own limits applied."""
    limits = target.runner
    if limits is None:
        return base
    return dataclasses.replace(
        base,
        concurrency=limits.concurrency or base.concurrency,
        rps=limits.rps if limits.rps is not None else base.rps,
        tokens_per_min=limits.tokens_per_min if limits.tokens_per_min is not None else base.tokens_per_min,
    )


@dataclass
class Lane:
    """One target's engine and what it needs."""

    name: str
    spec: SweepSpec  # the target's view (its params merged)
    engine: Engine
    client: Any


def _client(view: SweepSpec, endpoint: Any, config: EngineConfig, transport: Any) -> Any:
    urls = tuple(getattr(endpoint, "replicas", ()) or (endpoint.base_url,))

    def make(url: str) -> ChatClient:
        return ChatClient(ClientConfig(base_url=url, api_key=endpoint.api_key, headers=dict(view.target.headers),
                                       timeout_s=view.runner.timeout_s, pool_size=max(config.concurrency, 1)),
                          transport=transport)

    if len(urls) == 1:
        return make(urls[0])
    return ReplicaSet([(url, make(url)) for url in urls])


def _sink(name: str, client: Any, endpoint: Any, sending: Any, write: Write) -> Write:
    """Rows of this lane: the dialect's values restored (harness.probe.dialects), target and replica set."""
    if isinstance(client, ReplicaSet):
        async def many(row: dict[str, Any]) -> None:
            shown = answered_by()
            row = sending.row(row)
            row["target"] = name
            row["replica"] = None if row.get("error_type") == NOT_SENT else shown
            await write(row)

        return many
    url = redact_url(endpoint.base_url)

    async def one(row: dict[str, Any]) -> None:
        row = sending.row(row)
        row["target"] = name
        row["replica"] = None if row.get("error_type") == NOT_SENT else url
        await write(row)

    return one


def _dialect(job: Any, name: str, view: SweepSpec, endpoint: Any) -> Any:
    """How this target's server spells the fields, recorded in the manifest (`targets[name].dialect`).

    Recorded in the job's manifest in memory: the session's last manifest write (finished or
    interrupted, harness.runner.sweep.finish_job) stores it — not one more write (and fsync) of
    the manifest before the first request. Only a killed process's manifest lacks it, and the
    resume that finishes that run records it. The rows never depend on it."""
    from harness.probe.dialects import Sending
    from harness.probe.preflight import resolve_dialect

    dialect = resolve_dialect(view, endpoint, getattr(job, "models_seen", None))
    first = name == job.spec.target_names[0]
    if job.manifest.targets:
        job.manifest = job.manifest.with_target_dialect(name, dialect, first=first)
    else:  # a run made before targets existed: its one target
        job.manifest = job.manifest.with_dialect(dialect)
    return Sending(dialect, view.params.sent())


async def run_lanes(job: Any, endpoints: Mapping[str, Any], stats: Stats, config: EngineConfig, write: Write, *,
                    transport: Any = None, rounds: Callable[[Mapping[str, Engine]], Awaitable[None]] | None = None) -> None:
    """Send every target's requests, each target in its own lane, all at once.

    `rounds` (adaptive repeats): drives the lanes' engines (by target name) round by round instead."""
    multi = len(endpoints) > 1
    async with contextlib.AsyncExitStack() as stack:
        lanes: list[Lane] = []
        for name, endpoint in endpoints.items():
            view = job.spec.for_target(name)
            lane_cfg = lane_config(config, view.target)
            sending = await asyncio.to_thread(_dialect, job, name, view, endpoint)
            client = _client(view, endpoint, lane_cfg, transport)
            await stack.enter_async_context(client)

            body_of = BodyBuilder(view, endpoint.model)  # the point's part of the body built once per point

            def build(plan: RequestPlan, sending: Any = sending, body_of: BodyBuilder = body_of) -> dict[str, Any]:
                body: dict[str, Any] = sending.body(body_of(plan))
                return body

            engine = Engine(client, build, _sink(name, client, endpoint, sending, write), lane_cfg, stats, lane=name)
            lanes.append(Lane(name, view, engine, client))
        if rounds is not None:
            await rounds({lane.name: lane.engine for lane in lanes})
        else:
            async with asyncio.TaskGroup() as group:
                for lane in lanes:
                    group.create_task(lane.engine.run(job.plans_for(lane.name) if multi else job.plans()))
        halted = [f"target {lane.name}: {lane.engine.breaker.reason}" if multi else lane.engine.breaker.reason
                  for lane in lanes if lane.engine.breaker.reason]
        stats.halted = "; ".join(h for h in halted if h) or None


__all__ = ["Lane", "lane_config", "run_lanes"]
