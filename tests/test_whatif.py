"""`harness whatif`: truncation estimated from logprobs, checked against the server's own sampler."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.server.app import ServerThread, create_app
from harness.server.ngram import default_model
from harness.server.sampler import min_p_candidates, top_p_candidates
from harness.whatif import Setting, as_run, whatif_frame
from harness.whatif.estimate import path_weights
from harness.whatif.positions import extract_positions
from harness.whatif.truncate import Effect, Resolved, evaluate

ROOT = Path(__file__).resolve().parents[1]


def entry(probs: np.ndarray, sampled: int, k: int) -> dict[str, Any]:
    """One logprobs entry: token `sampled` of a distribution, with the k likeliest as top_logprobs."""
    order = np.argsort(-probs, kind="stable")[:k]
    return {
        "token": f"t{sampled}",
        "logprob": math.log(probs[sampled]),
        "top_logprobs": [{"token": f"t{i}", "logprob": math.log(probs[i])} for i in order],
    }


def truth(probs: np.ndarray, s: Resolved) -> tuple[np.ndarray, float, float]:
    """Survivor ids, removed mass and entropy after truncation, by the server sampler's own functions."""
    scaled = np.log(probs) / s.temperature
    ids = np.arange(len(probs))
    if s.min_p > 0:
        ids = ids[min_p_candidates(scaled[ids], s.min_p)]
    if s.top_k > 0:
        ids = ids[np.argsort(-scaled[ids], kind="stable")[: s.top_k]]
    if s.top_p < 1:
        ids = ids[top_p_candidates(scaled[ids], s.top_p)]
    q = np.exp(scaled - scaled.max())
    q /= q.sum()
    kept = q[ids] / q[ids].sum()
    return ids, 1.0 - float(q[ids].sum()), float(-(kept * np.log(kept)).sum())


def _assert_exact(effect: Effect, dists: list[np.ndarray], samples: list[int], setting: Resolved, tol: float) -> None:
    """Each position of `effect` is what the sampler itself would do with the full distribution."""
    for i, (d, s) in enumerate(zip(dists, samples)):
        ids, removed, entropy = truth(d, setting)
        assert effect.candidates[i] == len(ids)
        assert effect.removed[i] == pytest.approx(removed, abs=tol)
        assert effect.entropy[i] == pytest.approx(entropy, abs=tol)
        assert effect.cut[i] == (s not in ids)


SETTINGS = [Resolved(1.0, top_p=0.9), Resolved(0.7, top_k=5), Resolved(1.3, min_p=0.1), Resolved(1.0, 0.8, 10, 0.02)]


@pytest.mark.parametrize("setting", SETTINGS, ids=str)
def test_with_every_token_returned_the_estimate_is_the_sampler_exactly(setting: Resolved) -> None:
    rng = np.random.default_rng(3)
    vocab = 40
    dists = [rng.dirichlet(np.full(vocab, 0.3)) for _ in range(25)]
    samples = [int(rng.choice(vocab, p=d)) for d in dists]
    pos = extract_positions([[entry(d, s, vocab) for d, s in zip(dists, samples)]])
    for effect in evaluate(pos, setting, vocab):  # no tail: both scenarios are exact
        _assert_exact(effect, dists, samples, setting, tol=1e-9)


def _with_tail(rng: np.random.Generator, vocab: int, k: int, few: bool) -> np.ndarray:
    """A distribution whose tail beyond the top k has exactly one of the two extreme shapes."""
    head = np.sort(rng.dirichlet(np.full(k + 1, 1.0)))[::-1]
    top, rest = head[:k], head[k]
    if not few:
        tail = np.full(vocab - k, rest / (vocab - k))
        if tail[0] > top[-1]:  # keep the top k on top
            return _with_tail(rng, vocab, k, few)
        return np.concatenate([top, tail])
    full = int(rest // top[-1])
    tail = np.full(vocab - k, 1e-15)
    tail[:full] = top[-1]
    tail[full] = rest - full * top[-1]
    return np.concatenate([top, tail]) / (1 + (vocab - k - full - 1) * 1e-15)


@pytest.mark.parametrize("few", [True, False], ids=["few-tail", "many-tail"])
@pytest.mark.parametrize("setting", SETTINGS, ids=str)
def test_a_tail_of_either_extreme_shape_is_estimated_exactly(setting: Resolved, few: bool) -> None:
    rng = np.random.default_rng(11)
    vocab, k = 40, 5
    dists = [_with_tail(rng, vocab, k, few) for _ in range(30)]
    samples = [int(rng.choice(k, p=d[:k] / d[:k].sum())) for d in dists]  # sampled among the top: its rank is known
    pos = extract_positions([[entry(d, s, k) for d, s in zip(dists, samples)]])
    _assert_exact(evaluate(pos, setting, vocab)[0 if few else 1], dists, samples, setting, tol=1e-6)


def test_greedy_keeps_only_the_best_token() -> None:
    probs = np.array([0.5, 0.3, 0.2])
    pos = extract_positions([[entry(probs, 0, 3), entry(probs, 2, 3)]])
    few, _ = evaluate(pos, Resolved(0.0), 3)
    assert few.cut.tolist() == [0.0, 1.0] and few.candidates.tolist() == [1.0, 1.0] and few.entropy.tolist() == [0.0, 0.0]


def test_path_weights_stop_at_the_first_cut_and_restart_per_row() -> None:
    cut = np.array([0.0, 1.0, 0.0, 0.0, 0.0])
    removed = np.array([0.5, 0.5, 0.5, 0.2, 0.2])
    zeros = np.zeros(5)
    effect = Effect(cut, removed, zeros, zeros, zeros, zeros)
    weights = path_weights(effect, np.array([0, 0, 0, 1, 1]))
    assert weights.tolist() == pytest.approx([1.0, 2.0, 0.0, 1.0, 1.25])


def _run_dir(tmp_path: Path, base_url: str, logprobs: bool = True) -> Path:
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"id": f"p{i}", "prompt": p}) + "\n" for i, p in enumerate(
        ["Tell me about the sea.", "Describe a market at midnight.", "Write a haiku about an old bicycle.", "Once upon a time"]
    )))
    params = {"max_tokens": 24, "temperature": 1.0, **({"logprobs": True, "top_logprobs": 10} if logprobs else {})}
    spec = {
        "name": "w", "target": {"base_url": base_url, "model": "harness/ngram"}, "dataset": {"path": str(data)},
        "params": params, "sweep": {"grid": {"seed": [1, 2, 3]}},
    }  # fmt: skip
    (tmp_path / "spec.yaml").write_text(json.dumps(spec))
    out = tmp_path / ("runs" if logprobs else "plain")
    assert main(["run", str(tmp_path / "spec.yaml"), "--out", str(out), "--quiet"]) == 0
    return next(out.iterdir())


@pytest.fixture(scope="module")
def base_url() -> Any:
    with ServerThread(create_app({"harness/ngram": default_model()})) as server:
        yield server.base_url


@pytest.mark.slow
def test_cli_json_csv_and_table_on_a_served_run(tmp_path: Path, base_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = _run_dir(tmp_path, base_url)
    capsys.readouterr()
    assert main(["whatif", str(run_dir), "--top-p", "0.9", "--min-p", "0", "0.1", "--vocab", "3000", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = pd.DataFrame(doc["rows"])
    assert set(rows["setting"]) == {"as run", "top_p 0.9, min_p 0", "top_p 0.9, min_p 0.1"}
    assert len(rows) == 3 * 3  # three cells (seeds) x (as run + two settings)
    as_run_rows = rows[rows["setting"] == "as run"]
    assert (as_run_rows["affected"] == 0).all() and (as_run_rows["removed"] == 0).all()
    tighter = rows[rows["setting"] == "top_p 0.9, min_p 0.1"].reset_index()
    looser = rows[rows["setting"] == "top_p 0.9, min_p 0"].reset_index()
    assert (tighter["removed"] >= looser["removed"] - 1e-12).all()  # more truncation removes more
    assert (tighter["entropy"] <= looser["entropy"] + 1e-12).all()
    assert ((rows["affected_lo"] <= rows["affected"]) & (rows["affected"] <= rows["affected_hi"])).all()
    advice = [line for line in doc["suggestions"] if " cells, skip in " in line]
    assert len(advice) == 2 and advice[0].startswith("top_p 0.9, min_p 0: worth running in ")  # one per setting
    assert all(" would change " in line for line in doc["suggestions"][2:]) and len(doc["suggestions"]) == 2 + 6
    assert main(["whatif", str(run_dir), "--top-k", "5", "--csv"]) == 0
    frame = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert set(frame["setting"]) == {"as run", "top_k 5"} and (frame["hyp_top_k"].isin([5, -1])).all()
    assert main(["whatif", str(run_dir)]) == 0
    text = capsys.readouterr().out
    assert "min_p 0.05" in text and "verdict" in text


@pytest.mark.slow
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, base_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    plain = _run_dir(tmp_path, base_url, logprobs=False)
    capsys.readouterr()
    for argv, words in [
        (["whatif", str(plain)], "no logprobs"),
        (["whatif", str(tmp_path / "missing")], "not a run directory"),
        (["whatif", str(plain), "--top-p", "0"], "--top-p"),
        (["whatif", str(plain), "--top-k", "0"], "--top-k"),
        (["whatif", str(plain), "--min-p", "nan"], "--min-p"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1 and "Traceback" not in err


def test_frame_function_for_reports() -> None:
    probs = np.array([0.6, 0.25, 0.1, 0.05])
    rows = pd.DataFrame({
        "run_id": ["r"] * 20, "cell_id": ["c"] * 20, "status": ["ok"] * 20, "temperature": [1.0] * 20,
        "logprobs": [[entry(probs, 0, 4), entry(probs, 2, 4)], [entry(probs, 1, 4)]] * 10,
    })  # fmt: skip
    frame = whatif_frame(rows, as_run([Setting(top_k=2)]), vocab=4)
    row = frame[frame["setting"] == "top_k 2"].iloc[0]
    assert row["affected"] == pytest.approx(1 / 3) and row["removed"] == pytest.approx(0.15)
    assert row["candidates"] == 2 and row["verdict"] == "run"


def test_frame_keeps_the_targets_of_a_run_apart() -> None:
    """Two targets share cell ids (the point without the target); an older run has null targets."""
    probs = np.array([0.6, 0.25, 0.1, 0.05])
    rows = pd.DataFrame({
        "run_id": ["r"] * 20, "cell_id": ["c"] * 20, "status": ["ok"] * 20, "temperature": [1.0] * 20,
        "target": ["a"] * 10 + ["b"] * 10,
        "logprobs": [[entry(probs, 0, 4)]] * 10 + [[entry(probs, 3, 4)]] * 10,
    })  # fmt: skip
    frame = whatif_frame(rows, as_run([Setting(top_k=2)]), vocab=4)
    cut = frame[frame["setting"] == "top_k 2"].set_index("target")
    assert cut["rows"].to_dict() == {"a": 10, "b": 10}
    assert cut.loc["a", "affected"] == 0.0 and cut.loc["b", "affected"] == 1.0  # b sampled a cut token
    from harness.report.counterfactual import table_cells

    _, lines = table_cells(frame)  # the report's what-if table: one line per target's cell
    assert [line[0] for line in lines] == ["a: temperature=1", "b: temperature=1"]  # labels name only the parameters that differ
    old = whatif_frame(rows.assign(target=None), as_run([Setting(top_k=2)]), vocab=4)
    assert "target" not in old and old[old["setting"] == "top_k 2"]["rows"].tolist() == [20]
