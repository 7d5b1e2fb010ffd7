"""Secrets are removed from structures before anything is written — never replaced in text afterwards.

- URL: the userinfo (`user:pass@`) and every query value become `***` (`?key=***`).
- Headers: a header whose name suggests a secret (auth, key, token, secret, password, cookie,
  session, signature, credential) is `***`; the names in `SAFE_HEADERS` are kept.
- Any other field whose value contains the API key itself (say a key interpolated into the
  path of `base_url`) is `***` as a whole — the field, never a substring of other text. Keys
  shorter than `MIN_SECRET_LEN` are placeholders (`ollama`, `x`), not searched for: a field
  that merely contains such a word is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
MIN_SECRET_LEN = 8
_SECRET_NAME = re.compile(r"auth|key|token|secret|passw|cookie|session|signature|credential|bearer", re.IGNORECASE)
SAFE_HEADERS = frozenset({"accept", "accept-language", "content-type", "user-agent", "openai-organization",
                          "openai-project", "http-referer", "x-title", "anthropic-version", "api-version"})


def redact_url(url: str) -> str:
    """`url` with userinfo and query values replaced by `***` (unchanged when it has neither)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(name, MASK) for name, _ in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secret_header(name: str) -> bool:
    """Whether a header's value must never be written (by its name)."""
    return name.lower() not in SAFE_HEADERS and bool(_SECRET_NAME.search(name))


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers with every secret-looking value replaced by `***`."""
    return {name: MASK if secret_header(name) else value for name, value in headers.items()}


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
