"""Secrets are removed from structures before anything is written — never replaced in text afterwards.

- URL and headers: `harness.redact` (userinfo and query values `***`; a header whose name
  suggests a secret is `***` unless allow-listed).
- Any other field whose value contains the API key itself (say a key interpolated into the
  path of `base_url`) is `***` as a whole — the field, never a substring of other text. Keys
  shorter than `MIN_SECRET_LEN` are placeholders (`ollama`, `x`), not searched for: a field
  that merely contains such a word is left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.redact import REDACTED as MASK
from harness.redact import SAFE_HEADERS, header_is_public, redact_headers, redact_url

MIN_SECRET_LEN = 8


def secret_header(name: str) -> bool:
    """Whether a header's value must never be written (by its name)."""
    return not header_is_public(name)


def _hide_secrets(data: Any, secrets: tuple[str, ...], path: str, found: list[str]) -> Any:
    """`data` with every string field that contains one of `secrets` replaced by MASK (paths noted)."""
    if isinstance(data, Mapping):
        return {k: _hide_secrets(v, secrets, f"{path}.{k}" if path else str(k), found) for k, v in data.items()}
    if isinstance(data, list):
        return [_hide_secrets(v, secrets, f"{path}[{i}]", found) for i, v in enumerate(data)]
    if isinstance(data, str) and any(s in data for s in secrets):
        found.append(path)
        return MASK
    return data


def redact_spec(spec: Mapping[str, Any], secrets: tuple[str, ...] = ()) -> tuple[dict[str, Any], list[str]]:
    """A resolved spec dict ready to store, and the key paths whose values were redacted."""
    hidden: list[str] = []
    secrets = tuple(s for s in (x.strip() for x in secrets) if len(s) >= MIN_SECRET_LEN)
    out = dict(_hide_secrets(spec, secrets, "", hidden)) if secrets else dict(spec)
    changed: list[str] = []
    targets = [("target", out.get("target"))] + [
        (f"targets[{i}]", t) for i, t in enumerate(out.get("targets") or []) if isinstance(t, Mapping)
    ]
    fixed: dict[str, Any] = {}
    for where, target in targets:
        if not isinstance(target, Mapping):
            continue
        target = dict(target)
        url = target.get("base_url")
        if isinstance(url, str) and redact_url(url) != url:
            target["base_url"] = redact_url(url)
            changed.append(f"{where}.base_url")
        elif isinstance(url, list):  # replicas
            clean_urls = [redact_url(u) if isinstance(u, str) else u for u in url]
            changed += [f"{where}.base_url[{i}]" for i, (a, b) in enumerate(zip(url, clean_urls)) if a != b]
            target["base_url"] = clean_urls
        headers = target.get("headers")
        if isinstance(headers, Mapping):
            clean = redact_headers(headers)
            changed += [f"{where}.headers.{n}" for n in headers if clean[n] == MASK]
            target["headers"] = clean
        fixed[where] = target
    if "target" in fixed:
        out["target"] = fixed["target"]
    if any(k.startswith("targets[") for k in fixed):
        out["targets"] = [fixed.get(f"targets[{i}]", t) for i, t in enumerate(out["targets"])]
    return out, sorted(set(hidden + changed))


__all__ = ["MASK", "MIN_SECRET_LEN", "SAFE_HEADERS", "redact_headers", "redact_spec", "redact_url", "secret_header"]
