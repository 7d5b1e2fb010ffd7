"""Metrics on hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute
import pytest
from test_report_support import row, tok

from harness.analysis.metrics import best_tradeoff, logprob_row_stats, pareto_front, summarize, swept_params
from harness.analysis.scoring import resolve_scorers
from harness.rundir.records import rows_to_table

L = math.log


def frame(rows):
    """Rows through the real Arrow schema, as analysis code sees them."""
    return rows_to_table(rows).to_pandas()


def test_logprob_row_stats_entropy_tail_and_argmax_by_hand():
    rows = [
        [
            tok("a", L(0.5), [("a", L(0.5)), ("b", L(0.3))]),  # tail 0.2 < p_min 0.3: one tail token
            tok("z", L(0.1), [("x", L(0.6)), ("y", L(0.3)), ("z", L(0.1))]),  # no tail, not argmax
        ],
        [tok("q", L(0.4), [("q", L(0.4)), ("r", L(0.1))])],  # tail 0.5 = five tokens of 0.1
        None,  # no logprobs asked
        [tok("s", L(0.9), [])],  # logprob without top_logprobs
    ]
    stats = logprob_row_stats(pa.array(rows, type=rows_to_table([]).schema.field("logprobs").type))
    h1 = -(0.5 * L(0.5) + 0.3 * L(0.3)) - 0.2 * L(0.2)
    h2 = -(0.6 * L(0.6) + 0.3 * L(0.3) + 0.1 * L(0.1))
    h3 = -(0.4 * L(0.4) + 0.1 * L(0.1)) - 5 * 0.1 * L(0.1)
    r0, r1, r2, r3 = (stats.iloc[i] for i in range(4))
    assert r0["lp_tokens"] == 2 and r0["lp_sum"] == pytest.approx(L(0.5) + L(0.1))
    assert r0["ent_positions"] == 2 and r0["ent_sum"] == pytest.approx(h1 + h2)
    assert r0["tail_sum"] == pytest.approx(0.2) and r0["trunc_positions"] == 1
    assert r0["nonargmax_tokens"] == 1
    assert r1["ent_sum"] == pytest.approx(h3) and r1["tail_sum"] == pytest.approx(0.5)
    assert r1["nonargmax_tokens"] == 0 and r1["trunc_positions"] == 1
    assert r2.sum() == 0
    assert r3["lp_tokens"] == 1 and r3["ent_positions"] == 0 and r3["nonargmax_tokens"] == 0


def test_logprob_stats_on_a_sliced_batch_match_the_whole():
    col = rows_to_table([row(sample=i, logprobs=[tok("a", -0.1 * (i + 1), [("a", -0.05), ("b", -3.0)])]) for i in range(6)])
    whole = logprob_row_stats(col.column("logprobs"))
    part = logprob_row_stats(col.slice(3, 3).column("logprobs"))
    pd.testing.assert_frame_equal(part.reset_index(drop=True), whole.iloc[3:].reset_index(drop=True))


def cell_rows():
    """Cell c1: 4 ok rows (2 prompts × 2 repeats) + 1 error; cell c2: 1 ok row."""
    t = 0.7
    lp = [tok("a", L(0.5), [("a", L(0.5)), ("b", L(0.5))])]
    return [
        row("c1", "p1", 0, temperature=t, point={"temperature": t}, content="a b a b", reference="a b a b",
            latency_s=1.0, completion_tokens=4, finish_reason="stop", logprobs=lp),
        row("c1", "p1", 1, temperature=t, point={"temperature": t}, content="a b a b", reference="a b a b",
            latency_s=2.0, completion_tokens=4, finish_reason="stop", logprobs=lp),
        row("c1", "p2", 0, temperature=t, point={"temperature": t}, content="a b c", reference="x",
            latency_s=3.0, completion_tokens=3, finish_reason="stop", ttft_s=0.5,
            logprobs=[tok("c", L(0.25), [("d", L(0.5)), ("c", L(0.25))])]),
        row("c1", "p2", 1, temperature=t, point={"temperature": t}, content="a c", reference="x",
            latency_s=4.0, completion_tokens=2, finish_reason="length", ttft_s=1.5, attempts=3),
        row("c1", "p3", 0, temperature=t, point={"temperature": t}, status="error", content=None,
            latency_s=9.0, finish_reason=None, error_type="http_500", attempts=6),
        row("c2", "p1", 0, temperature=0.0, point={"temperature": 0.0}, content="Paris", reference="Paris"),
    ]


def test_summarize_hand_computed_cell():
    summary = summarize(frame(cell_rows()), resolve_scorers(["exact_match"]), resamples=200)
    assert list(summary["cell_id"]) == ["c2", "c1"]  # sorted by the swept parameter
    c1 = summary.set_index("cell_id").loc["c1"]
    assert c1["temperature"] == 0.7 and c1["model"] == "m"
    assert c1["n"] == 5 and c1["n_ok"] == 4
    assert c1["error_rate"] == pytest.approx(0.2)
    assert c1["attempts_mean"] == pytest.approx((1 + 1 + 1 + 3 + 6) / 5)
    assert c1["finish_stop"] == pytest.approx(0.75) and c1["finish_length"] == pytest.approx(0.25)
    assert c1["completion_tokens_mean"] == pytest.approx(13 / 4)
    assert c1["latency_p50"] == pytest.approx(2.5)
    assert c1["latency_p95"] == pytest.approx(1 + 0.95 * 3)  # linear interpolation over 1,2,3,4
    assert c1["latency_p99"] == pytest.approx(1 + 0.99 * 3)
    assert c1["ttft_p50"] == pytest.approx(1.0) and c1["ttft_p95"] == pytest.approx(0.5 + 0.95)
    assert c1["tokens_per_s"] == pytest.approx(13 / 10)
    assert c1["exact_match_mean"] == pytest.approx(0.5) and c1["exact_match_n"] == 4
    # words: "a b a b"×2, "a b c", "a c": unigrams {a,b,c}/(4+4+3+2); bigrams {ab,ba,bc,ac}/(3+3+2+1)
    assert c1["distinct_1"] == pytest.approx(3 / 13)
    assert c1["distinct_2"] == pytest.approx(4 / 9)
    assert c1["repetition"] == pytest.approx((1 / 3 + 1 / 3 + 0 + 0) / 4)
    assert c1["unique_share"] == pytest.approx((1 / 2 + 2 / 2) / 2)
    assert c1["pairwise_similarity"] == pytest.approx((1.0 + 2 / 3) / 2)  # {a,b,c} vs {a,c}
    # logprobs: tokens ln.5, ln.5, ln.25 (row 4 has none)
    assert c1["logprob_mean"] == pytest.approx((2 * L(0.5) + L(0.25)) / 3)
    assert c1["perplexity"] == pytest.approx(math.exp(-(2 * L(0.5) + L(0.25)) / 3))
    h_ab = -2 * 0.5 * L(0.5)
    h_dc = -(0.5 * L(0.5) + 0.25 * L(0.25)) - 0.25 * L(0.25)
    assert c1["entropy_mean"] == pytest.approx((2 * h_ab + h_dc) / 3)
    assert c1["tail_mass_mean"] == pytest.approx(0.25 / 3)
    assert c1["entropy_truncated_share"] == pytest.approx(1 / 3)
    assert c1["nonargmax_share"] == pytest.approx(1 / 3)
    c2 = summary.set_index("cell_id").loc["c2"]
    assert c2["exact_match_mean"] == 1.0 and c2["exact_match_lo"] == 1.0 and c2["exact_match_hi"] == 1.0
    assert math.isnan(c2["unique_share"]) and math.isnan(c2["pairwise_similarity"])
    assert math.isnan(c2["logprob_mean"]) and math.isnan(c2["ttft_p50"])


def test_interval_brackets_the_mean_and_is_reproducible():
    rows = [row("c", f"p{i}", s, content="Paris" if (i + s) % 3 else "Lyon") for i in range(40) for s in range(2)]
    a = summarize(frame(rows), resolve_scorers(["exact_match"])).iloc[0]
    b = summarize(frame(rows), resolve_scorers(["exact_match"])).iloc[0]
    assert 0 <= a["exact_match_lo"] < a["exact_match_mean"] < a["exact_match_hi"] <= 1
    assert a["exact_match_mean"] == pytest.approx(sum(1 for i in range(40) for s in range(2) if (i + s) % 3) / 80)
    assert (a["exact_match_lo"], a["exact_match_hi"]) == (b["exact_match_lo"], b["exact_match_hi"])


def test_swept_params_from_point_json_and_from_varying_columns():
    rows = cell_rows()
    assert swept_params(frame(rows)) == ["temperature"]
    for r in rows:
        r["point_json"] = None
        r["top_p"] = 0.9 if r["cell_id"] == "c1" else 1.0
        r["seed"] = r["sample"]  # varies inside a cell: not a sweep parameter
    assert swept_params(frame(rows)) == ["temperature", "top_p"]


def test_two_runs_give_one_row_per_run_and_cell():
    rows = cell_rows() + [dict(r, run_id="run-b", request_id="b" + r["request_id"]) for r in cell_rows()]
    summary = summarize(frame(rows), [])
    assert list(zip(summary["run_id"], summary["cell_id"])) == [("run-a", "c2"), ("run-a", "c1"), ("run-b", "c2"), ("run-b", "c1")]


def test_summary_accepts_python_logprobs_and_empty_input():
    df = frame(cell_rows())
    assert isinstance(df["logprobs"].iloc[0], (list, np.ndarray))
    assert summarize(df.iloc[0:0], []).empty


def test_pareto_front_and_best_tradeoff():
    s = pd.DataFrame({
        "run_id": "r", "cell_id": list("abcde"),
        "q_mean": [0.90, 0.88, 0.50, 0.95, 0.60], "q_lo": [0.85, 0.80, 0.4, 0.89, 0.5],
        "latency_p50": [2.0, 1.0, 0.5, 4.0, 3.0],
    })
    assert pareto_front(s, "q_mean", "latency_p50").tolist() == [True, True, True, True, False]
    # best mean is d (0.95, lo 0.89): a (0.90) is within; fastest such cell is a
    assert best_tradeoff(s, "q_mean", "latency_p50")["r"] == 0


def test_uniform_top_k_fast_path_equals_general_path(monkeypatch):
    import harness.analysis.metrics as metrics

    rng = np.random.default_rng(4)
    rows = []
    for _r in range(30):
        entries = []
        for _ in range(int(rng.integers(0, 5))):
            top = np.sort(np.log(rng.dirichlet(np.ones(6))[:3]))[::-1]
            entries.append(tok("t", float(top[int(rng.integers(0, 3))]), [(f"x{j}", float(v)) for j, v in enumerate(top)]))
        rows.append(entries or None)
    col = rows_to_table([row(sample=i, logprobs=lp) for i, lp in enumerate(rows)]).column("logprobs")
    tops = pa.compute.struct_field(col.combine_chunks().flatten(), "top_logprobs")
    assert metrics._uniform_width(tops, 3 * len(tops)) == 3  # the fast path is really taken
    fast = logprob_row_stats(col)
    monkeypatch.setattr(metrics, "_uniform_width", lambda lists, total: 0)
    slow = logprob_row_stats(col)
    pd.testing.assert_frame_equal(fast, slow, check_exact=False, rtol=1e-12, atol=1e-12)
    assert fast["ent_positions"].sum() == sum(len(r or []) for r in rows) > 0
