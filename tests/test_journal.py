"""The journal never bricks a run: any line length, torn lines anywhere, unrepresentable values; a fuzz."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rundir_helpers import Recorder, forget_rows, write_spec

from harness.rundir.journal import (
    UNREPRESENTABLE,
    encode_row,
    read_segment,
    read_segment_rows,
)
from harness.rundir.manifest import read_manifest
from harness.rundir.results import read_results
from harness.rundir.store import RunStore
from harness.runner.session import prepare_resume, run_job, run_sweep


def row(rid: str, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"run_id": "r", "request_id": rid, "cell_id": "c", "prompt_id": "p", "sample": 0,
                            "status": "ok", "attempts": 1, "content": "Paris", "started_at": "2030-01-02T03:04:05+00:00"}
    return {**base, **extra}


def big_logprobs(tokens: int = 1000, top: int = 20) -> list[dict[str, Any]]:
    """1,000 generated tokens with top_logprobs 20: a journal line of several MiB."""
    alts = [{"token": f"alt-token-{j}", "logprob": -1.0 - j / 7} for j in range(top)]
    return [{"token": f"tok{i}", "logprob": -0.5, "top_logprobs": alts} for i in range(tokens)]


def lines(*rows: dict[str, Any]) -> bytes:
    return b"".join(encode_row(r) for r in rows)


def test_a_line_over_one_mib_after_a_short_one_is_read() -> None:
    data = lines(row("a"), row("b", logprobs=big_logprobs()), row("c"))
    assert max(len(x) for x in data.split(b"\n")) > 2**20
    read = read_segment_rows(data)
    assert read.table.column("request_id").to_pylist() == ["a", "b", "c"] and read.torn == []
    assert len(read.table.column("logprobs")[1]) == 1000


def test_torn_lines_anywhere_are_skipped_and_reported() -> None:
    data = lines(row("a"), row("b")) + b'{"run_id": "r", "request_id": "x", "cel\n' + lines(row("c")) + b"\x00\xff{[\n" + lines(row("d"))
    read = read_segment_rows(data + b'{"run_id": "r", "requ')
    assert read.table.column("request_id").to_pylist() == ["a", "b", "c", "d"]
    assert read.torn == [3, 5, 7]


@pytest.mark.parametrize("value", [2**63, 2**70, -(2**64), 10**300, "12", 1.5])
def test_an_unrepresentable_usage_count_becomes_an_error_row(value: Any) -> None:
    data = encode_row(row("a", completion_tokens=value, prompt_tokens=3)) + encode_row(row("b", completion_tokens=2))
    table = read_segment(_write(data))
    got = table.to_pylist()
    assert [r["request_id"] for r in got] == ["a", "b"]
    assert got[0]["status"] == "error" and got[0]["error_type"] == UNREPRESENTABLE
    assert "completion_tokens" in got[0]["error_message"] and got[0]["prompt_tokens"] == 3
    assert got[1]["status"] == "ok" and got[1]["completion_tokens"] == 2


def test_invalid_utf8_inside_a_row_is_a_torn_line_not_a_crash_later() -> None:
    bad = encode_row(row("b")).replace(b"Paris", b"Pa\x80ris")
    read = read_segment_rows(lines(row("a")) + bad + lines(row("c")))
    assert read.table.column("request_id").to_pylist() == ["a", "c"] and read.torn == [2]
    assert read.table.to_pandas().content.tolist() == ["Paris", "Paris"]


def test_wrong_types_and_non_rows_never_crash() -> None:
    data = b"\n".join([
        b"null", b"[1, 2]", b'"text"',
        orjson.dumps(row("a", content=5)),  # a string column given a number
        orjson.dumps(row("b", logprobs="nope")),
        orjson.dumps({**row("c"), "request_id": None}),  # no identity: cannot be kept
        b'{"run_id": "r", "request_id": "d", "content": "\\ud800"}',  # a lone surrogate
        orjson.dumps(row("e")),
    ]) + b"\n"
    read = read_segment_rows(data)
    got = {r["request_id"]: r for r in read.table.to_pylist()}
    assert got["e"]["status"] == "ok" and got["a"]["status"] == "error" and got["b"]["status"] == "error"
    assert "c" not in got and "d" not in got and read.torn == [1, 2, 3, 6, 7]


def _write(data: bytes, folder: Path | None = None) -> Path:
    import tempfile

    path = Path(tempfile.mkdtemp() if folder is None else folder) / "seg-000001.jsonl"
    path.write_bytes(data)
    return path


def test_the_store_seals_huge_and_unrepresentable_rows(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.append(row("a", logprobs=big_logprobs()))
    store.append(row("b", completion_tokens=2**80))  # orjson cannot even encode this: still a row
    store.append(row("c", http_status=float("inf")))
    store.close()
    got = {r["request_id"]: r for r in read_results(tmp_path).to_dict("records")}
    assert set(got) == {"a", "b", "c"} and got["a"]["status"] == "ok"
    assert got["b"]["error_type"] == UNREPRESENTABLE and got["c"]["error_type"] == UNREPRESENTABLE


@pytest.fixture
def bricked_run(tmp_path: Path) -> tuple[Path, list[str]]:
    """A crashed run whose journal holds every case that bricked runs before (the corpus)."""
    spec = write_spec(tmp_path)
    run = run_sweep(spec, out=tmp_path / "runs", transport=Recorder().transport(), check_endpoint=False)
    all_rows = {r["request_id"]: r for r in _rows(run.run_dir)}
    kept = forget_rows(run.run_dir, keep=20)
    rest = [all_rows[rid] for rid in all_rows if rid not in kept]
    journal = run.run_dir / "journal"
    journal.mkdir(exist_ok=True)
    seg = (
        encode_row(rest[0])
        + encode_row({**rest[1], "logprobs": big_logprobs()})  # > 1 MiB after a short first line
        + b'{"run_id": "' + rest[2]["run_id"].encode() + b'", "request_id": "torn in the mid\n'  # torn mid-file
        + encode_row({**rest[3], "completion_tokens": 2**63})  # a usage count >= 2^63
        + encode_row({k: v for k, v in rest[4].items() if k != "completion_tokens"})[:-2]
        + b', "completion_tokens": 1e30}\n'  # as a writer without checks would leave it
        + encode_row(rest[5])
        + b'{"run_id": "r", "requ'  # torn tail (kill -9)
    )
    (journal / "seg-000002.jsonl").write_bytes(seg)
    (journal / "seg-000003.jsonl").write_bytes(b"\x00" * 100 + b"\n" + encode_row(rest[6]))
    manifest = json.loads((run.run_dir / "manifest.json").read_text())
    manifest["status"] = "running"
    (run.run_dir / "manifest.json").write_text(json.dumps(manifest))
    return run.run_dir, list(all_rows)


def _rows(run_dir: Path) -> list[dict[str, Any]]:
    from harness.rundir.results import read_table

    return read_table(run_dir).to_pylist()


def test_a_bricked_journal_resumes_to_one_row_per_request(bricked_run: tuple[Path, list[str]]) -> None:
    run_dir, ids = bricked_run
    before = read_results(run_dir)  # analysis reads it too, while it is broken
    assert len(before) == 20 + 6 and before.request_id.is_unique
    first = run_job(prepare_resume(run_dir), transport=Recorder().transport())
    df = read_results(run_dir)
    assert sorted(df.request_id) == sorted(ids) and first.exit_code == 1  # the two unrepresentable rows
    assert (df.error_type == UNREPRESENTABLE).sum() == 2
    again = run_job(prepare_resume(run_dir, retry_errors=True), transport=Recorder().transport())
    df = read_results(run_dir)
    assert again.exit_code == 0 and sorted(df.request_id) == sorted(ids) and (df.status == "ok").all()
    assert read_manifest(run_dir).status == "completed" and not (run_dir / "journal").exists()


GOOD = [encode_row(row(f"r{i}", content="x" * (i * 37 % 300))) for i in range(12)]


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cuts=st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=40)), max_size=6),
    keep_tail=st.integers(0, 10_000),
)
@example(cuts=[(183, b"\x80")], keep_tail=0)  # invalid UTF-8 inside a string: Arrow's reader let it through
def test_fuzz_any_journal_bytes_read_without_error(cuts: list[tuple[int, bytes]], keep_tail: int) -> None:
    data = bytearray(b"".join(GOOD))
    for at, garbage in cuts:
        at %= len(data) + 1
        data[at:at] = garbage
    data = data[: len(data) - keep_tail % 200]
    read = read_segment_rows(bytes(data))
    got = read.table.column("request_id").to_pylist()
    intact = {line for line in bytes(data).split(b"\n")}
    for i, line in enumerate(GOOD):
        if line[:-1] in intact:
            assert f"r{i}" in got  # every complete, untouched row is recovered
    assert set(read.torn).isdisjoint({n for n, line in enumerate(bytes(data).split(b"\n"), 1) if line + b"\n" in GOOD})


def test_the_numeric_columns_named_for_writing_are_the_schemas() -> None:
    """encode_row checks ints and floats without pyarrow; its lists must be the schema's, in order."""
    import pyarrow as pa

    from harness.rundir.journal import FLOAT_ROW_COLUMNS, INT_ROW_COLUMNS
    from harness.rundir.records import SCHEMA

    assert tuple(f.name for f in SCHEMA if pa.types.is_integer(f.type)) == INT_ROW_COLUMNS
    assert tuple(f.name for f in SCHEMA if pa.types.is_floating(f.type)) == FLOAT_ROW_COLUMNS
