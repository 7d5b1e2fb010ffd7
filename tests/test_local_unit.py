"""The embedded model's plumbing that needs no model: chat format, cache folder, pid files, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import TargetError
from harness.localmodel import process as local
from harness.localmodel.gguf import cache_dir, model_info
from harness.localmodel.llama import gemma_turns


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_gemma_turns_merges_system_into_first_user_turn() -> None:
    turns = gemma_turns([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": [{"type": "text", "text": "Capital of "}, {"type": "text", "text": "Peru?"}]},
    ])
    assert turns == [("user", "Be brief.\n\nHi"), ("model", "Hello"), ("user", "Capital of Peru?")]


def test_gemma_turns_system_only_becomes_a_user_turn() -> None:
    assert gemma_turns([{"role": "system", "content": "S"}]) == [("user", "S")]


@pytest.mark.parametrize("message", [{"role": "tool", "content": "x"}, {"role": "user", "content": 3}])
def test_gemma_turns_rejects_what_it_cannot_render(message: dict) -> None:
    with pytest.raises(ValueError, match=r"messages\[0\]"):
        gemma_turns([message])


def test_cache_dir_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "explicit"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("HARNESS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "harness"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "harness"


def test_unknown_local_model_names_the_known_ones() -> None:
    with pytest.raises(TargetError, match="gemma-3-270m") as info:
        model_info("llama-9000")
    assert info.value.key == "target.local"


def test_missing_extra_tells_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    missing = ("llama_cpp", "xllamacpp")
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n in missing else real(n, *a))
    monkeypatch.delenv("HARNESS_LOCAL_ENGINE", raising=False)
    with pytest.raises(TargetError, match=r"'xllamacpp'.*pip install -e '\.\[local\]'"), local.local_endpoint(reuse=False):
        pass


@pytest.mark.parametrize(("env", "installed", "expected"), [
    ("", {"xllamacpp", "llama_cpp"}, "native"),
    ("", {"llama_cpp"}, "compiled"),
    ("", set(), "native"),  # nothing installed: the error names the [local] extra's engine
    ("compiled", {"xllamacpp", "llama_cpp"}, "compiled"),
    ("bogus", {"xllamacpp"}, "native"),
])
def test_default_engine(monkeypatch: pytest.MonkeyPatch, env: str, installed: set, expected: str) -> None:
    import importlib.util

    from harness.localmodel import default_engine

    real = importlib.util.find_spec
    engines = {"xllamacpp", "llama_cpp"}
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a: (real("json") if n in installed else None) if n in engines else real(n, *a))
    monkeypatch.setenv("HARNESS_LOCAL_ENGINE", env)
    assert default_engine() == expected


def test_status_removes_a_stale_pid_file(_cache: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    endpoint = local.LocalEndpoint("gemma-3-270m", "http://127.0.0.1:9/v1", dead.pid, 9, "x.log")
    local.write_pid_file(endpoint)
    assert local.pid_file().exists()
    assert local.status() is None
    assert not local.pid_file().exists()


def test_status_ignores_a_pid_that_is_not_a_harness_model(_cache: Path) -> None:
    # our own pid lives, but it is not `python -m harness.localmodel`: never signal it
    endpoint = local.LocalEndpoint("gemma-3-270m", "http://127.0.0.1:9/v1", os.getpid(), 9, "x.log")
    local.write_pid_file(endpoint)
    assert local.status() is None
    local.write_pid_file(endpoint)
    assert local.stop() is not None  # the record is removed, the process is not touched
    assert not local.pid_file().exists()


def test_garbage_pid_file_is_removed(_cache: Path) -> None:
    local.pid_file().parent.mkdir(parents=True)
    local.pid_file().write_text("{not json", encoding="utf-8")
    assert local.status() is None
    assert not local.pid_file().exists()


def test_cli_status_and_stop_when_nothing_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["local", "status"]) == 1
    assert main(["local", "stop"]) == 1
    assert "is not running" in capsys.readouterr().err


def test_cli_rejects_a_bad_port_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["local", "start", "--port", "70000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "harness: error: --port: must be between 1 and 65535, not 70000"


@pytest.mark.parametrize("slots", ["0", "65"])
def test_cli_rejects_bad_slots_in_one_line(slots: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["local", "start", "--slots", slots]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"harness: error: --slots: must be between 1 and 64, not {slots}"


def test_slots_reach_the_endpoint_process() -> None:
    cmd = local._command("gemma-3-270m", 0, watch_parent=True, n_ctx=512, slots=4)
    assert cmd[cmd.index("--slots") + 1] == "4" and cmd[cmd.index("--n-ctx") + 1] == "512"
    assert "--slots" not in local._command("gemma-3-270m", 0, watch_parent=True, n_ctx=None)


def test_cli_without_action_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["local"]) == 2
    assert "start|stop|status" in capsys.readouterr().err


def test_pid_file_round_trip(_cache: Path) -> None:
    endpoint = local.LocalEndpoint("gemma-3-270m", "http://127.0.0.1:1234/v1", 42, 1234, "l.log")
    local.write_pid_file(endpoint)
    assert json.loads(local.pid_file().read_text())["base_url"] == "http://127.0.0.1:1234/v1"


def _fake_child(monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    """Replace the model process by a small Python program (the lifecycle code stays real)."""
    monkeypatch.setattr(local, "_check_installed", lambda name: None)
    monkeypatch.setattr(local, "_command", lambda *a, **k: [sys.executable, "-c", code])


def test_a_child_that_dies_while_starting_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_child(monkeypatch, "import sys; print('model file is broken', file=sys.stderr); sys.exit(3)")
    with pytest.raises(TargetError, match="exited with code 3 while starting: model file is broken"):
        with local.local_endpoint(reuse=False):
            pass


@pytest.mark.slow
def test_a_child_that_never_gets_ready_times_out_and_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_child(monkeypatch, "import time; time.sleep(60)")
    with pytest.raises(TargetError, match="did not start within 1 s"), local.local_endpoint(reuse=False, timeout_s=1.0):
        pass
    assert not local._live  # reaped, nothing left for atexit


@pytest.mark.slow
def test_a_child_that_answers_is_yielded_then_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    server = (
        "import sys\n"
        "from harness.server.app import create_app, serve\n"
        "from harness.server.ngram import NGramModel\n"
        "serve(create_app({'gemma-3-270m': NGramModel()}), port=0,\n"
        "      on_ready=lambda url: print('READY', url, flush=True))\n"
    )
    _fake_child(monkeypatch, server)
    with local.local_endpoint(reuse=False) as endpoint:
        assert local.answers(endpoint.base_url)
        assert endpoint.owned and endpoint.port == int(endpoint.base_url.split(":")[2].split("/")[0])
        pid = endpoint.pid
    assert not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1][:3]
