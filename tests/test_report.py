"""`harness report` / `harness summarize`: files, escaping of hostile output, CLI behaviour."""

from __future__ import annotations

import base64
import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from test_report_support import row, tok, write_run

from harness.cli import main
from harness.report import ReportOptions, build_report
from harness.report.markdown import md

HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "</pre></details><iframe src=//evil.example></iframe>",
    "[click](javascript:alert(3)) | cell |",
    "<!-- comment --><style>body{display:none}</style>",
]


def sweep_rows(run_id: str = "run-a", hostile: bool = True) -> list[dict]:
    rows = []
    for t in (0.0, 0.7, 1.4):
        for m in (0.0, 0.1):
            cell = f"t{t}-m{m}"
            for p in range(4):
                for s in range(2):
                    k = len(rows)
                    good = (p + s + int(t * 10)) % 3 != 0
                    content = HOSTILE[k % len(HOSTILE)] if hostile and not good else ("Paris" if good else "Lyon")
                    rows.append(row(cell, f"p{p}", s, run_id=run_id, temperature=t, min_p=m,
                                    point={"temperature": t, "min_p": m}, content=content,
                                    reference="Paris" if p else "<b>Paris</b>", latency_s=0.1 + t + 0.01 * k,
                                    logprobs=[tok("P", -0.1 - t, [("P", -0.1), ("L", -2.5)])]))
    rows[3].update(status="error", content=None, error_type="http_500", error_message="<script>bad</script>")
    return rows


GRID = {"temperature": [0.0, 0.7, 1.4], "min_p": [0.0, 0.1]}


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("rep")
    run = write_run(base / "run-a", sweep_rows(), scoring=["exact_match", "contains"], grid=GRID)
    out = base / "out"
    build_report([run], out, ReportOptions(samples_per_cell=8))
    return out


@pytest.mark.slow
def test_writes_html_markdown_csv_and_pngs(report_dir):
    names = {p.name for p in report_dir.iterdir()}
    assert names == {"index.html", "report.md", "summary.csv", "pareto.png", "panels_temperature.png"}
    for png in report_dir.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = pd.read_csv(report_dir / "summary.csv")
    assert len(summary) == 6 and {"exact_match_mean", "exact_match_lo", "latency_p50"} <= set(summary.columns)


def test_html_is_self_contained_and_has_no_script_or_raw_model_output(report_dir):
    text = (report_dir / "index.html").read_text(encoding="utf-8")
    parser = Tags()
    parser.feed(text)
    tags = {t for t, _ in parser.tags}
    assert tags <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "div", "table", "thead",
                    "tbody", "tr", "th", "td", "figure", "img", "figcaption", "details", "summary", "pre", "span",
                    "code", "b", "ul", "li", "wbr"}  # wbr: where a long metric name may break
    assert "script" not in tags and "iframe" not in tags
    assert len([t for t, _ in parser.tags if t == "style"]) == 1  # ours only
    imgs = [a for t, a in parser.tags if t == "img"]
    assert imgs and all(a["src"].startswith("data:image/png;base64,") for a in imgs)
    assert base64.b64decode(imgs[0]["src"].split(",", 1)[1])[:4] == b"\x89PNG"
    for hostile in HOSTILE:  # every hostile output is on the page, and only in its escaped form
        assert html.escape(hostile, quote=True) in text
        if any(c in hostile for c in "<>\""):
            assert hostile not in text
    assert "<script" not in text.lower() and "<iframe" not in text.lower() and "<img src=x" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # shown, escaped
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in text
    assert "&lt;b&gt;Paris&lt;/b&gt;" in text  # references too
    assert "&lt;script&gt;bad&lt;/script&gt;" in text  # error messages too
    assert not re.search(r"(src|href)=\"(https?:)?//", text)
    assert text.count("<details") == 6


def test_markdown_links_existing_figures_and_escapes(report_dir):
    text = (report_dir / "report.md").read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links and all((report_dir / link).exists() for link in links)
    assert "<script" not in text and "alert" not in text and "Paris" not in text  # no model output at all
    assert md("a|b <i>x</i> [l](u)") == r"a\|b &lt;i&gt;x&lt;/i&gt; \[l\](u)"


@pytest.mark.slow
def test_two_runs_side_by_side(tmp_path):
    a = write_run(tmp_path / "a", sweep_rows("run-a", hostile=False), scoring=["exact_match"], run_id="run-a",
                  grid=GRID)
    b_rows = [dict(r, latency_s=r["latency_s"] * 2) for r in sweep_rows("run-b", hostile=False)]
    long_b = "run-b-20261202T145145Z-a588d9<i>&</i>"  # a long id, and markup that must stay text
    b = write_run(tmp_path / "b", b_rows, scoring=["exact_match"], run_id=long_b)
    report = build_report([a, b], tmp_path / "out", ReportOptions(metrics=["exact_match", "latency_p50"]))
    assert set(report.summary["run_id"]) == {"run-a", long_b} and len(report.summary) == 12
    page = (tmp_path / "out" / "index.html").read_text()
    assert "<i>" not in page and "run-b-20261202T145145Z-a588d9&lt;i&gt;&amp;&lt;/i&gt;" in page
    # the wide Cells table names the runs "run 1", "run 2" (as the figures do), with a legend above it
    cells = page.split("<h2>Cells</h2>")[1].split("<h2>")[0]
    legend = "Runs: run 1 = run-a; run 2 = run-b-20261202T145145Z-a588d9&lt;i&gt;&amp;&lt;/i&gt;."
    assert legend in cells and cells.index(legend) < cells.index("<table>")
    body = cells.split("<tbody>")[1]
    assert body.count('<td class="l"><span class="nw">run 1</span></td>') == 6  # never broken over two lines
    assert body.count('<td class="l"><span class="nw">run 2</span></td>') == 6
    assert "run-a" not in body and "run-b" not in body
    assert "<th>exact_<wbr>match (mean score)</th>" in cells  # a long metric name may break after "_"
    runs = page.split("<h2>Runs</h2>")[1]  # the Runs table is the legend too
    assert '<td class="l">run 2</td><td class="l">run-b-20261202T145145Z-a588d9&lt;i&gt;' in runs
    text = (tmp_path / "out" / "report.md").read_text()
    assert "Runs: run 1 = run-a; run 2 = run-b-20261202T145145Z-a588d9&lt;i&gt;&amp;&lt;/i&gt;." in text
    table = text.split("## Cells")[1].split("##")[0]
    assert table.count("| run 1 |") == 6 and table.count("| run 2 |") == 6 and "| run-a |" not in table
    assert {p.name for p in report.files if p.suffix == ".png"} == {"panels_temperature.png", "pareto.png"}


@pytest.mark.slow
def test_same_run_twice_gets_distinct_labels(tmp_path):
    a = write_run(tmp_path / "a", sweep_rows(hostile=False), scoring=["exact_match"])
    report = build_report([a, a], tmp_path / "out", ReportOptions(metrics=["exact_match"]))
    assert list(pd.unique(report.summary["run_id"])) == ["run-a", "run-a#2"]


def test_single_cell_no_scorers_and_empty_run(tmp_path):
    one = write_run(tmp_path / "one", [row("c", f"p{i}", 0) for i in range(3)])
    report = build_report([one], tmp_path / "out1")
    assert {p.name for p in report.files} == {"index.html", "report.md", "summary.csv"}  # one cell: no chart
    empty = tmp_path / "empty"
    (empty / "results").mkdir(parents=True)
    (empty / "manifest.json").write_text(json.dumps({"run_id": "e", "spec": {}}))
    report = build_report([empty], tmp_path / "out2")
    assert report.summary.empty and (tmp_path / "out2" / "index.html").exists()


@pytest.mark.slow
def test_cli_report_prints_out_dir_last(tmp_path, capsys):
    run = write_run(tmp_path / "r", sweep_rows(hostile=False), scoring=["exact_match"])
    assert main(["report", str(run), "--out", str(tmp_path / "o"), "--samples", "1", "--metric", "error_rate"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(tmp_path / "o")


def test_cli_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing" in err and "Traceback" not in err
    run = write_run(tmp_path / "r", sweep_rows(hostile=False), scoring=[{"type": "regex"}])
    assert main(["summarize", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "manifest.json" in err and "spec.scoring[0].pattern" in err
    assert main(["summarize", str(run), "--scoring", "{type: nope}"]) == 2
    assert "--scoring[0].type" in capsys.readouterr().err
    good = write_run(tmp_path / "g", sweep_rows(hostile=False), scoring=["exact_match"])
    assert main(["report", str(good), "--out", str(tmp_path / "o"), "--metric", "latency_p42"]) == 2
    err = capsys.readouterr().err
    assert "--metric: no column 'latency_p42'" in err and "latency_p95" in err


def test_cli_output_paths_that_are_files_or_missing_folders(tmp_path, capsys):
    """Regression: --out onto a file and --csv/--parquet into a missing folder raised tracebacks."""
    run = write_run(tmp_path / "r", sweep_rows(hostile=False), scoring=["exact_match"])
    taken = tmp_path / "taken.html"
    taken.write_text("keep me")
    assert main(["report", str(run), "--out", str(taken)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "taken.html" in err and "folder" in err and "Traceback" not in err
    assert taken.read_text() == "keep me"
    assert main(["summarize", str(run), "--csv", str(tmp_path / "new" / "dir" / "s.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "new" / "dir" / "s.csv")) == 6
    capsys.readouterr()
    assert main(["summarize", str(run), "--parquet", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("harness: error: --parquet:") and "folder" in err
    assert main(["summarize", str(run), "--csv", str(taken / "s.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--csv: cannot write" in err and "Traceback" not in err


def test_foreign_parquet_in_results_is_bad_input(tmp_path, capsys):
    """Regression: a Parquet file without the contract's columns read as all-null rows (compare crashed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = write_run(tmp_path / "g", sweep_rows(hostile=False), scoring=["exact_match"])
    run = write_run(tmp_path / "r", sweep_rows(hostile=False), scoring=["exact_match"])
    pq.write_table(pa.table({"x": [1, 2]}), run / "results" / "zz-foreign.parquet")
    for argv in (["summarize", str(run)], ["report", str(run), "--out", str(tmp_path / "o")],
                 ["compare", str(run), str(good)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "zz-foreign.parquet" in err and "no column run_id" in err


@pytest.mark.slow
def test_cli_summarize_table_csv_and_override(tmp_path, capsys):
    run = write_run(tmp_path / "r", sweep_rows(hostile=False), scoring=["exact_match"])
    assert main(["summarize", str(run)]) == 0
    out = capsys.readouterr().out
    assert "temperature" in out and "exact_match" in out and out.count("\n") == 7
    assert main(["summarize", str(run), "--csv", str(tmp_path / "s.csv"), "--scoring", "contains",
                 "{type: regex, pattern: '^Par', name: par}"]) == 0
    table = pd.read_csv(tmp_path / "s.csv")
    assert {"contains_mean", "par_mean"} <= set(table.columns) and "exact_match_mean" not in table.columns
    assert main(["summarize", str(run), "--parquet", str(tmp_path / "s.parquet")]) == 0
    assert len(pd.read_parquet(tmp_path / "s.parquet")) == 6


@pytest.mark.slow
def test_zipped_parameters_share_one_axis(tmp_path):
    rows = []
    for t in (0.7, 1.0):
        for fp in (0.0, 0.5, 1.0):
            point = {"temperature": t, "frequency_penalty": fp, "presence_penalty": fp}
            for p in range(3):
                rows.append(row(f"t{t}-f{fp}", f"p{p}", 0, point=point, content="a b a b" if fp else "a a a a",
                                latency_s=0.2 + fp))
    run = write_run(tmp_path / "z", rows, scoring=["exact_match"],
                    grid={"temperature": [0.7, 1.0], "frequency_penalty": [0], "presence_penalty": [0]})
    report = build_report([run], tmp_path / "out", ReportOptions(metrics=["repetition"]))
    names = {p.name for p in report.files}
    assert "panels_frequency_penalty.png" in names  # the axis with most values, zipped ones on it
    assert not any("presence_penalty" in n for n in names)
    page = (tmp_path / "out" / "index.html").read_text()
    assert "frequency_penalty = presence_penalty (0, 0.5, 1)" in page
    assert report.summary["repetition"].tolist() == pytest.approx([1 - 1 / 3, 1 - 2 / 3, 1 - 2 / 3] * 2)


def test_figure_file_names_from_hostile_parameter_names_stay_inside():
    from harness.report.figures import file_name

    assert file_name("lines", "../../etc/passwd") == "lines_etc-passwd.png"
    assert file_name("heatmap", "m", "a b<x>", "") == "heatmap_m_a-b-x_x.png"
