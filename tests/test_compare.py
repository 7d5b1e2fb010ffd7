"""`harness compare` end to end on synthetic run directories: pairing, verdicts, gates, CLI, JUnit."""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.cli import main
from harness.compare import ALL_POINTS, CompareOptions, Gate, Threshold, compare_runs, render_markdown
from harness.errors import RunDirError, SpecError, UsageError
from harness.rundir.records import rows_to_table
from harness.rundir.results import load_run

# outcome(point_index, prompt_index, sample) -> (status, correct, latency_s)
Outcome = Callable[[int, int, int], tuple[str, bool, float]]
T1 = [{"temperature": 0.7}]
T3 = [{"temperature": 0.0}, {"temperature": 0.7}, {"temperature": 1.0}]


def point_json(point: dict[str, Any]) -> str:
    return json.dumps(point, sort_keys=True, separators=(",", ":"))


def make_run(
    root: Path,
    name: str,
    *,
    outcome: Outcome,
    points: Iterable[dict[str, Any]] = tuple(T1),
    prompts: int = 40,
    samples: int = 3,
    model: str = "base-model",
    scoring: list[Any] | None = None,
    point_text: Callable[[dict[str, Any]], str] = point_json,
    extra_rows: list[dict[str, Any]] | None = None,
) -> Path:
    """A run directory with one row per (point, prompt, sample); answers are 'A<i>' when correct."""
    run_dir = root / name
    (run_dir / "results").mkdir(parents=True)
    rows = []
    for pi, point in enumerate(points):
        pj = point_text(point)
        cell = hashlib.sha1(f"{model}{pj}".encode()).hexdigest()[:12]
        for i in range(prompts):
            for s in range(samples):
                status, correct, latency = outcome(pi, i, s)
                rows.append({
                    "run_id": name,
                    "request_id": hashlib.sha1(f"{model}{pj}{i}{s}".encode()).hexdigest(),
                    "cell_id": cell, "prompt_id": f"p{i:04d}", "sample": s, "model": model,
                    "temperature": point.get("temperature"), "status": status, "attempts": 1,
                    "latency_s": latency,
                    "content": (f"A{i}" if correct else "wrong") if status == "ok" else None,
                    "error_type": None if status == "ok" else "http",
                    "reference": f"A{i}", "point_json": pj,
                })
    rows += extra_rows or []
    pq.write_table(rows_to_table(rows), run_dir / "results" / "part-0.parquet")
    manifest = {
        "run_id": name,
        "spec": {"name": name, "scoring": ["exact_match"] if scoring is None else scoring},
        "target": {"base_url": "http://127.0.0.1:1/v1", "model": model},
        "status": "completed",
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return run_dir


def always(correct: bool = True, latency: float = 0.1) -> Outcome:
    return lambda p, i, s: ("ok", correct, latency)


def half_right(p: int, i: int, s: int) -> tuple[str, bool, float]:
    """Deterministic mix: prompts with even index right, odd wrong."""
    return ("ok", i % 2 == 0, 0.1 + 0.001 * i)


def compare(base: Path, cand: Path, **kw: Any):
    return compare_runs(load_run(base), load_run(cand), CompareOptions(**kw))


def cell(result, metric: str, point: str | None = None):
    cells = [c for c in result.cells if c.metric == metric and (point is None or c.point == point)]
    assert cells, (metric, point)
    return cells[0]


def verdict(result, metric: str) -> str:
    return next(m.verdict for m in result.metrics if m.metric == metric)


# --- pairing ------------------------------------------------------------------------------


def test_identical_runs_of_different_models_pair_and_pass(tmp_path: Path) -> None:
    base = make_run(tmp_path, "b", outcome=half_right, model="model-a")
    cand = make_run(tmp_path, "c", outcome=half_right, model="model-b")
    r = compare(base, cand)
    assert r.n_pairs == 120 and r.unpaired_base == r.unpaired_cand == 0
    assert verdict(r, "exact_match") == "no change"
    assert not r.failed
    assert (r.base.model, r.cand.model) == ("model-a", "model-b")


def test_point_json_key_order_does_not_break_pairs(tmp_path: Path) -> None:
    points = [{"temperature": 0.7, "top_p": 0.9}]
    base = make_run(tmp_path, "b", outcome=half_right, points=points)
    cand = make_run(tmp_path, "c", outcome=half_right, points=points,
                    point_text=lambda p: json.dumps(dict(reversed(list(p.items())))))
    assert compare(base, cand).n_pairs == 120


def test_integral_floats_and_ints_name_the_same_point(tmp_path: Path) -> None:
    base = make_run(tmp_path, "b", outcome=half_right, points=[{"temperature": 1.0, "top_k": 40}])
    cand = make_run(tmp_path, "c", outcome=half_right, points=[{"temperature": 1, "top_k": 40.0}])
    assert compare(base, cand).n_pairs == 120


def test_points_in_one_run_only_are_listed_not_compared(tmp_path: Path) -> None:
    base = make_run(tmp_path, "b", outcome=half_right, points=T3[:2])
    cand = make_run(tmp_path, "c", outcome=always(False), points=T3[1:], prompts=40)
    r = compare(base, cand)
    assert r.shared_points == (point_json(T3[1]),)
    assert r.only_base == (point_json(T3[0]),) and r.only_cand == (point_json(T3[2]),)
    assert r.unpaired_base == 120 and r.unpaired_cand == 120
    assert {c.point for c in r.cells} == {point_json(T3[1])}  # one shared point: no pooled row
    md = render_markdown(r)
    assert "base only: temperature=0.0" in md and "candidate only: temperature=1.0" in md


def test_unpaired_prompts_and_samples_are_counted(tmp_path: Path) -> None:
    base = make_run(tmp_path, "b", outcome=half_right, prompts=40, samples=3)
    cand = make_run(tmp_path, "c", outcome=half_right, prompts=30, samples=2)
    r = compare(base, cand)
    assert r.n_pairs == 60 and r.unpaired_base == 60 and r.unpaired_cand == 0


def test_duplicate_rows_keep_the_last_ok_one(tmp_path: Path) -> None:
    pj = point_json(T1[0])
    retried = {  # an error row for p0000/sample 0 that a resume later retried successfully
        "run_id": "c", "request_id": "dup", "cell_id": "x", "prompt_id": "p0000", "sample": 0,
        "status": "error", "attempts": 6, "point_json": pj, "reference": "A0",
    }
    base = make_run(tmp_path, "b", outcome=always(True))
    cand = make_run(tmp_path, "c", outcome=always(True), extra_rows=[retried])
    r = compare(base, cand, max_error_rate=Threshold(0.0))
    assert r.n_pairs == 120 and r.unpaired_cand == 0
    assert cell(r, "exact_match").test.diff == 0
    assert r.ceilings[0].value == 0.0 and not r.failed


def test_rows_without_point_json_fall_back_to_sent_parameters(tmp_path: Path) -> None:
    base = make_run(tmp_path, "b", outcome=half_right)
    cand = make_run(tmp_path, "c", outcome=half_right)
    for run in (base, cand):
        table = pq.read_table(run / "results" / "part-0.parquet")
        idx = table.schema.get_field_index("point_json")
        nulls = pa.nulls(table.num_rows, pa.string())
        table = table.set_column(idx, table.schema.field(idx), nulls)
        pq.write_table(table, run / "results" / "part-0.parquet")
    r = compare(base, cand)
    assert r.n_pairs == 120 and r.shared_points == ('{"temperature":0.7}',)


# --- verdicts -----------------------------------------------------------------------------


def test_clear_drop_regresses_and_fails(tmp_path: Path) -> None:
    base = make_run(tmp_path, "b", outcome=always(True))
    cand = make_run(tmp_path, "c", outcome=lambda p, i, s: ("ok", i >= 10, 0.1))  # 25 points worse
    r = compare(base, cand)
    c = cell(r, "exact_match")
    assert c.verdict == "regressed" and r.failed
    assert c.test.diff == pytest.approx(-0.25) and c.test.base == 1.0
    assert c.test.ci_low <= -0.25 <= c.test.ci_high < 0
    assert c.p_worse < 0.05 and c.p_better > 0.5


def test_bh_correction_also_decides(tmp_path: Path) -> None:
    base = make_run(tmp_path, "b", outcome=always(True), points=T3)
    cand = make_run(tmp_path, "c", outcome=lambda p, i, s: ("ok", p != 0 or i >= 10, 0.1), points=T3)
    r = compare(base, cand, correction="bh")
    assert cell(r, "exact_match", point_json(T3[0])).verdict == "regressed" and r.failed
    assert cell(r, "exact_match", point_json(T3[1])).verdict == "no change"


def test_improvement_is_reported_and_passes(tmp_path: Path) -> None:
    base = make_run(tmp_path, "b", outcome=lambda p, i, s: ("ok", i >= 10, 0.1))
    cand = make_run(tmp_path, "c", outcome=always(True))
    r = compare(base, cand)
    assert verdict(r, "exact_match") == "improved" and not r.failed


def test_small_sample_noise_is_inconclusive_not_regressed(tmp_path: Path) -> None:
    # 2 of 8 prompts lost: p = 1/4, and the interval cannot rule out a large drop
    base = make_run(tmp_path, "b", outcome=always(True), prompts=8, samples=1)
    cand = make_run(tmp_path, "c", outcome=lambda p, i, s: ("ok", i >= 2, 0.1), prompts=8, samples=1)
    r = compare(base, cand)
    assert verdict(r, "exact_match") == "inconclusive" and not r.failed
    r2 = compare(base, cand, fail_on_inconclusive=True)
    assert r2.failed


@pytest.mark.slow
def test_max_drop_tolerates_a_significant_but_small_drop(tmp_path: Path) -> None:
    base = make_run(tmp_path, "b", outcome=always(True), prompts=200, samples=1)
    cand = make_run(tmp_path, "c", outcome=lambda p, i, s: ("ok", i >= 10, 0.1), prompts=200, samples=1)
    assert compare(base, cand).failed  # 5 points, 10 of 200 prompts lost: significant
    relaxed = compare(base, cand, gates=(Gate("exact_match", Threshold(0.06)),))
    # not a failure; the interval still reaches past a 0.06 drop, so it is not "no change" either
    assert not relaxed.failed and verdict(relaxed, "exact_match") == "inconclusive"
    relative = compare(base, cand, gates=(Gate("exact_match", Threshold(0.04, relative=True)),))
    assert relative.failed  # 4% of base 1.0 = 0.04 < 0.05 drop


@pytest.mark.slow
def test_holm_correction_stops_one_noisy_cell_among_many(tmp_path: Path) -> None:
    # one of ten cells loses 6 of 100 prompts: raw p = 2**-6 ≈ 0.016, Holm-adjusted ≈ 0.17
    points = [{"temperature": t / 10} for t in range(10)]
    lost: Outcome = lambda p, i, s: ("ok", not (p == 3 and i < 6), 0.1)
    base = make_run(tmp_path, "b", outcome=always(True), points=points, prompts=100, samples=1)
    cand = make_run(tmp_path, "c", outcome=lost, points=points, prompts=100, samples=1)
    r = compare(base, cand)
    c = cell(r, "exact_match", point_json(points[3]))
    assert c.test.p_less < 0.05 < c.p_worse
    assert not r.failed
    assert cell(r, "exact_match", ALL_POINTS).label == "all shared points"
    single = compare(
        make_run(tmp_path, "b1", outcome=always(True), prompts=100, samples=1),
        make_run(tmp_path, "c1", outcome=lambda p, i, s: ("ok", i >= 6, 0.1), prompts=100, samples=1),
    )
    assert single.failed  # the same loss in a single cell is a regression


@pytest.mark.slow
def test_pooled_row_catches_a_drop_spread_over_cells(tmp_path: Path) -> None:
    # each of 3 cells loses 4 different prompts out of 60: no cell alone is significant after
    # correction, but pooled by prompt the 12 losses are
    lost: Outcome = lambda p, i, s: ("ok", not (4 * p <= i < 4 * p + 4), 0.1)
    base = make_run(tmp_path, "b", outcome=always(True), points=T3, prompts=60, samples=1)
    cand = make_run(tmp_path, "c", outcome=lost, points=T3, prompts=60, samples=1)
    r = compare(base, cand)
    assert all(c.verdict != "regressed" for c in r.cells if c.point != ALL_POINTS)
    assert cell(r, "exact_match", ALL_POINTS).verdict == "regressed" and r.failed


@pytest.mark.slow
def test_row_permutation_catches_a_concentrated_drop_the_prompt_swap_cannot(tmp_path: Path) -> None:
    # 4 of 200 prompts go from 3/3 right to 0/3: swapping per prompt gives p = 1/16 at best
    lost: Outcome = lambda p, i, s: ("ok", i >= 4, 0.1)
    base = make_run(tmp_path, "b", outcome=always(True), prompts=200)
    cand = make_run(tmp_path, "c", outcome=lost, prompts=200)
    assert not compare(base, cand).failed
    rows = compare(base, cand, permute="row")
    assert rows.failed and cell(rows, "exact_match").p_worse < 0.01


def test_error_rows_score_zero_unless_excluded(tmp_path: Path) -> None:
    base = make_run(tmp_path, "b", outcome=always(True))
    errs: Outcome = lambda p, i, s: ("error", False, 0.0) if i < 12 else ("ok", True, 0.1)
    cand = make_run(tmp_path, "c", outcome=errs)
    r = compare(base, cand)
    assert cell(r, "exact_match").test.cand == pytest.approx(28 / 40) and r.failed
    assert verdict(r, "error_rate") == "regressed"  # informational: not gated
    assert not cell(r, "error_rate").gated
    excluded = compare(base, cand, error_score="exclude")
    assert cell(excluded, "exact_match").test.diff == 0 and not excluded.failed


@pytest.mark.slow
def test_max_error_rate_is_a_ceiling_on_the_candidate(tmp_path: Path) -> None:
    base = make_run(tmp_path, "b", outcome=always(True))
    errs: Outcome = lambda p, i, s: ("error", False, 0.0) if (i, s) in {(0, 0), (1, 1), (2, 2)} else ("ok", True, 0.1)
    cand = make_run(tmp_path, "c", outcome=errs)
    opts = {"error_score": "exclude"}
    assert compare(base, cand, max_error_rate=Threshold(0.05), **opts).ceilings[0].passed  # 3/120 = 2.5%
    r = compare(base, cand, max_error_rate=Threshold(0.02), **opts)
    assert r.ceilings[0].value == pytest.approx(0.025) and r.failed and not r.regressions


@pytest.mark.slow
def test_latency_ratio_gate(tmp_path: Path) -> None:
    lat = lambda scale: (lambda p, i, s: ("ok", True, scale * (0.1 + 0.002 * i + 0.001 * s)))
    base = make_run(tmp_path, "b", outcome=lat(1.0), prompts=60)
    slow = make_run(tmp_path, "c", outcome=lat(1.5), prompts=60)
    r = compare(base, slow, max_latency_ratio=1.2)
    c = cell(r, "latency_p95")
    assert c.gated and c.verdict == "regressed" and r.failed
    assert c.test.cand / c.test.base == pytest.approx(1.5)
    assert not compare(base, slow, max_latency_ratio=1.6).failed
    same = make_run(tmp_path, "c2", outcome=lat(1.0), prompts=60)
    assert not compare(base, same, max_latency_ratio=1.0).failed


def test_gate_on_a_scorer_not_in_the_spec(tmp_path: Path) -> None:
    base = make_run(tmp_path, "b", outcome=half_right, scoring=[])
    cand = make_run(tmp_path, "c", outcome=half_right, scoring=[])
    r = compare(base, cand, gates=(Gate("contains"),))
    assert [m.metric for m in r.metrics if m.gated] == ["contains"]


def test_unknown_metric_is_a_usage_error_listing_what_exists(tmp_path: Path) -> None:
    base = make_run(tmp_path, "b", outcome=half_right)
    cand = make_run(tmp_path, "c", outcome=half_right)
    with pytest.raises(UsageError, match="unknown metric 'acuracy'.*exact_match"):
        compare(base, cand, gates=(Gate("acuracy"),))


def test_nothing_to_gate_is_a_usage_error(tmp_path: Path) -> None:
    base = make_run(tmp_path, "b", outcome=half_right, scoring=[])
    cand = make_run(tmp_path, "c", outcome=half_right, scoring=[])
    with pytest.raises(UsageError, match="nothing to gate"):
        compare(base, cand)
    assert not compare(base, cand, max_error_rate=Threshold(0.1)).failed


def test_no_shared_point_is_bad_input(tmp_path: Path) -> None:
    base = make_run(tmp_path, "b", outcome=half_right, points=T3[:1])
    cand = make_run(tmp_path, "c", outcome=half_right, points=T3[1:2])
    with pytest.raises(RunDirError, match="share no sweep point"):
        compare(base, cand)


def test_a_run_without_rows_is_named_as_the_culprit(tmp_path: Path) -> None:
    """Regression: an empty base run was reported as 'share no sweep point' naming the candidate."""
    base = make_run(tmp_path, "b", outcome=half_right, prompts=0)
    cand = make_run(tmp_path, "c", outcome=half_right)
    with pytest.raises(RunDirError, match="no result rows") as info:
        compare(base, cand)
    assert str(info.value).startswith(str(base))


def test_bad_scoring_in_a_manifest_names_the_file(tmp_path: Path) -> None:
    base = make_run(tmp_path, "b", outcome=half_right, scoring=["exact_macth"])
    cand = make_run(tmp_path, "c", outcome=half_right, scoring=["exact_macth"])
    with pytest.raises(SpecError, match=r"manifest.json: spec.scoring\[0\]"):
        compare(base, cand)


def test_differing_scoring_lists_use_the_union(tmp_path: Path) -> None:
    base = make_run(tmp_path, "b", outcome=half_right, scoring=["exact_match"])
    cand = make_run(tmp_path, "c", outcome=half_right, scoring=["contains"])
    r = compare(base, cand)
    assert {m.metric for m in r.metrics if m.gated} == {"contains", "exact_match"}
    assert any("union" in n for n in r.notes)


def test_results_are_reproducible_with_the_same_seed(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    flips = rng.random((40, 3)) < 0.3
    base = make_run(tmp_path, "b", outcome=half_right)
    cand = make_run(tmp_path, "c", outcome=lambda p, i, s: ("ok", bool(flips[i, s]), 0.1))
    a, b = compare(base, cand, seed=3), compare(base, cand, seed=3)
    assert a.to_dict() == b.to_dict()


# --- CLI, JUnit, Markdown -------------------------------------------------------------------


@pytest.mark.slow
def test_cli_exit_codes_and_junit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = make_run(tmp_path, "b", outcome=always(True), points=T3)
    good = make_run(tmp_path, "good", outcome=always(True), points=T3)
    bad = make_run(tmp_path, "bad", outcome=lambda p, i, s: ("ok", not (p == 1 and i < 20), 0.1), points=T3)
    junit = tmp_path / "out" / "junit.xml"
    assert main(["compare", str(base), str(good), "--junit", str(junit), "--metric", "exact_match"]) == 0
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert len(cases) == 4 and suite.get("tests") == "4" and suite.get("failures") == "0"
    assert main(["compare", str(base), str(bad), "--junit", str(junit), "--max-error-rate", "5%"]) == 1
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    failed = [c for c in suite.findall("testcase") if c.find("failure") is not None]
    assert {c.get("name") for c in failed} == {"temperature=0.7", "all shared points"}
    assert all(c.get("classname") == "harness.compare.exact_match" for c in failed)
    assert suite.get("tests") == "5" and suite.get("failures") == "2"  # 4 cells + error-rate ceiling
    out = capsys.readouterr().out
    assert "REGRESSED exact_match @ temperature=0.7" in out and out.strip().endswith("regressed cell(s)")


@pytest.mark.slow
def test_cli_max_drop_binds_to_the_metric_before_it(tmp_path: Path) -> None:
    base = make_run(tmp_path, "b", outcome=always(True), prompts=200, samples=1)
    cand = make_run(tmp_path, "c", outcome=lambda p, i, s: ("ok", i >= 10, 0.1), prompts=200, samples=1)
    args = ["compare", str(base), str(cand)]
    assert main(args) == 1
    assert main(args + ["--metric", "exact_match", "--max-drop", "0.06"]) == 0
    assert main(args + ["--max-drop", "6%"]) == 0  # default for every scorer metric
    assert main(args + ["--metric", "exact_match", "--max-drop", "0.06", "--metric", "contains"]) == 1


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--max-drop", "x"], "--max-drop: 'x' is not a number"),
        (["--metric", "acc"], "--metric: unknown metric 'acc'"),
        (["--alpha", "2"], "--alpha"),
        (["--metric", "exact_match", "--max-drop", "1", "--max-drop", "2"], "two --max-drop"),
    ],
)
def test_cli_bad_flags_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needle: str
) -> None:
    base = make_run(tmp_path, "b", outcome=half_right, prompts=5, samples=1)
    assert main(["compare", str(base), str(base), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0]


def test_cli_missing_run_dir_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = make_run(tmp_path, "b", outcome=half_right, prompts=5, samples=1)
    assert main(["compare", str(base), str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "not a run directory" in err


def test_markdown_and_json_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = make_run(tmp_path, "b", outcome=always(True), model="<script>alert(1)</script>|x")
    cand = make_run(tmp_path, "c", outcome=lambda p, i, s: ("ok", i >= 10, 0.1), model="m_*new*")
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    js = tmp_path / "r.json"
    assert main(["compare", str(base), str(cand), "--markdown", str(summary), "--json", str(js)]) == 1
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("earlier step\n")  # appended to the step summary
    assert "<script>" not in text and "&lt;script&gt;" in text and "\\|x" in text and "m\\_\\*new\\*" in text
    assert "❌" in text and "### Regressions" in text
    data = json.loads(js.read_text(encoding="utf-8"))
    assert data["failed"] is True and data["cells"][0]["verdict"] == "regressed"


def test_junit_survives_control_characters_in_names(tmp_path: Path) -> None:
    from harness.compare import render_junit

    base = make_run(tmp_path, "b", outcome=half_right, model="evil\x1b[31m\x00")
    r = compare(base, base)
    root = ET.fromstring(render_junit(r).split("\n", 1)[1])
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert "\x00" not in props["base_model"] and props["base_model"].startswith("evil")


# --- the CI recipe ------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_ci_sweep_is_a_valid_spec_on_the_local_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(ROOT / "sweeps" / "ci.yaml"), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["requests"] == plan["points"] * plan["prompts"] * plan["repeats"] <= 400


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT / "baselines" / "ci" / "manifest.json").exists(), reason="no committed baseline")
def test_committed_baseline_passes_against_itself(tmp_path: Path) -> None:
    junit = tmp_path / "j.xml"
    base = str(ROOT / "baselines" / "ci")
    assert main(["compare", base, base, "--max-error-rate", "2%", "--junit", str(junit)]) == 0
    run = load_run(base)
    assert run.spec["scoring"] and run.spec["target"].get("local") == "gemma-3-270m"
    assert ET.parse(junit).getroot().get("failures") == "0"
