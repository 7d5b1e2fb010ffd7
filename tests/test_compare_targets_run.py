"""The shipped sweeps/compare-targets.yaml, end to end on two `harness serve` endpoints: plan with
cost, run, report side by side, and `compare --base-target/--cand-target` agreeing with two
single-target runs written from the same rows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from harness.cli import main
from harness.compare import CompareOptions, compare_runs
from harness.rundir.results import load_run
from harness.server.app import ServerThread, create_app
from harness.server.faults import FaultSpec, Latency
from harness.server.ngram import default_model

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, str]]:
    model = default_model()
    quick = create_app({"harness/ngram": model})
    slow = create_app({"harness/ngram": model}, latency=Latency.parse("30"), faults=FaultSpec.parse("500=0.1"))
    with ServerThread(quick) as a, ServerThread(slow) as b:
        yield a.base_url, b.base_url


def _spec(tmp_path: Path, quick: str, slow: str) -> Path:
    """The shipped spec, its `gemma` target swapped for a second (slower, faulty) harness serve."""
    spec = yaml.safe_load((ROOT / "sweeps/compare-targets.yaml").read_text())
    gemma, serve = spec["targets"]
    assert gemma["name"] == "gemma" and gemma["local"] == "gemma-3-270m" and serve["name"] == "serve"
    spec["targets"] = [{"name": "gemma", "base_url": slow, "model": "harness/ngram", "price": gemma["price"]},
                       {**serve, "base_url": quick}]
    spec["dataset"]["path"] = str(ROOT / "datasets/capitals.jsonl")
    spec["dataset"]["limit"] = 8
    path = tmp_path / "compare-targets.yaml"
    path.write_text(json.dumps(spec))
    return path


def test_shipped_sweep_on_two_servers(servers: tuple[str, str], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    spec = _spec(tmp_path, *servers)
    assert main(["plan", str(spec)]) == 0
    plan = capsys.readouterr().out
    assert "cost      estimate per target" in plan and "serve  48 requests" in plan
    assert main(["run", str(spec), "--out", str(tmp_path / "runs"), "--quiet"]) in (0, 1)
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    rows = pd.read_parquet(run_dir / "results")
    keys = rows[["target", "point_json", "prompt_id", "sample"]]
    assert len(rows) == 2 * 2 * 8 * 3 and not keys.duplicated().any()
    assert set(rows["target"]) == {"gemma", "serve"}

    assert main(["report", str(run_dir), "--out", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report/index.html").read_text()
    assert "<h2>Targets</h2>" in page and (tmp_path / "report/targets.png").exists()
    summary = pd.read_csv(tmp_path / "report/summary.csv")
    assert summary.groupby("target")["n"].sum().to_dict() == {"gemma": 48, "serve": 48}
    assert (summary.loc[summary["target"] == "gemma", "cost_total"] == 0).all()  # price 0: the own machine
    assert (summary.loc[summary["target"] == "serve", "cost_per_request"] > 0).all()

    # the same rows as two single-target runs: the verdicts agree
    run = load_run(run_dir)
    within = compare_runs(run, run, CompareOptions(), base_target="serve", cand_target="gemma")
    split = {}
    for name in ("serve", "gemma"):
        folder = tmp_path / f"only-{name}"
        (folder / "results").mkdir(parents=True)
        table = pq.read_table(run_dir / "results")  # the rows as the run wrote them
        part = table.filter(pc.equal(table["target"], name))
        part = part.set_column(part.schema.get_field_index("target"), "target",
                               pa.array(["default"] * part.num_rows, pa.string()))
        pq.write_table(part, folder / "results/part-000001.parquet")
        manifest = json.loads((run_dir / "manifest.json").read_text())
        manifest.pop("targets", None)
        manifest["run_id"] = f"only-{name}"
        (folder / "manifest.json").write_text(json.dumps(manifest))
        split[name] = load_run(folder)
    across = compare_runs(split["serve"], split["gemma"], CompareOptions())
    assert [(c.metric, c.point, c.verdict, c.n_pairs) for c in within.cells] == \
        [(c.metric, c.point, c.verdict, c.n_pairs) for c in across.cells]
    assert [c.test.diff for c in within.cells] == pytest.approx([c.test.diff for c in across.cells], nan_ok=True)
    # one model behind both: same seeds, same answers
    assert dict((m.metric, m.verdict) for m in within.metrics)["exact_match"] == "no change"
    code = main(["compare", str(run_dir), "--base-target", "serve", "--cand-target", "gemma", "--metric", "exact_match"])
    assert code == 0, capsys.readouterr().out
