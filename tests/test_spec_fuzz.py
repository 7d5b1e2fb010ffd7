"""Fuzz: any data a YAML file can hold, at any place of a spec, is a valid spec or one SpecError line.

No other exception may escape `parse_spec` (a traceback exits 1, which means "some error rows").
"""

from __future__ import annotations

import datetime
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import SpecError
from harness.spec.parameters import BY_NAME
from harness.spec.sweepspec import parse_spec

KEYS = [
    *BY_NAME, "extra_body", "grid", "zip", "exclude", "sample", "sample_seed", "repeats", "from", "to", "step",
    "per_sample", "base_url", "model", "headers", "api_key_env", "local", "path", "format", "limit", "shuffle",
    "concurrency", "timeout_s", "rps", "deadline_s", "type", "pattern", "name", "n", "stream", "x",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["per_sample", "abc", "", "1e300", "http://127.0.0.1:99999/v1", "\ud800", "a\nb"]),
    st.dates(),
    st.binary(max_size=4),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.integers(), st.text(max_size=5)), children, max_size=4),
    ),
    max_leaves=12,
)


def base() -> dict[str, Any]:
    return {
        "name": "f",
        "target": {"base_url": "http://127.0.0.1:9/v1", "model": "m"},
        "dataset": {"path": "d.jsonl"},
        "params": {},
        "sweep": {"grid": {"temperature": [0.5]}},
        "runner": {},
    }


PLACES = [("params",), ("sweep",), ("sweep", "grid"), ("runner",), ("target",), ("dataset",), ("params", "extra_body")]


@pytest.mark.slow  # 400 examples (seconds)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(place=st.sampled_from(PLACES), key=st.sampled_from(KEYS), value=values)
def test_any_value_anywhere_is_valid_or_one_spec_error(place: tuple[str, ...], key: str, value: Any) -> None:
    data = base()
    node = data
    for part in place:
        node = node.setdefault(part, {})
    node[key] = value
    try:
        spec = parse_spec(data, source="fuzz.yaml", base_dir=Path("/nonexistent"), env={})
    except SpecError as err:
        assert "\n" not in str(err) and str(err).startswith("fuzz.yaml")
    else:
        assert_sendable(spec)


def assert_sendable(spec: Any) -> None:
    """A spec that loads makes bodies that encode as strict JSON / UTF-8, and a writable public dict."""
    from harness.runner.body import build_body
    from harness.spec.datasets import Prompt
    from harness.spec.grid import expand_points, plan_requests

    prompt = Prompt(id="p", messages=({"role": "user", "content": "hi"},))
    for plan in itertools.islice(plan_requests(spec, expand_points(spec)[:3], [prompt]), 3):
        json.dumps(build_body(spec, plan), allow_nan=False, ensure_ascii=False).encode("utf-8")
    json.dumps(spec.public_dict(), allow_nan=False, ensure_ascii=False).encode("utf-8")


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(section=st.sampled_from(["params", "sweep", "runner", "target", "dataset", "scoring", "description"]),
       value=values)
def test_any_section_value_is_valid_or_one_spec_error(section: str, value: Any) -> None:
    data = base()
    data[section] = value
    try:
        spec = parse_spec(data, source="fuzz.yaml", base_dir=Path("/nonexistent"), env={})
    except SpecError as err:
        assert "\n" not in str(err)
    else:
        assert_sendable(spec)


def test_dates_and_bytes_are_refused_by_place() -> None:
    data = base()
    data["params"]["extra_body"] = {"when": datetime.date(2024, 1, 1)}
    try:
        parse_spec(data, source="fuzz.yaml", base_dir=Path("/nonexistent"), env={})
    except SpecError as err:
        assert err.key == "params.extra_body.when"
    else:
        raise AssertionError("a date in extra_body must be refused")


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
              st.sampled_from(["user", "system", "tool", "wizard", "\ud800"])),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(["prompt", "messages", "id", "reference", "role", "content", "x"]),
                        children, max_size=4),
    ),
    max_leaves=10,
)


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(json_values, min_size=1, max_size=4))
def test_any_jsonl_rows_are_prompts_or_one_dataset_error(tmp_path: Path, rows: list[Any]) -> None:
    from harness.errors import DatasetError
    from harness.spec.datasets import load_prompts
    from harness.spec.sweepspec import DatasetConfig

    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    try:
        prompts = load_prompts(DatasetConfig(path=path))
    except DatasetError as err:
        assert "\n" not in str(err) and str(path) in str(err)
    else:
        for prompt in prompts:
            json.dumps(list(prompt.messages), allow_nan=False, ensure_ascii=False).encode("utf-8")


VALID_TEXT = """name: f
target: {base_url: "http://127.0.0.1:9/v1", model: m}
dataset: {path: d.jsonl}
params: {max_tokens: 4, temperature: 0.5, stop: ["\\n"]}
sweep:
  grid: {top_p: [0.5, 1.0], top_k: {from: 1, to: 3, step: 1}}
  exclude: [{top_p: 0.5, top_k: 2}]
  repeats: 2
runner: {concurrency: 2, timeout_s: 5}
"""


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_yaml_plans_or_fails_with_one_line(tmp_path: Path, data: st.DataObject) -> None:
    """Byte-level mutations of a valid spec: `harness plan` returns 0 or 2, never raises."""
    import contextlib
    import io

    from harness.cli import main

    raw = bytearray(VALID_TEXT.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = data.draw(st.sampled_from(list(b"&*!|>-:[]{},#'\"\\\n\t 0.9e-x") + [0xFF, 0xE2]))
        if op == "replace":
            raw[pos] = byte
        elif op == "insert":
            raw.insert(pos, byte)
        elif len(raw) > 1:
            del raw[pos]
    (tmp_path / "d.jsonl").write_text('{"prompt": "hi"}\n')
    spec = tmp_path / "s.yaml"
    spec.write_bytes(bytes(raw))
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["plan", str(spec)])
    assert code in (0, 2), err.getvalue()
    if code == 2:
        assert len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
