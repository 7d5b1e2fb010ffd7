"""No spending before it is known to work: preflight in `harness run`, and the breaker during it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from aiohttp import web

from harness.client import RequestFailed
from harness.runner.breaker import NOT_SENT, Breaker, settle
from harness.server.app import ServerThread, reference_app
from harness.server.misbehave import Misbehaviour


class Counted:
    """A reference server that counts the chat requests it answers."""

    def __init__(self, **misbehaviour: Any) -> None:
        rules = Misbehaviour.parse(**misbehaviour) if misbehaviour else None
        self.app = reference_app(seed=0, misbehaviour=rules)
        self.chats = 0
        self.app.on_response_prepare.append(self._count)

    async def _count(self, request: web.Request, _response: web.StreamResponse) -> None:
        if request.path.endswith("/chat/completions"):
            self.chats += 1


def write_spec(folder: Path, base_url: str, *, prompts: int = 100, repeats: int = 10, model: str = "harness/ngram",
               grid: dict[str, list[Any]] | None = None) -> Path:  # fmt: skip
    with (folder / "p.jsonl").open("w") as fh:
        for i in range(prompts):
            fh.write(json.dumps({"id": f"q{i}", "prompt": f"The capital of country {i} is"}) + "\n")
    spec = {
        "name": "pf",
        "target": {"base_url": base_url, "model": model},
        "dataset": {"path": "p.jsonl"},
        "params": {"max_tokens": 3},
        "sweep": {"grid": grid or {"temperature": [0.0, 1.0], "top_k": [-1, 1, 5]}, "repeats": repeats},
        "runner": {"concurrency": 4},
    }
    path = folder / "spec.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


def run(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "harness", "run", *args, "--quiet"], check=False, capture_output=True, text=True, timeout=120)
    return done, time.monotonic() - t0


@pytest.mark.slow
def test_a_refused_swept_value_stops_the_run_in_seconds(tmp_path: Path) -> None:
    server = Counted(refuse=["top_k=-1"], refuse_status=500)
    with ServerThread(server.app) as thread:
        spec = write_spec(tmp_path, thread.base_url, repeats=5)  # 100 prompts x 6 points x 5 repeats = 3000 requests
        done, _ = run(str(spec), "--out", str(tmp_path / "runs"))
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if line.startswith("harness: error:")]
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "sweep.grid.top_k" in lines[0] and "top_k=-1" in lines[0] and "validation error" in lines[0]
    assert server.chats <= 30  # <= 1% of 3000; seconds: see bench/bench_refused.py
    # nothing lost: once the server is fixed, resume sends the whole sweep
    run_dir = Path(lines[-1].rsplit("--resume ", 1)[1])
    with ServerThread(reference_app(seed=0), port=thread.port):
        again, _ = run("--resume", str(run_dir))
    assert again.returncode == 0, again.stderr
    assert len(pd.read_parquet(run_dir / "results")) == 3000


@pytest.mark.slow
def test_a_model_not_served_is_one_line_with_a_suggestion(tmp_path: Path) -> None:
    with ServerThread(reference_app(seed=0)) as thread:
        done, _ = run(str(write_spec(tmp_path, thread.base_url, model="harness/ngrm")), "--out", str(tmp_path / "runs"))
    assert done.returncode == 2
    assert "target.model" in done.stderr and "did you mean 'harness/ngram'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_base_url_without_v1_is_named(tmp_path: Path) -> None:
    with ServerThread(reference_app(seed=0)) as thread:
        root = thread.base_url.removesuffix("/v1")
        done, _ = run(str(write_spec(tmp_path, root)), "--out", str(tmp_path / "runs"))
    assert done.returncode == 2
    assert "target.base_url" in done.stderr and f"did you mean {root}/v1" in done.stderr


@pytest.mark.slow
def test_preflight_lets_random_faults_through(tmp_path: Path) -> None:
    from harness.server.faults import FaultSpec

    app = reference_app(seed=0, faults=FaultSpec.parse("500=0.2,429=0.1"), retry_after_s=0.01)
    with ServerThread(app) as thread:
        spec = write_spec(tmp_path, thread.base_url, prompts=5, repeats=1)
        done, _ = run(str(spec), "--out", str(tmp_path / "runs"))
    assert done.returncode in (0, 1), done.stderr
    assert len(pd.read_parquet(Path(done.stdout.strip().splitlines()[-1]) / "results")) == 30


@pytest.mark.slow
def test_the_breaker_stops_a_sweep_that_is_refused_throughout(tmp_path: Path) -> None:
    server = Counted(refuse=["temperature=*"], refuse_status=500)
    with ServerThread(server.app) as thread:
        spec = write_spec(tmp_path, thread.base_url)
        done, _ = run(str(spec), "--out", str(tmp_path / "runs"), "--no-preflight")
    assert done.returncode == 1
    why = [line for line in done.stderr.splitlines() if "stopped sending" in line]
    assert len(why) == 1 and "validation error" in why[0] and "--retry-errors" in why[0] and str(tmp_path) in why[0]
    run_dir = Path(done.stdout.strip().splitlines()[-1])
    rows = pd.read_parquet(run_dir / "results")
    sent = rows[rows.attempts > 0]
    assert len(rows) == 6000 and len(sent) <= 60  # seconds: see bench/bench_refused.py
    assert (rows[rows.attempts == 0].error_type == NOT_SENT).all()
    assert sent.attempts.max() <= 3  # the same 500 three times is final, not six
    with ServerThread(reference_app(seed=0), port=thread.port):
        again, _ = run("--resume", str(run_dir), "--retry-errors")
    assert again.returncode == 0, again.stderr
    after = pd.read_parquet(run_dir / "results")
    assert len(after) == 6000 and (after.status == "ok").all()


def test_breaker_counts_only_identical_final_failures_in_a_row() -> None:
    breaker = Breaker(threshold=3)
    bad = {"status": "error", "http_status": 500, "error_message": "HTTP 500: no"}
    breaker.record(bad)
    breaker.record(bad)
    breaker.record({"status": "ok", "http_status": 200})
    breaker.record(bad)
    breaker.record({**bad, "error_message": "HTTP 500: other"})
    breaker.record({"status": "error", "http_status": 429, "error_message": "slow down"})
    assert not breaker.open
    for _ in range(3):
        breaker.record(bad)
    assert breaker.open and "HTTP 500: no" in (breaker.reason or "")


def test_settle_makes_a_thrice_repeated_500_final() -> None:
    def fail(message: str, status: int = 500) -> RequestFailed:
        return RequestFailed("server_error", message, http_status=status, retryable=True)

    assert settle(fail("x"), [fail("x")]).retryable
    assert not settle(fail("x"), [fail("x"), fail("x")]).retryable
    assert settle(fail("x"), [fail("y"), fail("x")]).retryable
    assert settle(fail("x", 503), [fail("x", 503), fail("x", 503)]).retryable  # 503 is transient by nature


def test_preflight_samples_long_axes_keeping_off_values_and_extremes() -> None:
    from harness.probe.preflight import _sample

    picked = _sample([-1, 0, *range(1, 1000)])
    assert len(picked) <= 16 and {-1, 0, 999} <= set(picked)
    assert _sample([0.5, 1.0]) == [0.5, 1.0]
