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

While the run goes on, the helper reads the journal as it grows (`watch`): every POLL_S it parses
the complete lines added since its last look, so at the end only the last fraction of a second of
rows is left to parse before the part file is written. It reads, never writes, until asked to
finish; what it read is used only when the segment it watched is still there, unsealed, and
longer than what was read (the journal is append-only, one writer); anything else (a second
segment, a segment sealed by the run, a line it could not parse) and it seals from the files, as
`RunStore.recover()` does.

Protocol: the helper prints `ready` once imported, then reads lines: `watch "RUN_DIR"` (a JSON
string; optional: start reading that run's journal) and `finish` (the run directory given on its
command line or to `watch`) or `finish "RUN_DIR"`; at `finish` it prints one JSON object,
`{"rows": R, "ok": K, "error": E}` or `{"failed": "why"}`, and exits. End of input before
`finish` (the run's process is gone, or the helper was not needed): it exits at once.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import harness
from harness.rundir.layout import JOURNAL, SEGMENT, numbered
from harness.rundir.store import RowCounts, RunStore, write_table_atomic

if TYPE_CHECKING:
    import pyarrow as pa

FINISH_TIMEOUT_S = 600.0
POLL_S = 0.25  # how often a watching helper reads what the journal gained (the run flushes every 0.2 s)


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

    def watch(self, run_dir: Path) -> None:
        """Let the helper read `run_dir`'s journal as it grows (best effort: `finish` works without)."""
        stdin = self._proc.stdin
        if stdin is None:
            return
        try:
            stdin.write(b"watch " + json.dumps(str(run_dir)).encode() + b"\n")
            stdin.flush()
        except OSError:  # the helper is gone: `finish` finds out and the run does the work
            pass

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


class _Lines:
    """Lines of a pipe, with a timeout (no buffering behind select's back)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = b""

    def next(self, timeout_s: float | None) -> str | None:
        """The next line ("" at the end of input), or None when none came within `timeout_s`."""
        while b"\n" not in self._buffer:
            if not select.select([self._fd], [], [], timeout_s)[0]:
                return None
            chunk = os.read(self._fd, 65536)
            if not chunk:
                return ""
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode() + "\n"


class _Watch:
    """The journal segment of a running session, parsed as it grows (complete lines only)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.segment: Path | None = None
        self.offset = 0  # bytes of the segment parsed so far (always the end of a line)
        self.tables: list[pa.Table] = []
        self.usable = True

    def poll(self) -> None:
        if not self.usable:
            return
        if self.segment is None:
            segments = numbered(self.run_dir / JOURNAL, SEGMENT)
            if len(segments) != 1:
                self.usable = len(segments) == 0  # none yet: wait; several: leave them to recover()
                return
            [segment] = segments.values()
            assert isinstance(segment, Path)
            self.segment = segment
        data = self._read()
        end = data.rfind(b"\n") + 1 if data is not None else 0
        if data is not None and end:
            self._parse(data[:end])
            self.offset += end

    def _read(self) -> bytes | None:
        assert self.segment is not None
        try:
            with open(self.segment, "rb") as fh:
                fh.seek(self.offset)
                return fh.read()
        except OSError:
            self.usable = False  # sealed and deleted by the run (a session larger than one segment)
            return None

    def _parse(self, data: bytes) -> None:
        from harness.rundir.journal import read_segment_rows

        assert self.segment is not None
        read = read_segment_rows(data, self.segment.name)
        if read.torn:  # not expected of a live journal: parse the whole segment at the end instead
            self.usable = False
        self.tables.append(read.table)

    def seal(self, store: RunStore) -> None:
        """What `store.seal(segment)` does, from the rows parsed already plus the segment's rest.
        Leaves everything to `store.recover()` unless the watched segment is still there, unsealed
        and at least as long as what was parsed."""
        import pyarrow as pa

        segment = self.segment
        if not self.usable or segment is None or segment.parent != store.journal:
            return
        match = SEGMENT.match(segment.name)
        assert match is not None
        part = store.results / f"part-{int(match.group(1)):06d}.parquet"
        try:
            if part.exists() or segment.stat().st_size < self.offset:
                return
        except OSError:
            return
        data = self._read()
        if data is None:
            return
        self._parse(data)
        if not self.usable:
            return
        table = pa.concat_tables(self.tables) if len(self.tables) > 1 else self.tables[0]
        if table.num_rows:
            write_table_atomic(table, part)
        segment.unlink(missing_ok=True)


def _serve(run_dir: Path | None, stdin: Any, stdout: Any) -> int:
    # the point of the helper: these imports done before they are needed
    import pyarrow.json
    import pyarrow.parquet  # noqa: F401

    from harness.rundir import journal, kernels, records, results  # noqa: F401

    print("ready", file=stdout, flush=True)
    lines = _Lines(stdin.fileno())
    watch: _Watch | None = None
    while True:
        line = lines.next(POLL_S if watch is not None else None)
        if line is None:
            assert watch is not None
            try:
                watch.poll()
            except Exception:  # noqa: BLE001 - only an optimisation: the end seals from the files
                watch.usable = False
            continue
        command, _, named = line.strip().partition(" ")
        if command == "watch" and named:
            run_dir = Path(json.loads(named))
            watch = _Watch(run_dir)
            continue
        if command != "finish":
            return 0  # the run's process is gone (or the helper was not needed): leave everything as it is
        break
    try:
        if named:
            run_dir = Path(json.loads(named))
        if run_dir is None:
            raise ValueError("no run directory was named")
        store = RunStore(run_dir)
        if watch is not None and watch.run_dir == run_dir:
            watch.seal(store)
        store.recover()
        counts = store.compact()
    except Exception as exc:  # noqa: BLE001 - reported; the run's process does the work again
        print(json.dumps({"failed": f"{type(exc).__name__}: {exc}"}), file=stdout, flush=True)
        return 1
    print(json.dumps({"rows": counts.rows, "ok": counts.ok, "error": counts.error}), file=stdout, flush=True)
    return 0


def main(argv: list[str]) -> None:
    """The helper's process. It ends with `os._exit` once its answer is out: the run waits for its
    exit, and the interpreter's teardown (pyarrow, numpy) would add ~0.1 s for nothing."""
    code = _serve(Path(argv[0]) if argv else None, sys.stdin, sys.stdout)
    try:
        sys.stdout.flush()
    finally:
        os._exit(code)


if __name__ == "__main__":
    main(sys.argv[1:])
