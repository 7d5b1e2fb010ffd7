"""Scorers: every built-in on hand-made examples, resolution errors, custom scorers."""

from __future__ import annotations

import math
import sys

import numpy as np
import pandas as pd
import pytest

from harness.analysis.scoring import first_number, normalize_answer, resolve_scorers, score_frame
from harness.errors import SpecError


def scores(item, pairs):
    """Score (content, reference) pairs (all ok rows) with one scorer item."""
    df = pd.DataFrame({"status": "ok", "content": [c for c, _ in pairs], "reference": [r for _, r in pairs]})
    (scorer,) = resolve_scorers([item])
    return score_frame(df, [scorer])[scorer.name].tolist()


def same(a, b):
    return len(a) == len(b) and all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b))


def test_exact_match_strips_whitespace_and_is_case_sensitive_by_default():
    got = scores("exact_match", [("Paris", "Paris"), (" Paris\n", "Paris"), ("paris", "Paris"), ("Paris.", "Paris")])
    assert got == [1.0, 1.0, 0.0, 0.0]
    assert scores({"type": "exact_match", "ignore_case": True}, [("paris", "PARIS")]) == [1.0]


def test_normalized_match_follows_squad():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("An apple, a day") == "apple day"
    got = scores("normalized_match", [("The Paris.", "paris"), ("Paris, France", "Paris"), ("a b", "b")])
    assert got == [1.0, 0.0, 1.0]


def test_contains_is_case_insensitive_by_default():
    got = scores("contains", [("The capital is PARIS.", "Paris"), ("Lyon", "Paris")])
    assert got == [1.0, 0.0]
    assert scores({"type": "contains", "ignore_case": False}, [("PARIS", "Paris")]) == [0.0]


def test_regex_search_fullmatch_and_case():
    assert scores({"type": "regex", "pattern": r"\bParis\b"}, [("It is Paris.", None), ("Parisian", None)]) == [1.0, 0.0]
    full = {"type": "regex", "pattern": "Paris", "fullmatch": True}
    assert scores(full, [(" Paris ", None), ("Paris!", None)]) == [1.0, 0.0]
    assert scores({"type": "regex", "pattern": "paris", "ignore_case": True}, [("PARIS", None)]) == [1.0]


def test_first_number_parses_signs_commas_decimals_exponents():
    assert first_number("about -1,234.5 units") == -1234.5
    assert first_number("x=2.5e3, y=1") == 2500.0
    assert first_number("value .5") == 0.5
    assert first_number("no digits") is None


def test_numeric_with_tolerances():
    exact = [("The answer is 42.", "42"), ("41.99", "42"), ("none", "42"), ("42", "n/a")]
    assert same(scores("numeric", exact), [1.0, 0.0, 0.0, math.nan])
    assert scores({"type": "numeric", "tolerance": 0.01}, [("41.995", "42"), ("41.98", "42")]) == [1.0, 0.0]
    assert scores({"type": "numeric", "rel_tolerance": 0.1}, [("1,050", "1000"), ("1,200", "1000")]) == [1.0, 0.0]


def test_json_valid_with_and_without_fences():
    pairs = [('{"a": [1, 2]}', None), ("```json\n{\"a\": 1}\n```", None), ("{a: 1}", None), ("", None)]
    assert scores("json_valid", pairs) == [1.0, 1.0, 0.0, 0.0]
    assert scores({"type": "json_valid", "strip_fences": False}, pairs[1:2]) == [0.0]


def test_error_rows_and_missing_references_score_nan_with_same_index():
    df = pd.DataFrame(
        {"status": ["ok", "error", "ok"], "content": ["Paris", None, "Paris"], "reference": ["Paris", "Paris", None]},
        index=[10, 20, 30],
    )
    out = score_frame(df, resolve_scorers(["exact_match", "json_valid"]))
    assert list(out.index) == [10, 20, 30]
    assert out["exact_match"].tolist()[0] == 1.0 and np.isnan(out["exact_match"].tolist()[1:]).all()
    assert out["json_valid"].tolist()[0] == 0.0 and np.isnan(out["json_valid"][20])
    assert out.dtypes.tolist() == [np.float64, np.float64]


def test_scoring_distinct_pairs_once_gives_the_same_as_row_by_row():
    rng = np.random.default_rng(0)
    content = rng.choice(["Paris", "paris", "Lyon", None], 500).tolist()
    reference = rng.choice(["Paris", "Lyon", None], 500).tolist()
    df = pd.DataFrame({"status": "ok", "content": content, "reference": reference})
    got = score_frame(df, resolve_scorers(["exact_match"]))["exact_match"].tolist()
    want = [math.nan if r is None else float((c or "").strip() == r) for c, r in zip(content, reference)]
    assert same(got, want)


@pytest.mark.parametrize(
    ("items", "key", "fragment"),
    [
        (["exact"], "scoring[0]", "unknown scorer 'exact'"),
        (["exact_match", {"type": "regex"}], "scoring[1].pattern", "pattern"),
        ([{"type": "regex", "pattern": "("}], "scoring[0].pattern", "not a valid regular expression"),
        ([{"type": "numeric", "tolerance": -1}], "scoring[0].tolerance", ">= 0"),
        ([{"type": "contains", "ignore_case": "yes"}], "scoring[0].ignore_case", "true or false"),
        ([{"type": "exact_match", "tolerance": 1}], "scoring[0].tolerance", "unknown option"),
        (["exact_match", "exact_match"], "scoring[1]", "already used"),
        ([{"type": "exact_match", "name": "1bad"}], "scoring[0].name", "letters"),
        ([{"name": "x"}], "scoring[0].type", "needs `type`"),
        ([42], "scoring[0]", "scorer name or a mapping"),
        (["no_such_module_xyz:f"], "scoring[0]", "cannot import"),
    ],
)
def test_resolve_errors_name_the_item(items, key, fragment):
    with pytest.raises(SpecError) as err:
        resolve_scorers(items)
    assert err.value.key == key
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_names_options_and_two_regexes():
    scorers = resolve_scorers([{"type": "regex", "pattern": "a", "name": "has_a"}, {"type": "regex", "pattern": "b", "name": "has_b"}])
    assert [s.name for s in scorers] == ["has_a", "has_b"]
    assert scorers[0].options == {"pattern": "a"}
    assert resolve_scorers(None) == []


def test_custom_scorer_gets_content_reference_row(tmp_path, monkeypatch):
    (tmp_path / "my_scorers_mod.py").write_text(
        "def brevity(content, reference, row):\n"
        "    return 1.0 / (1 + len(content.split())) if row['prompt_id'] != 'skip' else None\n"
        "def broken(content, reference, row):\n"
        "    raise RuntimeError('boom')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    df = pd.DataFrame({"status": ["ok", "ok", "error"], "content": ["a b c", "x", None],
                       "reference": [None, "x", None], "prompt_id": ["p", "skip", "p"], "request_id": ["r1", "r2", "r3"]})
    (scorer,) = resolve_scorers(["my_scorers_mod:brevity"])
    assert scorer.name == "brevity"
    assert same(score_frame(df, [scorer])["brevity"].tolist(), [0.25, math.nan, math.nan])
    named = resolve_scorers([{"type": "my_scorers_mod:brevity", "name": "short"}])
    assert named[0].name == "short"
    with pytest.raises(SpecError, match="custom scorer my_scorers_mod:broken failed on request r1"):
        score_frame(df, resolve_scorers(["my_scorers_mod:broken"]))
    with pytest.raises(SpecError, match="has no function"):
        resolve_scorers(["my_scorers_mod:missing"])
    sys.modules.pop("my_scorers_mod", None)
