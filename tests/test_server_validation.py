"""Every limit of the seed API: bad values are 400 naming the parameter, edge values pass."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from harness.server.app import ServerThread, reference_app
from harness.server.payloads import ApiError
from harness.server.validation import parse_chat_request
from harness.spec.parameters import REGISTRY

MESSAGES = [{"role": "user", "content": "7 + 5 ="}]


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with ServerThread(reference_app()) as server, httpx.Client(base_url=server.base_url) as client:
        yield client


def post(http: httpx.Client, **fields: Any) -> httpx.Response:
    body = {"model": "harness/ngram", "messages": MESSAGES, "max_tokens": 2, **fields}
    return http.post("/chat/completions", json={k: v for k, v in body.items() if v is not _DROP})


_DROP = object()

BAD = [
    ("model", _DROP, "missing_required_parameter"),
    ("model", 5, "invalid_type"),
    ("model", "", "invalid_type"),
    ("messages", _DROP, "missing_required_parameter"),
    ("messages", [], "invalid_value"),
    ("messages", "hi", "invalid_type"),
    ("messages", ["hi"], "invalid_type"),
    ("messages", [{"content": "hi"}], "invalid_value"),
    ("messages", [{"role": "wizard", "content": "hi"}], "invalid_value"),
    ("messages", [{"role": "user"}], "missing_required_parameter"),
    ("messages", [{"role": "user", "content": 5}], "invalid_type"),
    ("messages", [{"role": "user", "content": None}], "invalid_type"),
    ("messages", [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}], "invalid_type"),
    ("stream", "yes", "invalid_type"),
    ("stream", 1, "invalid_type"),
    ("stream_options", {"include_usage": True}, "invalid_value"),  # without stream
    ("max_tokens", 0, "invalid_value"),
    ("max_tokens", -3, "invalid_value"),
    ("max_tokens", 2.0, "invalid_type"),
    ("max_tokens", True, "invalid_type"),
    ("max_tokens", "5", "invalid_type"),
    ("max_completion_tokens", 0, "invalid_value"),
    ("temperature", -0.01, "invalid_value"),
    ("temperature", 2.01, "invalid_value"),
    ("temperature", 3, "invalid_value"),
    ("temperature", True, "invalid_type"),
    ("temperature", "0.5", "invalid_type"),
    ("top_p", -0.1, "invalid_value"),
    ("top_p", 1.01, "invalid_value"),
    ("top_p", False, "invalid_type"),
    ("top_k", -2, "invalid_value"),
    ("top_k", 1.5, "invalid_type"),
    ("top_k", 5.0, "invalid_type"),
    ("top_k", True, "invalid_type"),
    ("min_p", -0.01, "invalid_value"),
    ("min_p", 1.5, "invalid_value"),
    ("min_p", "low", "invalid_type"),
    ("frequency_penalty", -2.01, "invalid_value"),
    ("frequency_penalty", 2.01, "invalid_value"),
    ("frequency_penalty", True, "invalid_type"),
    ("presence_penalty", -2.5, "invalid_value"),
    ("presence_penalty", 2.5, "invalid_value"),
    ("presence_penalty", [1], "invalid_type"),
    ("stop", 5, "invalid_type"),
    ("stop", ["a", 5], "invalid_type"),
    ("stop", ["a", "b", "c", "d", "e"], "invalid_value"),
    ("stop", "", "invalid_value"),
    ("stop", {"a": 1}, "invalid_type"),
    ("logprobs", "true", "invalid_type"),
    ("logprobs", 1, "invalid_type"),
    ("top_logprobs", 21, "invalid_value"),
    ("top_logprobs", -1, "invalid_value"),
    ("top_logprobs", 2.0, "invalid_type"),
    ("seed", 1.5, "invalid_type"),
    ("seed", "42", "invalid_type"),
    ("seed", True, "invalid_type"),
    ("seed", 2**63, "invalid_value"),
    ("tool_choice", "required", "invalid_value"),
    ("tool_choice", "sometimes", "invalid_value"),
    ("tool_choice", {"type": "function", "function": {"name": "f"}}, "invalid_type"),
    ("tool_choice", 3, "invalid_type"),
    ("n", 2, "invalid_value"),
    ("n", 0, "invalid_value"),
    ("n", 1.0, "invalid_type"),
]


@pytest.mark.parametrize(("param", "value", "code"), BAD, ids=[f"{p}={v!r}"[:40] for p, v, _ in BAD])
def test_bad_values_are_400_naming_the_parameter(http: httpx.Client, param: str, value: Any, code: str) -> None:
    response = post(http, **{param: value})
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["code"] == code
    assert error["param"].startswith(param if param != "max_completion_tokens" else "max_completion_tokens")
    assert param in error["message"] or param == "messages"


GOOD = [
    {"temperature": 0}, {"temperature": 2}, {"temperature": 0.0}, {"temperature": 2.0}, {"temperature": None},
    {"top_p": 0}, {"top_p": 1}, {"top_k": -1}, {"top_k": 0}, {"top_k": 1}, {"top_k": 100000},
    {"min_p": 0}, {"min_p": 1}, {"frequency_penalty": -2}, {"frequency_penalty": 2},
    {"presence_penalty": -2.0}, {"presence_penalty": 2.0}, {"stop": "x"}, {"stop": ["a", "b", "c", "d"]},
    {"stop": None}, {"logprobs": True, "top_logprobs": 0}, {"logprobs": True, "top_logprobs": 20},
    {"logprobs": False}, {"seed": -5}, {"seed": 2**63 - 1}, {"seed": 0}, {"tool_choice": "none"},
    {"tool_choice": "auto"}, {"n": 1}, {"n": None}, {"stream": False}, {"max_tokens": 1},
    {"stream": True, "stream_options": {"include_usage": False}}, {"user": "someone"},
    {"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": None}, {"role": "user", "content": "u"}]},
]  # fmt: skip


@pytest.mark.parametrize("fields", GOOD, ids=[str(g)[:40] for g in GOOD])
def test_edge_values_pass(http: httpx.Client, fields: dict[str, Any]) -> None:
    assert post(http, **fields).status_code == 200


def test_top_logprobs_requires_logprobs(http: httpx.Client) -> None:
    for logprobs in (_DROP, False):
        response = post(http, top_logprobs=3, logprobs=logprobs)
        assert response.status_code == 400 and response.json()["error"]["param"] == "top_logprobs"


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"text"', b'{"temperature": NaN}', b"\xff\xfe"])
def test_malformed_or_non_object_json_is_400(http: httpx.Client, raw: bytes) -> None:
    response = http.post("/chat/completions", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_unknown_routes_and_methods_answer_json(http: httpx.Client) -> None:
    missing = http.get("/nowhere")
    assert missing.status_code == 404 and "error" in missing.json()
    wrong_method = http.get("/chat/completions")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


def test_error_messages_do_not_echo_huge_values(http: httpx.Client) -> None:
    response = post(http, messages=[{"role": "x" * 10_000, "content": "hi"}])
    assert response.status_code == 400 and len(response.text) < 500


def test_parse_keeps_what_is_set_and_defaults_the_rest() -> None:
    chat = parse_chat_request(
        {"model": "m", "messages": MESSAGES, "temperature": 0.5, "top_k": 7, "stop": "END", "seed": 3, "logprobs": True, "top_logprobs": 2}
    )
    assert (chat.params.temperature, chat.params.top_k, chat.params.top_p, chat.params.min_p) == (0.5, 7, 1.0, 0.0)
    assert chat.params.top_logprobs == 2 and chat.params.logprobs
    assert chat.stop == ("END",) and chat.seed == 3 and chat.max_tokens is None and not chat.stream


def test_parse_rejects_a_non_object() -> None:
    with pytest.raises(ApiError) as info:
        parse_chat_request([1])
    assert info.value.status == 400


@pytest.mark.parametrize("param", [p for p in REGISTRY if p.kind in ("float", "int") and p.name != "seed"],
                         ids=lambda p: p.name)
def test_the_server_enforces_the_registry_ranges(param: Any) -> None:
    """The reference server and the spec check one set of ranges: at the bounds accepted, past them refused."""
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "logprobs": True}
    step = 1 if param.kind == "int" else 1e-9
    for value in (param.low, param.high):
        if value is not None:
            parse_chat_request({**base, param.name: int(value) if param.kind == "int" else float(value)})
    for value, ok in ((param.low, -step), (param.high, step)):
        if value is not None:
            bad = int(value) + int(ok) if param.kind == "int" else float(value) + ok
            with pytest.raises(ApiError) as err:
                parse_chat_request({**base, param.name: bad})
            assert err.value.param == param.name
