"""Sealing and compaction of a small run in a helper process, so `harness run` itself never imports
pyarrow (with numpy, ~0.2 s of CPU): the helper imports it on the other core while the run starts,
waits, and at the end seals the journal, compacts the results and reports the counts.

    finisher = Finisher.start()          # early (the run directory may not exist yet); None when
                                         # the helper cannot be started
    ...                                  # the run journals its rows (RunStore.append)
    job.store.rotate()                   # the journal closed
    counts = finisher.finish(run_dir)    # RowCounts, or None: then seal and compact in process

Nothing depends on the helper: it only does what `RunStore.recover()` + `compact()` would do in
the run's process, on files that are crash-safe either way. If it dies or fails, `finish()`
returns None and the caller does the same work itself (a half-done compaction is repaired by
the next one). It runs in its own session (a Ctrl-C on the terminal reaches the run, which then
finishes normally), and exits without touching the run directory when the run's process dies
(its stdin closes).

Protocol: the helper prints `ready` once imported, reads one line — `finish` (the run directory
given on its command line) or `finish "RUN_DIR"` (a JSON string: the helper was started before
the run directory was made) — then prints one JSON object, `{"rows": R, "ok": K, "error": E}` or
`{"failed": "why"}`, and exits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import IO

import harness
from harness.rundir.store import RowCounts, RunStore

FINISH_TIMEOUT_S = 600.0


class Finisher:
    """The run's side of the helper process."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc

    @classmethod
    def start(cls, run_dir: Path | None = None) -> Finisher | None:
        """Start the helper (None when it cannot be started); `run_dir` may be given now or to `finish`."""
        root = str(Path(harness.__file__).resolve().parents[1])  # the same harness, installed or not
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        args = [str(run_dir)] if run_dir is not None else []
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "harness.rundir.finisher", *args],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, start_new_session=True,
            )
        except OSError:
            return None
        return cls(proc)

    def finish(self, run_dir: Path | None = None) -> RowCounts | None:
        """Seal and compact `run_dir` (default: the one given to `start`) in the helper; its counts,
        or None when the caller must do it."""
        proc = self._proc
        line = b"finish\n" if run_dir is None else b"finish " + json.dumps(str(run_dir)).encode() + b"\n"
        try:
            out, _ = proc.communicate(line, timeout=FINISH_TIMEOUT_S)
            answer = json.loads(out.decode().splitlines()[-1])
            return RowCounts(rows=int(answer["rows"]), ok=int(answer["ok"]), error=int(answer["error"]))
        except (OSError, ValueError, KeyError, IndexError, TypeError, subprocess.TimeoutExpired):
            self.abandon()
            return None

    def abandon(self) -> None:
        """Stop the helper without its work (the caller seals and compacts)."""
        if self._proc.poll() is None:
            self._proc.kill()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def _serve(run_dir: Path | None, stdin: IO[str], stdout: IO[str]) -> int:
    # the point of the helper: these imports done before they are needed
    import pyarrow.json
    import pyarrow.parquet  # noqa: F401

    from harness.rundir import kernels, records, results  # noqa: F401

    print("ready", file=stdout, flush=True)
    command, _, named = stdin.readline().strip().partition(" ")
    if command != "finish":
        return 0  # the run's process is gone (or the helper was not needed): leave everything as it is
    try:
        if named:
            run_dir = Path(json.loads(named))
        if run_dir is None:
            raise ValueError("no run directory was named")
        store = RunStore(run_dir)
        store.recover()
        counts = store.compact()
    except Exception as exc:  # noqa: BLE001 - reported; the run's process does the work again
        print(json.dumps({"failed": f"{type(exc).__name__}: {exc}"}), file=stdout, flush=True)
        return 1
    print(json.dumps({"rows": counts.rows, "ok": counts.ok, "error": counts.error}), file=stdout, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_serve(Path(sys.argv[1]) if len(sys.argv) > 1 else None, sys.stdin, sys.stdout))
