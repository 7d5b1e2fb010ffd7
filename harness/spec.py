"""The sweep spec: pydantic models of the YAML file, strict, checked before any request is sent.

Loading goes: read → YAML (duplicate keys refused) → `${VAR}` interpolation → unknown keys refused
by name with a suggestion → pydantic validation (seed API limits) → cross-field checks. Every
failure is one `SpecError` line naming the file, the key path, the value and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, Mapping, Union
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.axes import AxisError, normalise_axis, normalise_zip
from harness.errors import SpecError
from harness.limits import LIMITS, SWEEPABLE, check_value
from harness.probe.dialects import lacking
from harness.specload import check_unknown_keys, interpolate, read_yaml

AxisValues = tuple[Union[float, int], ...]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Target(_Strict):
    """Where requests go: an OpenAI-compatible base URL, or an embedded local model."""

    base_url: str | None = Field(None, description="e.g. http://127.0.0.1:8000/v1")
    model: str | None = Field(None, description="the model name sent in every request")
    api_key_env: str | None = Field(None, description="name of the environment variable holding the key")
    local: Literal["gemma-3-270m"] | None = Field(None, description="run on an embedded local model")
    headers: dict[str, str] = Field(default_factory=dict, description="extra HTTP headers (no secrets)")
    dialect: Literal["auto", "seed", "openai", "vllm", "sglang", "llama.cpp", "ollama"] = Field(
        "auto", description="how the server spells the sampling fields (harness.probe.dialects); auto: from GET /models"
    )

    @model_validator(mode="after")
    def _one_target(self) -> "Target":
        if (self.base_url is None) == (self.local is None):
            raise ValueError("@: give exactly one of base_url or local")
        if self.base_url is not None:
            if "@" in urlsplit(self.base_url).netloc:
                # never echo the value: it holds a secret that would land in the manifest and logs
                raise ValueError("@base_url: credentials in the URL (user:key@) are not allowed; "
                                 "put the key in the variable named by api_key_env")
            if not self.base_url.startswith(("http://", "https://")):
                raise ValueError(f"@base_url: {self.base_url!r} must start with http:// or https://")
            if not self.model:
                raise ValueError("@model: required with base_url (the model name to send)")
        return self

    @property
    def model_name(self) -> str:
        return self.model or self.local or ""


class DatasetConfig(_Strict):
    """The prompt set."""

    path: Path = Field(description="JSONL, CSV or Parquet file, relative to the spec file")
    format: Literal["jsonl", "csv", "parquet"] | None = None
    limit: int | None = Field(None, ge=1)
    shuffle: bool = False
    shuffle_seed: int = 0
    system: str | None = Field(None, description="a system prompt put before every prompt's messages")


class Params(_Strict):
    """Body parameters sent with every request; only those set are sent."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tool_choice: str | dict[str, Any] | None = None
    extra_body: dict[str, Any] = Field(default_factory=dict, description="extra body fields for other servers")

    @model_validator(mode="before")
    @classmethod
    def _limits(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name, limit in LIMITS.items():
            if out.get(name) is not None:
                try:
                    out[name] = check_value(name, out[name])
                except ValueError as exc:
                    raise ValueError(f"@{name}: {exc}") from None
        for name in ("logprobs",):
            if name in out and out[name] is not None and not isinstance(out[name], bool):
                raise ValueError(f"@{name}: {out[name]!r} is not true or false")
        return out

    @model_validator(mode="after")
    def _cross(self) -> "Params":
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("@top_logprobs: needs logprobs: true")
        if isinstance(self.stop, list) and len(self.stop) > 4:
            raise ValueError(f"@stop: {len(self.stop)} stop sequences; allowed: a string or up to 4")
        if isinstance(self.stop, list) and not all(self.stop):
            raise ValueError("@stop: stop sequences must be non-empty strings")
        return self

    def sent(self) -> dict[str, Any]:
        """The fields to send, in a stable order (extra_body excluded)."""
        return {k: v for k, v in self.model_dump(exclude={"extra_body"}).items() if v is not None}


class Sweep(_Strict):
    """What varies: a grid, zipped axes, exclusions, a random subset and repeats."""

    grid: dict[str, AxisValues] = Field(default_factory=dict, description="Cartesian product of axes")
    zip: dict[str, AxisValues] = Field(default_factory=dict, description="equal-length lists advanced together")
    exclude: list[dict[str, Any]] = Field(default_factory=list, description="drop points matching every key")
    sample: int | None = Field(None, ge=1, description="keep a random subset of this many points")
    sample_seed: int = 0
    repeats: int = Field(1, ge=1, le=100_000)

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
    def _cross(self) -> "Sweep":
        both = set(self.grid) & set(self.zip)
        if both:
            raise ValueError(f"@zip.{sorted(both)[0]}: already an axis of grid; sweep a parameter in one place")
        swept = set(self.grid) | set(self.zip)
        for i, rule in enumerate(self.exclude):
            for key in rule:
                if key not in swept:
                    raise ValueError(f"@exclude[{i}].{key}: not a swept parameter; swept: {', '.join(sorted(swept)) or 'none'}")
        return self

    @property
    def swept(self) -> tuple[str, ...]:
        """Swept parameter names in canonical (sorted) order."""
        return tuple(sorted(set(self.grid) | set(self.zip)))


class RunnerConfig(_Strict):
    """How requests are sent."""

    concurrency: int = Field(16, ge=1, le=10_000)
    max_attempts: int = Field(6, ge=1, le=100)
    timeout_s: float = Field(120.0, gt=0)
    stream: bool = False
    rps: float | None = Field(None, gt=0, description="requests per second limit")
    tokens_per_min: int | None = Field(None, gt=0, description="completion+prompt tokens per minute limit")
    deadline_s: float | None = Field(None, gt=0, description="total time per request, retries included")
    max_retry_after_s: float = Field(60.0, ge=0, description="cap on a server's Retry-After")


class SweepSpec(_Strict):
    """A whole sweep spec (the YAML file)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", description="letters, digits, . _ -")
    description: str | None = None
    target: Target
    dataset: DatasetConfig
    params: Params = Field(default_factory=Params)
    sweep: Sweep = Field(default_factory=Sweep)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    scoring: list[Union[str, dict[str, Any]]] = Field(default_factory=list)
    source: str = Field("", exclude=True, description="the file this spec came from (not part of the YAML)")

    @model_validator(mode="after")
    def _cross(self) -> "SweepSpec":
        set_params = {k for k in self.params.sent() if k in SWEEPABLE}
        clash = set_params & set(self.sweep.swept)
        if clash:
            raise ValueError(f"@params.{sorted(clash)[0]}: also swept in sweep; set it in one place")
        for name in lacking(self.target.dialect, set(self.params.sent()) | set(self.sweep.swept)):
            where = f"params.{name}" if name in set_params else f"sweep.{'grid' if name in self.sweep.grid else 'zip'}.{name}"
            raise ValueError(f"@{where}: the {self.target.dialect} dialect (target.dialect) has no {name}; remove it, or name the right dialect")
        return self

    @property
    def model_name(self) -> str:
        return self.target.model_name

    def resolved_dict(self) -> dict[str, Any]:
        """JSON-able resolved spec for the manifest. Holds no secret: keys live only in env vars."""
        data = self.model_dump(mode="json", exclude={"source"})
        data["target"]["headers"] = {k: _redact_header(k, v) for k, v in self.target.headers.items()}
        return data


_SECRET_HEADERS = ("authorization", "api-key", "x-api-key", "cookie", "proxy-authorization")


def _redact_header(name: str, value: str) -> str:
    return "***" if name.lower() in _SECRET_HEADERS or "key" in name.lower() or "token" in name.lower() else value


def spec_hash(spec: SweepSpec) -> str:
    """Stable hash of what the sweep sends (name and description excluded)."""
    data = spec.resolved_dict()
    data.pop("name", None)
    data.pop("description", None)
    data["dataset"]["path"] = Path(data["dataset"]["path"]).name
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _render_validation(err: ValidationError, source: str) -> SpecError:
    first = err.errors()[0]
    loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in first["loc"]).replace(".[", "[")
    msg = str(first["msg"]).removeprefix("Value error, ")
    if msg.startswith("@"):
        inner, _, msg = msg[1:].partition(": ")
        loc = ".".join(p for p in (loc, inner) if p).replace(".[", "[")
    elif first["type"] not in ("missing",) and "input" in first:
        msg = f"{first['input']!r}: {msg}"
    if first["type"] == "missing":
        msg = "required key is missing"
    more = len(err.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return SpecError(msg + suffix, file=source, key=loc or None)


def parse_spec(
    data: Any, *, source: str, base_dir: Path, env: Mapping[str, str] | None = None
) -> SweepSpec:
    """Validate a spec already parsed from YAML (or taken from a manifest)."""
    if not isinstance(data, dict):
        raise SpecError("a spec must be a mapping of sections (name, target, dataset, ...)", file=source)
    data = interpolate(data, env, source)
    check_unknown_keys(data, SweepSpec, source)
    try:
        spec = SweepSpec.model_validate({**data, "source": source})
    except ValidationError as err:
        raise _render_validation(err, source) from None
    path = spec.dataset.path if spec.dataset.path.is_absolute() else (base_dir / spec.dataset.path)
    spec = spec.model_copy(update={"dataset": spec.dataset.model_copy(update={"path": path.resolve()})})
    _check_scoring(spec, source)
    return spec


def _check_scoring(spec: SweepSpec, source: str) -> None:
    if not spec.scoring:
        return
    try:
        from harness.scoring import resolve_scorers
    except ImportError:  # pragma: no cover - scoring is part of the package
        return
    try:
        resolve_scorers(list(spec.scoring))
    except SpecError as err:
        raise SpecError(err.detail, file=source, key=err.key) from None


def load_spec(path: str | Path, env: Mapping[str, str] | None = None) -> SweepSpec:
    """Read and validate a YAML spec file. Raises SpecError (one line) on any problem."""
    path = Path(path)
    data = read_yaml(path)
    return parse_spec(data, source=str(path), base_dir=path.resolve().parent, env=env)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the spec, for editors (yaml-language-server) and other tools."""
    schema = SweepSpec.model_json_schema(mode="validation")
    schema["properties"].pop("source", None)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "harness sweep spec"
    return schema


__all__ = [
    "DatasetConfig",
    "Params",
    "RunnerConfig",
    "Sweep",
    "SweepSpec",
    "Target",
    "json_schema",
    "load_spec",
    "parse_spec",
    "spec_hash",
]
