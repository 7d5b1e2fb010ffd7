"""Prompt sets: JSONL, CSV or Parquet rows → `Prompt(id, messages, reference)` with stable ids.

A row has `messages` (OpenAI chat format) or `prompt` (a string → one user message); an optional
`id` (else the first 12 hex digits of sha256 over the canonical JSON of the messages) and an
optional `reference`. Duplicate ids are an error. `system` in the spec is put first;
`shuffle` (seeded) happens before `limit`.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import DatasetError
from harness.spec.sweepspec import DatasetConfig, SweepSpec

ROLES = ("system", "user", "assistant", "developer", "tool")
MAX_DATASET_BYTES = 1 << 30  # 1 GiB: bounded reads; a prompt set larger than this is not a sweep input
MAX_LINE_BYTES = 16 << 20  # one JSONL row
MAX_PROMPTS = 1_000_000


@dataclass(frozen=True)
class Prompt:
    """One prompt of a dataset."""

    id: str
    messages: tuple[dict[str, Any], ...]
    reference: str | None = None


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_id(messages: list[dict[str, Any]]) -> str:
    """The id of a prompt without one: a content hash of its messages."""
    return hashlib.sha256(_canonical(messages).encode()).hexdigest()[:12]


def _format_of(cfg: DatasetConfig) -> str:
    if cfg.format:
        return cfg.format
    suffix = cfg.path.suffix.lower()
    return {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(
        suffix, ""
    )


def _read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8-sig") as fh:  # -sig: a leading BOM (Excel, Notepad) is dropped
        for lineno, line in enumerate(iter(lambda: fh.readline(MAX_LINE_BYTES + 1), ""), 1):
            if len(line) > MAX_LINE_BYTES:
                raise DatasetError(f"line {lineno}: longer than {MAX_LINE_BYTES:,} characters", file=str(path))
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except RecursionError:
                raise DatasetError(f"line {lineno}: nested too deeply", file=str(path)) from None
            except ValueError as exc:
                raise DatasetError(f"line {lineno}: not valid JSON ({exc.args[0]})", file=str(path)) from None


def _read_csv(path: Path) -> Iterator[tuple[int, Any]]:
    import csv

    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        for lineno, row in enumerate(reader, 2):
            clean = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
            if "messages" in clean:
                try:
                    clean["messages"] = json.loads(clean["messages"])
                except ValueError:
                    raise DatasetError(f"line {lineno}: messages is not a JSON list", file=str(path)) from None
            yield lineno, clean


def _read_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many kinds; all mean "unreadable"
        raise DatasetError(f"not a readable Parquet file ({exc})", file=str(path)) from None
    for i, row in enumerate(rows):
        yield i + 1, {k: v for k, v in row.items() if v is not None}


_READERS = {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}


def _rows(kind: str, path: Path) -> Iterator[tuple[int, Any]]:
    """The reader's rows; undecodable text is a DatasetError, not a traceback."""
    import csv

    try:
        yield from _READERS[kind](path)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r}); save it as UTF-8",
                           file=str(path)) from None
    except csv.Error as exc:
        raise DatasetError(f"not a readable CSV file ({exc})", file=str(path)) from None


def _check_text(value: Any, where: str, path: Path, key: str = "") -> None:
    """Every string must be valid Unicode (no lone surrogate from a `\\ud800` escape): it is sent as UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise DatasetError(f"{where}: {key or 'a key'} contains {value[exc.start]!r} (a lone surrogate), "
                               "not valid Unicode; fix the \\u escape", file=str(path)) from None
    elif isinstance(value, float) and not math.isfinite(value):
        raise DatasetError(f"{where}: {key or 'a value'} is {value!r}, not a JSON number", file=str(path))
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_text(k, where, path)
            _check_text(v, where, path, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_text(v, where, path, f"{key}[{i}]")


def _messages(row: dict[str, Any], where: str, path: Path) -> list[dict[str, Any]]:
    if "messages" in row:
        msgs = row["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise DatasetError(f"{where}: messages must be a non-empty list", file=str(path))
        for i, msg in enumerate(msgs):
            if not isinstance(msg, dict) or msg.get("role") not in ROLES or "content" not in msg:
                raise DatasetError(
                    f"{where}: messages[{i}] must be {{role: {'|'.join(ROLES)}, content: ...}}", file=str(path)
                )
        return [dict(m) for m in msgs]
    if "prompt" in row:
        if not isinstance(row["prompt"], str) or not row["prompt"]:
            raise DatasetError(f"{where}: prompt must be a non-empty string", file=str(path))
        return [{"role": "user", "content": row["prompt"]}]
    raise DatasetError(f"{where}: a row needs `prompt` (a string) or `messages` (a chat list)", file=str(path))


def _prompt(row: Any, where: str, cfg: DatasetConfig) -> Prompt:
    if not isinstance(row, dict):
        raise DatasetError(f"{where}: a row must be an object", file=str(cfg.path))
    _check_text(row, where, cfg.path)
    messages = _messages(row, where, cfg.path)
    if cfg.system:
        messages = [{"role": "system", "content": cfg.system}, *messages]
    raw_id = row.get("id")
    if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, (str, int))):
        raise DatasetError(f"{where}: id must be a string or an integer", file=str(cfg.path))
    reference = row.get("reference")
    if reference is not None and not isinstance(reference, str):
        reference = json.dumps(reference) if isinstance(reference, (dict, list)) else str(reference)
    pid = str(raw_id) if raw_id is not None and str(raw_id) else content_id(messages)
    return Prompt(id=pid, messages=tuple(messages), reference=reference)


def _check_file(path: Path) -> None:
    """A regular file of bounded size (no FIFO, device, folder or symlink loop)."""
    import stat

    try:
        st = path.stat()
    except FileNotFoundError:
        raise DatasetError("no such file", file=str(path)) from None
    except (OSError, RuntimeError) as exc:
        raise DatasetError(f"cannot read ({getattr(exc, 'strerror', None) or exc.__class__.__name__})",
                           file=str(path)) from None
    if not stat.S_ISREG(st.st_mode):
        raise DatasetError("not a regular file (a folder, pipe or device?); give a dataset file", file=str(path))
    if st.st_size > MAX_DATASET_BYTES:
        raise DatasetError(f"{st.st_size:,} bytes; a dataset may be at most {MAX_DATASET_BYTES:,} bytes",
                           file=str(path))


def load_prompts(source: DatasetConfig | SweepSpec) -> list[Prompt]:
    """Read, check, shuffle and limit a dataset (the spec's `dataset` section, or the section itself)."""
    cfg = source.dataset if isinstance(source, SweepSpec) else source
    kind = _format_of(cfg)
    if kind not in _READERS:
        raise DatasetError("unknown format; use .jsonl, .csv or .parquet (or dataset.format)", file=str(cfg.path))
    _check_file(cfg.path)
    prompts: list[Prompt] = []
    seen: dict[str, str] = {}
    for lineno, row in _rows(kind, cfg.path):
        where = f"line {lineno}" if kind != "parquet" else f"row {lineno}"
        prompt = _prompt(row, where, cfg)
        if prompt.id in seen:
            raise DatasetError(f"{where}: duplicate id {prompt.id!r} (first at {seen[prompt.id]})", file=str(cfg.path))
        seen[prompt.id] = where
        prompts.append(prompt)
        if len(prompts) > MAX_PROMPTS:
            raise DatasetError(f"more than {MAX_PROMPTS:,} prompts; split the dataset", file=str(cfg.path))
    if not prompts:
        raise DatasetError("no prompts in the dataset", file=str(cfg.path))
    if cfg.shuffle:
        random.Random(cfg.shuffle_seed).shuffle(prompts)
    return prompts[: cfg.limit] if cfg.limit else prompts


__all__ = ["Prompt", "content_id", "load_prompts"]
