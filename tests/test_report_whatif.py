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
    cell_text = f"{row['affected']:.1%} [{row['affected_lo']:.1%}, {row['affected_hi']:.1%}] {row['verdict']}"
    assert cell_text in html  # the same figures as `harness whatif`
    assert cell_text.replace("[", "\\[").replace("]", "\\]") in md
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
