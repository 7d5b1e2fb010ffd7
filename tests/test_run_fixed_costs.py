"""What `harness run` does around its requests, kept to what each guarantee needs: one GET /models
per run, the spec loaded once, the plan made once for a small session, two manifest writes (start,
end), no fsync of a journal segment that its part file makes durable, the garbage collector
frozen only while the requests run, and an exit that skips the interpreter's teardown but not
the atexit handlers, the flushing of stdout and the exit code. (Their time: bench/RESULTS.md.)"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from harness.rundir.store import RunStore
from harness.runner.sweep import counted

REPO = Path(__file__).resolve().parents[1]
ANSWER = {"id": "c", "object": "chat.completion", "model": "m", "created": 0,
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


def counting_app(seen: list[tuple[str, int]]) -> web.Application:
    """Records (path, gc.get_freeze_count()) of every request; the server runs in the test's process."""

    async def models(request: web.Request) -> web.Response:
        seen.append((request.path, gc.get_freeze_count()))
        return web.json_response({"object": "list", "data": [{"id": "m", "object": "model"}]})

    async def chat(request: web.Request) -> web.Response:
        seen.append((request.path, gc.get_freeze_count()))
        return web.json_response(ANSWER)

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    return app


def spec_file(folder: Path, base_url: str, prompts: int = 4) -> Path:
    (folder / "p.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "prompt": f"Q{i}"}) + "\n" for i in range(prompts)))
    spec = {"name": "f", "target": {"base_url": base_url, "model": "m"}, "dataset": {"path": "p.jsonl"},
            "params": {"max_tokens": 2}, "sweep": {"grid": {"temperature": [0.0, 1.0]}}}
    (folder / "s.yaml").write_text(json.dumps(spec))
    return folder / "s.yaml"


@pytest.mark.slow
def test_a_run_asks_once_loads_once_and_writes_its_manifest_at_start_and_end(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.cli import main
    from harness.rundir import manifest as manifest_module
    from harness.runner import session
    from harness.server.app import ServerThread
    from harness.spec import sweepspec

    loads: list[str] = []
    real_load = sweepspec.load_spec

    def load_spec(path: Any, *args: Any, **kwargs: Any) -> Any:
        loads.append(str(path))
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(sweepspec, "load_spec", load_spec)
    monkeypatch.setattr(session, "load_spec", load_spec)
    written: list[dict[str, Any]] = []
    real_write = manifest_module.write_bytes_atomic

    def write_bytes_atomic(path: Any, data: bytes) -> None:
        written.append(json.loads(data))
        real_write(path, data)

    monkeypatch.setattr(manifest_module, "write_bytes_atomic", write_bytes_atomic)
    seen: list[tuple[str, int]] = []
    with ServerThread(counting_app(seen)) as server:
        spec = spec_file(tmp_path, server.base_url)
        assert main(["run", str(spec), "--out", str(tmp_path / "runs"), "--quiet"]) == 0
    assert loads == [str(spec)]
    assert [path for path, _ in seen].count("/v1/models") == 1  # the preflight's answer serves the run's dialect too
    assert [m["status"] for m in written] == ["running", "completed"]
    assert written[0]["target"].get("dialect") is None and written[-1]["target"]["dialect"] == "seed"
    assert written[-1]["counts"] == {"requests": 8, "ok": 8, "error": 0}
    # the collector is frozen while the sweep's requests run (after the preflight), and not after the command
    chats = [frozen for path, frozen in seen if path == "/v1/chat/completions"]
    assert len(chats) > 8 and all(frozen > 0 for frozen in chats[-8:])
    assert gc.get_freeze_count() == 0


def test_a_small_plan_is_made_once_and_a_large_one_again_when_asked() -> None:
    calls: list[int] = []

    def select() -> Iterator[Any]:
        calls.append(1)
        return iter(range(5))

    count, again = counted(select, keep=5)  # type: ignore[arg-type]
    assert count == 5 and list(again()) == list(again()) == [0, 1, 2, 3, 4] and len(calls) == 1
    calls.clear()
    count, again = counted(select, keep=4)  # type: ignore[arg-type]
    assert count == 5 and list(again()) == [0, 1, 2, 3, 4] and len(calls) == 2  # planned again, not kept


def test_a_segment_is_not_fsynced_but_its_part_is_before_the_segment_goes(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal segment only has to outlive its part: the part file (and its folder) are fsynced
    before the segment is deleted, so an fsync of the segment itself adds nothing."""
    from harness.rundir import layout

    events: list[str] = []
    real_fsync, real_unlink = os.fsync, Path.unlink

    def fsync(fd: int) -> None:
        events.append("fsync " + Path(os.readlink(f"/proc/self/fd/{fd}")).name)
        real_fsync(fd)

    def unlink(self: Path, missing_ok: bool = False) -> None:
        events.append("unlink " + self.name)
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(layout.os, "fsync", fsync)
    monkeypatch.setattr(Path, "unlink", unlink)
    store = RunStore(tmp_path)
    for i in range(3):
        store.append({"run_id": "r", "request_id": f"q{i}", "cell_id": "c", "prompt_id": "p", "sample": 0,
                      "status": "ok", "attempts": 1, "started_at": datetime(2030, 1, 2, tzinfo=UTC)})
    segment = store.rotate()
    assert segment is not None and events == []  # closed, not fsynced
    store.seal(segment)
    assert events == ["fsync .part-000001.parquet.tmp", "fsync results", f"unlink {segment.name}"]
    assert store.compact().rows == 3


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_exit_now_runs_atexit_flushes_and_keeps_the_code_but_skips_the_teardown() -> None:
    done = _python("""
        import atexit, sys
        from harness.cli import exit_now
        class Torn:
            def __del__(self):
                print("torn down")
        kept = Torn()
        atexit.register(print, "atexit ran")
        print("last line", end="")  # buffered: exit_now must flush it
        exit_now(3)
    """)
    assert done.returncode == 3 and done.stdout == "last lineatexit ran\n", done
    assert "torn down" not in done.stdout


def test_exit_now_reports_output_lost_to_a_full_disk_as_python_would() -> None:
    """`harness run ... > /dev/full`: the last flush fails; Python's own exit says 120 for that,
    and exit_now must not turn it into success (a closed pipe stays quiet, as main() treats it)."""
    for error, code in (("OSError(28, 'No space left on device')", 120), ("BrokenPipeError()", 0)):
        done = _python(f"""
            import io, sys
            from harness.cli import exit_now
            class Failing(io.StringIO):
                def flush(self):
                    raise {error}
            sys.stdout = Failing()
            exit_now(0)
        """)
        assert done.returncode == code, (error, done)


def test_exit_now_waits_for_a_running_thread() -> None:
    done = _python("""
        import threading, time
        from harness.cli import exit_now
        threading.Thread(target=lambda: (time.sleep(0.2), print("thread done"))).start()
        exit_now(4)
    """)
    assert done.returncode == 4 and done.stdout == "thread done\n", done


@pytest.mark.parametrize(("argv", "torn_down"), [(["run"], False), (["--version"], True)])
def test_only_harness_run_exits_without_the_teardown(argv: list[str], torn_down: bool) -> None:
    done = _python(f"""
        import sys
        from harness.cli import run
        class Torn:
            def __del__(self):
                print("torn down")
        kept = Torn()
        sys.argv = ["harness", *{argv!r}]
        run()
    """)
    assert done.returncode == (2 if argv == ["run"] else 0), done  # `run` without a spec: bad input
    assert ("torn down" in done.stdout) is torn_down


@pytest.mark.parametrize(("status", "kept"), [(200, True), (404, True), (401, True), (503, False), (500, False), (429, False), (408, False), (None, False)])
def test_only_a_lasting_models_answer_is_kept_for_the_session(monkeypatch: pytest.MonkeyPatch, status: int | None, kept: bool) -> None:
    """A warm-up 503 (or a 429) from GET /models during the preflight must not decide the run's
    dialect: the lanes ask again; a 200 or a 404 (no list) is asked once per session."""
    from harness.probe import preflight

    calls: list[str] = []

    def fake_get(url: str, api_key: str | None, headers: dict[str, str]) -> tuple[int | None, object]:
        calls.append(url)
        return status, {"data": []}

    monkeypatch.setattr(preflight, "_get", fake_get)
    seen: dict = {}  # type: ignore[type-arg]
    for _ in range(2):
        assert preflight._get_models("http://127.0.0.1:9/v1/models", "k", {}, seen)[0] == status
    assert len(calls) == (1 if kept else 2)
    assert bool(seen) == kept
