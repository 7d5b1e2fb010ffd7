"""compare's outputs agree with themselves, and inter-token latency can be gated."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from harness.cli import main
from harness.compare import CompareOptions, compare_runs, render_markdown, render_text
from harness.compare.summary import summary_cell
from harness.rundir import load_run
from harness.rundir.records import rows_to_table

POINTS = [{"temperature": t} for t in (0.0, 0.5, 1.0)]


def _write(root: Path, name: str, rows: list[dict[str, Any]], model: str = "m") -> Path:
    run_dir = root / name
    (run_dir / "results").mkdir(parents=True)
    for r in rows:
        r.update(run_id=name, model=model)
    pq.write_table(rows_to_table(rows), run_dir / "results" / "part-0.parquet")
    manifest = {"run_id": name, "spec": {"name": name, "scoring": ["exact_match"]},
                "target": {"base_url": "http://127.0.0.1:1/v1", "model": model}, "status": "completed"}
    (run_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return run_dir


def _rows(right, prompts: int = 60, gap: float = 0.01, **extra: Any) -> list[dict[str, Any]]:
    rows = []
    for pi, point in enumerate(POINTS):
        pj = json.dumps(point, sort_keys=True, separators=(",", ":"))
        for i in range(prompts):
            ok = right(pi, i)
            rows.append({"request_id": f"{pi}-{i}", "cell_id": f"c{pi}", "prompt_id": f"p{i:03d}", "sample": 0,
                         "temperature": point["temperature"], "status": "ok", "attempts": 1,
                         "latency_s": 0.1 + 0.001 * i, "content": f"A{i}" if ok else "wrong",
                         "reference": f"A{i}", "point_json": pj, "ttft_s": 0.02, "completion_tokens": 6,
                         "inter_token_s": [gap * (1 + 0.01 * ((i + k) % 7)) for k in range(5)], **extra})
    return rows


@pytest.mark.slow
def test_each_line_shows_the_cell_that_decided_its_verdict(tmp_path: Path) -> None:
    # cell 0 loses half its prompts while cells 1 and 2 gain: pooled, the candidate is better
    base = _write(tmp_path, "b", _rows(lambda p, i: p == 0 or i >= 30))
    cand = _write(tmp_path, "c", _rows(lambda p, i: p != 0 or i < 30))
    result = compare_runs(load_run(base), load_run(cand), CompareOptions())
    summary = next(m for m in result.metrics if m.metric == "exact_match")
    assert summary.verdict == "regressed" and summary.point != "*"
    pooled = next(c for c in result.cells if c.metric == "exact_match" and c.point == "*")
    assert pooled.test.diff > 0  # the pooled row alone would say "better"
    deciding = summary_cell(result, "exact_match")
    assert deciding is not None and deciding.verdict == "regressed" and deciding.test.diff == pytest.approx(-0.5)
    text = render_text(result)
    line = next(ln for ln in text.splitlines() if ln.startswith("exact_match "))
    assert "regressed" in line and deciding.label in line and "-0.5" in line and "+0.1667" not in line
    assert "p_worse(adj)" in text.splitlines()[1] and "p_better(adj)" in text.splitlines()[1]
    markdown = render_markdown(result)
    row = next(ln for ln in markdown.splitlines() if ln.startswith("| exact\\_match ↑"))
    assert "regressed" in row and "| -0.5 |" in row and "| 1 | 0.5 |" in row
    assert "| p worse (adj.) | p better (adj.) |" in markdown


@pytest.mark.slow
def test_tpot_and_ttft_are_compared_and_tpot_can_be_gated(tmp_path: Path, capsys) -> None:
    base = _write(tmp_path, "b", _rows(lambda p, i: True, gap=0.010))
    slow = _write(tmp_path, "c", _rows(lambda p, i: True, gap=0.016))
    result = compare_runs(load_run(base), load_run(slow), CompareOptions(max_tpot_ratio=1.2))
    tpot = summary_cell(result, "tpot_p95")
    assert tpot is not None and tpot.gated and tpot.verdict == "regressed" and result.failed
    assert tpot.test.cand / tpot.test.base == pytest.approx(1.6, rel=0.01)
    assert {m.metric for m in result.metrics} >= {"ttft_p95", "tpot_p95", "latency_p95"}
    assert not compare_runs(load_run(base), load_run(slow), CompareOptions(max_tpot_ratio=1.7)).failed
    assert main(["compare", str(base), str(slow), "--max-tpot-ratio", "1.2"]) == 1
    assert "REGRESSED tpot_p95" in capsys.readouterr().out
    assert main(["compare", str(base), str(slow), "--metric", "tpot_p95", "--max-drop", "70%"]) == 0
    assert main(["compare", str(base), str(slow), "--max-tpot-ratio", "0.5"]) == 2
    assert "--max-tpot-ratio" in capsys.readouterr().err


def test_unstreamed_runs_do_not_list_ttft_or_tpot(tmp_path: Path) -> None:
    rows = _rows(lambda p, i: True)
    for r in rows:
        r.update(ttft_s=None, inter_token_s=None)
    base = _write(tmp_path, "b", rows)
    cand = _write(tmp_path, "c", [dict(r) for r in rows])
    result = compare_runs(load_run(base), load_run(cand), CompareOptions())
    assert {m.metric for m in result.metrics} == {"exact_match", "error_rate", "latency_p95"}


@pytest.mark.slow
def test_hostile_model_names_are_escaped_in_markdown_and_terminal(tmp_path: Path) -> None:
    evil = "=HYPERLINK(\"http://x\")\x1b[31m|<b>\x00"
    base = _write(tmp_path, "b", _rows(lambda p, i: True), model=evil)
    cand = _write(tmp_path, "c", _rows(lambda p, i: True), model=evil)
    result = compare_runs(load_run(base), load_run(cand), CompareOptions())
    markdown = render_markdown(result)
    assert "\x1b" not in markdown and "\x00" not in markdown and "<b>" not in markdown
    assert "\\x1b" in markdown and "&lt;b&gt;" in markdown
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", render_text(result))
