"""Dialects: fields a server lacks are refused at plan time; "off" is spelled per server, openly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness.probe.dialects import detect, translate
from harness.server.app import ServerThread, reference_app
from harness.server.misbehave import Misbehaviour


def write_spec(folder: Path, target: dict[str, Any], grid: dict[str, list[Any]]) -> Path:
    (folder / "p.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"The capital of {i}"}) + "\n" for i in range(3)))
    spec = {"name": "d", "target": {"model": "harness/ngram", **target}, "dataset": {"path": "p.jsonl"},
            "params": {"max_tokens": 2}, "sweep": {"grid": grid}}  # fmt: skip
    path = folder / "spec.yaml"
    path.write_text(json.dumps(spec))
    return path


def harness(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], check=False, capture_output=True, text=True, timeout=120)


def test_translate_spells_off_per_dialect_and_says_so() -> None:
    assert translate("llama.cpp", {"top_k": -1}) == ({"top_k": 0}, {"top_k": 0})
    assert translate("vllm", {"top_k": -1}) == ({"top_k": -1}, {})
    assert translate("llama.cpp", {"top_k": 5}) == ({"top_k": 5}, {})
    assert translate("seed", {"top_k": -1}) == ({"top_k": -1}, {})


def test_detect_from_models_owner() -> None:
    assert detect({"data": [{"id": "x", "owned_by": "llamacpp"}]}) == "llama.cpp"
    assert detect({"data": [{"id": "x", "owned_by": "vllm"}]}) == "vllm"
    assert detect({"models": [{"name": "llama3"}]}) == "ollama"
    assert detect(None, "https://api.openai.com/v1") == "openai"
    assert detect({"data": [{"id": "x", "owned_by": "someone"}]}) == "seed"


def test_openai_dialect_refuses_top_k_at_plan_time(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, {"base_url": "http://127.0.0.1:9/v1", "dialect": "openai"}, {"top_k": [-1, 5]})
    done = harness("plan", str(spec))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "sweep.grid.top_k" in done.stderr and "openai dialect" in done.stderr


@pytest.mark.slow
def test_llama_cpp_dialect_is_shown_sent_and_recorded(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, {"base_url": "http://127.0.0.1:9/v1", "dialect": "llama.cpp"}, {"top_k": [-1, 5]})
    shown = harness("plan", str(spec))
    assert "top_k -1 is sent as 0" in shown.stdout
    # a server that refuses top_k=-1 but reads 0 as "off" (llama-cpp-python's server does)
    rules = Misbehaviour.parse(refuse=["top_k=-1"])
    with ServerThread(reference_app(seed=0, misbehaviour=rules)) as server:
        spec = write_spec(tmp_path, {"base_url": server.base_url, "dialect": "llama.cpp"}, {"top_k": [-1, 5]})
        done = harness("run", str(spec), "--out", str(tmp_path / "runs"), "--quiet")
    assert done.returncode == 0, done.stderr
    run_dir = Path(done.stdout.strip().splitlines()[-1])
    rows = pd.read_parquet(run_dir / "results")
    off = rows[rows.top_k == -1]  # the spec's value is kept ...
    assert len(off) == 3 and (off.sent_json == '{"top_k": 0}').all()  # ... with what was sent
    assert rows[rows.top_k == 5].sent_json.isna().all()
    assert json.loads((run_dir / "manifest.json").read_text())["target"]["dialect"] == "llama.cpp"


@pytest.mark.slow
def test_auto_dialect_is_decided_from_the_server_and_recorded(tmp_path: Path) -> None:
    with ServerThread(reference_app(seed=0)) as server:
        spec = write_spec(tmp_path, {"base_url": server.base_url}, {"top_k": [-1]})
        done = harness("run", str(spec), "--out", str(tmp_path / "runs"), "--quiet")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((Path(done.stdout.strip().splitlines()[-1]) / "manifest.json").read_text())
    assert manifest["target"]["dialect"] == "seed"


@pytest.mark.slow
def test_auto_detects_a_llama_cpp_server_and_the_probe_confirms(tmp_path: Path) -> None:
    from harness.probe import run_probe
    from harness.runner.sweep import Endpoint

    rules = Misbehaviour.parse(refuse=["top_k=-1"], dialect="llama.cpp")  # like llama-cpp-python's server
    with ServerThread(reference_app(seed=0, misbehaviour=rules)) as server:
        spec = write_spec(tmp_path, {"base_url": server.base_url}, {"top_k": [-1, 5]})
        done = harness("run", str(spec), "--out", str(tmp_path / "runs"), "--quiet")
        report = run_probe(Endpoint(server.base_url, "harness/ngram"), budget=160)
    assert done.returncode == 0, done.stderr
    rows = pd.read_parquet(Path(done.stdout.strip().splitlines()[-1]) / "results")
    assert (rows[rows.top_k == -1].sent_json == '{"top_k": 0}').all()
    assert report.dialect == "llama.cpp" and report.top_k_off == {"-1": "refused", "0": "accepted"}
    assert report.results["top_k"].verdict == "honoured"
