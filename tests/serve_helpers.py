"""Helpers for the end-to-end run tests against `harness serve`: the server in this process (a
thread) or as a child process, a spec on disk for it, `harness` as a child process, and the
readers the tests check a run with. The fixtures `model` and `key_env` are in conftest.py."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from harness.runner import in_shard
from harness.server.app import ServerThread, create_app
from harness.server.faults import FaultSpec, Latency
from harness.server.ngram import NGramModel
from harness.spec.datasets import load_prompts
from harness.spec.grid import expand_points, plan_requests
from harness.spec.sweepspec import load_spec

KEY = "sk-harness-test-7f3a9c1e5b2d4f60"  # must never appear in anything harness writes or prints
ENV = "HARNESS_TEST_KEY"
ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Country: France\nCapital: Paris\n\nCountry: Land{i}\nCapital:"


def serve(model: NGramModel, *, faults: str | None = None, latency_ms: float = 0, port: int = 0) -> ServerThread:
    """`harness serve` in this process (a thread), behind KEY: for small sweeps. Not started yet:
    use it as a context manager (or call `.start()`)."""
    app = create_app(
        {"harness/ngram": model},
        api_key=KEY,
        faults=FaultSpec.parse(faults) if faults else None,
        fault_seed=1,
        latency=Latency.parse(str(latency_ms)) if latency_ms else None,
        retry_after_s=0.02,
        timeout_cap_s=30,
    )
    return ServerThread(app, port=port)


@contextlib.contextmanager
def serve_process(*args: str, keyed: bool = True) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`harness serve ARGS` as a child process (its own core), behind KEY unless not `keyed`: for the
    big sweeps and for servers a test kills. Yields (base URL, the process)."""
    with serve_processes(args, keyed=keyed) as [server]:
        yield server


@contextlib.contextmanager
def serve_processes(*servers: Sequence[str], keyed: bool = True) -> Iterator[list[tuple[str, subprocess.Popen[str]]]]:
    """One `harness serve` child process per argument list, started together (each builds its model
    for a second or so before it listens). Yields [(base URL, the process)] in that order."""
    key = ["--api-key-env", ENV] if keyed else []
    procs: list[subprocess.Popen[str]] = []
    try:
        for args in servers:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "harness", "serve", "--port", "0", *key, "--retry-after", "0.02", *args],
                env=harness_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            ))
        urls = []
        for proc in procs:
            assert proc.stdout is not None
            urls.append(proc.stdout.readline().strip())
            assert urls[-1].startswith("http://127.0.0.1:"), urls[-1]
        yield list(zip(urls, procs, strict=True))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


def harness_env(**extra: str) -> dict[str, str]:
    """The environment of a `harness` child process: this one's, KEY in ENV, this checkout first."""
    return {**os.environ, ENV: KEY, "PYTHONPATH": str(ROOT), **extra}


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """`harness ARGS` as a child process, its output piped."""
    return subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def write_spec(
    folder: Path,
    target: str | list[dict[str, Any]],
    *,
    prompts: int,
    temperatures: list[float],
    repeats: int,
    runner: dict[str, Any],
    name: str = "t",
    params: dict[str, Any] | None = None,
) -> Path:
    """`folder/spec.yaml` (and its prompts.jsonl) for the n-gram model behind KEY: one target at
    `target` (a base URL), or `targets` from a list (each gets the model and the key's variable)."""
    with (folder / "prompts.jsonl").open("w") as fh:
        for i in range(prompts):
            fh.write(json.dumps({"id": f"q{i}", "prompt": PROMPT.format(i=i), "reference": "Paris"}) + "\n")
    where: dict[str, Any]
    if isinstance(target, str):
        where = {"target": {"base_url": target, "model": "harness/ngram", "api_key_env": ENV}}
    else:
        where = {"targets": [{"model": "harness/ngram", "api_key_env": ENV, **t} for t in target]}
    spec = {
        "name": name,
        **where,
        "dataset": {"path": "prompts.jsonl"},
        "params": params if params is not None else {"max_tokens": 4, "logprobs": True, "top_logprobs": 2},
        "sweep": {"grid": {"temperature": temperatures}, "repeats": repeats},
        "runner": runner,
    }
    path = folder / "spec.yaml"
    path.write_text(json.dumps(spec))
    return path


def planned_ids(spec_path: Path, shard: tuple[int, int] | None = None) -> list[str]:
    """The request ids the spec plans (in `shard` only, when given), in plan order."""
    spec = load_spec(spec_path)
    return [p.request_id for p in plan_requests(spec, expand_points(spec), load_prompts(spec)) if in_shard(p.request_id, shard)]


def planned(spec_path: Path) -> set[tuple[str, str, str, int]]:
    """Every (target, point, prompt, sample) the spec plans."""
    spec = load_spec(spec_path)
    return {(p.target, p.point.point_json, p.prompt.id, p.sample) for p in plan_requests(spec, expand_points(spec), load_prompts(spec))}


def keys(df: pd.DataFrame) -> list[tuple[str, str, str, int]]:
    """The (target, point, prompt, sample) of each row."""
    return list(zip(df.target, df.point_json, df.prompt_id, df["sample"].astype(int), strict=True))


def results(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "results")


def last_line(text: str) -> Path:
    """The run directory a `harness run` printed last."""
    return Path(text.strip().splitlines()[-1])


def journaled(run_dir: Path, seal_rows: int) -> int:
    """Rows a running run has on disk so far: its journal segments' lines, `seal_rows` a sealed part."""
    lines = 0
    for segment in (run_dir / "journal").glob("seg-*.jsonl"):
        with contextlib.suppress(FileNotFoundError):  # sealed (and removed) between the listing and the read
            lines += segment.read_bytes().count(b"\n")
    return lines + len(list((run_dir / "results").glob("part-*.parquet"))) * seal_rows


def wait_for_rows(runs: Path, rows: int, seal_rows: int, proc: subprocess.Popen[str] | None = None,
                  run_dir: Path | None = None, timeout_s: float = 60) -> Path:
    """`run_dir` (default: the first run directory below `runs`) once it has `rows` rows on disk
    (see `journaled`). Fails if `proc` (the run) ends first, or after `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = run_dir or next(iter(sorted(m.parent for m in runs.glob("*/manifest.json"))), None)
        if found is not None and journaled(found, seal_rows) >= rows:
            return found
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended first: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.01)
    raise AssertionError(f"no {rows} rows below {runs} within {timeout_s} s")


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_no_key(*places: Path | str) -> None:
    """KEY is in none of these texts nor in any file below these folders."""
    for place in places:
        if isinstance(place, str):
            assert KEY not in place
            continue
        for file in place.rglob("*"):
            if file.is_file():
                assert KEY.encode() not in file.read_bytes(), file
