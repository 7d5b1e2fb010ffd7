"""Every sweep shipped in sweeps/ shows, on `harness serve`, the effect its comment promises.

Each test runs the real spec file through `harness run` against the reference endpoint
(in-process, loopback) with a smaller dataset, then checks the effect from the result rows:
penalties lower repetition monotonically; temperature costs accuracy and buys diversity, top_p
and min_p take back accuracy at high temperature; greedy cells repeat themselves. The sweeps
that target the embedded Gemma model or a hosted endpoint run on the n-gram model instead (their
promise about temperature and min_p holds for it too).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from harness.analysis.metrics import summarize
from harness.cli import main
from harness.server.app import ServerThread, create_app
from harness.server.ngram import default_model

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = ROOT / "sweeps"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    model = default_model()
    app = create_app({"harness/ngram": model, "dmind/dmind-1": model})
    with ServerThread(app) as server:
        yield server.base_url


def run_shipped(name: str, base_url: str, tmp_path: Path, *, limit: int, **overrides: Any) -> pd.DataFrame:
    """Run sweeps/NAME.yaml on the reference endpoint with `limit` prompts; the result rows."""
    spec = yaml.safe_load((SWEEPS / f"{name}.yaml").read_text())
    model = spec["target"].get("model", "harness/ngram")
    spec["target"] = {"base_url": base_url, "model": model if "local" not in spec["target"] else "harness/ngram"}
    spec["dataset"]["path"] = str((SWEEPS / spec["dataset"]["path"]).resolve())
    spec["dataset"]["limit"] = limit
    spec.setdefault("runner", {})["concurrency"] = 8
    spec["runner"].pop("rps", None)
    for key, value in overrides.items():
        spec[key] = {**spec.get(key, {}), **value}
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(spec))
    out = tmp_path / "runs"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    (run_dir,) = out.iterdir()
    df = pd.read_parquet(run_dir / "results")
    assert (df["status"] == "ok").all()
    return df


def accuracy(df: pd.DataFrame) -> float:
    return float((df["content"].str.strip() == df["reference"]).mean())


def repetition(text: str) -> float:
    """1 - distinct word bigrams / word bigrams (0 under two words): the report's definition."""
    words = text.split()
    bigrams = list(itertools.pairwise(words))
    return 1.0 - len(set(bigrams)) / len(bigrams) if bigrams else 0.0


def test_penalties_lower_repetition_monotonically(base_url: str, tmp_path: Path) -> None:
    df = run_shipped("penalties", base_url, tmp_path, limit=20)
    assert (df["content"].str.strip() != "").all()  # every open prompt gets an answer
    per_prompt = df.groupby(["temperature", "frequency_penalty", "prompt_id"])["content"].nunique()
    assert per_prompt.mean() > 2  # the repeats (seeds) of a prompt differ
    df["repetition"] = df["content"].map(repetition)
    by_cell = df.groupby(["temperature", "frequency_penalty"])["repetition"].mean()
    assert sorted(df["temperature"].unique()) == [0.7, 1.0]
    for temperature in (0.7, 1.0):
        by_penalty = by_cell.loc[temperature].sort_index().to_numpy()
        assert len(by_penalty) == 4 and all(a >= b for a, b in itertools.pairwise(by_penalty)), by_penalty
        assert by_penalty[-1] < 0.5 * by_penalty[0], by_penalty
    summary = summarize(df.drop(columns="repetition"))  # the report's own metric agrees
    pooled = summary.groupby("frequency_penalty")["repetition"].mean().sort_index().to_numpy()
    assert pooled[-1] < pooled[0]


def test_temperature_top_p_trades_accuracy_for_diversity(base_url: str, tmp_path: Path) -> None:
    df = run_shipped("temperature-top-p", base_url, tmp_path, limit=20)
    full = df[df["top_p"] == 1.0]
    acc = full.groupby("temperature").apply(accuracy, include_groups=False)
    assert acc.is_monotonic_decreasing and acc.loc[0.0] >= 0.9 and acc.loc[1.5] < 0.5 * acc.loc[0.0], acc
    distinct = full.groupby("temperature")["content"].nunique()
    assert distinct.loc[0.0] < distinct.loc[1.0] < distinct.loc[1.5], distinct
    hot = df[df["temperature"] == 1.5].groupby("top_p").apply(accuracy, include_groups=False)
    assert hot.loc[0.5] > hot.loc[0.9] > hot.loc[1.0], hot  # nucleus sampling takes accuracy back


def test_truncation_min_p_and_top_k_rescue_accuracy(base_url: str, tmp_path: Path) -> None:
    df = run_shipped("truncation", base_url, tmp_path, limit=30)
    acc = df.groupby(["top_k", "min_p"]).apply(accuracy, include_groups=False)
    untruncated = acc.loc[(-1, 0.0)]
    by_min_p = acc.loc[-1].sort_index().to_numpy()
    assert all(a <= b for a, b in itertools.pairwise(by_min_p)) and by_min_p[-1] > untruncated + 0.2, acc
    assert acc.loc[(1, 0.0)] > acc.loc[(5, 0.0)] > untruncated, acc
    outputs = df.groupby(["top_k", "min_p"])["content"].nunique()
    assert outputs.loc[(1, 0.0)] < outputs.loc[(-1, 0.0)]  # candidate sets shrink, so do the outputs


def test_quickstart_temperature_costs_accuracy_min_p_takes_it_back(base_url: str, tmp_path: Path) -> None:
    df = run_shipped("quickstart", base_url, tmp_path, limit=12)
    acc = df.groupby(["temperature", "min_p"], dropna=False).apply(accuracy, include_groups=False)
    greedy = df[df["temperature"] == 0.0]
    assert greedy.groupby("prompt_id")["content"].nunique().max() == 1  # greedy repeats itself
    hot = df[df["temperature"] == 1.6]
    hot_acc = hot.groupby("min_p").apply(accuracy, include_groups=False)
    assert accuracy(greedy) > hot_acc.loc[0.0] and hot_acc.loc[0.2] > hot_acc.loc[0.0] + 0.2, acc
    assert hot[hot["min_p"] == 0.0]["content"].nunique() > greedy["content"].nunique()


def test_ci_gate_sweep_greedy_is_stable_and_best(base_url: str, tmp_path: Path) -> None:
    df = run_shipped("ci", base_url, tmp_path, limit=10)
    greedy, sampled = df[df["temperature"] == 0.0], df[df["temperature"] == 0.8]
    assert greedy.groupby("prompt_id")["content"].nunique().max() == 1
    assert accuracy(greedy) >= 0.9 and accuracy(greedy) >= accuracy(sampled)


def test_dmind_sweep_runs_and_greedy_is_most_accurate(base_url: str, tmp_path: Path) -> None:
    df = run_shipped("dmind-hosted", base_url, tmp_path, limit=20, params={"max_tokens": 8})
    df["correct"] = df["content"].str.strip() == df["reference"]
    acc = df.groupby(["temperature", "min_p"], dropna=False)["correct"].mean()
    assert acc.loc[(0.0, 0.0)] == 1.0 and acc.loc[(1.0, 0.0)] < acc.loc[(0.0, 0.0)], acc
    assert acc.loc[(1.0, 0.1)] >= acc.loc[(1.0, 0.0)], acc
