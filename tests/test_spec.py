"""Spec loading: valid specs, and a corpus of malformed specs each failing with one clear line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.errors import SpecError
from harness.spec.sweepspec import json_schema, load_spec, spec_hash

REPO = Path(__file__).resolve().parents[1]

BASE = """\
name: t
target:
  base_url: http://127.0.0.1:9/v1
  model: m
dataset:
  path: data.jsonl
"""


def write(tmp_path: Path, text: str, data: str = '{"prompt": "hi", "reference": "x"}\n') -> Path:
    (tmp_path / "data.jsonl").write_text(data)
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent(text))
    return spec


def test_minimal_spec_loads_with_defaults(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASE))
    assert spec.name == "t"
    assert spec.params.sent() == {}
    assert spec.sweep.repeats == 1
    assert spec.runner.concurrency == 16
    assert spec.dataset.path == (tmp_path / "data.jsonl").resolve()


def test_example_specs_are_valid() -> None:
    env = {"DMIND_BASE_URL": "https://example.invalid/v1"}
    names = sorted(p.name for p in (REPO / "sweeps").glob("*.yaml"))
    assert len(names) >= 4
    for path in (REPO / "sweeps").glob("*.yaml"):
        assert load_spec(path, env=env).name


def test_env_interpolation_and_default(tmp_path: Path) -> None:
    text = BASE.replace("model: m", "model: ${MODEL}").replace(
        "http://127.0.0.1:9/v1", "${URL:-http://127.0.0.1:7/v1}"
    )
    spec = load_spec(write(tmp_path, text), env={"MODEL": "gemma"})
    assert spec.target.model == "gemma"
    assert spec.target.base_url == "http://127.0.0.1:7/v1"


def test_dollar_dollar_is_literal(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASE + "description: costs $$5\n"), env={})
    assert spec.description == "costs $5"


def test_ranges_are_exact_decimals(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASE + "sweep:\n  grid:\n    temperature: {from: 0.1, to: 0.7, step: 0.2}\n"))
    assert spec.sweep.grid["temperature"] == (0.1, 0.3, 0.5, 0.7)


def test_int_ranges_stay_ints(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, BASE + "sweep:\n  grid:\n    top_k: {from: 0, to: 40, step: 20}\n"))
    assert spec.sweep.grid["top_k"] == (0, 20, 40)
    assert all(isinstance(v, int) for v in spec.sweep.grid["top_k"])


def test_spec_hash_ignores_name_but_not_params(tmp_path: Path) -> None:
    a = load_spec(write(tmp_path, BASE))
    b = load_spec(write(tmp_path, BASE.replace("name: t", "name: other")))
    c = load_spec(write(tmp_path, BASE + "params:\n  temperature: 0.5\n"))
    assert spec_hash(a) == spec_hash(b) != spec_hash(c)


def test_public_dict_redacts_secret_headers(tmp_path: Path) -> None:
    text = BASE.replace("model: m", "model: m\n  headers: {Authorization: Bearer sk-secret, X-Trace: abc}")
    data = load_spec(write(tmp_path, text)).public_dict()
    assert "sk-secret" not in str(data)
    assert data["target"]["headers"]["X-Trace"] == "abc"


def test_committed_json_schema_is_current() -> None:
    import json

    committed = json.loads((REPO / "harness/schema/sweep-spec.schema.json").read_text())
    assert committed == json_schema(), "run: harness schema > harness/schema/sweep-spec.schema.json"


# (spec text appended to or replacing BASE, expected key path, expected words in the message)
BAD_SPECS = [
    ("name: t\ntarget: [\n", None, "line"),
    ("name: t\nname: u\n", None, "duplicate key 'name'"),
    ("name: t\nsweep:\n  grid: {top_k, {from: 1, to: 3}}\n", None, "a key must be a plain value, not a dict"),  # fuzz: was a TypeError, exit 70
    ("name: t\n[1, 2]: x\n", None, "not a list"),
    ("- just\n- a list\n", None, "mapping"),
    (BASE + "parms: {}\n", "parms", "did you mean params"),
    (BASE + "params:\n  top_pp: 0.5\n", "params.top_pp", "did you mean top_p"),
    (BASE + "params:\n  repetition_penalty: 1.1\n", "params.repetition_penalty", "extra_body"),
    (BASE + "runner:\n  concurency: 3\n", "runner.concurency", "did you mean concurrency"),
    (BASE + "params:\n  temperature: 2.5\n", "params.temperature", "from 0 to 2"),
    (BASE + "params:\n  temperature: -0.1\n", "params.temperature", "out of range"),
    (BASE + "params:\n  top_p: 1.5\n", "params.top_p", "from 0 to 1"),
    (BASE + "params:\n  top_k: -2\n", "params.top_k", "≥ -1"),
    (BASE + "params:\n  top_k: 2.5\n", "params.top_k", "integer"),
    (BASE + "params:\n  min_p: 1.01\n", "params.min_p", "from 0 to 1"),
    (BASE + "params:\n  frequency_penalty: 3\n", "params.frequency_penalty", "from -2 to 2"),
    (BASE + "params:\n  presence_penalty: -2.5\n", "params.presence_penalty", "from -2 to 2"),
    (BASE + "params:\n  max_tokens: 0\n", "params.max_tokens", "≥ 1"),
    (BASE + "params:\n  logprobs: true\n  top_logprobs: 21\n", "params.top_logprobs", "from 0 to 20"),
    (BASE + "params:\n  top_logprobs: 3\n", "params.top_logprobs", "needs logprobs"),
    (BASE + "params:\n  stop: [a, b, c, d, e]\n", "params.stop", "up to 4"),
    (BASE + "params:\n  seed: 1.5\n", "params.seed", "integer"),
    (BASE + "params:\n  temperature: hot\n", "params.temperature", "not a number"),
    (BASE + "params:\n  temperature: true\n", "params.temperature", "not a number"),
    (BASE + "sweep:\n  grid:\n    temperature: [0.5, 3.0]\n", "sweep.grid.temperature[1]", "from 0 to 2"),
    (BASE + "sweep:\n  grid:\n    temperature: []\n", "sweep.grid.temperature", "empty axis"),
    (BASE + "sweep:\n  grid:\n    top_p: {from: 0.1, to: 0.5}\n", "sweep.grid.top_p", "from, to, step"),
    (BASE + "sweep:\n  grid:\n    top_p: {from: 0.1, to: 0.5, step: 0}\n", "sweep.grid.top_p.step", "> 0"),
    (BASE + "sweep:\n  grid:\n    top_p: {from: 0.5, to: 1.5, step: 0.5}\n", "sweep.grid.top_p[2]", "from 0 to 1"),
    (BASE + "sweep:\n  grid:\n    stop: [a]\n", "sweep.grid.stop", "cannot be swept"),
    (BASE + "sweep:\n  zip:\n    frequency_penalty: [0, 1]\n    presence_penalty: [0]\n", "sweep.zip.frequency_penalty", "equal lengths"),
    (BASE + "sweep:\n  zip:\n    min_p: [0.1, 5]\n", "sweep.zip.min_p[1]", "from 0 to 1"),
    (BASE + "sweep:\n  grid: {temperature: [0.1]}\n  zip: {temperature: [0.2]}\n", "sweep.zip.temperature", "grid"),
    (BASE + "sweep:\n  grid: {temperature: [0.1]}\n  exclude: [{top_p: 0.5}]\n", "sweep.exclude[0].top_p", "not a swept"),
    (BASE + "sweep:\n  repeats: 0\n", "sweep.repeats", "greater than or equal to 1"),
    (BASE + "params: {temperature: 0.5}\nsweep:\n  grid: {temperature: [0.1]}\n", "params.temperature", "one place"),
    (BASE + "runner:\n  concurrency: 0\n", "runner.concurrency", "greater than or equal to 1"),
    (BASE + "runner:\n  stream: maybe\n", "runner.stream", "boolean"),
    (BASE.replace("  model: m\n", ""), "target.model", "required"),
    (BASE.replace("http://127.0.0.1:9/v1", "ftp://x"), "target.base_url", "http"),
    # regression: a key in the URL's userinfo was written to the manifest and sent as Basic auth
    (BASE.replace("http://127.0.0.1:9/v1", "http://u:sk-secret-9@127.0.0.1:9/v1"), "target.base_url", "api_key_env"),
    (BASE.replace("name: t", "name: 'bad name!'"), "name", "match pattern"),
    (BASE.replace("http://127.0.0.1:9/v1", "${NOPE_UNSET_VAR}"), "target.base_url", "NOPE_UNSET_VAR is not set"),
    (BASE.replace("dataset:\n  path: data.jsonl\n", ""), "dataset", "required"),
    (BASE + "dataset_limit: 3\n", "dataset_limit", "allowed"),
]


@pytest.mark.parametrize(("text", "key", "words"), BAD_SPECS)
def test_bad_spec_is_one_clear_error(tmp_path: Path, text: str, key: str | None, words: str | None) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_spec(path, env={})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    if key:
        assert f": {key}:" in message, message
    if words:
        assert words in message, message


def test_credentials_in_base_url_are_refused_without_echoing_them(tmp_path: Path) -> None:
    path = write(tmp_path, BASE.replace("http://127.0.0.1:9/v1", "http://u:sk-secret-9@127.0.0.1:9/v1"))
    with pytest.raises(SpecError) as info:
        load_spec(path, env={})
    assert "sk-secret-9" not in str(info.value)
    assert load_spec(write(tmp_path, BASE.replace("/v1", "/v1?tag=a@b")), env={}).target.base_url.endswith("a@b")


def test_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "nope.yaml")


@pytest.mark.slow
def test_cli_bad_spec_exit_2_one_line_no_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "params:\n  temperature: 9\n")
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "plan", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "params.temperature" in lines[0] and "9" in lines[0]
