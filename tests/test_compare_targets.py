"""`harness compare` between two targets of one run: same verdicts as between two single-target runs."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
from target_runs import target_rows, write_run

from harness.api import compare_runs as api_compare
from harness.cli import main
from harness.compare import CompareOptions, compare_runs
from harness.errors import UsageError
from harness.rundir.results import load_run

pytestmark = pytest.mark.slow  # each writes and compares whole runs (seconds)


def _outcome(target: str, point: int, prompt: int, sample: int) -> tuple[str, bool, float]:
    """Target "new" is worse at temperature 0.7 (point 1) and slower everywhere; a few errors."""
    if target == "new" and prompt % 10 == 9 and sample == 0:
        return "error", False, 0.0
    correct = prompt % 3 != 0 if (target == "old" or point == 0) else prompt % 3 == 1
    latency = 0.10 + 0.002 * prompt + (0.05 if target == "new" else 0.0)
    return "ok", correct, latency


def _runs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """One run holding both targets, and two single-target runs holding the very same rows."""
    both = target_rows("both", ["old", "new"], _outcome)
    multi = write_run(tmp_path, "both", both)
    old = write_run(tmp_path, "old", [dict(r, run_id="old", target="default") for r in both if r["target"] == "old"])
    new = write_run(tmp_path, "new", [dict(r, run_id="new", target="default") for r in both if r["target"] == "new"])
    return multi, old, new


def _verdicts(result) -> list[tuple[str, str, str, int, float, float]]:
    return [(c.metric, c.point, c.verdict, c.n_pairs, round(c.test.diff, 12), round(c.p_worse, 12))
            for c in result.cells]


def test_two_targets_of_one_run_give_the_verdicts_of_two_runs(tmp_path: Path) -> None:
    multi, old, new = _runs(tmp_path)
    options = CompareOptions(seed=3)
    within = compare_runs(load_run(multi), load_run(multi), options, base_target="old", cand_target="new")
    across = compare_runs(load_run(old), load_run(new), options)
    assert _verdicts(within) == _verdicts(across)
    assert [(m.metric, m.verdict) for m in within.metrics] == [(m.metric, m.verdict) for m in across.metrics]
    assert within.failed and across.failed  # the data has a real regression: the test can tell
    assert dict((m.metric, m.verdict) for m in within.metrics)["exact_match"] == "regressed"
    assert within.n_pairs == across.n_pairs == 2 * 30 * 2
    assert (within.base.target, within.cand.target) == ("old", "new")
    assert (within.base.model, within.cand.model) == ("model-old", "model-new")


def test_targets_of_two_runs_can_be_picked_too(tmp_path: Path) -> None:
    multi, old, _ = _runs(tmp_path)
    result = compare_runs(load_run(old), load_run(multi), CompareOptions(), cand_target="old")
    assert {m.verdict for m in result.metrics if m.metric == "exact_match"} == {"no change"}
    assert result.cand.label == "both/old" and result.base.label == "old"


def test_a_run_with_several_targets_needs_a_target(tmp_path: Path) -> None:
    multi, old, _ = _runs(tmp_path)
    with pytest.raises(UsageError, match=r"2 targets \(old, new\); choose one with --cand-target"):
        compare_runs(load_run(old), load_run(multi), CompareOptions())
    with pytest.raises(UsageError, match=r"no target 'gpt' in .*; it has: old, new"):
        compare_runs(load_run(multi), load_run(multi), CompareOptions(), base_target="gpt", cand_target="new")


def test_an_older_run_is_one_target_called_default(tmp_path: Path) -> None:
    rows = target_rows("legacy", ["x"], _outcome, with_target=False)
    legacy = write_run(tmp_path, "legacy", rows, manifest_targets=False)
    run = load_run(legacy)
    assert run.results["target"].isna().all()  # the column is read as null: no target recorded
    result = compare_runs(run, run, CompareOptions(), base_target="default", cand_target="default")
    assert {m.verdict for m in result.metrics if m.metric == "exact_match"} == {"no change"}


def test_cli_compares_two_targets_of_one_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    multi, old, new = _runs(tmp_path)
    junit, md, js = tmp_path / "j.xml", tmp_path / "c.md", tmp_path / "c.json"
    code = main(["compare", str(multi), "--base-target", "old", "--cand-target", "new", "--metric", "exact_match",
                 "--junit", str(junit), "--markdown", str(md), "--json", str(js)])
    out = capsys.readouterr().out
    assert code == 1
    assert "base both/old (model-old) vs candidate both/new (model-new)" in out
    assert "**both/old**" in md.read_text()
    props = {p.get("name"): p.get("value") for p in ET.parse(junit).getroot().iter("property")}
    assert props["base_target"] == "old" and props["candidate_target"] == "new"
    data = json.loads(js.read_text())
    assert data["base"]["target"] == "old" and data["candidate"]["target"] == "new"
    assert main(["compare", str(old), str(new), "--metric", "exact_match"]) == 1
    capsys.readouterr()


def test_cli_bad_target_input_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    multi, old, _ = _runs(tmp_path)
    assert main(["compare", str(multi), "--base-target", "old"]) == 2
    err = capsys.readouterr().err
    assert "--cand-target" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["compare", str(multi), "--base-target", "nope", "--cand-target", "new"]) == 2
    err = capsys.readouterr().err
    assert "no target 'nope'" in err and "old, new" in err and "Traceback" not in err
    assert main(["compare", str(old), str(multi)]) == 2
    assert "choose one with --cand-target" in capsys.readouterr().err


def test_api_passes_targets(tmp_path: Path) -> None:
    multi, _, _ = _runs(tmp_path)
    result = api_compare(multi, multi, base_target="old", cand_target="old")
    assert not result.failed and result.n_pairs == 120
    assert isinstance(load_run(multi).results, pd.DataFrame)
