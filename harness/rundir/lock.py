"""The run directory's lock: one process at a time runs (or resumes) a run.

Local folder: an exclusive flock on `RUN_DIR/.lock`, released by the kernel when the process dies.

Object store (no flock, and pyarrow exposes no conditional PUT): `RUN_DIR/.lock` is a small JSON
object `{owner, host, pid, expires}` — a lease. Taking it: refused while another owner's lease
runs (HARNESS_LOCK_LEASE_S, default 60 s, renewed by a thread every third of it); taken over when
the lease expired or its owner was on this host and its process is gone (so `kill -9` then
`--resume` on the same machine goes on at once). After writing it, the lock is read back: of two
processes starting in the same instant, the one that does not find its own id backs off. A
writer whose lease another process took over (it stalled past the lease) finds out at its next
renewal and `check()` raises before it writes the final manifest. Best effort by design: the
documented assumption is one writer per run directory (docs/run-directory.md#object-storage).
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from harness.errors import RunDirError
from harness.rundir.fs import ObjectPath, RunPath, display
from harness.rundir.layout import LOCK

log = logging.getLogger(__name__)


class RunLock:
    """An exclusive, non-blocking flock on `RUN_DIR/.lock`; released by `release` or process exit."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as exc:
            raise RunDirError(f"cannot create the lock file ({exc.strerror})", file=str(self.path)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirError("another harness process is running this run", file=str(run_dir)) from None
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def check(self) -> None:
        """Nothing to check: the kernel keeps a flock until the process ends."""

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _lease_s() -> float:
    raw = os.environ.get("HARNESS_LOCK_LEASE_S", "")
    try:
        value = float(raw)
    except ValueError:
        return 60.0
    return value if 1.0 <= value <= 86_400 else 60.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class ObjectLock:
    """A lease object `RUN_DIR/.lock` on an object store (see the module docstring)."""

    SETTLE_S = 0.2  # between writing the lock and reading it back

    def __init__(self, run_dir: ObjectPath, *, lease_s: float | None = None, wait: bool = False) -> None:
        self.path = run_dir / LOCK
        self._run_dir = run_dir
        self.lease_s = lease_s or _lease_s()
        self.owner = {"owner": secrets.token_hex(8), "host": socket.gethostname(), "pid": os.getpid()}
        self.lost = False
        self._stop = threading.Event()
        current = self._read()
        if wait and current is not None and not self._stale(current):
            current = self._wait_out(current)
        if current is not None and not self._stale(current):
            raise RunDirError(f"another harness process is running this run ({self._who(current)})",
                              file=display(run_dir))
        try:
            self._write()
            time.sleep(self.SETTLE_S)
            again = self._read()
        except OSError as exc:
            raise RunDirError(f"cannot write the lock object ({str(exc).splitlines()[0][:160]})", file=display(self.path)) from None
        if again is None or again.get("owner") != self.owner["owner"]:
            raise RunDirError(f"another harness process took this run at the same moment ({self._who(again or {})})",
                              file=display(run_dir))
        self._thread: threading.Thread | None = threading.Thread(target=self._renew, name="harness-lock", daemon=True)
        self._thread.start()

    @property
    def held(self) -> bool:
        return self._thread is not None and not self.lost

    def _wait_out(self, current: dict[str, Any]) -> dict[str, Any] | None:
        """Wait (at most two leases) for another owner's lease to run out: a retried task whose
        earlier attempt died on another host. A live owner renews it, and is still refused."""
        expires = current.get("expires")
        left = expires - time.time() if isinstance(expires, (int, float)) else 0.0
        if 0 < left <= 2 * self.lease_s:
            log.warning("%s: waiting %.0f s for the lease of %s to run out", display(self._run_dir), left,
                        self._who(current))
            time.sleep(left + 0.5)
        return self._read()

    def _read(self) -> dict[str, Any] | None:
        try:
            data = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except orjson.JSONDecodeError:
            return {}  # not ours, not readable: treated as expired
        return data if isinstance(data, dict) else {}

    def _write(self) -> None:
        body = {**self.owner, "expires": time.time() + self.lease_s}
        self.path.write_bytes(orjson.dumps(body))

    def _stale(self, lock: dict[str, Any]) -> bool:
        expires = lock.get("expires")
        if not isinstance(expires, (int, float)) or expires < time.time():
            return True
        pid = lock.get("pid")
        same_host = lock.get("host") == self.owner["host"]
        return same_host and isinstance(pid, int) and pid != os.getpid() and not _alive(pid)

    @staticmethod
    def _who(lock: dict[str, Any]) -> str:
        left = lock.get("expires")
        lease = f"; its lease ends in {max(0, round(left - time.time()))} s" if isinstance(left, (int, float)) else ""
        return f"host {lock.get('host', '?')}, pid {lock.get('pid', '?')}{lease}"

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                current = self._read()
                if current is None or current.get("owner") != self.owner["owner"]:
                    self.lost = True
                    log.error("the lock of %s was taken over by another process (%s)", display(self._run_dir),
                              self._who(current or {}))
                    return
                self._write()
            except OSError as exc:  # the store is unreachable for a moment: try again at the next tick
                log.warning("could not renew the lock of %s (%s)", display(self._run_dir), str(exc).splitlines()[0][:160])

    def check(self) -> None:
        """RunDirError when another process took this run over (this one stalled past its lease)."""
        if self.lost:
            raise RunDirError("another harness process took over this run (the lock's lease ran out); "
                              "this session's sealed rows are kept", file=display(self._run_dir))

    def release(self) -> None:
        """Stop renewing and delete the lock object if it is still ours (idempotent)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self._thread = None
        try:
            current = self._read()
            if current is not None and current.get("owner") == self.owner["owner"]:
                self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove the lock of %s (%s); it expires by itself", display(self._run_dir),
                        str(exc).splitlines()[0][:160])


def acquire_lock(run_dir: RunPath, *, wait: bool = False) -> RunLock | ObjectLock:
    """The lock of a run directory, local or on an object store; RunDirError when it is taken.
    `wait`: on an object store, wait for another owner's lease to run out first (a retried task)."""
    if isinstance(run_dir, ObjectPath):
        return ObjectLock(run_dir, wait=wait)
    return RunLock(run_dir)


__all__ = ["ObjectLock", "RunLock", "acquire_lock"]
