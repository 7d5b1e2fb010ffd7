"""The parameter registry: every derived description agrees with it, and every bad value in every
place of a spec (fixed, grid, zip, exclude, extra_body) is one SpecError naming the place."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.errors import SpecError
from harness.spec.parameters import (
    BY_NAME,
    FLOAT_COLUMNS,
    INT64_MAX,
    INT_COLUMNS,
    PARAM_COLUMNS,
    REGISTRY,
    SWEEPABLE,
    check_value,
    is_off,
)
from harness.spec.sweepspec import Params, json_schema, load_spec

BASE = {
    "name": "t",
    "target": {"base_url": "http://127.0.0.1:9/v1", "model": "m"},
    "dataset": {"path": "data.jsonl"},
}


def write(tmp_path: Path, extra: dict[str, Any]) -> Path:
    (tmp_path / "data.jsonl").write_text('{"prompt": "hi"}\n')
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**BASE, **extra}, allow_unicode=True))
    return path


def bad_values(name: str) -> list[Any]:
    """Values the registry must refuse for `name`: wrong type, non-finite, out of range, 65-bit."""
    param = BY_NAME[name]
    low, high = param.bounds()
    out: list[Any] = ["abc", True, math.nan, math.inf]
    if low is not None:
        out.append(low - 1)
    if high is not None:
        out.append(high + 1 if param.kind == "int" else high + 0.5)
    if param.kind == "int":
        out.append(1.5)
    return out


def places(name: str, value: Any) -> list[tuple[dict[str, Any], str]]:
    """A spec fragment putting `value` in each place a parameter value can be, with the key path."""
    ok = check_value(name, 1)
    return [
        ({"params": {name: value}}, f"params.{name}"),
        ({"sweep": {"grid": {name: [ok, value]}}}, f"sweep.grid.{name}[1]"),
        ({"sweep": {"zip": {name: [ok, value], "top_p" if name != "top_p" else "min_p": [0.5, 0.6]}}},
         f"sweep.zip.{name}[1]"),
        ({"sweep": {"grid": {name: [ok]}, "exclude": [{name: value}]}}, f"sweep.exclude[0].{name}"),
        ({"params": {"extra_body": {name: value}}}, f"params.extra_body.{name}"),
    ]


CASES = [
    (name, value, frag, key)
    for name in SWEEPABLE
    for value in bad_values(name)
    for frag, key in places(name, value)
]


@pytest.mark.slow
@pytest.mark.parametrize("name,value,fragment,key", CASES, ids=[f"{c[3]}={c[1]!r}" for c in CASES])
def test_every_bad_value_in_every_place_is_one_line(
    tmp_path: Path, name: str, value: Any, fragment: dict[str, Any], key: str
) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, fragment))
    err = info.value
    assert err.key == key, str(err)
    assert "allowed:" in str(err) and "\n" not in str(err)
    assert str(tmp_path / "spec.yaml") in str(err)


def test_cases_cover_every_sweepable_parameter_and_place() -> None:
    keys = {c[3].split(".")[0] + "." + c[3].split(".")[1] for c in CASES}
    assert {"params." + n for n in SWEEPABLE} <= keys
    assert {"sweep.grid", "sweep.zip", "sweep.exclude[0]", "params.extra_body"} <= keys
    assert len(CASES) >= len(SWEEPABLE) * 5 * 5


def test_good_values_are_normalised_identically_everywhere(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, {
        "params": {"top_k": 5.0, "extra_body": {"min_p": 0}},
        "sweep": {"grid": {"temperature": [0, 1]}, "exclude": [{"temperature": 1}]},
    }))
    assert spec.params.get("top_k") == 5 and isinstance(spec.params.get("top_k"), int)
    assert spec.params.extra_body["min_p"] == 0.0 and isinstance(spec.params.extra_body["min_p"], float)
    assert spec.sweep.grid["temperature"] == (0.0, 1.0)


def test_spec_model_fields_come_from_the_registry() -> None:
    fields = set(Params.model_fields) - {"extra_body"}
    assert fields == set(BY_NAME)
    props = json_schema()["$defs"]["Params"]["properties"]
    for param in REGISTRY:
        prop = props[param.name]
        assert prop["description"] == param.description or prop["description"].startswith(param.description)
        if param.kind in ("float", "int") and param.name != "seed":
            number = next(p for p in prop["anyOf"] if p.get("type") in ("number", "integer"))
            assert number.get("minimum") == param.low and number.get("maximum") == param.high


def test_arrow_param_columns_come_from_the_registry() -> None:
    pa = pytest.importorskip("pyarrow")
    from harness.rundir.records import SCHEMA

    for name in FLOAT_COLUMNS:
        assert SCHEMA.field(name).type == pa.float64()
    for name in INT_COLUMNS:
        assert SCHEMA.field(name).type == pa.int64()
    assert set(PARAM_COLUMNS) == set(FLOAT_COLUMNS) | set(INT_COLUMNS) == set(SWEEPABLE)
    # the stored order is schema v1's (floats then ints); existing run directories keep reading
    names = [n for n in SCHEMA.names if n in PARAM_COLUMNS]
    assert names == [*FLOAT_COLUMNS, *INT_COLUMNS]


def test_canonical_column_order_is_used_by_plan_and_the_sweep(tmp_path: Path) -> None:
    from harness.spec.grid import expand_points, point_table

    spec = load_spec(write(tmp_path, {"sweep": {"grid": {"seed": [1], "min_p": [0.1], "temperature": [0.5]}}}))
    assert spec.sweep.swept == ("temperature", "min_p", "seed")
    columns, _ = point_table(expand_points(spec))
    assert columns == ["temperature", "min_p", "seed"]


@pytest.mark.parametrize(
    "name,value,expected",
    [("top_k", -1, True), ("top_k", 5, False), ("min_p", 0.0, True), ("top_p", 1.0, True),
     ("temperature", 0.0, False), ("frequency_penalty", 0, True), ("unknown", 0, False)],
)
def test_off_spelling(name: str, value: Any, expected: bool) -> None:
    assert is_off(name, value) is expected


def test_integers_are_64_bit() -> None:
    assert check_value("seed", INT64_MAX) == INT64_MAX
    with pytest.raises(ValueError, match="64-bit"):
        check_value("seed", INT64_MAX + 1)
    with pytest.raises(ValueError, match="64-bit"):
        check_value("max_tokens", 2**70)


def test_unknown_axis_and_scorer_names_get_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="did you mean top_p"):
        load_spec(write(tmp_path, {"sweep": {"zip": {"top_pp": [0.5]}}}))
    with pytest.raises(SpecError, match="did you mean numeric"):
        load_spec(write(tmp_path, {"scoring": [{"type": "numerc"}]}))


def test_extra_body_unknown_fields_pass_through(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, {"params": {"extra_body": {"repetition_penalty": 1.1, "chat": {"x": [1]}}}}))
    assert spec.params.extra_body == {"repetition_penalty": 1.1, "chat": {"x": [1]}}


def test_describe_mentions_the_seed_api_range() -> None:
    assert BY_NAME["temperature"].describe() == "a number from 0 to 2"
    assert BY_NAME["top_k"].describe() == "an integer ≥ -1 (64-bit)"
    assert "4" in BY_NAME["stop"].describe()
    assert textwrap.shorten(BY_NAME["logprobs"].describe(), 30) == "true or false"
