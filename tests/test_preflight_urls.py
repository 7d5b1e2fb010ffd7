"""Preflight on real-world base URLs: a query that must stay on every request (Azure's
`?api-version=`), and a server that redirects `GET /models` elsewhere (the key must not follow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from harness.rundir import read_manifest, read_results
from harness.server.app import ServerThread

pytestmark = pytest.mark.slow  # each runs harness in a subprocess

ANSWER = {"id": "c", "object": "chat.completion", "model": "m", "created": 0,
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


def versioned_app(seen: list[str]) -> web.Application:
    """Answers only requests that carry `?api-version=2024-10-21`, as Azure OpenAI does."""

    async def models(request: web.Request) -> web.Response:
        seen.append(str(request.rel_url))
        if request.query.get("api-version") != "2024-10-21":
            return web.json_response({"error": {"message": "missing api-version"}}, status=404)
        return web.json_response({"object": "list", "data": [{"id": "m", "object": "model"}]})

    async def chat(request: web.Request) -> web.Response:
        seen.append(str(request.rel_url))
        if request.query.get("api-version") != "2024-10-21":
            return web.json_response({"error": {"message": "missing api-version"}}, status=404)
        return web.json_response(ANSWER)

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    return app


def redirecting_app(to: str) -> web.Application:
    async def models(_request: web.Request) -> web.Response:
        raise web.HTTPFound(to)

    async def chat(_request: web.Request) -> web.Response:
        return web.json_response(ANSWER)

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    return app


def recording_app(auth: list[str]) -> web.Application:
    async def anything(request: web.Request) -> web.Response:
        auth.append(request.headers.get("Authorization", ""))
        return web.json_response({"object": "list", "data": [{"id": "m"}]})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    return app


def spec_file(folder: Path, base_url: str, **target: str) -> Path:
    (folder / "p.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Q{i}"}) + "\n" for i in range(3)))
    spec = {"name": "u", "target": {"base_url": base_url, "model": "m", **target}, "dataset": {"path": "p.jsonl"},
            "params": {"max_tokens": 2}, "sweep": {"grid": {"temperature": [0.0, 1.0]}}}
    (folder / "s.yaml").write_text(json.dumps(spec))
    return folder / "s.yaml"


def run(spec: Path, out: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "harness", "run", str(spec), "--out", str(out), "--quiet"],
                          check=False, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


def test_a_query_in_base_url_stays_on_every_request(tmp_path: Path) -> None:
    seen: list[str] = []
    with ServerThread(versioned_app(seen)) as server:
        done = run(spec_file(tmp_path, server.base_url + "?api-version=2024-10-21"), tmp_path / "runs")
    assert done.returncode == 0, done.stderr
    run_dir = Path(done.stdout.strip().splitlines()[-1])
    rows = read_results(run_dir)
    assert len(rows) == 6 and (rows["status"] == "ok").all()
    assert any(s.startswith("/v1/models?") for s in seen)  # preflight asked with the query
    assert all("api-version=2024-10-21" in s for s in seen)
    assert read_manifest(run_dir).target.base_url.endswith("/v1?api-version=***")  # query values never stored


def test_a_redirect_does_not_carry_the_key_to_another_host(tmp_path: Path) -> None:
    stolen: list[str] = []
    with ServerThread(recording_app(stolen)) as thief, ServerThread(redirecting_app(thief.base_url + "/steal")) as server:
        done = run(spec_file(tmp_path, server.base_url, api_key_env="PF_KEY"), tmp_path / "runs",
                   env={"PF_KEY": "sk-redirect-secret-123"})
    assert done.returncode == 0, done.stderr
    assert stolen == []  # neither preflight nor the run followed the redirect
    assert "sk-redirect-secret-123" not in done.stderr + done.stdout
