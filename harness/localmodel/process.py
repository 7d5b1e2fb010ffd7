"""Start and stop the embedded real model (llama.cpp + Gemma 3 270M) as a loopback endpoint.

`local_endpoint()` runs `python -m harness.localmodel` (harness's HTTP front in front of llama.cpp:
the prebuilt xllamacpp engine, or llama-cpp-python under harness's sampler; see docs/local-model.md) as a child process on a free 127.0.0.1 port (the child binds
port 0 and reports it), waits until `GET /v1/models` answers, yields its `base_url`, and stops
it on exit — also on Ctrl-C, on errors and when harness itself is killed: the child watches a pipe from its parent (EOF when the parent
dies, even of SIGKILL) and, on Linux, asks the kernel for SIGTERM when its parent goes away.

`start_detached()` / `status()` / `stop()` keep a long-running endpoint with a pid file in the
cache folder (`harness local start --detach`); `local_endpoint()` re-uses it when it is healthy.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import TargetError
from harness.localmodel import READY, default_engine, engine_module
from harness.localmodel.gguf import INSTALL_HINT, cache_dir, model_info

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gemma-3-270m"
HOST = "127.0.0.1"
READY_TIMEOUT_S = 180.0
_PR_SET_PDEATHSIG = 1
_CHILD_MODULE = "harness.localmodel"
_live: set[subprocess.Popen[bytes]] = set()


@dataclass(frozen=True)
class LocalEndpoint:
    """A running embedded endpoint."""

    model: str
    base_url: str  # http://127.0.0.1:PORT/v1
    pid: int
    port: int
    log_file: str
    owned: bool = True  # False when re-using a detached endpoint started by `harness local start`


# -- paths -----------------------------------------------------------------------------------


def state_dir() -> Path:
    """Folder of pid files and server logs."""
    return cache_dir() / "local"


def pid_file(name: str = DEFAULT_MODEL) -> Path:
    """The pid file of the detached endpoint serving `name`."""
    return state_dir() / f"{name}.json"


# -- the child process -----------------------------------------------------------------------


def _die_with_parent(parent_pid: int) -> None:
    """preexec_fn: ask Linux to SIGTERM this child when its parent thread exits."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _command(name: str, port: int, *, watch_parent: bool, n_ctx: int | None, slots: int | None = None) -> list[str]:
    cmd = [sys.executable, "-m", _CHILD_MODULE, "--name", name, "--host", HOST, "--port", str(port)]
    if watch_parent:
        cmd.append("--watch-stdin")
    if n_ctx:
        cmd += ["--n-ctx", str(n_ctx)]
    if slots:
        cmd += ["--slots", str(slots)]
    return cmd


def _check_installed(name: str) -> None:
    """TargetError naming the install command when the engine or the model package is missing."""
    import importlib.util

    for module in (engine_module(default_engine()), model_info(name).package):
        if importlib.util.find_spec(module) is None:
            raise TargetError(f"the local model needs the package {module!r}; {INSTALL_HINT}")


def _spawn(name: str, port: int, *, detached: bool, n_ctx: int | None,
           slots: int | None = None) -> tuple[subprocess.Popen[bytes], Path]:
    """Start the child; its ready line comes on stdout, its log goes to a file in the state folder."""
    _check_installed(name)
    state_dir().mkdir(parents=True, exist_ok=True)
    log_path = _rotated(state_dir() / f"{name}.log")
    on_main = threading.current_thread() is threading.main_thread()
    preexec = None
    if not detached and on_main and sys.platform.startswith("linux"):
        parent = os.getpid()
        preexec = lambda: _die_with_parent(parent)
    with open(log_path, "ab") as err:
        proc = subprocess.Popen(
            _command(name, port, watch_parent=not detached, n_ctx=n_ctx, slots=slots),
            stdin=subprocess.DEVNULL if detached else subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=err, close_fds=True,
            start_new_session=True,  # Ctrl-C reaches harness only; harness stops the child in order
            preexec_fn=preexec,  # noqa: PLW1509 (only prctl, before any thread starts in the child)
        )
    if not detached:
        _live.add(proc)
    log.info("started local model %s (pid %d, log %s)", name, proc.pid, log_path)
    return proc, log_path


def _rotated(path: Path, max_bytes: int = 1 << 20) -> Path:
    """`path`, its old content moved to `path.1` once it exceeds `max_bytes`."""
    try:
        if path.stat().st_size > max_bytes:
            os.replace(path, path.with_name(path.name + ".1"))
    except OSError:
        pass
    return path


def _log_tail(path: Path, lines: int = 2) -> str:
    """The child's own error line if its last lines hold one, else its last `lines` lines."""
    try:
        text = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return ""
    recent = [line for line in text[-20:] if line]
    for line in reversed(recent):
        if line.startswith("harness: error: "):
            return line.removeprefix("harness: error: ")
    return " | ".join(recent[-lines:])


def answers(base_url: str, timeout_s: float = 2.0) -> bool:
    """True when GET {base_url}/models returns 200."""
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _read_ready_line(proc: subprocess.Popen[bytes], timeout_s: float) -> str | None:
    """The child's first stdout line ("" at EOF: it exited), or None when time runs out."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            return None
    return proc.stdout.readline().decode("utf-8", errors="replace").strip()


def _wait_ready(proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float) -> str:
    """The base URL once the child listens and answers GET /v1/models; else TargetError."""
    line = _read_ready_line(proc, timeout_s)
    if line is None:
        raise TargetError(f"the local model did not start within {timeout_s:.0f} s", file=str(log_path))
    if not line.startswith(READY + " "):
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            raise TargetError(f"the local model wrote {line[:80]!r} instead of its ready line",
                              file=str(log_path)) from None
        raise TargetError(f"the local model exited with code {code} while starting: {_log_tail(log_path)}",
                          file=str(log_path))
    base_url = line.split(" ", 1)[1]
    if not answers(base_url, timeout_s=10.0):
        raise TargetError(f"the local model listens at {base_url} but does not answer", file=str(log_path))
    return base_url


def terminate(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """Stop a child: close its pipe, SIGTERM, then SIGKILL after `grace_s`; always reaped."""
    if proc.stdin:
        try:
            proc.stdin.close()
        except OSError:
            pass
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        except ProcessLookupError:
            pass
    _live.discard(proc)


@atexit.register
def _stop_all() -> None:
    for proc in list(_live):
        terminate(proc, grace_s=2.0)


@contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """While the endpoint runs, turn SIGTERM of harness into SystemExit so cleanup code runs."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def _raise(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _start(name: str, port: int | None, *, detached: bool, timeout_s: float,
           n_ctx: int | None, slots: int | None = None) -> tuple[subprocess.Popen[bytes], LocalEndpoint]:
    """Spawn the child and wait until it answers; the child is stopped if that fails."""
    proc, log_path = _spawn(name, port or 0, detached=detached, n_ctx=n_ctx, slots=slots)
    try:
        base_url = _wait_ready(proc, log_path, timeout_s)
    except BaseException:
        terminate(proc)
        raise
    bound = int(base_url.rsplit(":", 1)[1].split("/")[0])
    return proc, LocalEndpoint(name, base_url, proc.pid, bound, str(log_path))


# -- public API ------------------------------------------------------------------------------


@contextmanager
def local_endpoint(name: str = DEFAULT_MODEL, *, port: int | None = None, reuse: bool = True,
                   timeout_s: float = READY_TIMEOUT_S, n_ctx: int | None = None,
                   slots: int | None = None) -> Iterator[LocalEndpoint]:
    """A running embedded endpoint for the duration of the `with` block; stopped afterwards.

    `slots` (native engine): sequences decoded together (default 1: seeded samples reproducible).
    With `reuse`, a healthy detached endpoint (`harness local start --detach`) is used as is and
    left running. Enter this on the main thread: Linux's parent-death signal follows the thread.
    """
    if reuse and port is None:
        running = status(name)
        if running is not None:
            yield LocalEndpoint(**{**asdict(running), "owned": False})
            return
    with _sigterm_as_exit():
        proc, endpoint = _start(name, port, detached=False, timeout_s=timeout_s, n_ctx=n_ctx, slots=slots)
        try:
            yield endpoint
        finally:
            terminate(proc)


def start_detached(name: str = DEFAULT_MODEL, *, port: int | None = None,
                   timeout_s: float = READY_TIMEOUT_S, n_ctx: int | None = None,
                   slots: int | None = None) -> LocalEndpoint:
    """Start an endpoint that outlives harness; its pid file lets `status`/`stop` find it."""
    running = status(name)
    if running is not None:
        raise TargetError(f"the local model {name!r} already runs at {running.base_url} (pid {running.pid})")
    _proc, endpoint = _start(name, port, detached=True, timeout_s=timeout_s, n_ctx=n_ctx, slots=slots)
    write_pid_file(endpoint)
    return endpoint


def write_pid_file(endpoint: LocalEndpoint) -> None:
    """Record a running endpoint (atomically) so other harness processes can find it."""
    path = pid_file(endpoint.model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(asdict(endpoint)), encoding="utf-8")
    os.replace(tmp, path)


def _is_our_process(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (not Linux): fall back to "the pid exists"
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    return _CHILD_MODULE.encode() in cmdline


def status(name: str = DEFAULT_MODEL) -> LocalEndpoint | None:
    """The recorded endpoint if its process lives and answers; a stale pid file is removed."""
    path = pid_file(name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        endpoint = LocalEndpoint(**data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        path.unlink(missing_ok=True)
        return None
    if not _is_our_process(endpoint.pid):
        path.unlink(missing_ok=True)
        return None
    return endpoint if answers(endpoint.base_url) else None


def stop(name: str = DEFAULT_MODEL, grace_s: float = 5.0) -> LocalEndpoint | None:
    """Stop the recorded endpoint (SIGTERM, then SIGKILL); None when none was running."""
    path = pid_file(name)
    try:
        endpoint = LocalEndpoint(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        path.unlink(missing_ok=True)
        return None
    if _is_our_process(endpoint.pid):
        _kill_pid(endpoint.pid, grace_s)
    path.unlink(missing_ok=True)
    return endpoint


def _kill_pid(pid: int, grace_s: float) -> None:
    """SIGTERM a process that is not our child, wait for it to go, then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _is_our_process(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_until_gone(pid: int, poll_s: float = 0.5) -> None:
    """Block until the endpoint process `pid` is gone (Ctrl-C raises KeyboardInterrupt here)."""
    while _is_our_process(pid):
        time.sleep(poll_s)


__all__ = [
    "DEFAULT_MODEL",
    "LocalEndpoint",
    "answers",
    "local_endpoint",
    "pid_file",
    "start_detached",
    "state_dir",
    "status",
    "stop",
    "terminate",
    "wait_until_gone",
    "write_pid_file",
]
