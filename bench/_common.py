"""Shared by the bench scripts: `harness serve` from this checkout as a child process.

The scripts run as `python bench/bench_x.py`, so this folder is on sys.path: `from _common import …`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def harness_env(**extra: str) -> dict[str, str]:
    """The environment of a `harness` child process: this one's, with this checkout first on PYTHONPATH."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def start_serve(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """`harness serve --port 0 ARGS` as a child process: (the process, its base URL once it listens).
    The caller stops it (`terminate()`); `serve_process` does that for you."""
    proc = subprocess.Popen([sys.executable, "-m", "harness", "serve", "--port", "0", *args], env=env or harness_env(),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


@contextlib.contextmanager
def serve_process(*args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """`start_serve` for a `with` block: yields the base URL, stops the server at the end."""
    proc, base_url = start_serve(*args, env=env)
    try:
        yield base_url
    finally:
        proc.terminate()
        proc.wait(10)
