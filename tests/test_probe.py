"""`harness probe` against the reference server made to misbehave on purpose (serve --ignore/--refuse)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.probe import run_probe
from harness.probe.render import to_markdown, to_table
from harness.probe.tokens import (
    Position,
    greedy_judge,
    min_p_judge,
    top_k_judge,
    top_p_judge,
)
from harness.runner.sweep import Endpoint
from harness.server.app import ServerThread, reference_app
from harness.server.misbehave import Misbehaviour

MODEL = "harness/ngram"


def probe(seed: int = 0, **misbehaviour: object) -> dict[str, str]:
    rules = Misbehaviour.parse(**misbehaviour) if misbehaviour else None  # type: ignore[arg-type]
    with ServerThread(reference_app(seed=seed, misbehaviour=rules)) as server:
        report = run_probe(Endpoint(server.base_url, MODEL), budget=160)
    assert report.requests <= 160
    return {name: r.verdict for name, r in report.results.items()}


# ---------------------------------------------------------------- the judges, by hand


def pos(token: str, probs: list[tuple[str, float]]) -> Position:
    top = tuple((t, math.log(p)) for t, p in probs)
    mine = dict(probs).get(token, 0.001)
    return Position(token, math.log(mine), top)


DIST = [("a", 0.4), ("b", 0.3), ("c", 0.2), ("d", 0.1)]


def test_greedy_judge_flags_a_non_argmax_token_and_bounds_the_chance() -> None:
    assert greedy_judge(pos("b", DIST)).violates
    ok = greedy_judge(pos("a", DIST))
    assert not ok.violates and ok.p_allowed == pytest.approx(0.4)


def test_greedy_chance_is_bounded_at_a_lower_default_temperature() -> None:
    at_one = greedy_judge(pos("a", DIST)).p_allowed
    at_07 = greedy_judge(pos("a", DIST), 0.7).p_allowed
    assert at_07 > at_one  # a sharper default makes greedy-by-luck likelier: the bound must cover it
    assert at_07 == pytest.approx(0.4 ** (1 / 0.7) / sum(p ** (1 / 0.7) for _, p in DIST))


def test_top_k_min_p_top_p_judges() -> None:
    assert not top_k_judge(2)(pos("b", DIST)).violates
    assert top_k_judge(2)(pos("c", DIST)).violates
    assert top_k_judge(2)(pos("a", DIST)).p_allowed == pytest.approx(0.7)
    assert not min_p_judge(0.5)(pos("c", DIST)).violates  # 0.2 >= 0.5 * 0.4
    assert min_p_judge(0.5)(pos("d", DIST)).violates  # 0.1 < 0.2
    # top_p 0.5: 'a' (0 above) and 'b' (0.4 above) are kept, 'c' (0.7 above) is not
    assert not top_p_judge(0.5)(pos("b", DIST)).violates
    assert top_p_judge(0.5)(pos("c", DIST)).violates
    assert top_p_judge(0.5)(pos("a", DIST)).p_allowed == pytest.approx(0.7)


def test_a_tie_with_the_best_token_is_not_a_violation() -> None:
    assert not greedy_judge(pos("b", [("a", 0.3), ("b", 0.3), ("c", 0.4 - 1e-9)][:2])).violates


# ---------------------------------------------------------------- against the reference server


def test_plain_server_every_parameter_honoured() -> None:
    verdicts = probe(seed=1)
    assert set(verdicts.values()) == {"honoured"}, verdicts


@pytest.mark.slow
@pytest.mark.parametrize(
    "ignored", ["temperature", "top_k", "top_p", "min_p", "seed", "frequency_penalty", "presence_penalty", "stop", "max_tokens", "stream"]
)
def test_an_ignored_parameter_is_found_and_the_rest_honoured(ignored: str) -> None:
    for seed in (3, 4):
        verdicts = probe(seed=seed, ignore=ignored)
        assert verdicts.pop(ignored) == "ignored"
        if ignored == "stream":
            assert verdicts.pop("stream_options") == "inconclusive"  # no stream to judge
        assert set(verdicts.values()) == {"honoured"}, (ignored, seed, verdicts)


def test_an_ignored_top_k_is_found_fast() -> None:
    verdicts = probe(seed=5, ignore="top_k")
    assert verdicts.pop("top_k") == "ignored"
    assert set(verdicts.values()) == {"honoured"}, verdicts


def test_ignored_logprobs_leave_the_statistical_tests_inconclusive_not_wrong() -> None:
    verdicts = probe(seed=2, ignore="logprobs")
    assert verdicts["logprobs"] == "ignored"
    assert verdicts["top_k"] == verdicts["seed"] == "inconclusive"
    assert verdicts["stop"] == verdicts["max_tokens"] == "honoured"


@pytest.mark.slow
def test_a_refused_value_is_rejected_with_the_servers_words() -> None:
    rules = Misbehaviour.parse(refuse=["min_p=*"], refuse_status=500)
    with ServerThread(reference_app(seed=0, misbehaviour=rules)) as server:
        report = run_probe(Endpoint(server.base_url, MODEL), budget=160)
    result = report.results["min_p"]
    assert result.verdict == "rejected"
    assert "validation error" in result.evidence and "min_p" in result.evidence
    assert result.requests == 2  # a 500 repeating its body is not retried further
    assert report.exit_code == 1


def test_openai_dialect_refuses_top_k_and_min_p_by_name() -> None:
    verdicts = probe(seed=0, dialect="openai")
    assert verdicts["top_k"] == verdicts["min_p"] == "rejected"
    assert verdicts["top_p"] == "honoured"


def test_processed_logprobs_are_detected() -> None:
    with ServerThread(reference_app(seed=0, logprobs_mode="processed")) as server:
        report = run_probe(Endpoint(server.base_url, MODEL), budget=160)
    assert report.logprobs_mode == "processed"
    with ServerThread(reference_app(seed=0)) as server:
        assert run_probe(Endpoint(server.base_url, MODEL), budget=160).logprobs_mode == "raw"


# ---------------------------------------------------------------- the command


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", "probe", *args],
        check=False, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.mark.slow
def test_cli_json_markdown_and_exit_codes(tmp_path: Path) -> None:
    rules = Misbehaviour.parse(ignore="seed")
    with ServerThread(reference_app(seed=0, misbehaviour=rules, api_key="sk-probe-secret")) as server:
        md = tmp_path / "probe.md"
        done = run_cli("--base-url", server.base_url, "--model", MODEL, "--api-key-env", "PROBE_KEY",
                       "--json", "--markdown", str(md), env={"PROBE_KEY": "sk-probe-secret"})  # fmt: skip
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    assert doc["seed"]["verdict"] == "ignored" and doc["top_k"]["verdict"] == "honoured"
    assert doc["probe"]["requests"] <= 160 and doc["probe"]["logprobs_mode"] == "raw"
    assert "| `seed` | **ignored** |" in md.read_text()
    assert "sk-probe-secret" not in done.stdout + done.stderr + md.read_text()


@pytest.mark.slow
def test_cli_bad_input_is_one_line_exit_2() -> None:
    done = run_cli("--base-url", "http://127.0.0.1:9/v1")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--model" in done.stderr
    done = run_cli("--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--budget", "5")
    assert done.returncode == 2 and "--budget" in done.stderr
    done = run_cli("--base-url", "http://127.0.0.1:9/v1", "--model", "m")
    assert done.returncode == 2 and "cannot connect" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_cli_wrong_model_is_bad_input() -> None:
    with ServerThread(reference_app(seed=0)) as server:
        done = run_cli("--base-url", server.base_url, "--model", "no/such-model")
    assert done.returncode == 2 and "no/such-model" in done.stderr and "Traceback" not in done.stderr


def test_renderers_escape_server_words() -> None:
    from harness.probe.verdicts import ParamResult, ProbeReport

    evil = "<script>alert(1)</script> | \x1b[31mred"
    report = ProbeReport("http://x/v1", MODEL, {"top_k": ParamResult("top_k", "rejected", evil)}, "raw", "dropped", 3, 160, 1e-3)
    md = to_markdown(report)
    assert "<script>" not in md and "&lt;script&gt;" in md and "\\|" in md
    assert "\x1b" not in to_table(report)


@pytest.mark.slow
def test_run_with_probe_keeps_the_profile_in_the_run_dir(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text('{"id": "a", "prompt": "7 + 5 ="}\n')
    with ServerThread(reference_app(seed=0, misbehaviour=Misbehaviour.parse(ignore="min_p"))) as server:
        spec = {"name": "p", "target": {"base_url": server.base_url, "model": MODEL}, "dataset": {"path": "p.jsonl"},
                "params": {"max_tokens": 2}, "sweep": {"grid": {"min_p": [0.0, 0.5]}}}  # fmt: skip
        (tmp_path / "s.yaml").write_text(json.dumps(spec))
        done = subprocess.run([sys.executable, "-m", "harness", "run", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "runs"), "--probe"],
                              check=False, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "probe: min_p ignored" in done.stderr
    profile = json.loads((Path(done.stdout.strip().splitlines()[-1]) / "probe.json").read_text())
    assert profile["min_p"]["verdict"] == "ignored" and profile["top_k"]["verdict"] == "honoured"
    run_dir = Path(done.stdout.strip().splitlines()[-1])
    from harness.report import build_report

    build_report([run_dir], tmp_path / "report")
    html = (tmp_path / "report" / "index.html").read_text()
    assert "min_p was swept, but" in html and "ignores it (probe)" in html  # the report warns


def _targets_spec(folder: Path, targets: list[dict[str, object]]) -> Path:
    (folder / "p.jsonl").write_text('{"id": "a", "prompt": "7 + 5 ="}\n')
    spec = {"name": "pt", "targets": targets, "dataset": {"path": "p.jsonl"}, "params": {"max_tokens": 2},
            "sweep": {"grid": {"temperature": [0.5]}}}  # fmt: skip
    (folder / "s.yaml").write_text(json.dumps(spec))
    return folder / "s.yaml"


@pytest.mark.slow
def test_a_spec_of_several_targets_probes_each_and_exits_with_the_worst(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    with (ServerThread(reference_app(seed=0)) as good, ServerThread(reference_app(seed=1, misbehaviour=Misbehaviour.parse(ignore="seed"))) as bad):
        spec = _targets_spec(tmp_path, [
            {"name": "good", "base_url": good.base_url, "model": MODEL},
            {"name": "seedless", "base_url": bad.base_url + "?key=sk-in-url", "model": MODEL},
        ])  # fmt: skip
        md = tmp_path / "probe.md"
        assert main(["probe", str(spec), "--json", "--markdown", str(md)]) == 1  # the worst: seedless's 1
        out = capsys.readouterr()
        doc = json.loads(out.out)
        assert list(doc) == ["good", "seedless"]  # one object per target, keyed by name, in spec order
        assert doc["good"]["probe"]["exit_code"] == 0 and doc["good"]["seed"]["verdict"] == "honoured"
        assert doc["seedless"]["seed"]["verdict"] == "ignored" and doc["seedless"]["probe"]["exit_code"] == 1
        assert doc["seedless"]["probe"]["base_url"].endswith("?key=***")
        text = md.read_text()
        assert "(target `good`)" in text and "(target `seedless`)" in text and "| `seed` | **ignored** |" in text
        assert "sk-in-url" not in out.out + out.err + text

        # the table: one section per target
        assert main(["probe", str(spec)]) == 1
        out = capsys.readouterr()
        assert out.out.count("target good: probe of") == 1 and out.out.count("target seedless: probe of") == 1

        # --target NAME: that target only, in the one-target JSON shape (the contract)
        assert main(["probe", str(spec), "--target", "good", "--json"]) == 0
        one = json.loads(capsys.readouterr().out)
        assert one["seed"]["verdict"] == "honoured" and one["probe"]["exit_code"] == 0


@pytest.mark.slow
def test_a_target_that_cannot_be_probed_is_one_line_and_the_others_still_are(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    with ServerThread(reference_app(seed=0)) as good:
        spec = _targets_spec(tmp_path, [
            {"name": "down", "base_url": "http://127.0.0.1:9/v1", "model": MODEL},
            {"name": "good", "base_url": good.base_url, "model": MODEL},
        ])  # fmt: skip
        assert main(["probe", str(spec), "--json"]) == 2  # bad input (unreachable) is the worst
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert doc["down"]["exit_code"] == 2 and "cannot connect" in doc["down"]["error"]
    assert doc["good"]["probe"]["exit_code"] == 0
    assert out.err.count("\n") == 1 and "targets[0].base_url: target down: cannot connect" in out.err
    assert "Traceback" not in out.err
