"""Intervals on every summarized number; TPOT and inter-token latency; safe CSV and HTML text."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from test_report_support import row, tok, write_run

from harness.analysis.bootstrap import bootstrap_quantiles, cluster_weights, weighted_ratios
from harness.analysis.metrics import INTERVAL_METRICS, interval_columns, summarize
from harness.analysis.scoring import resolve_scorers
from harness.cli import main
from harness.report import build_report
from harness.textsafe import csv_cell, csv_safe_frame, visible_controls

WORDS = ["the", "sea", "is", "wide", "and", "deep", "blue", "under", "a", "grey", "sky", "with", "gulls"]


def _varied_rows(prompts: int = 12, repeats: int = 4, streamed: bool = True) -> list[dict]:
    rng = np.random.default_rng(3)
    rows = []
    for p in range(prompts):
        first = ""
        for s in range(repeats):
            n = int(rng.integers(3, 9))
            words = " ".join(rng.choice(WORDS, n))
            if p % 3 == 0:  # some prompts repeat themselves: unique_share varies by prompt
                first = first or words
                words, n = first, len(first.split())
            gaps = list(rng.uniform(0.01, 0.03, n - 1)) if streamed else None
            lp = -float(rng.uniform(0.05, 2.0))
            rows.append(row("c1", f"p{p}", s, temperature=1.0, content=words, reference=words if s else "x",
                            latency_s=float(rng.uniform(0.2, 0.6)), completion_tokens=n,
                            ttft_s=float(rng.uniform(0.05, 0.1)) if streamed else None, inter_token_s=gaps,
                            logprobs=[tok("a", lp, [("a", lp), ("b", -2.5), ("c", -3.0)])] * n))
    return rows


def test_every_summarized_number_has_an_interval_around_it():
    rows = pd.DataFrame(_varied_rows())
    s = summarize(rows, resolve_scorers(["exact_match"])).iloc[0]
    for metric in INTERVAL_METRICS + ("exact_match_mean",):
        lo, hi = interval_columns(metric)
        assert not math.isnan(s[metric]), metric
        assert s[lo] <= s[metric] + 1e-9 and s[metric] <= s[hi] + 1e-9, metric
    spread = [m for m in INTERVAL_METRICS if s[interval_columns(m)[1]] > s[interval_columns(m)[0]]]
    assert set(spread) >= {"latency_p50", "latency_p95", "ttft_p50", "tpot_p50", "itl_mean", "tokens_per_s",
                           "entropy_mean", "perplexity", "distinct_2", "unique_share", "pairwise_similarity",
                           "completion_tokens_mean", "logprob_mean"}
    assert s["perplexity_lo"] == pytest.approx(math.exp(-s["logprob_hi"]))


def test_tpot_and_itl_from_gaps_and_from_ttft():
    rows = [row("c1", "p1", s, latency_s=1.0, ttft_s=0.2, completion_tokens=5, inter_token_s=[0.1, 0.3, 0.2, 0.2])
            for s in range(2)]
    rows.append(row("c1", "p2", 0, latency_s=1.1, ttft_s=0.3, completion_tokens=5, inter_token_s=None))
    s = summarize(pd.DataFrame(rows)).iloc[0]
    assert s["itl_mean"] == pytest.approx(0.2)  # 8 gaps pooled; the row without gaps adds none
    # per request: 0.2, 0.2 (mean gap), (1.1 - 0.3) / 4 = 0.2 → every percentile 0.2
    assert s["tpot_p50"] == pytest.approx(0.2) and s["tpot_p95"] == pytest.approx(0.2)
    unstreamed = summarize(pd.DataFrame([row("c1", "p1", 0)])).iloc[0]
    assert math.isnan(unstreamed["tpot_p50"]) and math.isnan(unstreamed["itl_mean"])


@pytest.mark.slow
def test_quantile_bootstrap_matches_a_plain_resampling_loop():
    rng = np.random.default_rng(0)
    values = rng.lognormal(0, 0.5, 600)
    clusters = np.repeat(np.arange(60), 10)
    fast = bootstrap_quantiles(values, clusters, (0.5, 0.95), resamples=2000, rng=np.random.default_rng(1))
    slow = []
    for _ in range(2000):
        pick = rng.integers(0, 60, 60)
        slow.append(np.quantile(np.concatenate([values[clusters == c] for c in pick]), [0.5, 0.95]))
    lo, hi = np.quantile(np.array(slow), [0.025, 0.975], axis=0)
    for j, iv in enumerate(fast):
        assert iv.mean == pytest.approx(np.quantile(values, (0.5, 0.95)[j]))
        assert iv.lo == pytest.approx(lo[j], rel=0.03) and iv.hi == pytest.approx(hi[j], rel=0.03)


def test_weighted_ratios_agree_with_direct_resampling():
    rng = np.random.default_rng(2)
    sums = rng.uniform(0, 5, (30, 2))
    counts = rng.integers(1, 4, (30, 2)).astype(float)
    weights = cluster_weights(30, 500, np.random.default_rng(4))
    ivs = weighted_ratios(sums, counts, weights)
    draws = np.random.default_rng(4).integers(0, 30, (500, 30))
    for k in range(2):
        direct = sums[draws, k].sum(axis=1) / counts[draws, k].sum(axis=1)
        assert ivs[k].mean == pytest.approx(sums[:, k].sum() / counts[:, k].sum())
        assert ivs[k].lo == pytest.approx(np.quantile(direct, 0.025))
        assert ivs[k].hi == pytest.approx(np.quantile(direct, 0.975))


HOSTILE_CELLS = ["=HYPERLINK(\"http://evil\",\"x\")", "+1+2", "-2+3", "@SUM(A1)", "\tx", "\rx"]


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised():
    assert [csv_cell(v) for v in HOSTILE_CELLS] == ["'" + v for v in HOSTILE_CELLS]
    assert csv_cell("Paris") == "Paris" and csv_cell(-0.5) == -0.5
    frame = csv_safe_frame(pd.DataFrame({"model": HOSTILE_CELLS, "score": [-1.0] * 6, "=bad": [1] * 6}))
    assert frame["model"].str.startswith("'").all() and (frame["score"] == -1.0).all()
    assert list(frame.columns) == ["model", "score", "'=bad"]


def test_summarize_csv_and_report_csv_are_safe_with_hostile_names(tmp_path, capsys):
    rows = [row(f"c{t}", f"p{p}", 0, temperature=t, point={"temperature": t}, model='=HYPERLINK("http://evil")',
                run_id="=cmd|' /C calc'!A0") for t in (0.0, 1.0) for p in range(2)]
    run = write_run(tmp_path / "r", rows, run_id="=cmd|' /C calc'!A0")
    assert main(["summarize", str(run), "--csv", str(tmp_path / "s.csv")]) == 0
    build_report([run], tmp_path / "out")
    for path in (tmp_path / "s.csv", tmp_path / "out" / "summary.csv"):
        text = path.read_text()
        for line in text.splitlines()[1:]:
            cells = [c.strip('"') for c in line.split(",")]
            assert not any(c[:1] in ("=", "+", "@") for c in cells), line
        assert "'=HYPERLINK" in text and "'=cmd" in text


@pytest.mark.slow
def test_control_characters_are_visible_in_html_and_markdown(tmp_path):
    nasty = "ok\x00then\x1b[2Jgone\x07\x7f"
    rows = [row(f"c{t}", f"p{p}", 0, temperature=t, point={"temperature": t}, content=nasty,
                error_message=None, model="m\x1b]0;title\x07") for t in (0.0, 1.0) for p in range(2)]
    rows[0].update(status="error", content=None, error_type="http_500", error_message="bad\x00\x1b[31m")
    run = write_run(tmp_path / "r", rows)
    build_report([run], tmp_path / "out")
    for name in ("index.html", "report.md"):
        text = (tmp_path / "out" / name).read_text()
        assert not any(c in text for c in "\x00\x1b\x07\x7f"), name
    page = (tmp_path / "out" / "index.html").read_text()
    assert "ok\\x00then\\x1b[2Jgone\\x07\\x7f" in page and "bad\\x00\\x1b[31m" in page
    assert visible_controls("a\nb\tc\x9b") == "a\nb\tc\\x9b"


def test_distinct_interval_is_the_delete_one_prompt_jackknife():
    rows = pd.DataFrame(_varied_rows(prompts=6, repeats=3))
    s = summarize(rows).iloc[0]

    def distinct(frame: pd.DataFrame, n: int) -> float:
        words = [t.lower().split() for t in frame["content"]]
        grams = [g for w in words for g in (w if n == 1 else list(itertools.pairwise(w)))]
        return len(set(grams)) / len(grams)

    prompts = sorted(rows["prompt_id"].unique())
    for n in (1, 2):
        loo = np.array([distinct(rows[rows["prompt_id"] != p], n) for p in prompts])
        se = math.sqrt((len(loo) - 1) / len(loo) * float(((loo - loo.mean()) ** 2).sum()))
        assert s[f"distinct_{n}"] == pytest.approx(distinct(rows, n))
        assert s[f"distinct_{n}_lo"] == pytest.approx(max(0.0, s[f"distinct_{n}"] - 1.96 * se))
        assert s[f"distinct_{n}_hi"] == pytest.approx(min(1.0, s[f"distinct_{n}"] + 1.96 * se))


def test_report_reads_inter_token_gaps_from_the_run_directory(tmp_path):
    rows = [row(f"c{t}", f"p{p}", 0, temperature=t, point={"temperature": t}, latency_s=1.0, ttft_s=0.2,
                completion_tokens=4, inter_token_s=[0.1 * (1 + t)] * 3) for t in (0.0, 1.0) for p in range(3)]
    report = build_report([write_run(tmp_path / "r", rows)], tmp_path / "out")
    assert report.summary["itl_mean"].tolist() == pytest.approx([0.1, 0.2])
    assert report.summary["tpot_p50"].tolist() == pytest.approx([0.1, 0.2])
