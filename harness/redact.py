"""Structural redaction of what a spec holds before anything is written or printed.

- `redact_url`: userinfo (`user:key@`), every query value and the fragment become `***` (a key
  interpolated into `base_url?api_key=${KEY}` never reaches a manifest, report, `plan` output or
  log line). Query names stay, so the URL still says what it is; a bare `?item` is redacted whole.
- `redact_headers`: a header whose name suggests a secret (auth, key, token, secret, cookie,
  signature, password, credential, session, bearer: Authorization, X-Auth, X-Authorization,
  X-Auth-Secret, Cookie, X-Signature, Api-Key …) is `***`, unless its name is on `SAFE_HEADERS`
  (known-harmless headers); other headers (User-Agent, X-Title, X-Route …) are kept.

Pure functions, no I/O; the rundir helper writes `SweepSpec.public_dict()`, built from these.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from urllib.parse import SplitResult, urlsplit, urlunsplit

REDACTED = "***"

SAFE_HEADERS: frozenset[str] = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "anthropic-beta",
        "anthropic-version",
        "api-version",
        "cache-control",
        "content-type",
        "http-referer",
        "openai-beta",
        "openai-organization",
        "openai-project",
        "referer",
        "traceparent",
        "tracestate",
        "user-agent",
        "x-correlation-id",
        "x-request-id",
        "x-title",
        "x-trace",
        "x-trace-id",
    }
)

_SECRET_WORDS = re.compile(r"auth|key|token|secret|cookie|signature|passw|credential|session|bearer", re.IGNORECASE)


def looks_secret(name: str) -> bool:
    """True when a header (or query) name suggests it carries a secret."""
    return bool(_SECRET_WORDS.search(name))


def header_is_public(name: str) -> bool:
    """A header value may be written unless its name suggests a secret (allow-listed names always may)."""
    return name.lower() in SAFE_HEADERS or not looks_secret(name)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers with every secret-looking value replaced by `***`."""
    return {name: value if header_is_public(name) else REDACTED for name, value in headers.items()}


def _redact_query_item(item: str) -> str:
    """`name=value` → `name=***`; an item without `=` may itself be the secret → `***`."""
    name, sep, _ = item.partition("=")
    return f"{name}={REDACTED}" if sep and name else REDACTED


def redact_url(url: str) -> str:
    """`url` with userinfo and query values replaced by `***`; unparseable URLs are fully hidden."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{host}" + (f":{port}" if port is not None else "")
    query = "&".join(_redact_query_item(item) for item in parts.query.split("&")) if parts.query else ""
    fragment = REDACTED if parts.fragment else ""
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, fragment))


_URL = re.compile(r"https?://[^\s\"'<>]+")


def redact_urls_in(text: str) -> str:
    """`text` with every http(s) URL in it passed through `redact_url` (for log lines we do not build)."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text) if "://" in text else text


class RedactingFilter(logging.Filter):
    """A logging filter: URLs in a record (httpx logs "HTTP Request: POST URL") lose their secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_urls_in(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


__all__ = [
    "REDACTED",
    "SAFE_HEADERS",
    "RedactingFilter",
    "header_is_public",
    "looks_secret",
    "redact_headers",
    "redact_url",
    "redact_urls_in",
]
