"""Secrets never reach a message or a log line; short keys never mangle other text."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from harness.client import probe_auth
from harness.client.secrets import (
    Scrubber,
    is_secret_header,
    redact_url,
    scrub,
    secrets_of,
)

sys.path.insert(0, str(Path(__file__).parent))
from hostile_server import HostileServer

LONG = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"


def test_long_key_is_replaced_anywhere() -> None:
    assert scrub(f"key={LONG}&x prefix{LONG}suffix", (LONG,)) == "key=***&x prefix***suffix"


def test_key_with_trailing_or_inner_whitespace_is_still_found() -> None:
    secrets = secrets_of(LONG + " \n", None)
    assert scrub(f"bad key {LONG}.", secrets) == "bad key ***."
    spaced = "abcdefgh\tijklmnop"
    assert scrub("key abcdefgh ijklmnop!", secrets_of(spaced)) == "key ***!"  # collapsed whitespace


def test_short_common_word_key_only_matches_whole_tokens() -> None:
    secrets = secrets_of("ollama")
    assert scrub("model ollama-llama3 and myollama", secrets) == "model ollama-llama3 and myollama"
    assert scrub("Incorrect API key provided: ollama.", secrets) == "Incorrect API key provided: ***."
    assert scrub("x-axis x", secrets_of("x")) == "x-axis ***"


def test_scrubbed_before_cut_no_fragment_survives() -> None:
    for offset in range(480, 505):
        text = "a" * offset + " " + LONG + " tail"
        out = scrub(text, (LONG,))
        assert len(out) <= 500
        for size in range(5, len(LONG)):
            assert LONG[:size] not in out


def test_secret_headers_are_recognised_and_their_values_scrubbed() -> None:
    for name in ("Authorization", "X-Auth", "X-Authorization", "X-Auth-Secret", "api-key", "X-Api-Token", "Cookie"):
        assert is_secret_header(name), name
    for name in ("Content-Type", "X-Request-Id", "OpenAI-Organization"):
        assert not is_secret_header(name), name
    secrets = secrets_of(None, {"X-Auth": "Bearer hunter2-very-secret", "X-Trace": "visible"})
    assert scrub("got hunter2-very-secret, trace visible", secrets) == "got ***, trace visible"


def test_urls_lose_userinfo_and_query_values() -> None:
    text = "GET https://user:pa55@host.example/v1/models?api-key=abc123&x=1 failed"
    assert redact_url(text) == "GET https://***@host.example/v1/models?api-key=***&x=*** failed"
    secrets = secrets_of(None, None, "https://user:pa55word@h/v1?key=querysecret99")
    assert scrub("echo pa55word querysecret99", secrets) == "echo *** ***"


def test_scrubber_keeps_one_line() -> None:
    assert Scrubber(())("a\nb\r\n\tc") == "a b c"


def test_httpx_request_log_never_prints_url_secrets(caplog: pytest.LogCaptureFixture) -> None:
    with HostileServer(bombs=False) as server, caplog.at_level(logging.DEBUG):
        base = server.url("ok").replace("http://", "http://someone:userinfo-secret@") + "?key=query-secret-1"
        probe_auth(base, "sk-the-key-itself-000")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "HTTP Request" in logged  # httpx did log the request …
    assert "userinfo-secret" not in logged and "query-secret-1" not in logged  # … without the secrets
    assert "sk-the-key-itself-000" not in logged


def test_whitespace_before_a_cut_key_cannot_pull_a_fragment_into_view() -> None:
    scrubber = Scrubber((LONG,))
    for pad in range(1990, 2120, 7):  # the scrub window ends inside the key
        out = scrubber(" " * pad + LONG + " end")
        for size in range(5, len(LONG)):
            assert LONG[:size] not in out, (pad, out)
    assert LONG[:10] not in scrubber("note " + LONG[:30], cut=True)  # text known to be cut


def test_a_huge_error_body_echoing_the_key_is_scrubbed() -> None:
    import asyncio

    import httpx

    from harness.client import ChatClient, ClientConfig, RequestFailed

    body = (b" " * 65_530) + LONG.encode() + b" rest"

    async def go() -> str:
        config = ClientConfig(base_url="http://t/v1", api_key=LONG)
        async with ChatClient(config, transport=httpx.MockTransport(lambda r: httpx.Response(500, content=body))) as c:
            with pytest.raises(RequestFailed) as info:
                await c.complete({"model": "m", "messages": []})
        return info.value.message

    message = asyncio.run(go())
    for size in range(5, len(LONG)):
        assert LONG[:size] not in message
