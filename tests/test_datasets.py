"""Datasets: formats, ids, system prompt, shuffle/limit, and malformed rows."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.errors import DatasetError
from harness.spec.datasets import content_id, load_prompts
from harness.spec.sweepspec import DatasetConfig

REPO = Path(__file__).resolve().parents[1]


def cfg(path: Path, **kw: object) -> DatasetConfig:
    return DatasetConfig(path=path, **kw)


def test_jsonl_prompt_and_messages(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    rows = [
        {"id": "a", "prompt": "hello", "reference": "x"},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], "reference": 42},
    ]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    a, b = load_prompts(cfg(f))
    assert a.id == "a" and a.messages == ({"role": "user", "content": "hello"},) and a.reference == "x"
    assert b.id == content_id([dict(m) for m in rows[1]["messages"]]) and len(b.id) == 12
    assert b.reference == "42"


def test_system_prompt_is_prepended(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text('{"prompt": "q"}\n')
    (p,) = load_prompts(cfg(f, system="be brief"))
    assert p.messages[0] == {"role": "system", "content": "be brief"}


def test_csv_and_parquet(tmp_path: Path) -> None:
    c = tmp_path / "d.csv"
    c.write_text('id,prompt,reference\n1,"a, b",A\n2,c,\n')
    got = load_prompts(cfg(c))
    assert [(p.id, p.messages[0]["content"], p.reference) for p in got] == [("1", "a, b", "A"), ("2", "c", None)]
    q = tmp_path / "d.parquet"
    pq.write_table(pa.table({"prompt": ["x", "y"], "reference": ["X", None]}), q)
    assert [p.reference for p in load_prompts(cfg(q))] == ["X", None]


def test_shuffle_is_seeded_and_before_limit(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps({"id": str(i), "prompt": f"p{i}"}) + "\n" for i in range(50)))
    one = [p.id for p in load_prompts(cfg(f, shuffle=True, shuffle_seed=3, limit=5))]
    two = [p.id for p in load_prompts(cfg(f, shuffle=True, shuffle_seed=3, limit=5))]
    other = [p.id for p in load_prompts(cfg(f, shuffle=True, shuffle_seed=4, limit=5))]
    assert one == two != other and one != ["0", "1", "2", "3", "4"]


def test_shipped_datasets_load() -> None:
    for name, n in (("capitals", 40), ("arithmetic", 50), ("creative", 20)):
        prompts = load_prompts(cfg(REPO / "datasets" / f"{name}.jsonl"))
        assert len(prompts) >= n
    caps = load_prompts(cfg(REPO / "datasets/capitals.jsonl"))
    assert all(p.reference for p in caps)
    assert caps[0].messages[0]["content"].endswith("Capital:")


BAD_ROWS = [
    ('{"prompt": "a"}\nnot json\n', "line 2: not valid JSON"),
    ('{"reference": "x"}\n', "line 1: a row needs `prompt`"),
    ('{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n', "line 2: duplicate id 'a' (first at line 1)"),
    ('{"messages": []}\n', "messages must be a non-empty list"),
    ('{"messages": [{"role": "robot", "content": "x"}]}\n', "messages[0] must be"),
    ('{"prompt": 5}\n', "prompt must be a non-empty string"),
    ('["a"]\n', "a row must be an object"),
    ('{"id": true, "prompt": "x"}\n', "id must be a string or an integer"),
    ("", "no prompts"),
]


@pytest.mark.parametrize(("text", "words"), BAD_ROWS)
def test_bad_rows(tmp_path: Path, text: str, words: str) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text(text)
    with pytest.raises(DatasetError) as info:
        load_prompts(cfg(f))
    assert str(info.value).startswith(str(f)) and words in str(info.value)


def test_missing_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        load_prompts(cfg(tmp_path / "x.jsonl"))
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(DatasetError, match="unknown format"):
        load_prompts(cfg(tmp_path / "x.txt"))


def test_non_utf8_and_oversized_csv_are_one_line_errors(tmp_path: Path) -> None:
    """Regression: undecodable bytes and csv.Error escaped as tracebacks."""
    for name, data in (("a.jsonl", b'\xff{"prompt": "x"}\n'), ("b.csv", b"prompt\n\xffx\n"),
                       ("c.csv", b'prompt\n"' + b"x" * 200_000 + b'"\n')):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DatasetError) as info:
            load_prompts(cfg(tmp_path / name))
        assert str(info.value).startswith(str(tmp_path / name)) and "\n" not in str(info.value)


def test_a_leading_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    """Regression: Excel's UTF-8 BOM broke the first JSON line and the CSV header."""
    (tmp_path / "d.jsonl").write_bytes(b'\xef\xbb\xbf{"prompt": "hi", "reference": "x"}\n')
    (tmp_path / "d.csv").write_bytes(b"\xef\xbb\xbfprompt,reference\nhi,x\n")
    for name in ("d.jsonl", "d.csv"):
        [prompt] = load_prompts(cfg(tmp_path / name))
        assert prompt.messages == ({"role": "user", "content": "hi"},) and prompt.reference == "x"
