"""Helpers for the run-directory tests: a spec on disk, a recording mock endpoint, forgetting rows."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from harness.rundir.results import part_files

BASE_URL = "http://127.0.0.1:9/v1"  # nothing listens: every test here injects a transport


def write_spec(folder: Path, *, prompts: int = 10, temperatures: tuple[float, ...] = (0.0, 1.0), repeats: int = 3,
               base_url: str = BASE_URL, **extra: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "prompts.jsonl").open("w") as fh:
        for i in range(prompts):
            fh.write(json.dumps({"id": f"q{i}", "prompt": f"Capital of land {i}?", "reference": "Paris"}) + "\n")
    spec: dict[str, Any] = {
        "name": "t",
        "target": {"base_url": base_url, "model": "m"},
        "dataset": {"path": "prompts.jsonl"},
        "params": {"max_tokens": 4},
        "sweep": {"grid": {"temperature": list(temperatures)}, "repeats": repeats},
        "runner": {"concurrency": 4, "max_attempts": 1},
    }
    for key, value in extra.items():
        section, _, name = key.partition("__")
        if name:
            spec.setdefault(section, {})[name] = value
        else:
            spec[section] = value
    path = folder / "spec.yaml"
    path.write_text(json.dumps(spec))
    return path


class Recorder:
    """An httpx mock transport answering every chat completion; keeps the bodies it was sent."""

    def __init__(self, answer: dict[str, Any] | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.answer = answer or {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": " Paris"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1},
        }

    def handler(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.bodies.append(json.loads(request.content))
        return httpx.Response(200, json=self.answer)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)


def forget_rows(run_dir: Path, keep: int) -> list[str]:
    """Keep only the first `keep` rows of a finished run (as if it had been stopped); the ids kept."""
    parts = part_files(run_dir)
    table = pa.concat_tables([pq.read_table(p) for p in parts]).slice(0, keep)
    for part in parts:
        part.unlink()
    pq.write_table(table, run_dir / "results" / "part-000001.parquet")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["status"] = "interrupted"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    return [str(x) for x in table.column("request_id").to_pylist()]
