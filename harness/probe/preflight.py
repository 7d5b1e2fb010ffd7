"""Before a sweep spends anything: is the URL an API root, is the model served, and does the
server accept every value the sweep sends? One entry point, `preflight`; TargetError (exit 2,
one line naming the parameter, the value and the server's words) when it is not.

    preflight(spec, endpoint, first_prompt)      # a few seconds; one tiny request per value

Requests: one per distinct value of every swept parameter (the spec's fixed params ride along,
max_tokens is cut to 1 unless swept), plus one with the fixed params alone, at most 4 at a time.
A transient failure (429, timeout, reset) is retried once and then let through: the run's own
retries deal with those. `GET /models` answers that are not a model list are let through too
(some servers have no such route).
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from harness.client import ChatClient, ClientConfig, RequestFailed
from harness.client.http import endpoint_url
from harness.errors import TargetError
from harness.redact import redact_url
from harness.spec.sweepspec import SweepSpec

__all__ = ["PreflightResult", "preflight"]

_TIMEOUT_S = 10.0
_CONCURRENCY = 4
_MOST_VALUES = 16  # per swept parameter

# GET /models answers already had in a session, by (URL, sha256 of the key, headers): the
# preflight and the run's lanes ask the server once (a run keeps one: SweepJob.models_seen).
Seen = dict[tuple[str, str, tuple[tuple[str, str], ...]], tuple[int | None, Any]]


@dataclass
class PreflightResult:
    """What the preflight did: requests sent and the models the server lists (if it lists any)."""

    requests: int = 0
    served: list[str] = field(default_factory=list)
    checked: list[tuple[str, Any]] = field(default_factory=list)


def preflight(spec: SweepSpec, endpoint: Any, messages: Sequence[dict[str, Any]], *, transport: Any = None) -> PreflightResult:
    """Check `endpoint` (an Endpoint: base_url, model, api_key) for `spec`; TargetError if unusable."""
    return asyncio.run(preflight_async(spec, endpoint, messages, transport=transport))


async def preflight_async(spec: SweepSpec, endpoint: Any, messages: Sequence[dict[str, Any]], *,
                          transport: Any = None, seen: Seen | None = None) -> PreflightResult:  # fmt: skip
    """`preflight` inside a running event loop (`seen`: GET /models answers to reuse and keep)."""
    result = PreflightResult()
    headers = dict(spec.target.headers)
    seen = {} if seen is None else seen
    if not spec.target.local:
        result.served = await asyncio.to_thread(_check_models, spec, endpoint, headers, seen)
    try:
        dialect = await asyncio.to_thread(resolve_dialect, spec, endpoint, seen)
        result.requests, result.checked = await _check_values(spec, endpoint, list(messages), headers, transport, dialect)
    except _Refused as refused:
        # a model missing from GET /models is only an error when requests for it are refused
        # (llama.cpp lists a file path and answers to any name)
        if refused.name == "params" and result.served and endpoint.model not in result.served:
            raise _not_served(spec, endpoint.model, result.served, refused.failure.message) from None
        raise _refusal(spec, refused.name, refused.value, refused.failure, refused.sent) from None
    return result


class _Refused(Exception):
    def __init__(self, name: str, value: Any, failure: RequestFailed, sent: int) -> None:
        super().__init__(name)
        self.name, self.value, self.failure, self.sent = name, value, failure, sent


# ---------------------------------------------------------------- GET /models


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as its 3xx status: the key is never sent on to another URL."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _get(url: str, api_key: str | None, headers: dict[str, str]) -> tuple[int | None, Any]:
    request = urllib.request.Request(url, headers={**headers, **({"Authorization": f"Bearer {api_key}"} if api_key else {})})
    try:
        with _OPENER.open(request, timeout=_TIMEOUT_S) as response:
            status, raw = response.status, response.read(1 << 20)
    except urllib.error.HTTPError as err:
        return err.code, None
    except (urllib.error.URLError, OSError, ValueError):
        return None, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def _get_models(url: str, api_key: str | None, headers: dict[str, str], seen: Seen | None) -> tuple[int | None, Any]:
    """`_get` of a GET /models URL, answered from `seen` when this session asked already."""
    if seen is None:
        return _get(url, api_key, headers)
    key = (url, hashlib.sha256((api_key or "").encode()).hexdigest(), tuple(sorted(headers.items())))
    if key in seen:
        return seen[key]
    answer = _get(url, api_key, headers)
    if _lasting(answer[0]):  # not a failure to connect, a 5xx, 408 or 429: the next ask may get through
        seen[key] = answer
    return answer


def _lasting(status: int | None) -> bool:
    """An answer worth keeping for the session: a success or a definite refusal (404: no list)."""
    return status is not None and status < 500 and status not in (408, 429)


def _ids(doc: Any) -> list[str] | None:
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        data = doc.get("models") if isinstance(doc, dict) else None  # ollama's /api/tags shape
    if not isinstance(data, list):
        return None
    ids = [str(m.get("id") or m.get("name")) for m in data if isinstance(m, dict) and (m.get("id") or m.get("name"))]
    return ids or None


def _check_models(spec: SweepSpec, endpoint: Any, headers: dict[str, str], seen: Seen | None = None) -> list[str]:
    base_url = endpoint.base_url
    path_part = base_url.partition("?")[0].rstrip("/")  # a query (`?api-version=…`) stays on every URL
    shown = redact_url(path_part)
    where = {"file": spec.source or None}
    if path_part.endswith("/chat/completions"):
        root = shown.removesuffix("/chat/completions")
        raise TargetError(f"{shown} is the chat endpoint, not the API root; did you mean {root}?", key="target.base_url", **where)
    status, doc = _get_models(endpoint_url(base_url, "/models"), endpoint.api_key, headers, seen)
    ids = _ids(doc) if status == 200 else None
    if ids is None and status in (404, 405) and not urlsplit(path_part).path.rstrip("/").endswith("/v1"):
        v1_status, v1_doc = _get(endpoint_url(base_url, "/v1/models"), endpoint.api_key, headers)
        if v1_status == 200 and _ids(v1_doc) is not None:
            raise TargetError(
                f"{shown} does not look like an API root (GET /models: HTTP {status}); did you mean {shown}/v1?",
                key="target.base_url", **where,
            )  # fmt: skip
    if ids is None:
        return []
    return ids


def _not_served(spec: SweepSpec, model: str, ids: list[str], words: str) -> TargetError:
    close = difflib.get_close_matches(model, ids, n=1, cutoff=0.3)
    hint = f"did you mean {close[0]!r}? " if close else ""
    shown = ", ".join(ids[:8]) + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")
    return TargetError(f"the server does not serve {model!r}; {hint}(served: {shown}; it said: {words})",
                       file=spec.source or None, key="target.model")  # fmt: skip


# ---------------------------------------------------------------- one request per value


def _bodies(spec: SweepSpec, model: str, messages: list[dict[str, Any]]) -> list[tuple[str, Any, dict[str, Any]]]:
    """(parameter, value, body) for the fixed params alone and for each swept value."""
    base: dict[str, Any] = {"model": model, "messages": messages, **spec.params.sent(), **spec.params.extra_body}
    base["max_tokens"] = 1
    if spec.runner.stream:
        base.update(stream=True, stream_options={"include_usage": True})
    out: list[tuple[str, Any, dict[str, Any]]] = [("params", None, base)]
    axes = {**spec.sweep.grid, **spec.sweep.zip}
    for name in sorted(axes):
        for value in _sample(list(dict.fromkeys(axes[name]))):  # distinct, in order
            body = {**base, name: value}
            if name == "top_logprobs" and "logprobs" not in body:
                body["logprobs"] = True
            out.append((name, value, body))
    return out


def _sample(values: list[Any], most: int = _MOST_VALUES) -> list[Any]:
    """Every value when there are few; else the special ones (<= 0), the extremes and an even
    spread — a sweep over 1,000 seeds does not need 1,000 preflight requests."""
    if len(values) <= most:
        return values
    ordered = sorted(values)
    special = [v for v in ordered if v <= 0][: most // 2]
    step = (len(ordered) - 1) / max(1, most - len(special) - 1)
    spread = [ordered[round(i * step)] for i in range(most - len(special))]
    return list(dict.fromkeys([*special, *spread]))


async def _send(client: ChatClient, gate: asyncio.Semaphore, body: dict[str, Any]) -> tuple[RequestFailed | None, int]:
    """(the refusal or None, requests sent). A refusal counts when the server repeats it word for
    word (2 answers for a 4xx, 3 for a 5xx), so a random fault does not stop a run; anything
    else (accepted, transient, inconsistent) lets the run go ahead."""
    same: list[RequestFailed] = []
    for attempt in range(1, 4):
        try:
            async with gate:
                await client.complete(body, timeout_s=_TIMEOUT_S * 3)
            return None, attempt
        except RequestFailed as failure:
            status = failure.http_status
            if status is None or status < 400 or status == 429 or (same and same[0].message != failure.message):
                return None, attempt
            same.append(failure)
            if len(same) >= (3 if failure.retryable else 2):
                return failure, attempt
            await asyncio.sleep(0.1)
    return None, 3


async def _check_values(spec: SweepSpec, endpoint: Any, messages: list[dict[str, Any]], headers: dict[str, str],
                        transport: Any, dialect: str) -> tuple[int, list[tuple[str, Any]]]:  # fmt: skip
    config = ClientConfig(base_url=endpoint.base_url, api_key=endpoint.api_key, headers=headers,
                          timeout_s=min(spec.runner.timeout_s, 60.0), pool_size=_CONCURRENCY)  # fmt: skip
    from harness.probe.dialects import translate

    checks = [(name, value, translate(dialect, body)[0]) for name, value, body in _bodies(spec, endpoint.model, messages)]
    gate = asyncio.Semaphore(_CONCURRENCY)
    async with ChatClient(config, transport=transport) as client:
        results = await asyncio.gather(*(_send(client, gate, body) for _, _, body in checks))
    sent = sum(n for _, n in results)
    for (name, value, _), (failure, _) in zip(checks, results, strict=True):
        if failure is not None:
            raise _Refused(name, value, failure, sent)
    return sent, [(name, value) for name, value, _ in checks]


def translate_value(spec: SweepSpec, name: str, value: Any) -> Any:
    """The value sent for `name` under an explicit dialect, when it differs (None otherwise)."""
    from harness.probe.dialects import translate

    return translate(spec.target.dialect, {name: value})[1].get(name)


def _refusal(spec: SweepSpec, name: str, value: Any, failure: RequestFailed, requests: int) -> TargetError:
    words = failure.message
    if name == "params":
        what = "a request with the spec's params (and max_tokens 1)"
        key = "params"
    else:
        what = f"{name}={json.dumps(value)}"
        sent = translate_value(spec, name, value)
        if sent is not None:
            what += f" (sent as {json.dumps(sent)} for target.dialect {spec.target.dialect})"
        key = f"sweep.{'grid' if name in spec.sweep.grid else 'zip'}.{name}"
    return TargetError(
        f"the server refused {what}: {words} (preflight, {requests} requests; --no-preflight skips it)",
        file=spec.source or None, key=key,
    )  # fmt: skip


def preflight_job(job: Any, endpoint: Any, *, transport: Any = None) -> PreflightResult | None:
    """`preflight` for a prepared sweep job (harness run); None when it has nothing to send.
    A refusal names the run directory, which `harness run --resume` finishes once fixed."""
    return asyncio.run(preflight_job_async(job, endpoint, transport=transport))


async def preflight_job_async(job: Any, endpoint: Any, *, transport: Any = None) -> PreflightResult | None:
    """`preflight_job` inside a running event loop (e.g. as `run_job`'s before_first_request hook)."""
    first = next(iter(job.plans()), None)
    if first is None:
        return None
    try:
        return await preflight_async(job.spec, endpoint, list(first.prompt.messages), transport=transport,
                                     seen=getattr(job, "models_seen", None))
    except TargetError as err:
        hint = f"; nothing was sent to the sweep: after fixing, harness run --resume {job.run_dir}"
        raise TargetError(err.detail + hint, file=err.file, key=err.key) from None


def resolve_dialect(spec: SweepSpec, endpoint: Any, seen: Seen | None = None) -> str:
    """`target.dialect`, with auto decided from `GET /models` (seed when it says nothing); `seen`:
    GET /models answers of this session to reuse (see `Seen`)."""
    from harness.probe.dialects import detect

    if spec.target.dialect != "auto":
        return spec.target.dialect
    if spec.target.local:
        return "seed"  # the embedded model sits behind harness's own front
    status, doc = _get_models(endpoint_url(endpoint.base_url, "/models"), endpoint.api_key, dict(spec.target.headers),
                              seen)
    return detect(doc if status == 200 else None, endpoint.base_url)


def preflight_spec(spec: SweepSpec, api_key: str | None) -> PreflightResult | None:
    """`preflight` for a new sweep on a base_url, before its run directory exists."""
    from harness.runner.sweep import Endpoint
    from harness.spec.datasets import load_prompts

    prompts = load_prompts(spec)
    url = spec.target.first_url
    if not prompts or url is None or spec.target.model is None:
        return None
    endpoint = Endpoint(base_url=url, model=spec.target.model, api_key=api_key)
    return preflight(spec, endpoint, list(prompts[0].messages))
