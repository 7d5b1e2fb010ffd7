"""`harness report` and `harness summarize` on runs with several targets: side by side, front, cost."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
import pytest
from target_runs import target_rows, write_run

from harness.cli import main
from harness.report import build_report
from harness.report.figures import blocks

pytestmark = pytest.mark.slow  # each builds runs and a full report (seconds)

HOSTILE_TARGET = '<script>alert("t")</script>'
HOSTILE_MODEL = "<img src=x onerror=alert(1)>"
PRICES = {"fast": {"input_per_mtok": 1.0, "output_per_mtok": 4.0},
          HOSTILE_TARGET: {"input_per_mtok": 0.1, "output_per_mtok": 0.2}}


def _outcome(target: str, point: int, prompt: int, sample: int) -> tuple[str, bool, float]:
    """fast: right, quick, dear; the other: half right, slow, cheap, some errors."""
    if target == "fast":
        return "ok", True, 0.05 + 0.001 * prompt
    if prompt % 6 == 5 and sample == 1:
        return "error", False, 0.0
    return "ok", prompt % 2 == 0, 0.4 + 0.001 * prompt


def _run(tmp_path: Path, name: str = "duo", prices: dict | None = PRICES) -> Path:
    rows = target_rows(name, ["fast", HOSTILE_TARGET], _outcome)
    for row in rows:
        if row["target"] == HOSTILE_TARGET:
            row["model"] = HOSTILE_MODEL
    return write_run(tmp_path, name, rows, prices=prices)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("targets")
    return build_report([_run(root)], root / "report")


def test_targets_side_by_side_with_front_and_cost(report) -> None:
    names = {p.name for p in report.files}
    assert {"index.html", "report.md", "summary.csv", "targets.png", "panels_temperature.png"} <= names
    page = (report.out_dir / "index.html").read_text()
    section = page.split("<h2>Targets</h2>")[1].split("<h2>")[0]
    assert "cost / correct answer" in section and "cells on the front" in section
    # fast is right everywhere and quick; the other is cheaper: every cell lies on the 3-way front
    text = html.unescape(section)
    assert "On the quality / latency / cost front across targets:" in text
    assert "fast: 2 of 2 cells" in text and f"{HOSTILE_TARGET}: 2 of 2 cells" in text
    # cost per request of fast: 100 prompt tokens × 1 + 10 completion tokens × 4, per 1M
    assert "1.40e-04" in section
    summary = pd.read_csv(report.out_dir / "summary.csv")
    fast = summary[summary["target"] == "fast"]
    assert fast["cost_per_request"].tolist() == pytest.approx([140 / 1e6] * 2)
    assert fast["exact_match_cost_per_correct"].tolist() == pytest.approx([140 / 1e6] * 2)
    assert len(summary) == 4 and set(summary["target"]) == {"fast", HOSTILE_TARGET}


def test_target_and_model_names_are_escaped_everywhere(report) -> None:
    page = (report.out_dir / "index.html").read_text()
    assert "<script" not in page.lower() and "<img src=x" not in page
    assert html.escape(HOSTILE_TARGET, quote=True) in page and html.escape(HOSTILE_MODEL, quote=True) in page
    text = (report.out_dir / "report.md").read_text()
    assert "<script" not in text and "<img" not in text
    assert "## Targets" in text and "&lt;script&gt;" in text


def test_panels_are_one_block_per_target_on_shared_axes(report) -> None:
    summary = report.summary
    titles = [title for title, _ in blocks(summary, "target")]
    assert titles == [f"target {HOSTILE_TARGET}", "target fast"]
    assert [len(part) for _, part in blocks(summary, "target")] == [2, 2]
    assert [title for title, _ in blocks(summary)] == ["run 1: duo"]


def test_without_prices_the_front_is_quality_and_latency(tmp_path: Path) -> None:
    rep = build_report([_run(tmp_path, prices={})], tmp_path / "r")
    page = html.unescape((rep.out_dir / "index.html").read_text())
    assert "On the quality / latency front across targets" in page
    assert "cost / request" not in page and "cost_total" not in rep.summary
    # fast dominates: quicker and right everywhere; the other target has no cell on the front
    assert f"{HOSTILE_TARGET}: 0 of 2 cells" in page


def test_two_runs_with_targets(tmp_path: Path) -> None:
    rep = build_report([_run(tmp_path, "a"), _run(tmp_path, "b")], tmp_path / "r")
    assert len(rep.summary) == 8
    section = html.unescape((rep.out_dir / "index.html").read_text().split("<h2>Targets</h2>")[1].split("<h2>")[0])
    assert "fast (a): 2 of 2 cells" in section and "fast (b): 2 of 2 cells" in section


def test_a_single_target_report_has_no_targets_section(tmp_path: Path) -> None:
    run = write_run(tmp_path, "solo", target_rows("solo", ["only"], lambda t, p, i, s: ("ok", i % (p + 2) == 0, 0.1 + p)))
    rep = build_report([run], tmp_path / "r")
    assert "<h2>Targets</h2>" not in (rep.out_dir / "index.html").read_text()
    assert "targets.png" not in {p.name for p in rep.files} and "pareto.png" in {p.name for p in rep.files}


def test_only_targets_swept_puts_them_on_the_x_axis(tmp_path: Path) -> None:
    rows = target_rows("t", ["fast", "slow"], _outcome, points=({"temperature": 0.5},))
    rep = build_report([write_run(tmp_path, "t", rows)], tmp_path / "r")
    assert "panels_target.png" in {p.name for p in rep.files}


def test_cli_summarize_shows_the_target_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path)
    assert main(["summarize", str(run)]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header[:2] == ["target", "temperature"] and "cost_per_request" in header
    assert "\x1b" not in out and "fast" in out


def test_the_same_quality_everywhere_still_compares_targets(tmp_path: Path) -> None:
    """Two endpoints of one model: quality ties, so latency and cost decide the front."""
    rows = target_rows("same", ["quick", "slow"], lambda t, p, i, s: ("ok", i % 2 == 0, 0.1 if t == "quick" else 0.3))
    prices = {"quick": {"input_per_mtok": 2.0, "output_per_mtok": 2.0}, "slow": {"input_per_mtok": 1.0, "output_per_mtok": 1.0}}
    rep = build_report([write_run(tmp_path, "same", rows, prices=prices)], tmp_path / "r")
    assert "targets.png" in {p.name for p in rep.files}
    page = html.unescape((rep.out_dir / "index.html").read_text())
    assert "quick: 2 of 2 cells; slow: 2 of 2 cells" in page  # quicker but dearer: both on the front
    assert "exact_match (mean score)" in page.split("<h2>Targets</h2>")[1].split("<h2>")[0]
    rep = build_report([write_run(tmp_path, "free", rows)], tmp_path / "r2")
    page = html.unescape((rep.out_dir / "index.html").read_text())
    assert "quick: 2 of 2 cells; slow: 0 of 2 cells" in page  # no prices: quick wins on latency alone
