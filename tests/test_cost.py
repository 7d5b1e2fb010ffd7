"""Targets and prices in the analysis: summaries per target, cost per cell and per correct answer,
the Pareto set across targets, and the plan's cost estimate."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from target_runs import target_rows, write_run

from harness.analysis.cost import (
    CHARS_PER_TOKEN,
    Price,
    estimate_cost,
    plan_costs,
    prices_from_manifest,
    row_costs,
    with_costs,
)
from harness.analysis.metrics import pareto_set, summarize, swept_params
from harness.analysis.scoring import resolve_scorers
from harness.report.data import load_runs
from harness.rundir.manifest import read_manifest

EXACT = resolve_scorers(["exact_match"])
PRICES = {"cheap": {"input_per_mtok": 0.5, "output_per_mtok": 1.5}, "dear": {"input_per_mtok": 3.0, "output_per_mtok": 15.0}}


def _two_targets(target: str, point: int, prompt: int, sample: int) -> tuple[str, bool, float]:
    if target == "dear":
        return "ok", True, 0.2
    if prompt % 5 == 4 and sample == 0:
        return "error", False, 0.0
    return "ok", prompt % 2 == 0, 0.1


def test_price_parse_takes_mappings_and_objects_and_refuses_junk() -> None:
    assert Price.parse({"input_per_mtok": 1, "output_per_mtok": 2.5}) == Price(1.0, 2.5)
    assert Price.parse(SimpleNamespace(input_per_mtok=3, output_per_mtok=4)) == Price(3.0, 4.0)
    for bad in (None, {}, {"input_per_mtok": 1}, {"input_per_mtok": -1, "output_per_mtok": 1},
                {"input_per_mtok": "x", "output_per_mtok": 1}, {"input_per_mtok": float("inf"), "output_per_mtok": 1}):
        assert Price.parse(bad) is None


def test_row_cost_is_tokens_times_price_and_missing_counts_cost_nothing() -> None:
    rows = pd.DataFrame({"target": ["a", "a", "b", None], "prompt_tokens": [1000, None, 1000, 1000],
                         "completion_tokens": [100, None, 100, 100]})
    costs = row_costs(rows, {"a": Price(2.0, 10.0), "b": None, "default": Price(1.0, 1.0)})
    assert costs[0] == pytest.approx((1000 * 2.0 + 100 * 10.0) / 1e6)
    assert costs[1] == 0.0  # an error row nobody billed
    assert math.isnan(costs[2])  # target without a price
    assert costs[3] == pytest.approx(1100 / 1e6)  # no target recorded: the run's `default`
    assert "cost" not in with_costs(rows, {"a": None})  # no price anywhere: no column


def test_an_older_run_with_one_priced_target_is_that_target() -> None:
    rows = pd.DataFrame({"prompt_tokens": [10], "completion_tokens": [10]})
    assert row_costs(rows, {"gpt": Price(1.0, 1.0)})[0] == pytest.approx(20 / 1e6)


def test_prices_come_from_the_manifest_targets_map_or_the_spec(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r", target_rows("r", ["cheap", "dear"], _two_targets, prompts=2), prices=PRICES)
    assert prices_from_manifest(read_manifest(run)) == {"cheap": Price(0.5, 1.5), "dear": Price(3.0, 15.0)}
    old = {"spec": {"target": {"name": "x", "price": {"input_per_mtok": 1, "output_per_mtok": 2}}}}
    assert prices_from_manifest(old) == {"x": Price(1.0, 2.0)}
    listed = {"spec": {"targets": [{"name": "a", "price": None}, {"name": "b"}]}}
    assert prices_from_manifest(listed) == {"a": None, "b": None}
    assert prices_from_manifest({"spec": {}}) == {}


def test_summary_has_one_cell_per_target_and_point_with_costs(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r", target_rows("r", ["cheap", "dear"], _two_targets), prices=PRICES)
    rows = load_runs([run])[0].rows
    summary = summarize(rows, EXACT)
    assert swept_params(rows) == ["target", "temperature"]
    assert list(summary.columns[:4]) == ["run_id", "cell_id", "target", "temperature"]
    assert len(summary) == 4 and summary["cell_id"].nunique() == 2  # cell ids are shared by the targets
    assert summary.groupby("target")["n"].sum().to_dict() == {"cheap": 120, "dear": 120}
    cheap = summary[summary["target"] == "cheap"].iloc[0]
    dear = summary[summary["target"] == "dear"].iloc[0]
    assert dear["exact_match_mean"] == 1.0 and cheap["exact_match_mean"] < 0.6
    # cheap: 54 ok rows × (100 × 0.5 + 10 × 1.5) / 1e6, 6 error rows cost nothing, over 60 rows
    assert cheap["cost_total"] == pytest.approx(54 * 65 / 1e6)
    assert cheap["cost_per_request"] == pytest.approx(54 * 65 / 1e6 / 60)
    correct = rows[(rows["target"] == "cheap") & (rows["cell_id"] == cheap["cell_id"])]
    n_correct = int(((correct["status"] == "ok") & (correct["content"] == correct["reference"])).sum())
    assert cheap["exact_match_cost_per_correct"] == pytest.approx(54 * 65 / 1e6 / n_correct)
    assert dear["exact_match_cost_per_correct"] == pytest.approx(dear["cost_per_request"])  # all correct


def test_one_target_keeps_its_name_but_is_no_axis(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r", target_rows("r", ["solo"], _two_targets, prompts=4))
    rows = load_runs([run])[0].rows
    summary = summarize(rows, EXACT)
    assert swept_params(rows) == ["temperature"]
    assert summary["target"].tolist() == ["solo", "solo"] and "cost_total" not in summary


def test_an_older_run_summarizes_as_before(tmp_path: Path) -> None:
    rows = pd.DataFrame(target_rows("r", ["x"], _two_targets, prompts=4, with_target=False))
    summary = summarize(rows, EXACT)
    assert "target" not in summary and len(summary) == 2
    loaded = load_runs([write_run(tmp_path, "old", target_rows("old", ["x"], _two_targets, prompts=4,
                                                                  with_target=False), manifest_targets=False)])[0].rows
    assert summarize(loaded, EXACT)["target"].tolist() == ["default", "default"]


def test_pareto_set_needs_a_cell_better_somewhere_and_no_worse_anywhere() -> None:
    s = pd.DataFrame({"run_id": ["r"] * 5, "q": [0.9, 0.8, 0.9, 0.5, np.nan], "lat": [1.0, 0.5, 1.0, 2.0, 0.1],
                      "cost": [2.0, 1.0, 1.0, 3.0, 0.0]})
    front = pareto_set(s, [("q", True), ("lat", False), ("cost", False)])
    # 0 is beaten by 2 (same quality and latency, cheaper); 3 by everything; 4 has no quality
    assert front.tolist() == [False, True, True, False, False]
    two = pareto_set(s, [("q", True), ("lat", False)])
    assert two.tolist() == [True, True, True, False, False]  # 0 and 2 tie: neither dominates


def test_estimate_cost_is_an_input_estimate_plus_an_output_upper_bound() -> None:
    est = estimate_cost("a", Price(2.0, 8.0), 100, 4000 * CHARS_PER_TOKEN, 100 * 64)
    assert (est.input_tokens, est.output_tokens_max) == (4000, 6400)
    assert est.input_cost == pytest.approx(4000 * 2.0 / 1e6)
    assert est.cost_max == pytest.approx(4000 * 2.0 / 1e6 + 6400 * 8.0 / 1e6)
    assert estimate_cost("a", Price(1, 1), 1, 4, None).cost_max is None  # no max_tokens: no bound
    assert estimate_cost("a", None, 1, 4, 10).to_json()["est_cost_max"] is None


def test_plan_costs_reads_per_target_loads() -> None:
    loads = {n: SimpleNamespace(name=n, requests=r, prompt_chars=c, max_tokens=t, price=p) for n, r, c, t, p in (
        ("a", 10, 400, 320, SimpleNamespace(input_per_mtok=1.0, output_per_mtok=2.0)), ("b", 5, 200, None, None))}
    costs = plan_costs(SimpleNamespace(per_target=loads))
    assert [(c.target, c.requests, c.input_tokens, c.output_tokens_max) for c in costs] == [
        ("a", 10, 100, 320), ("b", 5, 50, None)]
    assert costs[0].cost_max == pytest.approx((100 * 1.0 + 320 * 2.0) / 1e6) and costs[1].cost_max is None


def test_cli_plan_prints_and_reports_cost_per_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from harness.cli import main

    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "prompt": "x" * 40}) + "\n" for i in range(5)))
    spec = {"name": "p", "dataset": {"path": "d.jsonl"}, "params": {"max_tokens": 16},
            "targets": [{"name": "a", "base_url": "http://127.0.0.1:9/v1", "model": "m",
                         "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}},
                        {"name": "b", "base_url": "http://127.0.0.1:9/v1", "model": "m"}],
            "sweep": {"grid": {"temperature": [0.0, 1.0]}, "repeats": 2}}
    (tmp_path / "s.yaml").write_text(json.dumps(spec))
    assert main(["plan", str(tmp_path / "s.yaml"), "--json"]) == 0
    cost = {c["target"]: c for c in json.loads(capsys.readouterr().out)["cost"]}
    # a: 2 points × 5 prompts × 2 repeats = 20 requests of 40 chars (10 tokens) and ≤ 16 output tokens
    assert cost["a"]["requests"] == 20 and cost["a"]["est_input_tokens"] == 200 and cost["a"]["max_output_tokens"] == 320
    assert cost["a"]["est_cost_max"] == pytest.approx((200 * 1.0 + 320 * 2.0) / 1e6)
    assert cost["b"]["price"] is None and cost["b"]["est_cost_max"] is None
    assert main(["plan", str(tmp_path / "s.yaml")]) == 0
    out = capsys.readouterr().out
    assert "output ≤ max_tokens (an upper bound)" in out and "b  20 requests, no price" in out
