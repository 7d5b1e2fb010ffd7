"""Keeping secrets out of messages and logs.

What counts as a secret: the API key, the value of any configured header whose name suggests a
credential (`authorization`, `x-auth`, `api-key`, `token`, `secret`, `cookie`, `password`, …),
and the userinfo and query values of the base URL. Each is also known in its stripped and
whitespace-collapsed forms, so a key with a trailing space is still found.

Where: only in text that came from outside (a server's error body, an exception's message) —
never in values harness itself built. How: a secret of 12 or more characters is replaced
wherever it occurs; a shorter one (a key like `ollama` or `x`) only where it stands as a whole
token, so it cannot mangle `ollama-llama3`. Text is scrubbed *before* it is cut to length, so no
fragment of an echoed key survives at the cut. URLs in messages and in the `httpx`/`aiohttp`
log records lose their userinfo and query values.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit

MASK = "***"
MAX_MESSAGE = 500
LONG_SECRET = 12
_SECRET_HEADER = re.compile(r"auth|key|token|secret|cookie|passw|credential|signature|session", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")
_URL_QUERY = re.compile(r"(?P<url>[A-Za-z][A-Za-z0-9+.-]*://[^\s?#'\")]*)\?(?P<query>[^\s#'\")]*)")
_TOKEN_CHARS = r"A-Za-z0-9_\-"


def is_secret_header(name: str) -> bool:
    """Whether a header's value must be treated as a secret (by its name)."""
    return bool(_SECRET_HEADER.search(name))


def _variants(secret: str) -> set[str]:
    return {v for v in (secret, secret.strip(), " ".join(secret.split())) if v}


def secrets_of(api_key: str | None, headers: Mapping[str, str] | None = None, base_url: str | None = None) -> tuple[str, ...]:
    """Every string that must never be shown, longest first."""
    found: set[str] = set()
    if api_key:
        found |= _variants(api_key)
    for name, value in (headers or {}).items():
        if is_secret_header(name) and value:
            found |= _variants(value)
            parts = value.split(None, 1)  # "Bearer KEY": the bare KEY too
            if len(parts) == 2:
                found |= _variants(parts[1])
    if base_url:
        found |= _url_secrets(base_url)
    return tuple(sorted(found, key=len, reverse=True))


def _url_secrets(url: str) -> set[str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return set()
    found: set[str] = set()
    for value in (parts.username, parts.password):
        if value:
            found |= _variants(value)
    for _, value in parse_qsl(parts.query, keep_blank_values=False):
        found |= _variants(value)
    return found


def redact_url(text: str) -> str:
    """`https://user:pw@host/p?key=v` → `https://***@host/p?key=***` wherever URLs occur in text."""
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    return _URL_QUERY.sub(lambda m: f"{m['url']}?{_mask_query(m['query'])}", text)


def _mask_query(query: str) -> str:
    out = []
    for pair in query.split("&"):
        name, sep, _ = pair.partition("=")
        out.append(f"{name}={MASK}" if sep else MASK if name else "")
    return "&".join(out)


def _pattern(secrets: Iterable[str]) -> re.Pattern[str] | None:
    alternatives = []
    for secret in secrets:
        escaped = re.escape(secret)
        if len(secret) >= LONG_SECRET:
            alternatives.append(escaped)
        else:
            alternatives.append(rf"(?<![{_TOKEN_CHARS}]){escaped}(?![{_TOKEN_CHARS}])")
    return re.compile("|".join(alternatives)) if alternatives else None


class Scrubber:
    """Removes a fixed set of secrets (and URL credentials) from outside text, then cuts it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))
        self._pattern = _pattern(self.secrets)
        self._margin = max((len(s) for s in self.secrets), default=0)

    def __call__(self, text: str, limit: int = MAX_MESSAGE, *, cut: bool = False) -> str:
        """One line of at most `limit` characters with no secret in it. `cut`: `text` is
        already the start of something longer (its end may hold part of a secret)."""
        # Scrub a window longer than the result; when the window (or the text) ends before
        # the real end, drop its last `margin` characters after scrubbing: a secret straddling
        # that end was not matched, and its start lies there.
        size = 4 * limit + 2 * self._margin + 16
        window = text[:size]
        truncated = cut or len(window) < len(text)
        clean = self._scrub(window)
        if truncated and self._margin:
            clean = clean[: max(0, len(clean) - self._margin)]
        clean = self._scrub(" ".join(clean.split()))  # a secret with inner whitespace, now collapsed
        if not truncated and len(clean) <= limit:
            return clean
        return clean[: limit - 1] + "…" if len(clean) >= limit else clean + "…"

    def _scrub(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return redact_url(text)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret in `text` by `***` and keep it to one short line."""
    return Scrubber(secrets)(text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts URL credentials in a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is still logged, as it is
            return True
        redacted = redact_url(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def install_log_filters(names: Iterable[str] = ("httpx", "httpcore", "aiohttp.client", "aiohttp.internal")) -> None:
    """Attach `RedactingFilter` to the loggers of the HTTP libraries (idempotent)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())


__all__ = [
    "MASK",
    "MAX_MESSAGE",
    "RedactingFilter",
    "Scrubber",
    "install_log_filters",
    "is_secret_header",
    "redact_url",
    "scrub",
    "secrets_of",
]
