"""The report's "what truncation would change" section: `harness whatif` on the reported runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness.cli import main
from harness.report import ReportOptions, build_report, counterfactual
from harness.rundir import read_results
from harness.server.app import ServerThread, create_app
from harness.server.ngram import default_model
from harness.whatif import DEFAULT_SETTINGS, as_run, whatif_frame

pytestmark = pytest.mark.slow  # each test runs a small sweep


@pytest.fixture(scope="module")
def base_url() -> Any:
    with ServerThread(create_app({"harness/ngram": default_model()})) as server:
        yield server.base_url


def _run(tmp: Path, base_url: str, top_logprobs: int | None, name: str = "w") -> Path:
    data = tmp / "prompts.jsonl"
    data.write_text("".join(json.dumps({"id": f"p{i}", "prompt": p}) + "\n" for i, p in enumerate(
        ["Tell me about the sea.", "Describe a market at <b>midnight</b>.", "Once upon a time"])))
    params: dict[str, Any] = {"max_tokens": 16, "temperature": 1.0}
    if top_logprobs is not None:
        params |= {"logprobs": True, "top_logprobs": top_logprobs}
    spec = {"name": name, "target": {"base_url": base_url, "model": "harness/ngram"}, "dataset": {"path": str(data)},
            "params": params, "sweep": {"grid": {"top_p": [1.0, 0.9]}, "repeats": 2}}
    (tmp / f"{name}.yaml").write_text(json.dumps(spec))
    out = tmp / f"runs-{name}"
    assert main(["run", str(tmp / f"{name}.yaml"), "--out", str(out), "--quiet"]) == 0
    return next(out.iterdir())


def test_section_matches_harness_whatif_and_is_escaped(tmp_path: Path, base_url: str) -> None:
    run_dir = _run(tmp_path, base_url, top_logprobs=10)
    report = build_report([run_dir], tmp_path / "rep")
    html = (tmp_path / "rep" / "index.html").read_text()
    md = (tmp_path / "rep" / "report.md").read_text()
    assert '<div id="whatif">' in html and "## What truncation would change" in md
    expected = whatif_frame(read_results(run_dir), as_run(DEFAULT_SETTINGS))
    row = expected[(expected["setting"] == "top_k 5") & (expected["top_p"] == 1.0)].iloc[0]
    share, interval = f"{row['affected']:.1%}", f"[{row['affected_lo']:.1%}, {row['affected_hi']:.1%}]"
    verdict = f"<strong>{row['verdict']}</strong>" if row["verdict"] == "run" else row["verdict"]
    assert f'{share} {verdict}<span class="muted iv">{interval}</span>' in html  # the same figures as `harness whatif`
    cell_text = f"{share} {interval} {row['verdict']}"
    assert cell_text.replace("[", "\\[").replace("]", "\\]") in md
    assert "<code>harness whatif RUN_DIR</code>" in html and "`" not in html.split('<div id="whatif">')[1]
    assert "<b>" not in html.split('<div id="whatif">')[1].split('<h2>Runs</h2>')[0]
    assert report.files


def test_no_section_without_logprobs_and_a_note_when_too_few(tmp_path: Path, base_url: str) -> None:
    plain = _run(tmp_path, base_url, top_logprobs=None, name="plain")
    build_report([plain], tmp_path / "a")
    assert 'id="whatif"' not in (tmp_path / "a" / "index.html").read_text()
    few = _run(tmp_path, base_url, top_logprobs=3, name="few")
    build_report([few], tmp_path / "b")
    html = (tmp_path / "b" / "index.html").read_text()
    assert 'id="whatif"' in html and "needs 5 or more" in html
    build_report([few], tmp_path / "c", ReportOptions(whatif=False))
    assert 'id="whatif"' not in (tmp_path / "c" / "index.html").read_text()


def test_rows_read_per_cell_are_bounded(tmp_path: Path, base_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = _run(tmp_path, base_url, top_logprobs=5)
    monkeypatch.setattr(counterfactual, "MAX_ROWS_PER_CELL", 2)
    seen: list[pd.DataFrame] = []
    real = counterfactual.whatif_frame
    monkeypatch.setattr(counterfactual, "whatif_frame", lambda rows, *a, **k: seen.append(rows) or real(rows, *a, **k))
    section = counterfactual.whatif_for_runs([(run_dir, "x")])
    assert section is not None and section.frame is not None
    assert seen[0].groupby("cell_id").size().max() == 2  # 3 prompts x 2 repeats per cell, 2 read
    assert set(seen[0]["run_id"]) == {"x"}


def test_cli_flag_turns_it_off(tmp_path: Path, base_url: str) -> None:
    run_dir = _run(tmp_path, base_url, top_logprobs=5)
    assert main(["report", str(run_dir), "--out", str(tmp_path / "r"), "--no-whatif"]) == 0
    assert 'id="whatif"' not in (tmp_path / "r" / "index.html").read_text()


def test_a_run_with_too_few_top_logprobs_is_left_out_by_name(tmp_path: Path, base_url: str) -> None:
    enough = _run(tmp_path, base_url, top_logprobs=5, name="enough")
    few = _run(tmp_path, base_url, top_logprobs=3, name="few")
    section = counterfactual.whatif_for_runs([(enough, "enough"), (few, "few")])
    assert section is not None and section.frame is not None
    assert set(section.frame["run_id"]) == {"enough"}  # not estimated as if it had 5 candidates
    assert "Left out: few (fewer than 5 top_logprobs per token)." in section.note


def _frame(runs: dict[str, int], tail: bool = False, penalties: bool = False) -> pd.DataFrame:
    """A whatif frame: `cells` cells per run, each with the as-run row and two settings."""
    rows = []
    for run, cells in runs.items():
        for c in range(cells):
            for setting, affected in (("as run", 0.0), ("top_p 0.9", 0.2 * c), ("min_p 0.1", 0.0)):
                rows.append({"run_id": run, "cell_id": f"c{c}", "temperature": 0.8, "top_p": 1.0, "top_k": -1,
                             "min_p": 0.0, "penalties": penalties, "setting": setting,
                             "hyp_top_p": 0.9 if setting == "top_p 0.9" else 1.0, "hyp_top_k": -1,
                             "hyp_min_p": 0.1 if setting == "min_p 0.1" else 0.0, "positions": 40, "affected_basis": "sampled",
                             "affected": affected, "affected_lo": affected / 2, "affected_hi": affected * 1.5,
                             "entropy": 1.0, "entropy_lo": 0.9, "entropy_hi": 1.1, "entropy_before": 1.0,
                             "tail_decides": tail and setting == "top_p 0.9",
                             "verdict": "run" if affected > 0.01 else "skip"})
    return pd.DataFrame(rows)


def test_advice_is_one_line_per_setting_and_run_not_a_repeat_of_the_table() -> None:
    lines = counterfactual.advice_lines(_frame({"a": 3}))
    assert lines == ["top_p 0.9: worth running in 2 of 3 cells, skip in 1, unsure in 0 (changes 0.0%-40.0% of tokens)",
                     "min_p 0.1: worth running in 0 of 3 cells, skip in 3, unsure in 0 (changes 0.0%-0.0% of tokens)"]
    two = counterfactual.advice_lines(_frame({"a": 3, "b": 2}))
    assert len(two) == 4 and two[0].startswith("a: top_p 0.9: worth running in 2 of 3") \
        and two[2].startswith("b: top_p 0.9: worth running in 1 of 2")
    single = counterfactual.advice_lines(_frame({"a": 1}))  # one cell: the per-setting lines of `harness whatif`
    assert single[0] == "top_p 0.9 would change 0.0% [0.0%, 0.0%] of tokens at temperature=0.8: skip (below 1.0%)"
    many = counterfactual.advice_lines(_frame({f"r{i}": 2 for i in range(15)}))  # 30 lines
    assert len(many) == counterfactual.MAX_ADVICE_LINES
    assert many[-1] == "… and 11 more lines: harness whatif RUN_DIR"


def test_table_marks_verdicts_the_tail_decides_and_cells_with_penalties() -> None:
    header, rows = counterfactual.table_cells(_frame({"a": 2}, tail=True, penalties=True))
    assert header == ["cell", "tokens", "top_p 0.9", "min_p 0.1"]
    assert rows[1] == ["temperature=0.8 (penalties)", "40", "20.0% [10.0%, 30.0%] run (tail)", "0.0% [0.0%, 0.0%] skip"]
    html = counterfactual.html_section(counterfactual.WhatIf(_frame({"a": 2}, tail=True), [], "n"))
    assert '<td>20.0% <strong>run</strong> <span class="muted">(tail)</span><span class="muted iv">[10.0%, 30.0%]</span></td>' in html
    varied = _frame({"a": 2})
    varied.loc[varied["cell_id"] == "c1", "min_p"] = 0.2  # only the parameters that differ between cells
    assert [r[0] for r in counterfactual.table_cells(varied)[1]] == ["temperature=0.8, min_p=0", "temperature=0.8, min_p=0.2"]
