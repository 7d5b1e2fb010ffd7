"""`RUN_DIR/manifest.json`: what a run is — a frozen, typed, versioned record, cheap to read.

Fields (the contract in DESIGN.md, plus a few):

    manifest_version  2 (files without it are version 1 and still open; newer ones are refused)
    run_id, harness_version, schema_version (of the result rows)
    spec              the resolved spec, secrets redacted (`redacted` lists the redacted key paths)
    spec_hash         what the sweep sends, hashed: runs with one hash can be merged
    target            {base_url (redacted), model, dialect}: the first target (all of them: `targets`)
    targets           {name: {base_url, replicas, model, dialect, local, price}}: every target of the
                      spec, URLs redacted; price {input_per_mtok, output_per_mtok} or null
    started_at, finished_at, status (running / completed / interrupted / failed), reason
    counts            {requests, ok, error}
    shard             {index, count} or null;  limit;  overrides {concurrency, rps, tokens_per_min}
    sessions          how many times the run was started;  merged_from (run ids) for a merge
    adaptive          adaptive repeats only: the rule, min/max/scheduled requests and, per cell,
                      why it stopped (converged / dropped / max / unreachable), samples, interval
    storage           the run directory's URL (`s3://bucket/prefix/run_id`) when on an object store
    executor, shards  `ray` and the number of shards for a run made by `harness run --ray` (else null)

The stored spec is *resolved*: reading it back (`stored_spec`) never interpolates `${VAR}`
again, so a `$${VAR}` escape sends `${VAR}` before and after a resume.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.errors import RunDirError
from harness.rundir.fs import RunPath, as_run_path
from harness.rundir.layout import MANIFEST, write_bytes_atomic

if TYPE_CHECKING:
    from harness.spec.sweepspec import SweepSpec

MANIFEST_VERSION = 2
Status = Literal["running", "completed", "interrupted", "failed"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Shard(_Frozen):
    """Shard K of N: a deterministic 1/N slice of the request ids."""

    index: int = Field(ge=1)
    count: int = Field(ge=1)

    @model_validator(mode="after")
    def _in_range(self) -> Shard:
        if self.index > self.count:
            raise ValueError(f"index {self.index} is above count {self.count}")
        return self

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


class Counts(_Frozen):
    """Planned requests and the status of their rows."""

    requests: int = Field(ge=0)
    ok: int = Field(0, ge=0)
    error: int = Field(0, ge=0)


class TargetInfo(_Frozen):
    """Where the run sent (the URL redacted) and how the server spells the fields (`dialect`)."""

    model_config = ConfigDict(frozen=True, extra="allow")
    base_url: str | None = None
    model: str | None = None
    dialect: str | None = None


class Manifest(BaseModel):
    """The manifest of a run directory. Unknown fields (added by newer code) are kept."""

    model_config = ConfigDict(frozen=True, extra="allow")

    manifest_version: int = MANIFEST_VERSION
    run_id: str = Field(min_length=1)
    harness_version: str = "0.0.0"
    schema_version: int = 1
    spec: dict[str, Any]
    spec_hash: str = ""
    target: TargetInfo = Field(default_factory=TargetInfo)
    started_at: str | None = None
    finished_at: str | None = None
    status: Status = "running"
    reason: str | None = None
    counts: Counts = Field(default_factory=lambda: Counts(requests=0, ok=0, error=0))
    shard: Shard | None = None
    limit: int | None = Field(None, ge=0)
    overrides: dict[str, Any] = Field(default_factory=dict)
    sessions: int = Field(1, ge=1)
    redacted: list[str] = Field(default_factory=list)
    merged_from: list[str] | None = None
    adaptive: dict[str, Any] | None = None  # adaptive repeats: the rule, request bounds, each cell's stop (docs/run-directory.md)
    executor: str | None = None  # "ray": the shards of harness.runner.cluster, merged
    shards: int | None = Field(None, ge=1)
    targets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    storage: str | None = None  # the run directory's URL when on an object store (redacted), else null

    # -- transitions (each returns a new manifest) ----------------------------------------

    def resumed(self, overrides: dict[str, Any]) -> Manifest:
        """The manifest of a new session over this run."""
        return self.model_copy(update={
            "status": "running", "finished_at": None, "reason": None, "sessions": self.sessions + 1,
            "overrides": {**self.overrides, **overrides}, "manifest_version": MANIFEST_VERSION,
        })

    def finished(self, status: Status, counts: Counts, reason: str | None = None) -> Manifest:
        """The final status, counts and finish time."""
        return self.model_copy(update={"status": status, "counts": counts, "reason": reason, "finished_at": utc_now()})

    def with_target(self, base_url: str | None, model: str | None) -> Manifest:
        from harness.rundir.sanitize import redact_url

        url = redact_url(base_url) if base_url else None
        stored = self.spec.get("target")
        if url and isinstance(stored, dict) and stored.get("base_url") == "***":  # it held the key itself
            url = "***"
        return self.model_copy(update={"target": self.target.model_copy(update={"base_url": url, "model": model})})

    def with_target_dialect(self, name: str, dialect: str, *, first: bool) -> Manifest:
        """The same run, recording the dialect target `name` was spoken to in (the spec's first target's
        also in `target`)."""
        entry = {**self.targets.get(name, {}), "dialect": dialect}
        updated = self.model_copy(update={"targets": {**self.targets, name: entry}})
        return updated.with_dialect(dialect) if first else updated

    def target_map(self) -> dict[str, dict[str, Any]]:
        """`targets`, or for a run made before targets existed its one target under the name `default`."""
        if self.targets:
            return dict(self.targets)
        return {"default": {"base_url": self.target.base_url, "replicas": [self.target.base_url] if self.target.base_url else [],
                            "model": self.target.model, "dialect": self.target.dialect, "local": None, "price": None}}

    def with_dialect(self, dialect: str) -> Manifest:
        """The same run, recording the dialect the server was spoken to in."""
        return self.model_copy(update={"target": self.target.model_copy(update={"dialect": dialect})})

    def to_json(self) -> bytes:
        """The file's bytes (sorted keys, indented, newline-terminated)."""
        data = self.model_dump(mode="json")
        return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"

    def stored_spec(self, run_dir: RunPath, supplied: SweepSpec | None = None) -> SweepSpec:
        """The run's spec, validated again but never interpolated again (`$` is taken literally).

        `supplied`: the spec file given again on the command line (`harness run SPEC --resume
        RUN_DIR`), needed when the stored one was redacted; it is used only if it sends exactly
        what the run sends (same `spec_hash`)."""
        from harness.spec.sweepspec import parse_spec, spec_hash

        where = str(as_run_path(run_dir) / MANIFEST)
        if supplied is not None:
            if spec_hash(supplied) != self.spec_hash:
                raise RunDirError(
                    f"the spec given sends other requests than this run (spec_hash {spec_hash(supplied)}, the run's "
                    f"{self.spec_hash}); give the spec the run was started with", file=where, key="spec_hash")
            return supplied
        redacted = self.redacted or _masked_target_fields(self.spec)  # version 1 did not list them
        if redacted:
            raise RunDirError(
                "was stored redacted (it held a secret); resume with the spec file given again: "
                "harness run SPEC --resume RUN_DIR",
                file=where, key=f"spec.{redacted[0]}",
            )
        # validated without `scoring`: a custom scorer named here must not be imported (it is
        # someone's code, and a run does not score); the list is kept as stored
        data = {k: v for k, v in _literal_dollars(self.spec).items() if k != "scoring"}
        # the stored dataset path is absolute (resolved); a run on an object store has no local folder
        base_dir = run_dir if isinstance(run_dir, Path) else Path.cwd()
        spec = parse_spec(data, source=where, base_dir=base_dir, check_metric=False)
        return spec.model_copy(update={"scoring": list(self.spec.get("scoring") or [])})


def _masked_target_fields(spec: dict[str, Any]) -> list[str]:
    """Target fields a version-1 manifest stored as `***` (resuming would send `***`)."""
    target = spec.get("target")
    if not isinstance(target, dict):
        return []
    headers = target.get("headers")
    found = [f"target.headers.{k}" for k, v in headers.items() if v == "***"] if isinstance(headers, dict) else []
    url = target.get("base_url")
    return (["target.base_url"] if isinstance(url, str) and "***" in url else []) + found


def _literal_dollars(data: Any) -> Any:
    """`$` → `$$` in every string, so interpolation gives back exactly the stored text."""
    if isinstance(data, dict):
        return {k: _literal_dollars(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_literal_dollars(v) for v in data]
    return data.replace("$", "$$") if isinstance(data, str) else data


def utc_now() -> str:
    """Now as an ISO-8601 UTC timestamp."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def new_run_id(name: str, now: datetime | None = None) -> str:
    """`<name>-<UTC timestamp>-<6 hex>`: sortable by time, unique across machines."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{name}-{stamp}-{secrets.token_hex(3)}"


def new_manifest(
    *,
    run_id: str,
    spec: SweepSpec,
    requests: int,
    shard: Shard | None,
    limit: int | None,
    overrides: dict[str, Any],
    secrets: tuple[str, ...] = (),
) -> Manifest:
    """The manifest of a run about to start; the spec is stored resolved and redacted.

    `secrets` (the API key): a field whose value contains one is stored as `***`."""
    from harness import __version__
    from harness.rundir.layout import SCHEMA_VERSION
    from harness.rundir.sanitize import redact_spec
    from harness.spec.sweepspec import spec_hash

    stored, redacted = redact_spec(spec.resolved_dict(), secrets)
    return Manifest(
        run_id=run_id,
        harness_version=__version__,
        schema_version=SCHEMA_VERSION,
        spec=stored,
        spec_hash=spec_hash(spec),
        started_at=utc_now(),
        counts=Counts(requests=requests, ok=0, error=0),
        sessions=1,
        shard=shard,
        limit=limit,
        overrides=dict(overrides),
        redacted=redacted,
        targets=targets_info(spec, stored),
    ).with_target(spec.target.first_url, spec.model_name)


def targets_info(spec: SweepSpec, stored: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The manifest's `targets`: name → where (redacted; `***` where the stored spec masked a secret), model, price."""
    from harness.rundir.sanitize import redact_url

    entries = stored.get("targets") if spec.multi_target else [stored.get("target")]
    out: dict[str, dict[str, Any]] = {}
    for target, kept in zip(spec.target_list, entries or [], strict=False):
        stored_urls = kept.get("base_url") if isinstance(kept, dict) else None
        if not isinstance(stored_urls, list):
            stored_urls = [stored_urls] * len(target.urls)
        # a URL the stored spec masked as a whole (it held the key) stays masked here
        replicas = ["***" if seen == "***" else redact_url(u) for u, seen in zip(target.urls, stored_urls, strict=False)]
        out[target.label] = {
            "base_url": replicas[0] if replicas else None,
            "replicas": replicas,
            "model": target.model_name,
            "dialect": None if target.dialect == "auto" else target.dialect,
            "local": target.local,
            "price": target.price.model_dump() if target.price else None,
        }
    return out


def write_manifest(run_dir: RunPath | str, manifest: Manifest) -> None:
    """Replace the manifest atomically (tmp + fsync + rename; on an object store one PUT)."""
    write_bytes_atomic(as_run_path(run_dir) / MANIFEST, manifest.to_json())


def read_manifest(run_dir: str | RunPath) -> Manifest:
    """The manifest of a run directory (local or `s3://…`), or RunDirError naming the file and field."""
    run_dir = as_run_path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError("not a run directory (no such folder)", file=str(run_dir))
    path = run_dir / MANIFEST
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise RunDirError("no manifest.json: not a harness run directory", file=str(run_dir)) from None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise RunDirError(f"unreadable manifest ({exc})", file=str(path)) from None
    return parse_manifest(data, path)


def parse_manifest(data: Any, path: RunPath) -> Manifest:
    """Validate manifest JSON; version 1 (no `manifest_version`) is read as is."""
    if not isinstance(data, dict):
        raise RunDirError("manifest is not a JSON object", file=str(path))
    version = data.get("manifest_version", 1)
    if not isinstance(version, int) or not 1 <= version <= MANIFEST_VERSION:
        raise RunDirError(
            f"{version!r} is not a manifest version this harness reads (1 to {MANIFEST_VERSION}); upgrade harness",
            file=str(path), key="manifest_version",
        )
    try:
        return Manifest.model_validate({**data, "manifest_version": version})
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        return _invalid(path, key, str(first["msg"]))


def _invalid(path: RunPath, key: str, msg: str) -> Manifest:
    raise RunDirError(f"{msg}; not a manifest written by `harness run`", file=str(path), key=key or None)


def check_resumable(manifest: Manifest, run_dir: RunPath) -> None:
    """Refuse a run not written by `harness run`, or whose rows were written with another row schema."""
    from harness.rundir.layout import SCHEMA_VERSION

    for key in ("spec", "spec_hash"):
        if not getattr(manifest, key):
            raise RunDirError("missing; not a manifest written by `harness run`", file=str(run_dir / MANIFEST), key=key)

    if manifest.schema_version != SCHEMA_VERSION:
        raise RunDirError(
            f"schema_version {manifest.schema_version} is not the {SCHEMA_VERSION} this harness writes; "
            "resume with the harness that started it",
            file=str(run_dir / MANIFEST), key="schema_version",
        )


__all__ = [
    "MANIFEST",
    "MANIFEST_VERSION",
    "Counts",
    "Manifest",
    "Shard",
    "Status",
    "TargetInfo",
    "check_resumable",
    "new_manifest",
    "new_run_id",
    "parse_manifest",
    "read_manifest",
    "targets_info",
    "utc_now",
    "write_manifest",
]
