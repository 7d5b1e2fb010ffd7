"""The sweep spec: pydantic models of the YAML file, strict, checked before any request is sent.

Loading goes: read (a bounded regular file) → YAML (duplicate keys refused; alias expansion,
nesting and size bounded) → `${VAR}` interpolation → unknown keys refused by name with a
suggestion → pydantic validation → cross-field checks. Every failure is one `SpecError` line
naming the file, the key path, the value and what is allowed.

The `params` model is generated from the parameter registry (`harness.spec.parameters`): every value of
a parameter — fixed, in a grid or zip axis, in an `exclude` rule or in `params.extra_body` — is
checked by `harness.spec.parameters.check_value`, so there is one definition of what is allowed.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from harness.errors import SpecError
from harness.probe.dialects import lacking
from harness.redact import redact_headers, redact_url
from harness.spec.axes import AxisError, normalise_axis, normalise_zip, unknown_axis
from harness.spec.load import check_shape, check_unknown_keys, interpolate, read_yaml
from harness.spec.parameters import (
    BY_NAME,
    INT64_MAX,
    INT64_MIN,
    REGISTRY,
    SWEEPABLE,
    Param,
    check_value,
)

AxisValues = tuple[float | int, ...]

PER_SAMPLE = "per_sample"
RESERVED_BODY_KEYS = ("model", "messages", "stream", "stream_options", "n")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")
_HEADER_VALUE = re.compile(r"^[\t\x20-\x7e]{0,8192}$")
DAY_S = 86_400.0


def _new_list() -> list[Any]:
    """`default_factory=list`, except that pydantic reads this one's signature without tokenizing
    `list.__text_signature__` (compiling tokenize's patterns: ~3 ms of every spec load)."""
    return []


class _Strict(BaseModel):
    # defer_build: a model's validator is built the first time it validates, not at import. Loading a
    # spec builds SweepSpec once (its sections inline); building every section's own validator at
    # import as well cost `harness plan` and every importer of the spec ~10-20 ms for nothing.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


def _check_base_url(url: str) -> None:
    """A usable http(s) URL: scheme, host, a valid port, no credentials, no spaces."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"@base_url: {redact_url(url)!r} must start with http:// or https://")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url) or not url.isascii():
        raise ValueError("@base_url: contains spaces, control or non-ASCII characters; percent-encode them")
    parts = urlsplit(url)
    if "@" in parts.netloc:
        # never echo the value: it holds a secret that would land in the manifest and logs
        raise ValueError("@base_url: credentials in the URL (user:key@) are not allowed; "
                         "put the key in the variable named by api_key_env")
    try:
        port = parts.port
    except ValueError:
        shown = f"{parts.scheme}://{parts.netloc}"
        raise ValueError(f"@base_url: {shown!r} has an invalid port; allowed: 1 to 65535") from None
    if port == 0:
        raise ValueError(f"@base_url: {redact_url(url)!r} has port 0; allowed: 1 to 65535")
    if not parts.hostname:
        raise ValueError(f"@base_url: {redact_url(url)!r} has no host")


def _check_headers(headers: Any) -> Any:
    if not isinstance(headers, dict):
        return headers
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise ValueError(f"@: {str(name)[:40]!r} is not a valid header name; allowed: ASCII letters, "
                             "digits and !#$%&'*+.^_`|~-")
        if not isinstance(value, str) or not _HEADER_VALUE.match(value):
            # never echo the value: it may be a secret
            raise ValueError(f"@{name}: the value must be a string of printable ASCII "
                             "(no newlines, at most 8192 characters)")
    return headers


class DatasetConfig(_Strict):
    """The prompt set."""

    path: Path = Field(description="JSONL, CSV or Parquet file, relative to the spec file")
    format: Literal["jsonl", "csv", "parquet"] | None = Field(None, description="default: from the file suffix")
    limit: int | None = Field(None, ge=1, le=INT64_MAX, description="use only the first N prompts (after shuffle)")
    shuffle: bool = Field(False, description="shuffle the prompts (seeded by shuffle_seed) before limit")
    shuffle_seed: int = Field(0, ge=INT64_MIN, le=INT64_MAX, description="seed of the shuffle")
    system: str | None = Field(None, description="a system prompt put before every prompt's messages")


class SeedPerSample(_Strict):
    """`seed: {per_sample: BASE}`: repeat `sample` of every cell and prompt is sent seed BASE + sample."""

    per_sample: int = Field(ge=INT64_MIN, le=INT64_MAX, description="the seed of repeat 0")


def _check_json(value: Any, where: str, depth: int = 0) -> None:
    """extra_body values must be plain JSON (no dates, NaN or 65-bit integers)."""
    if depth > 16:
        raise ValueError(f"@{where}: nested deeper than 16 levels")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"@{where}: {value!r} is not a finite number")
    if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"@{where}: integer out of the 64-bit range")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_json(v, f"{where}.{k}", depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_json(v, f"{where}[{i}]", depth + 1)
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        raise ValueError(f"@{where}: a {type(value).__name__} is not a JSON value (quote it)")


class _ParamsBase(_Strict):
    """Body parameters sent with every request; only those set are sent (fields come from the registry)."""

    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description="extra body fields for other servers (e.g. repetition_penalty); a known parameter here "
        "is checked like any other",
    )

    @model_validator(mode="before")
    @classmethod
    def _check_values(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name in BY_NAME:
            if out.get(name) is None:
                continue
            if name == "seed" and _is_per_sample(out[name]):
                out[name] = _per_sample(out[name])
                continue
            try:
                out[name] = check_value(name, out[name])
            except ValueError as exc:
                raise ValueError(f"@{name}: {exc}") from None
        if isinstance(out.get("extra_body"), dict):
            out["extra_body"] = _check_extra_body(out["extra_body"], {k for k in BY_NAME if out.get(k) is not None})
        return out

    @model_validator(mode="after")
    def _cross(self) -> _ParamsBase:
        logprobs = self.get("logprobs") or self.extra_body.get("logprobs")
        if self.get("top_logprobs") is not None and not logprobs:
            raise ValueError("@top_logprobs: needs logprobs: true")
        return self

    def get(self, name: str) -> Any:
        """The value of parameter `name` as set in the spec (None when not set)."""
        return getattr(self, name, None)

    def sent(self) -> dict[str, Any]:
        """The fields sent with every request, in registry order (extra_body and a per-sample seed excluded)."""
        out = {}
        for param in REGISTRY:
            value = self.get(param.name)
            if value is not None and not (param.name == "seed" and not isinstance(value, int)):
                out[param.name] = value
        return out

    @property
    def seed_base(self) -> int | None:
        """The seed of repeat 0 with `seed: per_sample` (0) or `{per_sample: BASE}`; None otherwise."""
        seed = self.get("seed")
        if seed == PER_SAMPLE:
            return 0
        return seed.per_sample if isinstance(seed, SeedPerSample) else None

    def seed_for(self, sample: int) -> int | None:
        """The per-sample seed to send for repeat `sample`; None unless `seed: per_sample`."""
        base = self.seed_base
        return None if base is None else base + sample


def _is_per_sample(value: Any) -> bool:
    return value == PER_SAMPLE or (isinstance(value, dict) and set(value) == {PER_SAMPLE})


def _per_sample(value: Any) -> Any:
    if value == PER_SAMPLE:
        return value
    base = value[PER_SAMPLE]
    if isinstance(base, bool) or not isinstance(base, int) or not INT64_MIN <= base <= INT64_MAX:
        raise ValueError(f"@seed.per_sample: {base!r} is not an integer; allowed: a 64-bit integer (the seed of repeat 0)")
    return value


def _check_extra_body(extra: dict[str, Any], set_here: set[str]) -> dict[str, Any]:
    out = {}
    for key, value in extra.items():
        key = str(key)
        if key in RESERVED_BODY_KEYS:
            raise ValueError(f"@extra_body.{key}: set by harness; not allowed in extra_body "
                             f"(reserved: {', '.join(RESERVED_BODY_KEYS)}; use sweep.repeats for several samples)")
        if key in BY_NAME:
            if key in set_here:
                raise ValueError(f"@extra_body.{key}: also set as params.{key}; set it in one place")
            try:
                value = check_value(key, value)
            except ValueError as exc:
                raise ValueError(f"@extra_body.{key}: {exc}") from None
        _check_json(value, f"extra_body.{key}")
        out[key] = value
    return out


def _param_field(param: Param) -> tuple[Any, Any]:
    """The pydantic (type, Field) of one registry parameter; the schema shows the seed API's range."""
    extra: dict[str, Any] = {"description": param.description}
    if param.low is not None:
        extra["ge"] = param.low
    if param.high is not None:
        extra["le"] = param.high
    kinds: dict[str, Any] = {
        "float": float,
        "int": int,
        "bool": bool,
        "stop": str | list[str],
        "tool_choice": Literal["none", "auto", "required"] | dict[str, Any],
    }
    annotation = kinds[param.kind]
    if param.name == "seed":
        annotation = int | Literal["per_sample"] | SeedPerSample
        extra.pop("ge", None), extra.pop("le", None)
    if param.kind == "stop":
        extra["description"] += " (a string or up to 4)"
    return (annotation | None, Field(None, **extra))


if TYPE_CHECKING:
    Params = _ParamsBase
else:
    Params = create_model(
        "Params",
        __base__=_ParamsBase,
        __doc__="Body parameters sent with every request; only those set are sent.",
        **{p.name: _param_field(p) for p in REGISTRY},
    )


ROW_METRICS = ("completion_tokens", "latency_s")  # row columns an adaptive rule may target besides scorers


class Until(_Strict):
    """When a cell has enough samples: its interval on `metric` is at most ±`half_width` wide."""

    metric: str = Field(min_length=1, max_length=64,
                        description="a scorer's metric name from `scoring` (e.g. exact_match), or completion_tokens "
                        "or latency_s")
    half_width: float = Field(gt=0, le=1e12, allow_inf_nan=False,
                              description="stop sampling a cell once its interval is mean ± at most this much")
    confidence: float = Field(0.95, ge=0.5, le=0.9999, allow_inf_nan=False,
                              description="confidence level of the interval (clustered by prompt)")
    better: Literal["higher", "lower"] = Field("higher", description="which way the metric improves (for drop_worse)")
    stop_unreachable: bool = Field(True, description="stop a cell early (`unreachable`) when the spread between its "
                                   "prompts alone keeps the interval wider than half_width whatever the repeats")


class DropWorse(_Strict):
    """Stop cells significantly worse than the best so far (Bonferroni over rivals × looks)."""

    alpha: float = Field(0.05, gt=0, le=0.5, allow_inf_nan=False,
                         description="at most this chance of dropping the truly best cell")


class AdaptiveRepeats(_Strict):
    """`sweep.repeats` as a mapping: sample each cell until its interval is narrow enough (docs/run.md)."""

    min: int = Field(ge=1, le=100_000, description="samples per prompt every cell gets first")
    max: int = Field(ge=1, le=100_000, description="samples per prompt a cell never exceeds")
    step: int | None = Field(None, ge=1, le=100_000,
                             description="samples per prompt added to an unfinished cell per round (default: min)")
    until: Until = Field(description="the metric and the interval width that make a cell done")
    drop_worse: DropWorse | None = Field(None, description="also stop cells significantly worse than the best")

    @model_validator(mode="after")
    def _order(self) -> AdaptiveRepeats:
        if self.max < self.min:
            raise ValueError(f"@max: {self.max} is below min {self.min}; allowed: max >= min")
        return self

    @property
    def rounds_step(self) -> int:
        return self.step if self.step is not None else self.min
TARGET_NAME = r"^[A-Za-z0-9_.-]{1,64}$"
DEFAULT_TARGET = "default"
MAX_TARGETS = 64
MAX_REPLICAS = 64


class Price(_Strict):
    """What a target costs, per million tokens (any currency; reports show it as given)."""

    input_per_mtok: float = Field(ge=0, le=1_000_000, allow_inf_nan=False, description="price of 1M prompt tokens")
    output_per_mtok: float = Field(ge=0, le=1_000_000, allow_inf_nan=False,
                                   description="price of 1M completion tokens")


class TargetLimits(_Strict):
    """A target's own runner limits; each unset one is the runner's (`runner.*`, or the flag)."""

    concurrency: int | None = Field(None, ge=1, le=10_000, description="requests in flight to this target")
    rps: float | None = Field(None, ge=0.001, le=1_000_000, allow_inf_nan=False,
                              description="requests per second to this target")
    tokens_per_min: int | None = Field(None, gt=0, le=10**12, description="tokens per minute to this target")


class Target(_Strict):
    """Where requests go: an OpenAI-compatible base URL (or a list of replicas), or an embedded local model."""

    name: str | None = Field(None, pattern=TARGET_NAME,
                             description="the target's name (the `target` column); required in targets, "
                             "else `default`")
    base_url: str | list[str] | None = Field(
        None, description="e.g. http://127.0.0.1:8000/v1; a list: replicas of one model, requests go to the "
        "least busy, a failing one is taken out for a while")
    model: str | None = Field(None, min_length=1, max_length=512, description="the model name sent in every request")
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
                                    description="name of the environment variable holding the key")
    local: Literal["gemma-3-270m"] | None = Field(None, description="run on an embedded local model")
    headers: dict[str, str] = Field(default_factory=dict,
                                    description="extra HTTP headers; values are redacted when stored unless "
                                    "the name is a known harmless header")

    dialect: Literal["auto", "seed", "openai", "vllm", "sglang", "llama.cpp", "ollama"] = Field(
        "auto", description="how the server spells the sampling fields (harness.probe.dialects); auto: from GET /models"
    )
    params: Params | None = Field(None, description="this target's params, over the spec's `params` (same keys, "
                                  "same checks; e.g. a larger max_tokens for a reasoning model)")
    price: Price | None = Field(None, description="price per 1M tokens: cost per cell and per correct answer in reports")
    runner: TargetLimits | None = Field(None, description="this target's concurrency and rate limits "
                                        "(default: the runner's, for each target separately)")

    @field_validator("headers", mode="before")
    @classmethod
    def _headers(cls, value: Any) -> Any:
        return _check_headers(value)

    @field_validator("base_url", mode="before")
    @classmethod
    def _base_url(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not 1 <= len(value) <= MAX_REPLICAS:
                raise ValueError(f"@base_url: give 1 to {MAX_REPLICAS} replica URLs, not {len(value)}")
            if len(set(map(str, value))) != len(value):
                raise ValueError("@base_url: the same replica URL is listed twice")
        for i, url in enumerate(value if isinstance(value, list) else [value]):
            if isinstance(url, str) and len(url) > 2048:
                where = f"[{i}]" if isinstance(value, list) else ""
                raise ValueError(f"@base_url{where}: longer than 2048 characters")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> Target:
        if (self.base_url is None) == (self.local is None):
            raise ValueError("@: give exactly one of base_url or local")
        if self.base_url is not None:
            for url in self.urls:
                _check_base_url(url)
            if not self.model:
                raise ValueError("@model: required with base_url (the model name to send)")
        return self

    @property
    def urls(self) -> tuple[str, ...]:
        """The replica URLs (one for a single base_url; none for `local:`)."""
        if self.base_url is None:
            return ()
        return tuple(self.base_url) if isinstance(self.base_url, list) else (self.base_url,)

    @property
    def first_url(self) -> str | None:
        """The base URL, or the first replica's."""
        return self.urls[0] if self.urls else None

    @property
    def label(self) -> str:
        """The name in the `target` column."""
        return self.name or DEFAULT_TARGET

    @property
    def model_name(self) -> str:
        return self.model or self.local or ""

    def public(self) -> str:
        """The target for display: the redacted base URL (replicas: the first and how many), or `local:<model>`."""
        urls = self.urls
        if not urls:
            return f"local:{self.local}"
        more = f" (+{len(urls) - 1} replicas)" if len(urls) > 1 else ""
        return redact_url(urls[0]) + more


class Sweep(_Strict):
    """What varies: a grid, zipped axes, exclusions, a random subset and repeats."""

    grid: dict[str, AxisValues] = Field(default_factory=dict, description="Cartesian product of axes")
    zip: dict[str, AxisValues] = Field(default_factory=dict, description="equal-length lists advanced together")
    exclude: list[dict[str, Any]] = Field(
        default_factory=_new_list, description="drop points matching every key (a list value means any of)"
    )
    sample: int | None = Field(None, ge=1, le=INT64_MAX, description="keep a random subset of this many points")
    sample_seed: int = Field(0, ge=INT64_MIN, le=INT64_MAX, description="seed of the random subset")
    repeats: Annotated[int, Field(ge=1, le=100_000)] | AdaptiveRepeats = Field(
        1,
        description="requests per (point, prompt); see seed: per_sample. A mapping {min, max, step, until, "
        "drop_worse} samples adaptively (docs/run.md#adaptive-repeats)")

    @field_validator("repeats", mode="before")
    @classmethod
    def _repeats(cls, raw: Any) -> Any:
        """One clear line for either form (pydantic would report both members of the union)."""
        if isinstance(raw, dict):
            try:
                return AdaptiveRepeats.model_validate(raw)
            except ValidationError as err:
                first = err.errors()[0]
                loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
                msg = str(first["msg"]).removeprefix("Value error, ")
                if msg.startswith("@"):
                    inner, _, msg = msg[1:].partition(": ")
                    loc = ".".join(p for p in (loc, inner) if p)
                elif first["type"] == "missing":
                    msg = "required key is missing"
                else:
                    msg = f"{first.get('input')!r}: {msg}"
                raise ValueError(f"@{loc}: {msg}") from None
        if isinstance(raw, bool) or not isinstance(raw, (int, AdaptiveRepeats)):
            raise ValueError(f"@: {raw!r} is not an integer or a mapping; allowed: an integer 1 to 100,000, "
                             "or {min, max, step, until: {metric, half_width, confidence, better}, drop_worse: {alpha}}")
        if isinstance(raw, int) and not 1 <= raw <= 100_000:
            bound = "greater than or equal to 1" if raw < 1 else "less than or equal to 100000"
            raise ValueError(f"@: {raw}: Input should be {bound} (or an adaptive mapping {{min, max, until, …}})")
        return raw

    @property
    def adaptive(self) -> AdaptiveRepeats | None:
        """The adaptive rule when `repeats` is a mapping, else None."""
        return self.repeats if isinstance(self.repeats, AdaptiveRepeats) else None

    @property
    def max_repeats(self) -> int:
        """Samples per (point, prompt) at most: `repeats`, or the adaptive `max`."""
        return self.repeats.max if isinstance(self.repeats, AdaptiveRepeats) else self.repeats

    @property
    def min_repeats(self) -> int:
        """Samples per (point, prompt) at least: `repeats`, or the adaptive `min`."""
        return self.repeats.min if isinstance(self.repeats, AdaptiveRepeats) else self.repeats
    only_targets: tuple[str, ...] | None = Field(None, exclude=True, description="`grid.target`: the targets swept")

    @model_validator(mode="before")
    @classmethod
    def _target_axis(cls, data: Any) -> Any:
        """`grid.target: [names]` restricts the targets; it is not a sampling parameter, so it is kept apart."""
        if not isinstance(data, dict) or not isinstance(data.get("grid"), dict) or "target" not in data["grid"]:
            return data
        grid = dict(data["grid"])
        raw = grid.pop("target")
        names = raw if isinstance(raw, list) else [raw]
        if not names:
            raise ValueError("@grid.target: an empty list sweeps no target; give target names")
        for i, name in enumerate(names):
            if not isinstance(name, str) or not re.match(TARGET_NAME, name):
                raise ValueError(f"@grid.target[{i}]: {str(name)[:40]!r} is not a target name "
                                 "(letters, digits, _ . -)")
        return {**data, "grid": grid, "only_targets": tuple(dict.fromkeys(names))}

    @field_validator("grid", mode="before")
    @classmethod
    def _grid(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        try:
            return {str(k): normalise_axis(str(k), v) for k, v in raw.items()}
        except AxisError as exc:
            raise ValueError(f"@{exc}") from None

    @field_validator("zip", mode="before")
    @classmethod
    def _zip(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        try:
            return normalise_zip({str(k): v for k, v in raw.items()})
        except AxisError as exc:
            raise ValueError(f"@{exc}") from None

    @model_validator(mode="after")
    def _cross(self) -> Sweep:
        both = set(self.grid) & set(self.zip)
        if both:
            raise ValueError(f"@zip.{min(both)}: already an axis of grid; sweep a parameter in one place")
        for i, rule in enumerate(self.exclude):
            _check_exclude_rule(rule, f"exclude[{i}]", self.swept)
        return self

    @property
    def swept(self) -> tuple[str, ...]:
        """Swept parameter names in the canonical order (`harness.spec.parameters.PARAM_COLUMNS`)."""
        names = set(self.grid) | set(self.zip)
        return tuple(name for name in SWEEPABLE if name in names)


def _check_exclude_rule(rule: dict[str, Any], where: str, swept: tuple[str, ...]) -> None:
    """Every key a swept parameter (or `target`), every value (or each of a list) allowed for it."""
    if not rule:
        raise ValueError(f"@{where}: an empty rule would drop every point; give at least one key")
    for key, value in rule.items():
        if key == "target":
            names = value if isinstance(value, list) else [value]
            if not names or not all(isinstance(n, str) and re.match(TARGET_NAME, n) for n in names):
                raise ValueError(f"@{where}.target: give a target name or a list of names")
            continue
        if key not in swept:
            hint = unknown_axis(str(key), swept)
            raise ValueError(f"@{where}.{key}: not a swept parameter; {hint}swept: {', '.join(swept) or 'none'}")
        values = value if isinstance(value, list) else [value]
        if not values:
            raise ValueError(f"@{where}.{key}: an empty list matches nothing; give a value or a list of values")
        for j, item in enumerate(values):
            try:
                check_value(key, item)
            except ValueError as exc:
                suffix = f"[{j}]" if isinstance(value, list) else ""
                raise ValueError(f"@{where}.{key}{suffix}: {exc}") from None


class RayConfig(_Strict):
    """`runner.executor: ray`: the sweep split into shards run as Ray tasks (docs/distributed.md)."""

    address: str | None = Field(None, min_length=1, max_length=2048,
                                description="the cluster (`auto`, `ray://host:10001`, `local` starts one on this "
                                "machine); not set: Ray's default (RAY_ADDRESS, else a local one)")
    shards: int | None = Field(None, ge=1, le=10_000,
                               description="tasks the sweep is split into; not set: the cluster's CPUs / cpus_per_shard")
    cpus_per_shard: float = Field(1.0, gt=0, le=1024, allow_inf_nan=False,
                                  description="CPUs Ray reserves for each shard's task")
    max_retries: int = Field(3, ge=0, le=100, description="times Ray re-runs a shard whose worker or node died "
                             "(it resumes the shard's run directory)")
    store: str | None = Field(None, min_length=1, max_length=4096,
                              description="folder every node sees; the shards' run directories go in "
                              "STORE/RUN_ID (not set: OUT/.shards/RUN_ID), removed once merged complete")


class RunnerConfig(_Strict):
    """How requests are sent. Times are finite and at most a day (a week for deadline_s)."""

    concurrency: int = Field(16, ge=1, le=10_000, description="requests in flight (--concurrency overrides)")
    max_attempts: int = Field(6, ge=1, le=100, description="tries per request (429, 5xx, resets are retried)")
    timeout_s: float = Field(120.0, gt=0, le=DAY_S, allow_inf_nan=False, description="seconds per attempt")
    stream: bool = Field(False, description="stream responses (SSE): measures time to first token")
    rps: float | None = Field(None, ge=0.001, le=1_000_000, allow_inf_nan=False,
                              description="requests per second limit")
    tokens_per_min: int | None = Field(None, gt=0, le=10**12,
                                       description="completion+prompt tokens per minute limit")
    deadline_s: float | None = Field(None, gt=0, le=7 * DAY_S, allow_inf_nan=False,
                                     description="total time per request, retries included")
    max_retry_after_s: float = Field(60.0, ge=0, le=DAY_S, allow_inf_nan=False,
                                     description="cap on a server's Retry-After")
    executor: Literal["local", "ray"] = Field("local", description="`local`: this process sends; `ray`: shards run "
                                              "as Ray tasks across a cluster, limits divided among them (--ray)")
    ray: RayConfig = Field(default_factory=RayConfig, description="the Ray executor's settings (see below)")


class SweepSpec(_Strict):
    """A whole sweep spec (the YAML file)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", description="letters, digits, . _ -")
    description: str | None = Field(None, max_length=10_000, description="free text, shown in reports")
    # One of `target` or `targets`. With `targets`, `target` is the first of them (so code that
    # needs one endpoint keeps working); it is not written back (`resolved_dict`).
    target: Target = Field(None, description="the endpoint (or give `targets`, several named ones)")  # type: ignore[assignment]
    targets: list[Target] | None = Field(None, min_length=1, max_length=MAX_TARGETS,
                                         description="several named targets, one more axis of the sweep "
                                         "(each: name, then the keys of target)")
    dataset: DatasetConfig
    params: Params = Field(default_factory=Params)
    sweep: Sweep = Field(default_factory=Sweep)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    scoring: list[str | dict[str, Any]] = Field(default_factory=_new_list,
                                                      description="scorers applied to each output (see below)")
    source: str = Field("", exclude=True, description="the file this spec came from (not part of the YAML)")

    @model_validator(mode="after")
    def _cross(self) -> SweepSpec:
        self._one_of_target_targets()
        swept = set(self.sweep.swept)
        for name in SWEEPABLE:
            if self.params.get(name) is not None and name in swept:
                raise ValueError(f"@params.{name}: also swept in sweep; set it in one place")
            if name in self.params.extra_body and name in swept:
                raise ValueError(f"@params.extra_body.{name}: also swept in sweep; set it in one place")
        base = self.params.seed_base
        if base is not None and base + self.sweep.max_repeats - 1 > INT64_MAX:
            raise ValueError("@params.seed.per_sample: base + repeats exceeds the 64-bit range")
        self._check_target_names()
        for i, target in enumerate(self.target_list):
            where = f"targets[{i}]" if self.targets else "target"
            params = self._target_params(target, where, swept)
            set_params = set(params.sent())
            for name in lacking(target.dialect, set_params | swept):
                at = f"params.{name}" if name in set_params else f"sweep.{'grid' if name in self.sweep.grid else 'zip'}.{name}"
                raise ValueError(f"@{at}: the {target.dialect} dialect ({where}.dialect) has no {name}; "
                                 "remove it, or name the right dialect")
        return self

    def _one_of_target_targets(self) -> None:
        if self.targets is None and self.target is None:
            raise ValueError("@target: required: give target (one endpoint) or targets (a list of named ones)")
        if self.targets is not None:
            if self.target is not None and self.target is not self.targets[0]:
                raise ValueError("@targets: give target or targets, not both")
            object.__setattr__(self, "target", self.targets[0])  # the first target stands for all in one-endpoint code

    def _check_target_names(self) -> None:
        if self.targets is not None:
            seen: set[str] = set()
            for i, target in enumerate(self.targets):
                if target.name is None:
                    raise ValueError(f"@targets[{i}].name: required (the target's name in the results)")
                if target.name in seen:
                    raise ValueError(f"@targets[{i}].name: {target.name!r} is used twice; names must be unique")
                seen.add(target.name)
        names = self.target_names
        for name in self.sweep.only_targets or ():
            if name not in names:
                raise ValueError(f"@sweep.grid.target: {name!r} is not a target; targets: {', '.join(names)}")
        for i, rule in enumerate(self.sweep.exclude):
            value = rule.get("target")
            for name in (value if isinstance(value, list) else [value]) if value is not None else []:
                if name not in names:
                    raise ValueError(f"@sweep.exclude[{i}].target: {name!r} is not a target; targets: {', '.join(names)}")

    def _target_params(self, target: Target, where: str, swept: set[str]) -> _ParamsBase:
        if target.params is None:
            return self.params
        for name in SWEEPABLE:
            if name in swept and (target.params.get(name) is not None or name in target.params.extra_body):
                raise ValueError(f"@{where}.params.{name}: also swept in sweep; set it in one place")
        try:
            merged = merge_params(self.params, target.params)
        except ValidationError as err:
            first = err.errors()[0]
            raise ValueError(f"@{where}.params: {str(first['msg']).removeprefix('Value error, ').lstrip('@')}") from None
        base = merged.seed_base
        if base is not None and base + self.sweep.max_repeats - 1 > INT64_MAX:
            raise ValueError(f"@{where}.params.seed.per_sample: base + repeats exceeds the 64-bit range")
        return merged

    @property
    def target_list(self) -> tuple[Target, ...]:
        """Every target with its name resolved (`default` for a `target:` without one), in spec order."""
        if self.targets is not None:
            return tuple(self.targets)
        t = self.target
        return (t if t.name else t.model_copy(update={"name": DEFAULT_TARGET}),)

    @property
    def target_names(self) -> tuple[str, ...]:
        return tuple(t.label for t in self.target_list)

    @property
    def multi_target(self) -> bool:
        """True when the spec uses `targets:` (request ids then include the target's name)."""
        return self.targets is not None

    def target_named(self, name: str) -> Target:
        for target in self.target_list:
            if target.label == name:
                return target
        raise KeyError(name)

    def for_target(self, name: str) -> SweepSpec:
        """This spec seen from one target: a one-target spec with that target's params merged in
        (what bodies, the preflight and the dialect use). Points and ids come from the whole spec."""
        target = self.target_named(name)
        params = self.params if target.params is None else merge_params(self.params, target.params)
        return self.model_copy(update={"target": target.model_copy(update={"name": target.label}),
                                       "targets": None, "params": params})

    @property
    def model_name(self) -> str:
        return self.target.model_name

    def resolved_dict(self) -> dict[str, Any]:
        """The resolved spec as JSON, secrets included: never write it, write `public_dict()`."""
        data = self.model_dump(mode="json", exclude={"source"})
        if self.targets is not None:
            del data["target"]
            data["targets"] = [_compact_target(t) for t in data["targets"]]
        else:
            del data["targets"]
            data["target"] = _compact_target(data["target"])
        if self.sweep.only_targets is not None:
            data["sweep"]["grid"] = {"target": list(self.sweep.only_targets), **data["sweep"]["grid"]}
        return data

    def public_dict(self) -> dict[str, Any]:
        """The resolved spec safe to write or print: URL userinfo/query values and secret headers redacted."""
        data = self.resolved_dict()
        for stored in data["targets"] if self.targets is not None else [data["target"]]:
            url = stored.get("base_url")
            if isinstance(url, list):
                stored["base_url"] = [redact_url(u) for u in url]
            elif url is not None:
                stored["base_url"] = redact_url(url)
            stored["headers"] = redact_headers(stored.get("headers") or {})
        return data

    def public_target(self) -> str:
        """The target for display: the redacted base URL, or `local:<model>`; several: their names."""
        if self.targets is not None and len(self.targets) > 1:
            return ", ".join(f"{t.label}={t.public()}" for t in self.targets)
        return self.target.public()


_NEW_TARGET_KEYS = ("name", "params", "price", "runner")


def _compact_target(data: dict[str, Any]) -> dict[str, Any]:
    """A stored target without the keys it does not set (a one-target spec hashes as before targets existed)."""
    out = {k: v for k, v in data.items() if not (k in _NEW_TARGET_KEYS and v is None)}
    if isinstance(out.get("params"), dict):
        out["params"] = {k: v for k, v in out["params"].items() if v is not None and v != {}}
    if isinstance(out.get("runner"), dict):
        out["runner"] = {k: v for k, v in out["runner"].items() if v is not None}
    return out


def merge_params(base: _ParamsBase, override: _ParamsBase) -> _ParamsBase:
    """A target's params over the spec's: a key the target sets (as a parameter or in extra_body)
    replaces the spec's; the result is checked again (ValidationError)."""
    b = base.model_dump(exclude_none=True)
    o = override.model_dump(exclude_none=True)
    b_extra, o_extra = dict(b.pop("extra_body", {}) or {}), dict(o.pop("extra_body", {}) or {})
    keys = set(o) | set(o_extra)
    merged = {**{k: v for k, v in b.items() if k not in keys}, **o}
    extra = {**{k: v for k, v in b_extra.items() if k not in keys}, **o_extra}
    return type(base).model_validate({**merged, "extra_body": extra})


def check_api_key(key: str, *, env_name: str, source: str) -> str:
    """An API key usable in an HTTP header (printable ASCII, no newline); never echoes the key."""
    if not _HEADER_VALUE.match(key) or not key.strip():
        raise SpecError(
            f"the value of ${env_name} is not usable as a key: it must be non-blank printable ASCII "
            "without newlines (check how the variable was set)",
            file=source,
            key="target.api_key_env",
        )
    return key


def spec_hash(spec: SweepSpec) -> str:
    """Stable hash of what the sweep sends (name and description excluded; secrets redacted first)."""
    data = spec.public_dict()
    data.pop("name", None)
    data.pop("description", None)
    data["dataset"]["path"] = Path(data["dataset"]["path"]).name
    for key in ("executor", "ray"):  # where the sweep runs, not what it sends: hashes of older runs stay
        data["runner"].pop(key, None)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _render_validation(err: ValidationError, source: str) -> SpecError:
    first = err.errors()[0]
    loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in first["loc"]).replace(".[", "[")
    loc = re.sub(r"\.(function-after|function-before|function-wrap)\[[^\]]*\]", "", loc)
    msg = str(first["msg"]).removeprefix("Value error, ")
    if msg.startswith("@"):
        inner, _, msg = msg[1:].partition(": ")
        loc = ".".join(p for p in (loc, inner) if p).replace(".[", "[")
    elif first["type"] not in ("missing",) and "input" in first:
        shown = repr(first["input"])
        msg = f"{shown if len(shown) <= 60 else shown[:57] + '...'}: {msg}"
    if first["type"] == "missing":
        msg = "required key is missing"
    more = len(err.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return SpecError(msg + suffix, file=source, key=loc or None)


def parse_spec(
    data: Any, *, source: str, base_dir: Path, env: Mapping[str, str] | None = None, check_metric: bool = True
) -> SweepSpec:
    """Validate a spec already parsed from YAML (or taken from a manifest).

    `check_metric=False`: the adaptive metric is not checked against `scoring` (a manifest's spec
    is validated without its scoring list, which may name code that must not be imported)."""
    if not isinstance(data, dict):
        raise SpecError("a spec must be a mapping of sections (name, target, dataset, ...)", file=source)
    check_shape(data, source)  # specs from Python or a manifest too: bounded, valid Unicode
    data = interpolate(data, env, source)
    check_shape(data, source)  # an environment variable's value may hold undecodable bytes
    check_unknown_keys(data, SweepSpec, source)
    try:
        spec = SweepSpec.model_validate({**data, "source": source})
    except ValidationError as err:
        raise _render_validation(err, source) from None
    except RecursionError:
        raise SpecError("nested too deeply", file=source) from None
    try:
        path = spec.dataset.path if spec.dataset.path.is_absolute() else (base_dir / spec.dataset.path)
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise SpecError(f"cannot resolve the path ({exc.__class__.__name__})", file=source, key="dataset.path") from None
    spec = spec.model_copy(update={"dataset": spec.dataset.model_copy(update={"path": resolved})})
    names = _check_scoring(spec, source)
    if check_metric:
        _check_adaptive_metric(spec, names, source)
    return spec


def _check_scoring(spec: SweepSpec, source: str) -> list[str]:
    """Resolve the scoring list (SpecError naming the bad item); the metric names it defines."""
    if not spec.scoring:
        return []
    from harness.analysis.scoring import resolve_scorers

    try:
        return [scorer.name for scorer in resolve_scorers(list(spec.scoring))]
    except SpecError as err:
        raise SpecError(err.detail, file=source, key=err.key) from None


def _check_adaptive_metric(spec: SweepSpec, scorer_names: list[str], source: str) -> None:
    """An adaptive rule's metric must be one of the spec's scorers or a numeric row column."""
    rule = spec.sweep.adaptive
    if rule is None or rule.until.metric in scorer_names or rule.until.metric in ROW_METRICS:
        return
    import difflib

    allowed = [*scorer_names, *ROW_METRICS]
    close = difflib.get_close_matches(rule.until.metric, allowed, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    scorers = f"the scorers of `scoring` ({', '.join(scorer_names)})" if scorer_names else "a scorer added to `scoring`"
    raise SpecError(f"{rule.until.metric!r} is not a metric of this spec; {hint}allowed: {scorers}, "
                    f"or {' / '.join(ROW_METRICS)}", file=source, key="sweep.repeats.until.metric")


def load_spec(path: str | Path, env: Mapping[str, str] | None = None) -> SweepSpec:
    """Read and validate a YAML spec file. Raises SpecError (one line) on any problem."""
    path = Path(path)
    data = read_yaml(path)
    try:
        base_dir = path.resolve().parent
    except (OSError, RuntimeError) as exc:
        raise SpecError(f"cannot resolve the path ({exc.__class__.__name__})", file=str(path)) from None
    return parse_spec(data, source=str(path), base_dir=base_dir, env=env)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the spec, for editors (yaml-language-server) and other tools."""
    schema = SweepSpec.model_json_schema(mode="validation")
    schema["properties"].pop("source", None)
    sweep = schema["$defs"]["Sweep"]
    sweep["properties"].pop("only_targets", None)
    sweep["properties"]["grid"]["properties"] = {"target": {
        "type": "array", "items": {"type": "string", "pattern": TARGET_NAME},
        "description": "the targets to send to (names from targets); default: all"}}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "harness sweep spec"
    return schema


__all__ = [
    "DEFAULT_TARGET",
    "PER_SAMPLE",
    "ROW_METRICS",
    "AdaptiveRepeats",
    "DatasetConfig",
    "DropWorse",
    "Params",
    "Price",
    "RayConfig",
    "RunnerConfig",
    "SeedPerSample",
    "Sweep",
    "SweepSpec",
    "Target",
    "TargetLimits",
    "Until",
    "check_api_key",
    "json_schema",
    "load_spec",
    "merge_params",
    "parse_spec",
    "spec_hash",
]
