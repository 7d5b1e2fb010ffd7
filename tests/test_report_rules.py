"""The report's reading rules: constant metrics as text, shared axes, samples across repeats,
a headline that explains an all-error run, "off" values, readable ticks, the trade-off rule."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pandas as pd
import pytest
from test_report_support import row, tok, write_run

from harness.analysis.metrics import best_tradeoff
from harness.report import ReportOptions, build_report
from harness.report import figures as figs


def _rows(run_id: str = "run-a", temps: tuple[float, ...] = (0.0, 0.7, 1.4), prompts: int = 4, repeats: int = 3,
          slow: float = 1.0, **extra: Any) -> list[dict]:
    rows = []
    for t in temps:
        for p in range(prompts):
            for s in range(repeats):
                good = (p + s) % 3 != 0 or t == 0.0
                rows.append(row(f"t{t}", f"p{p}", s, run_id=run_id, temperature=t, point={"temperature": t},
                                content=f"Paris {p}-{s}" if t else "Paris", reference="Paris",
                                latency_s=slow * (0.1 + t + 0.01 * s), completion_tokens=2 + int(3 * t),
                                logprobs=[tok("P", -0.1 - t, [("P", -0.1), ("L", -2.5)])], **extra))
                if not good:
                    rows[-1]["content"] = "Lyon"
    return rows


@pytest.fixture
def captured(monkeypatch) -> list:
    """The matplotlib Figures the report draws (their PNG bytes are still written)."""
    seen: list = []
    render = figs._render

    def keep(fig):
        seen.append(fig)
        return render(fig)

    monkeypatch.setattr(figs, "_render", keep)
    return seen


@pytest.mark.slow
def test_constant_metric_is_a_line_of_text_not_a_chart(tmp_path, captured):
    run = write_run(tmp_path / "r", _rows(), scoring=["exact_match"], grid={"temperature": [0.0, 0.7, 1.4]})
    report = build_report([run], tmp_path / "out")
    assert (report.summary["error_rate"] == 0).all()
    page = (tmp_path / "out" / "index.html").read_text()
    md = (tmp_path / "out" / "report.md").read_text()
    assert re.search(r"Same in every cell \(not drawn\): [^<]*error rate 0", page)
    assert "Same in every cell (not drawn):" in md and "error rate 0" in md
    panels = captured[0]
    titles = [ax.get_title() for ax in panels.axes if ax.get_visible()]
    assert "error rate" not in titles and "exact_match (mean score)" in titles
    cells_header = page.split("<h2>Cells</h2>")[1].split("</thead>")[0].replace("<wbr>", "")
    assert "error rate" not in cells_header and "exact_match" in cells_header


@pytest.mark.slow
def test_two_runs_share_every_axis(tmp_path, captured):
    a = write_run(tmp_path / "a", _rows("run-a"), scoring=["exact_match"], run_id="run-a")
    b = write_run(tmp_path / "b", _rows("run-b", temps=(0.0, 0.7, 1.4, 2.0), slow=3.0), scoring=["exact_match"],
                  run_id="run-b")
    build_report([a, b], tmp_path / "out", ReportOptions(metrics=["exact_match", "latency_p50"]))
    panels, pareto = captured
    by_title: dict[str, list] = {}
    for ax in panels.axes:
        if ax.get_visible():
            by_title.setdefault(ax.get_title().split("\n")[0], []).append(ax)
    assert set(by_title) == {"exact_match (mean score)", "latency p50 (s)"}
    for axes in by_title.values():
        assert len(axes) == 2
        assert axes[0].get_ylim() == axes[1].get_ylim()
        assert axes[0].get_xlim() == axes[1].get_xlim()
        # the x ticks are the union of both runs' values, in the same places
        assert [t.get_text() for t in axes[0].get_xticklabels()] == [t.get_text() for t in axes[1].get_xticklabels()]
    latency = by_title["latency p50 (s)"]
    assert latency[0].get_ylim()[1] >= 3.0 * 2.0  # room for run-b's slow cells in run-a's panel too
    left, right = pareto.axes[:2]
    assert left.get_xlim() == right.get_xlim() and left.get_ylim() == right.get_ylim()
    assert (left.get_title(), right.get_title()) == ("run 1: run-a", "run 2: run-b")  # numbered as in the tables


@pytest.mark.slow
def test_samples_show_several_prompts_and_repeats(tmp_path):
    run = write_run(tmp_path / "r", _rows(), scoring=["exact_match"])
    build_report([run], tmp_path / "out", ReportOptions(samples_per_cell=6))
    page = (tmp_path / "out" / "index.html").read_text()
    samples = page.split("<h2>Sample outputs</h2>")[1]
    first_cell = samples.split("</details>")[1]  # the second cell (t=0.7): outputs differ by repeat
    assert "repeat 0" in first_cell and "repeat 1" in first_cell and "repeat 2" in first_cell
    prompts = set(re.findall(r"<td class=\"l\">(p\d)</td>", first_cell))
    assert len(prompts) == 2  # 6 outputs = 2 prompts × 3 repeats
    assert any(f"Paris {p[1]}-1" in first_cell for p in prompts)  # a repeat other than sample 0 is shown


def test_all_error_run_headline_says_why(tmp_path):
    rows = [row(f"t{t}", f"p{p}", 0, temperature=t, point={"temperature": t}, status="error", content=None,
                error_type="client_error", error_message="HTTP 404: The model 'x' does not exist",
                latency_s=None, completion_tokens=None) for t in (0.0, 1.0) for p in range(4)]
    run = write_run(tmp_path / "r", rows, scoring=["exact_match"])
    report = build_report([run], tmp_path / "out")
    page = (tmp_path / "out" / "index.html").read_text()
    md = (tmp_path / "out" / "report.md").read_text()
    for text in (page, md):
        assert "All 8 requests failed: there is nothing to measure." in text
        assert "8 × client_error: HTTP 404: The model" in text.replace("\\_", "_")
    assert not [p for p in report.files if p.suffix == ".png"]  # no empty charts


@pytest.mark.slow
def test_partial_errors_are_counted_with_their_causes(tmp_path):
    rows = _rows()
    for r in rows[:3]:
        r.update(status="error", content=None, error_type="http_500", error_message="boom")
    rows[3].update(status="error", content=None, error_type="timeout", error_message="read timed out")
    run = write_run(tmp_path / "r", rows, scoring=["exact_match"])
    build_report([run], tmp_path / "out")
    page = (tmp_path / "out" / "index.html").read_text()
    assert f"4 of {len(rows)} requests (11%) failed. Causes:" in page
    assert "3 × http_500: boom" in page and "1 × timeout: read timed out" in page


@pytest.mark.slow
def test_disabled_values_read_off_and_parameters_are_explained(tmp_path):
    rows = []
    for k in (-1, 40):
        for p in range(3):
            rows.append(row(f"k{k}", f"p{p}", 0, top_k=k, point={"top_k": k}, content="Paris" if k < 0 else "x"))
    run = write_run(tmp_path / "r", rows, scoring=["exact_match"])
    build_report([run], tmp_path / "out")
    page = (tmp_path / "out" / "index.html").read_text()
    assert "top_k (off, 40)" in page and "top_k=off" in page and "top_k=-1" not in page
    assert "keep only the k most likely tokens" in page
    cells = page.split("<h2>Cells</h2>")[1]
    assert '<td class="l">off</td>' in cells


@pytest.mark.slow
def test_many_x_values_keep_tick_labels_apart(tmp_path, captured):
    temps = tuple(round(0.1 * i, 1) for i in range(16))
    run = write_run(tmp_path / "r", _rows(temps=temps, prompts=2, repeats=1), scoring=["exact_match"])
    build_report([run], tmp_path / "out", ReportOptions(metrics=["exact_match", "latency_p50"]))
    for ax in captured[0].axes:
        if ax.get_visible():
            labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
            assert 2 <= len(labels) <= 6
            boxes = [t.get_window_extent() for t in ax.get_xticklabels() if t.get_text()]
            assert all(a.x1 < b.x0 for a, b in itertools.pairwise(boxes))  # no two labels overlap


def test_best_tradeoff_does_not_pick_a_cell_for_a_difference_inside_its_interval():
    s = pd.DataFrame({
        "run_id": ["r"] * 3,
        "q_mean": [0.75, 0.722, 0.11], "q_lo": [0.5, 0.47, 0.0], "q_hi": [0.92, 0.92, 0.22],
        "latency_p50": [0.089, 0.081, 0.265],
        "latency_p50_lo": [0.08, 0.075, 0.2], "latency_p50_hi": [0.1, 0.09, 0.3],
    })
    assert best_tradeoff(s, "q_mean", "latency_p50")["r"] == 0  # 8 ms inside both intervals: not a reason
    faster = s.assign(latency_p50=[0.089, 0.02, 0.265], latency_p50_lo=[0.08, 0.018, 0.2],
                      latency_p50_hi=[0.1, 0.022, 0.3])
    assert best_tradeoff(faster, "q_mean", "latency_p50")["r"] == 1  # clearly faster, quality tied
    worse = s.assign(q_mean=[0.75, 0.3, 0.11], q_hi=[0.92, 0.4, 0.22])
    assert best_tradeoff(worse.assign(latency_p50=[0.089, 0.01, 0.265]), "q_mean", "latency_p50")["r"] == 0


@pytest.mark.slow
def test_entropy_tail_is_flagged_per_cell_only_when_it_tells_cells_apart(tmp_path):
    def rows(loose_everywhere: bool) -> list[dict]:
        out = _rows(temps=(0.0, 1.4), prompts=2, repeats=1)
        for r in out:
            if loose_everywhere or r["temperature"] > 1:  # top-2 covers only ~40% of the mass
                r["logprobs"] = [tok("P", -1.5, [("P", -1.5), ("L", -1.6)])]
        return out

    for loose, name in ((False, "some"), (True, "all")):
        run = write_run(tmp_path / name, rows(loose), scoring=["exact_match"])
        build_report([run], tmp_path / f"out-{name}", ReportOptions(metrics=["entropy_mean"]))
        page = (tmp_path / f"out-{name}" / "index.html").read_text()
        cells = page.split("</thead>", 2)[-1]
        flagged = cells.count(">(tail)</span>")
        assert flagged == (0 if loose else 1), name
        assert ("Entropy is a loose lower bound in every cell" in page) is loose


@pytest.mark.slow
def test_long_categorical_tick_labels_do_not_overlap(tmp_path, captured):
    names = ["openai-gpt-4o-mini-2024", "local-gemma-3-270m-q4", "vllm-qwen3-32b-awq", "ollama-llama3.1-8b"]
    rows = [row(f"c{i}", f"p{p}", 0, target=name, point={"target": name}, latency_s=0.1 * (i + 1))
            for i, name in enumerate(names) for p in range(2)]
    run = write_run(tmp_path / "r", rows, scoring=["exact_match"])
    build_report([run], tmp_path / "out", ReportOptions(metrics=["latency_p50"]))
    panel = next(ax for ax in captured[0].axes if ax.get_visible())
    captured[0].canvas.draw()
    boxes = [t.get_window_extent() for t in panel.get_xticklabels() if t.get_text()]
    assert len(boxes) == 4
    assert all(a.x1 <= b.x0 or a.y1 <= b.y0 or b.y1 <= a.y0 for a, b in itertools.pairwise(boxes))


def test_a_direction_shares_the_labels_bracket():
    from harness.report.headline import with_note

    assert with_note("exact_match (mean score)", "higher is better") == "exact_match (mean score; higher is better)"
    assert with_note("latency p50 (s)", "lower is better") == "latency p50 (s; lower is better)"
    assert with_note("error rate", "lower is better") == "error rate (lower is better)"
    assert with_note("distinct-2", "") == "distinct-2"


def test_run_labels_number_runs_as_the_figures_do():
    from harness.report.figures import blocks
    from harness.report.shape import run_labels, run_legend

    assert run_labels(["only"]) == {} and run_legend({}) == ""
    labels = run_labels(["quickstart-20261202T144831Z-9d501c", "serve-x", "serve-x"])
    assert labels == {"quickstart-20261202T144831Z-9d501c": "run 1", "serve-x": "run 2"}
    assert run_legend(labels) == "run 1 = quickstart-20261202T144831Z-9d501c; run 2 = serve-x"
    summary = pd.DataFrame({"run_id": list(labels), "temperature": [0.0, 1.0]})
    assert [title.split(":")[0] for title, _ in blocks(summary)] == list(labels.values())


def test_headline_with_two_runs_names_the_run_of_each_cell():
    from harness.report.headline import _best, _changes
    from harness.report.shape import Metric

    summary = pd.DataFrame({"run_id": ["gemma", "gemma", "serve", "serve"], "temperature": [0.0, 1.6, 0.0, 1.6],
                            "exact_match_mean": [0.75, 0.5, 0.9, 0.1], "exact_match_lo": [0.4, 0.3, 0.7, 0.0],
                            "exact_match_hi": [1.0, 0.7, 1.0, 0.2]})
    quality = Metric("exact_match_mean", "exact_match (mean score)", "exact_match_lo", "exact_match_hi")
    best = _best(summary, ["temperature"], quality)
    assert "1 other cell of gemma lies inside the best cell's interval: they cannot be told apart from it " \
           "with these prompts." in best
    (change,) = _changes(summary, ["temperature"], [quality], quality)
    assert change.startswith("exact_match (mean score; higher is better): 0.1 [0, 0.2] at temperature=1.6 in serve "
                             "to 0.9 [0.7, 1] at temperature=0 in serve")
    single = summary[summary["run_id"] == "gemma"]
    (change,) = _changes(single, ["temperature"], [quality], quality)
    assert " in gemma" not in change and "at temperature=1.6 to 0.75 [0.4, 1] at temperature=0," in change
